"""The label-free terms: projection-head logic, values, SEED's queue, config errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdlab.config import ConfigError
from kdlab.losses import ckd_loss, cosine_embedding_loss, coss_loss, mse_embedding_loss, seed_loss, seed_update_queue
from kdlab.methods.base import StepContext, term_registry
from kdlab.methods.unsupervised import (
    CKDEmbeddingTerm,
    CoSSTerm,
    CosineEmbeddingTerm,
    MSEEmbeddingTerm,
    SEEDTerm,
    projection_head,
)
from kdlab.models import Features


def step_of(student: torch.Tensor, teacher: torch.Tensor) -> StepContext:
    def feats(x: torch.Tensor) -> Features:
        return Features(logits=x, embedding=x, stages=[], preact_stages=[])

    return StepContext(
        student=feats(student), teacher=feats(teacher), targets=None, index=torch.arange(student.shape[0]),
        views=1, epoch=0, progress=0.0, batch={},
    )


# ---------------------------------------------------------------- head logic
def test_projection_head_is_identity_when_dims_match_else_an_mlp():
    assert isinstance(projection_head(64, 64, 2048), nn.Identity)
    head = projection_head(64, 256, 32)
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (head[0].in_features, head[0].out_features, head[2].out_features) == (64, 32, 256)
    assert head(torch.randn(5, 64)).shape == (5, 256)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_projection_head_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="hidden"):
        projection_head(4, 8, bad)


def test_term_head_uses_distill_head_hidden_unless_the_term_overrides_it(make_ctx):
    term = CoSSTerm(make_ctx(16, 24, head_hidden=40))
    assert term.has_head and term.head[0].out_features == 40 and term.head[2].out_features == 24
    term = CoSSTerm(make_ctx(16, 24, head_hidden=40), head_hidden=8)
    assert term.head[0].out_features == 8
    same = CoSSTerm(make_ctx(24, 24))
    assert not same.has_head and isinstance(same.head, nn.Identity)
    assert same.eval_embedding(torch.randn(3, 24)) is None
    assert term.eval_embedding(torch.randn(3, 16)).shape == (3, 24)


def test_head_parameters_train_and_are_saved(make_ctx):
    term = CoSSTerm(make_ctx(16, 24))
    assert {"head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"} <= set(term.state_dict())
    student = torch.randn(8, 16, requires_grad=True)
    term(step_of(student, torch.randn(8, 24)))["loss"].backward()
    assert term.head[0].weight.grad is not None and student.grad is not None


# ---------------------------------------------------------------- values
def test_coss_term_is_coss_loss_of_the_projected_student(make_ctx):
    term = CoSSTerm(make_ctx(16, 24), space_weight=0.5)
    s, t = torch.randn(8, 16), torch.randn(8, 24)
    out = term(step_of(s, t))
    expected = coss_loss(term.head(s), t, space_weight=0.5)
    assert torch.allclose(out["loss"], expected)
    assert torch.allclose(out["sample"], cosine_embedding_loss(term.head(s), t))
    assert torch.allclose(out["sample"] + 0.5 * out["space"], expected, atol=1e-6)


def test_coss_gather_is_the_identity_in_one_process(make_ctx):
    from kdlab.config import load_config

    cfg = load_config(None, ["distill.gather=true"])
    torch.manual_seed(0)
    gathered = CoSSTerm(make_ctx(24, 24, config=cfg))
    plain = CoSSTerm(make_ctx(24, 24))
    assert gathered.gather and not plain.gather
    s, t = torch.randn(6, 24), torch.randn(6, 24)
    assert torch.equal(gathered(step_of(s, t))["loss"], plain(step_of(s, t))["loss"])


@pytest.mark.parametrize(
    "cls, params, reference",
    [
        (CosineEmbeddingTerm, {}, lambda s, t: cosine_embedding_loss(s, t)),
        (MSEEmbeddingTerm, {"normalize": False}, lambda s, t: mse_embedding_loss(s, t, normalize=False)),
        (CKDEmbeddingTerm, {"temperature": 0.2}, lambda s, t: ckd_loss(s, t, temperature=0.2)),
    ],
)
def test_regression_and_contrastive_baselines_work_through_the_head(make_ctx, cls, params, reference):
    term = cls(make_ctx(16, 24), **params)
    s, t = torch.randn(8, 16), torch.randn(8, 24)
    assert torch.allclose(term(step_of(s, t)), reference(term.head(s), t))


def test_every_unsupervised_term_is_registered_label_free():
    registry = term_registry()
    for name in ("coss", "seed", "cosine", "mse_embed", "ckd_embed"):
        cls = registry[name]
        assert cls.needs_teacher and not cls.needs_labels and cls.uses == frozenset({"embedding"}), name


@pytest.mark.parametrize(
    "cls, params, match",
    [
        (CoSSTerm, {"space_weight": -1.0}, "space_weight"),
        (SEEDTerm, {"queue_size": 0}, "queue_size"),
        (SEEDTerm, {"teacher_temperature": 0.0}, "teacher_temperature"),
        (CKDEmbeddingTerm, {"negatives": "nope"}, "negatives"),
        (MSEEmbeddingTerm, {"normalize": "yes"}, "normalize"),
    ],
)
def test_bad_term_parameters_name_the_parameter(make_ctx, cls, params, match):
    with pytest.raises(ValueError, match=match):
        cls(make_ctx(8, 8), **params)


# ---------------------------------------------------------------- SEED's queue
def test_seed_queue_is_fifo_like_seed_update_queue_and_wraps(make_ctx):
    term = SEEDTerm(make_ctx(8, 8), queue_size=10)
    reference, ptr = term.queue.clone(), 0
    assert torch.allclose(reference.norm(dim=1), torch.ones(10))
    for rows in (4, 4, 4, 3):  # 15 rows through a queue of 10: wraps once
        teacher = torch.randn(rows, 8)
        loss = term(step_of(torch.randn(rows, 8), teacher))
        assert loss.shape == ()
        reference, ptr = seed_update_queue(reference, ptr, teacher)
        assert torch.allclose(term.queue, reference) and int(term.queue_ptr) == ptr
    assert ptr == 5


def test_seed_loss_uses_the_queue_before_the_update(make_ctx):
    term = SEEDTerm(make_ctx(8, 8), queue_size=6)
    before = term.queue.clone()
    s, t = torch.randn(3, 8), torch.randn(3, 8)
    loss = term(step_of(s, t))
    assert torch.allclose(loss, seed_loss(s, t, before))
    assert not torch.equal(term.queue, before)


def test_seed_queue_is_not_updated_in_eval_mode(make_ctx):
    term = SEEDTerm(make_ctx(8, 8), queue_size=6).eval()
    before = term.queue.clone()
    term(step_of(torch.randn(3, 8), torch.randn(3, 8)))
    assert torch.equal(term.queue, before) and int(term.queue_ptr) == 0


def test_seed_state_resumes_exactly(make_ctx):
    torch.manual_seed(0)
    running = SEEDTerm(make_ctx(8, 12), queue_size=7)
    batches = [(torch.randn(3, 8), torch.randn(3, 12)) for _ in range(5)]
    for s, t in batches[:2]:
        running(step_of(s, t))
    state = {k: v.clone() for k, v in running.state_dict().items()}
    assert {"queue", "queue_ptr"} <= set(state) and int(state["queue_ptr"]) == 6

    torch.manual_seed(99)  # a fresh build differs everywhere (head init) until the state is loaded
    resumed = SEEDTerm(make_ctx(8, 12), queue_size=7)
    resumed.load_state_dict(state)
    for s, t in batches[2:]:
        assert torch.equal(running(step_of(s, t)), resumed(step_of(s, t)))
    for key, value in running.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_seed_queue_smaller_than_the_batch_is_a_config_error(random_teacher, digits_cfg):
    from kdlab.engine.trainer import Trainer

    cfg = digits_cfg(
        *random_teacher, "teacher.embedding_only=true", "distill.labels=false",
        "distill.terms=[{name: seed, queue_size: 32}]",
    )
    with pytest.raises(ConfigError, match="queue_size=32"):
        Trainer(cfg)
