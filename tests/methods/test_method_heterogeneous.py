"""The stage-based terms with a ViT on either side (FitNets and AT: tests/models/test_models_timm_training.py):
a ViT's stages are its patch tokens as maps, adapters are sized from the dry run, and a pairing that cannot work
(OFD from a ViT teacher, FSP between unequal widths) is refused in one line naming both networks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm", reason="timm is an optional dependency (in the test extra)")

from kdlab.config import ConfigError, load_config  # noqa: E402
from kdlab.engine.teacher import FrozenTeacher  # noqa: E402
from kdlab.engine.trainer import Trainer  # noqa: E402
from kdlab.methods.build import build_distiller, prerequisites  # noqa: E402
from kdlab.models import create_model  # noqa: E402

CLASSES, SIZE = 4, 16
VIT = ("timm:vit_tiny_patch16_224", {"img_size": SIZE, "patch_size": 4, "depth": 4, "embed_dim": 32, "num_heads": 2})
CNN = ("resnet8", {})
TERMS = {
    "sp": {"name": "sp"},
    "vid": {"name": "vid"},
    "nst": {"name": "nst"},
    "reviewkd": {"name": "reviewkd", "warmup": 0},
    "rkd": {"name": "rkd"},
    "pkt": {"name": "pkt"},
    "crd": {"name": "crd", "nce_k": 8, "feat_dim": 8},
    "cc": {"name": "cc", "feat_dim": 8},
}
DIRECTIONS = {"cnn->vit": (VIT, CNN), "vit->cnn": (CNN, VIT)}


def network(spec: tuple[str, dict], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(spec[0], num_classes=CLASSES, **spec[1])


def build(term: dict, student: tuple[str, dict], teacher: tuple[str, dict]):
    cfg = load_config(None, [f"distill.terms={json.dumps([{'name': 'ce'}, term])}"])
    return build_distiller(
        cfg, network(student, 0), FrozenTeacher(network(teacher, 1)), num_classes=CLASSES, train_size=8,
        image_size=SIZE, in_chans=3, steps_per_epoch=2, device=torch.device("cpu"),
        extra={"train_targets": torch.arange(8) % CLASSES},
    )


@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
@pytest.mark.parametrize("name", sorted(TERMS))
def test_stage_terms_train_a_vit_from_a_cnn_and_a_cnn_from_a_vit(name: str, direction: str) -> None:
    distiller = build(TERMS[name], *DIRECTIONS[direction])
    distiller.train()
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(4, 3, SIZE, SIZE, generator=g), "target": torch.arange(4), "index": torch.arange(4)}
    out = distiller(batch)
    assert torch.isfinite(out.terms[name])
    out.loss.backward()
    grads = [p.grad for p in distiller.student.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_ofd_distils_a_vit_student_from_a_cnn_teacher() -> None:
    distiller = build({"name": "ofd"}, VIT, CNN)
    # the connectors map the ViT's (32, 4, 4) token maps onto resnet8's deepest three stages
    assert [c[0].in_channels for c in distiller.terms["ofd"].connectors] == [32, 32, 32]
    assert [c[0].out_channels for c in distiller.terms["ofd"].connectors] == [16, 32, 64]


def test_ofd_from_a_vit_teacher_is_refused_naming_both_networks() -> None:
    with pytest.raises(ConfigError, match=r"ofd: the teacher timm:vit_tiny_patch16_224 is a vision transformer "
                                          r"\(stages 0: \(2, 32, 4, 4\).*; student 0: \(2, 16, 16, 16\)") as err:
        build({"name": "ofd"}, CNN, VIT)
    assert "\n" not in str(err.value) and "CNN teacher" in str(err.value)


def _teacher_file(root: Path, spec: tuple[str, dict]) -> Path:
    path = root / f"{spec[0].replace(':', '_')}.pth"
    torch.save({"model": network(spec, 3).state_dict()}, path)
    return path


def _config(root: Path, student, teacher, term: str, *extra: str):
    return load_config(None, [
        "data.name=synthetic", "data.synthetic_train=8", "data.synthetic_test=4", f"data.synthetic_classes={CLASSES}",
        f"data.synthetic_size={SIZE}", "data.batch_size=4", "data.eval_batch_size=4", "data.num_workers=0",
        "trainer.progress=none", "trainer.device=cpu", "trainer.epochs=1", "trainer.num_threads=1",
        f"model.name={student[0]}", f"model.kwargs={json.dumps(student[1])}", f"teacher.name={teacher[0]}",
        f"teacher.kwargs={json.dumps(teacher[1])}", f"teacher.checkpoint={_teacher_file(root, teacher)}",
        f"trainer.out_dir={root / 'run'}", f"distill.terms=[{{name: ce}}, {term}]", *extra,
    ])


@pytest.mark.parametrize("student, teacher", [(VIT, CNN), (CNN, VIT)], ids=["cnn->vit", "vit->cnn"])
def test_fsp_between_a_vit_and_a_cnn_is_refused_naming_both_maps(tmp_path: Path, student, teacher) -> None:
    """A fixed-size ViT is probed at its own resolution; FSP then needs equal maps, which the pair has not."""
    cfg = _config(tmp_path, student, teacher, "{name: fsp, stem: false}")
    with pytest.raises(ConfigError, match=r"FSP pairs the networks' maps one to one.*timm:vit_tiny_patch16_224 "
                                          r"\[stage 0 32, stage 1 32, stage 2 32, stage 3 32\]") as err:
        prerequisites(cfg)
    assert "\n" not in str(err.value) and "resnet8 [stage 0 16, stage 1 32, stage 2 64]" in str(err.value)


def test_fsp_between_two_vits_of_one_width_builds_its_initialisation_stage(tmp_path: Path) -> None:
    cfg = _config(tmp_path, VIT, VIT, "{name: fsp, stem: false}")
    (stage,) = prerequisites(cfg)
    assert "FSP initialisation stage" in stage.description


@pytest.mark.parametrize("term, student, teacher", [
    ("{name: ab, init_epochs: 1}", CNN, VIT),
    ("{name: ft, init_epochs: 1}", VIT, CNN),
], ids=["ab vit->cnn", "ft cnn->vit"])
def test_the_initialisation_stage_terms_train_with_a_vit_on_one_side(tmp_path: Path, term: str, student, teacher):
    cfg = _config(tmp_path, student, teacher, term, f"data.cache_dir={tmp_path / 'cache'}")
    result = Trainer(cfg).fit()
    assert result.completed and torch.isfinite(torch.tensor(result.history[-1]["train_loss"]))


def test_a_vit_with_2x2_patches_exposes_four_stages() -> None:
    """Its blocks sit at stride 2, below the stem threshold of hierarchical networks: still an isotropic network."""
    vit = create_model(VIT[0], num_classes=CLASSES, img_size=8, patch_size=2, depth=4, embed_dim=16, num_heads=2)
    assert vit.stage_indices == [0, 1, 2, 3]
    assert [tuple(s.shape[1:]) for s in vit.forward_all(torch.zeros(1, 3, 8, 8)).stages] == [(16, 4, 4)] * 4
