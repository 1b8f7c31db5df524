"""Contrastive representation distillation (CRD) with its two memory banks.

State that must survive a resume lives in buffers, so the trainer's
checkpoint (``method`` entry) holds it: both memory banks and the NCE
normalisation constants (estimated on the first training batch and then
frozen, as in the official code). Negatives are drawn from a generator seeded
by (run seed, global step), so a resumed run draws exactly the negatives an
uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from kdlab.collectives import all_gather_rows
from kdlab.losses import crd_loss, crd_normalizers, crd_update_memory
from kdlab.methods.base import BuildContext, LossTerm, StepContext, register_term
from kdlab.methods.terms._features import EMBEDDING, embedding_inputs
from kdlab.methods.terms._params import choice, fraction, positive, positive_int

_NEGATIVES = ("uniform", "other_class")


class Embed(nn.Module):
    """Linear projection to ``dim`` followed by L2 normalisation (CRD's ``Embed``)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), dim=1)


def step_generator(seed: int, step: int, device: torch.device, salt: str = "crd") -> torch.Generator:
    """A generator whose stream depends only on (salt, seed, step): replayable after a resume."""
    digest = hashlib.blake2b(f"{salt}:{seed}:{step}".encode(), digest_size=8).digest()
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest, "little") >> 1)
    return generator


