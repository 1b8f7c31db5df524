"""What a distilled student inherits beyond its accuracy: robustness, transfer, retrieval.

The part of ``kdlab eval`` behind ``--corruptions``, ``--corruptions-from``, ``--eval-set``,
``--transfer`` and ``--retrieval`` (the CoSS paper's Tables 2, 4 and 5 as a tool). Keys added to
the result (accuracies and retrieval scores in percent, like ``val_top1``):

``corruptions``            ``{name: {severity: top1}}`` (severities as strings in JSON)
``mean_corruption_top1``   mean over every (corruption, severity) cell
``corruption_clean_top1``  top-1 on the same (subset of) clean images, for relative mCE
``corruption_settings``    names, severities, samples, seed, chunk and source of the images
``references``             per ``--reference``: its ``clean_top1``, ``corruptions``, ``mean_corruption_top1``
                           (and ``eval_sets``)
``mce``, ``relative_mce``  ``{reference: %}``, Hendrycks & Dietterich's ratios to each reference
``eval_sets``              ``{set: top1}`` for each ``--eval-set`` folder
``transfer``               ``{spec: top1}``; ``transfer_details`` the chosen L2, validation top-1, sizes
``retrieval``              ``{"map", "recall@1", "recall@5", "recall@10"}`` on the evaluation split

A label-free run's classifier was never trained: its images are classified by the linear probe
(``eval.probe_method``) fitted on the clean training embeddings, as its top-1 is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from torch import nn

from kdlab.config import Config, ConfigError
from kdlab.engine.input_adapt import InputSpec
from kdlab.engine.robustness_eval import CorruptionRequest, Scored


@dataclass(frozen=True)
class InheritanceRequest:
    """What to measure beyond top-1; empty: nothing."""

    corruptions: Optional[CorruptionRequest] = None
    corruptions_from: Optional[str] = None
    #: with ``corruptions_from``: the corruptions (None: every one the set holds) and severities to read
    released_names: Optional[tuple[str, ...]] = None
    released_severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    eval_sets: tuple[str, ...] = ()
    transfer: tuple[str, ...] = ()
    retrieval: bool = False
    #: label -> network and its input, scored on the same images (``--reference RUN_DIR``)
    references: Mapping[str, Scored] = field(default_factory=dict)

    @property
    def wanted(self) -> bool:
        return bool(self.corruptions or self.corruptions_from or self.eval_sets or self.transfer or self.retrieval)

    @property
    def needs_classifier(self) -> bool:
        return bool(self.corruptions or self.corruptions_from or self.eval_sets)


class ProbedNetwork(nn.Module):
    """A network whose logits are a fitted linear probe of its embedding (label-free students)."""

    def __init__(self, network: nn.Module, classifier: Any) -> None:
        super().__init__()
        self.network = network
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.network.forward_all(images).embedding).to(images.device)


def student_input(data: Any) -> InputSpec:
    return InputSpec.of(data.in_chans, data.image_size, data.mean, data.std)


def _json_cells(cells: Mapping[str, Mapping[int, float]]) -> dict[str, dict[str, float]]:
    return {name: {str(severity): value for severity, value in by_severity.items()} for name, by_severity in cells.items()}


def _reference_ratios(result: dict[str, Any], own: dict[str, Any], references: Mapping[str, dict[str, Any]]) -> None:
    from kdlab.eval.corruption_scores import corruption_error_ratio

    result["references"] = {}
    result["mce"], result["relative_mce"] = {}, {}
    for label, ref in references.items():
        result["references"][label] = {key: (_json_cells(value) if key == "corruptions" else value)
                                       for key, value in ref.items()}
        try:
            ratio = corruption_error_ratio(own["corruptions"], ref["corruptions"], clean=own.get("clean_top1"),
                                           reference_clean=ref.get("clean_top1"))
        except ValueError:  # the reference makes no error on these images: no ratio to it
            ratio = {"mce": None, "relative_mce": None}
        result["mce"][label] = ratio["mce"]
        result["relative_mce"][label] = ratio["relative_mce"]


def inheritance_metrics(
    cfg: Config,
    data: Any,
    student: nn.Module,
    request: InheritanceRequest,
    *,
    train: Optional[tuple[torch.Tensor, torch.Tensor]],
    test: Optional[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
) -> dict[str, Any]:
    """The keys of the module docstring for what ``request`` asks; ``train`` / ``test`` the student's
    embeddings and labels of the two splits (needed for label-free runs and retrieval)."""
    from kdlab.data.eval_subset import eval_subset
    from kdlab.engine import robustness_eval as robust

    result: dict[str, Any] = {}
    own_input = student_input(data)
    classifier: nn.Module = student
    if request.needs_classifier and not cfg.distill.labels:
        from kdlab.eval.linear_probe import fit_linear_classifier

        assert train is not None
        probe = fit_linear_classifier(
            train[0], train[1], method=cfg.eval.probe_method, epochs=cfg.eval.probe_epochs, lr=cfg.eval.probe_lr,
            milestones=tuple(cfg.eval.probe_milestones), seed=cfg.trainer.seed, num_classes=data.num_classes,
        )
        classifier = ProbedNetwork(student, probe)
    references = {label: (network.to(device).eval(), spec) for label, (network, spec) in request.references.items()}
    networks: dict[str, Scored] = {"": (classifier, own_input), **references}
    if request.corruptions is not None:
        req = request.corruptions
        stream = data.eval if req.samples is None else eval_subset(data.eval, req.samples, seed=req.seed)
        scores = robust.corruption_scores(networks, stream, data.mean, data.std, req)
        own = scores.pop("")
        result.update(corruptions=_json_cells(own["corruptions"]), mean_corruption_top1=own["mean_corruption_top1"],
                      corruption_clean_top1=own["clean_top1"],
                      corruption_settings={**req.settings(), "source": "kdlab", "images": stream.num_samples})
        if scores:
            _reference_ratios(result, own, scores)
    elif request.corruptions_from is not None:
        severities = request.released_severities
        scores = robust.corruption_set_scores(
            networks, request.corruptions_from, data.classes, names=request.released_names, severities=severities,
            size=data.image_size, batch_size=cfg.data.eval_batch_size, num_workers=cfg.data.num_workers,
            device=device,
        )
        own = scores.pop("")
        result.update(corruptions=_json_cells(own["corruptions"]), mean_corruption_top1=own["mean_corruption_top1"],
                      corruption_settings={"source": str(request.corruptions_from), "severities": list(severities)})
        if scores:
            _reference_ratios(result, own, scores)
    if request.eval_sets:
        from kdlab.data.sources.labelled_folder import open_class_folders

        result["eval_sets"] = {}
        for spec in request.eval_sets:
            split = open_class_folders(spec, data.classes)
            scores = robust.split_scores(networks, split, size=data.image_size, batch_size=cfg.data.eval_batch_size,
                                         num_workers=cfg.data.num_workers, device=device)
            result["eval_sets"][spec] = scores.pop("")
            for label, top1 in scores.items():
                result.setdefault("references", {}).setdefault(label, {}).setdefault("eval_sets", {})[spec] = top1
    if request.transfer:
        from kdlab.engine.transfer_eval import transfer_accuracy

        result["transfer"], result["transfer_details"] = {}, {}
        for spec in request.transfer:
            details = transfer_accuracy(student, own_input, spec, cfg.data, seed=cfg.trainer.seed, device=device)
            result["transfer"][spec] = details["top1"]
            result["transfer_details"][spec] = details
    if request.retrieval:
        from kdlab.eval import retrieval_metrics

        assert test is not None
        result["retrieval"] = retrieval_metrics(test[0], test[1])
    return result


__all__ = ["InheritanceRequest", "ProbedNetwork", "inheritance_metrics", "student_input"]