def sample_negatives(
    index: torch.Tensor,
    num_data: int,
    k: int,
    generator: torch.Generator,
    class_order: Optional[torch.Tensor] = None,
    class_start: Optional[torch.Tensor] = None,
    class_count: Optional[torch.Tensor] = None,
    targets: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """(B, k) dataset indices drawn uniformly with replacement, never the row's own index.

    Uniform mode draws ``u`` from ``[0, num_data - 1)`` and skips the positive by
    shifting ``u >= index`` up by one. Class-aware mode (CRD's ``exact`` sampling:
    negatives from other classes only) draws from the ``num_data - n_y`` samples
    outside the anchor's class ``y``: ``class_order`` lists the dataset indices
    sorted by class, ``class_start[y]`` / ``class_count[y]`` locate class y in it.
    """
    batch = index.shape[0]
    device = index.device
    if class_order is None:
        if num_data < 2:
            raise ValueError(f"CRD needs at least 2 training samples to draw negatives, got num_data={num_data}")
        draws = torch.randint(0, num_data - 1, (batch, k), generator=generator, device=device)
        return draws + (draws >= index[:, None]).long()
    if class_start is None or class_count is None or targets is None:
        raise ValueError("sample_negatives: class_order needs class_start, class_count and targets too")
    start = class_start[targets][:, None]
    count = class_count[targets][:, None]
    pool = num_data - count
    if bool((pool < 1).any()):
        raise ValueError("CRD other_class negatives: every training sample has the same class")
    uniform = torch.rand((batch, k), generator=generator, device=device)
    draws = (uniform * pool).long().clamp_max(pool - 1)
    draws = draws + (draws >= start).long() * count
    return class_order[draws]


@register_term
class CRDTerm(LossTerm):
    """``crd``: NCE between student and teacher projections with momentum memory banks.

    Both pooled embeddings (``feature``: ``embedding`` or a flattened stage) go
    through linear heads to ``feat_dim`` and are L2-normalised. Each sample is
    contrasted with its own bank row (positive) and ``nce_k`` rows drawn
    uniformly from the other training samples; after the loss, the batch's rows
    of both banks move towards the new embeddings with momentum ``nce_momentum``.
    ``negatives="other_class"`` draws negatives from other classes only (the
    official ``exact`` mode); it needs every training label at build time
    (``BuildContext.extra["train_targets"]``). RepDistiller weights the term 0.8
    next to CE 1.0.
    """

    name = "crd"
    paper = "Tian, Krishnan & Isola, Contrastive Representation Distillation, ICLR 2020"
    uses = frozenset({"embedding", "stages"})
    needs_index = True

    def __init__(
        self,
        ctx: BuildContext,
        feat_dim: int = 128,
        nce_k: int = 16384,
        nce_t: float = 0.07,
        nce_momentum: float = 0.5,
        feature: object = EMBEDDING,
        negatives: str = "uniform",
    ) -> None:
        super().__init__(ctx)
        self.feat_dim = positive_int("feat_dim", feat_dim)
        self.nce_k = positive_int("nce_k", nce_k)
        self.nce_t = positive("nce_t", nce_t)
        self.nce_momentum = fraction("nce_momentum", nce_momentum)
        self.negatives = choice("negatives", negatives, _NEGATIVES)
        if ctx.train_size < 2:
            raise ValueError(f"CRD needs at least 2 training samples (train_size={ctx.train_size})")
        self.num_data = int(ctx.train_size)
        self.seed = int(ctx.seed)
        self.steps_per_epoch = max(int(ctx.steps_per_epoch), 1)
        student_dim, teacher_dim = embedding_inputs(self, feature, ctx)
        self.embed_student = Embed(student_dim, self.feat_dim)
        self.embed_teacher = Embed(teacher_dim, self.feat_dim)

        # Uniform in [-stdv, stdv] with stdv = 1 / sqrt(dim / 3), as the official ContrastMemory.
        stdv = 1.0 / math.sqrt(self.feat_dim / 3)
        init = torch.Generator().manual_seed(self.seed)
        for bank in ("student_bank", "teacher_bank"):
            values = torch.rand(self.num_data, self.feat_dim, generator=init) * (2 * stdv) - stdv
            self.register_buffer(bank, values)
        # Z of the student-anchor and teacher-anchor directions; -1 = not estimated yet.
        self.register_buffer("normalizer", torch.full((2,), -1.0))
        self._init_class_sampling(ctx)

    def _init_class_sampling(self, ctx: BuildContext) -> None:
        """Buffers locating each class in the dataset (other_class negatives); None in uniform mode.

        Not persistent: they are derived from the data and rebuilt identically at every build.
        """
        order = start = count = targets = None
        if self.negatives == "other_class":
            raw = ctx.extra.get("train_targets")
            if raw is None:
                raise ValueError(
                    "negatives='other_class' needs every training label (BuildContext.extra['train_targets']); "
                    "use negatives='uniform'"
                )
            targets = torch.as_tensor(raw, dtype=torch.long).cpu()
            if targets.shape != (self.num_data,):
                raise ValueError(
                    f"train_targets has shape {tuple(targets.shape)}, expected ({self.num_data},): one label per sample"
                )
            count = torch.bincount(targets)
            start = torch.cumsum(count, 0) - count
            order = torch.argsort(targets, stable=True)
        self.register_buffer("class_order", order, persistent=False)
        self.register_buffer("class_start", start, persistent=False)
        self.register_buffer("class_count", count, persistent=False)
        self.register_buffer("train_targets", targets, persistent=False)

    def _negatives(self, step: StepContext) -> torch.Tensor:
        global_step = round(step.progress * self.steps_per_epoch)
        index = step.index.to(self.student_bank.device)
        generator = step_generator(self.seed, global_step, index.device)
        if self.class_order is None:
            return sample_negatives(index, self.num_data, self.nce_k, generator)
        return sample_negatives(
            index,
            self.num_data,
            self.nce_k,
            generator,
            class_order=self.class_order,
            class_start=self.class_start,
            class_count=self.class_count,
            targets=self.train_targets[index],
        )

    def forward(self, step: StepContext) -> torch.Tensor:
        student = self.embed_student(self.student_feature.take(step.student).float())
        teacher = self.embed_teacher(self.teacher_feature.take(step.teacher).float())
        index = step.index.to(self.student_bank.device).long()
        rows = torch.cat([index[:, None], self._negatives(step)], dim=1)  # (B, K+1), positive first
        student_rows = self.student_bank[rows]
        teacher_rows = self.teacher_bank[rows]

        normalizer: Optional[tuple[float, float]] = None
        if self.training and bool(self.normalizer[0] < 0):
            z = crd_normalizers(student, teacher, student_rows, teacher_rows, self.nce_t, self.num_data)
            self.normalizer.copy_(torch.tensor(z))
        if bool(self.normalizer[0] > 0):
            normalizer = (float(self.normalizer[0]), float(self.normalizer[1]))
        loss = crd_loss(
            student,
            teacher,
            student_rows,
            teacher_rows,
            temperature=self.nce_t,
            num_data=self.num_data,
            normalizer=normalizer,
        )
        if self.training:
            # every rank applies every rank's rows, so the banks stay identical under DDP
            self._update_banks(
                all_gather_rows(index), all_gather_rows(student.detach()), all_gather_rows(teacher.detach())
            )
        return loss

    @torch.no_grad()
    def _update_banks(self, index: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor) -> None:
        for bank, new in ((self.student_bank, student), (self.teacher_bank, teacher)):
            bank.index_copy_(0, index, crd_update_memory(bank, index, new, momentum=self.nce_momentum))

    def extra_repr(self) -> str:
        return (
            f"feat_dim={self.feat_dim}, nce_k={self.nce_k}, nce_t={self.nce_t}, nce_momentum={self.nce_momentum}, "
            f"num_data={self.num_data}, negatives={self.negatives}, student={self.student_feature}, "
            f"teacher={self.teacher_feature}"
        )
