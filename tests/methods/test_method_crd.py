"""CRD's memory banks and negatives: momentum updates, no positive among the negatives,
state that survives a checkpoint round trip."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdlab.methods.base import StepContext
from kdlab.methods.terms.crd import sample_negatives, step_generator
from kdlab.models.features import Features
from method_helpers import TRAIN_SIZE, build


def _crd(**params):
    terms = [{"name": "crd", "nce_k": 16, "feat_dim": 8, **params}]
    return build(terms).terms["crd"]


def _step(index, seed=0, progress=0.0):
    g = torch.Generator().manual_seed(seed)
    n = len(index)

    def features(dim):
        emb = torch.randn(n, dim, generator=g)
        return Features(logits=torch.randn(n, 5, generator=g), embedding=emb, stages=[], preact_stages=[])

    return StepContext(
        student=features(64),  # resnet8's embedding width
        teacher=features(128),  # wrn_16_2's
        targets=None,
        index=torch.as_tensor(index),
        views=1,
        epoch=int(progress),
        progress=progress,
        batch={},
    )


def test_negatives_never_contain_the_positive_index():
    index = torch.tensor([0, 1, 2, 1])
    negatives = sample_negatives(index, num_data=3, k=2000, generator=step_generator(0, 0, index.device))
    assert negatives.shape == (4, 2000)
    assert not bool((negatives == index[:, None]).any())
    assert int(negatives.min()) >= 0 and int(negatives.max()) <= 2
    for row, own in zip(negatives, index.tolist()):  # every other sample is drawn
        assert set(row.unique().tolist()) == {0, 1, 2} - {own}


def test_other_class_negatives_come_from_other_classes_only():
    targets = torch.tensor([0, 0, 1, 2, 2, 2, 1, 0])
    distiller = build([{"name": "crd", "nce_k": 500, "feat_dim": 8, "negatives": "other_class"}],
                      extra={"train_targets": torch.arange(TRAIN_SIZE) % 3})
    term = distiller.terms["crd"]
    index = torch.arange(8)
    negatives = term._negatives(_step(index))
    own = term.train_targets[index]
    assert not bool((term.train_targets[negatives] == own[:, None]).any())
    # the pure sampler with a hand-made class layout
    order = torch.argsort(targets, stable=True)
    count = torch.bincount(targets)
    start = torch.cumsum(count, 0) - count
    drawn = sample_negatives(index, 8, 300, step_generator(1, 0, index.device), order, start, count, targets)
    assert not bool((targets[drawn] == targets[:, None]).any())
    assert set(drawn[3].tolist()) == {0, 1, 2, 6, 7}  # all samples outside class 2


def test_negatives_depend_only_on_seed_and_global_step():
    term = _crd()
    a = term._negatives(_step([0, 1, 2], progress=1.4))  # 5 steps per epoch: global step 7
    b = term._negatives(_step([0, 1, 2], progress=1.4))
    c = term._negatives(_step([0, 1, 2], progress=1.6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_banks_move_towards_the_batch_with_the_configured_momentum():
    term = _crd(nce_momentum=0.5)
    term.train()
    step = _step([3, 7, 11])
    before_s, before_t = term.student_bank.clone(), term.teacher_bank.clone()
    with torch.no_grad():
        new_s = term.embed_student(step.student.embedding)
        new_t = term.embed_teacher(step.teacher.embedding)
    term(step)
    idx = step.index
    assert torch.allclose(term.student_bank[idx], F.normalize(0.5 * before_s[idx] + 0.5 * new_s, dim=1), atol=1e-6)
    assert torch.allclose(term.teacher_bank[idx], F.normalize(0.5 * before_t[idx] + 0.5 * new_t, dim=1), atol=1e-6)
    untouched = torch.ones(TRAIN_SIZE, dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(term.student_bank[untouched], before_s[untouched])
    assert torch.equal(term.teacher_bank[untouched], before_t[untouched])


def test_banks_start_uniform_like_the_official_memory():
    term = _crd()
    stdv = 1.0 / (8 / 3) ** 0.5
    for bank in (term.student_bank, term.teacher_bank):
        assert bank.shape == (TRAIN_SIZE, 8)
        assert float(bank.abs().max()) <= stdv


def test_normalizer_is_estimated_once_and_eval_leaves_state_alone():
    term = _crd()
    assert bool((term.normalizer < 0).all())
    term.eval()
    term(_step([0, 1]))
    assert bool((term.normalizer < 0).all())  # evaluation neither fixes Z ...
    term.train()
    term(_step([0, 1]))
    z = term.normalizer.clone()
    assert bool((z > 0).all())
    term(_step([2, 3], seed=5, progress=0.2))
    assert torch.equal(term.normalizer, z)  # ... and Z stays frozen after the first training batch
    term.eval()
    banks = term.student_bank.clone()
    term(_step([4, 5]))
    assert torch.equal(term.student_bank, banks)  # ... nor moves the banks


def test_state_dict_round_trip_continues_identically():
    term = _crd()
    term.train()
    for i in range(3):
        term(_step([i, i + 5], seed=i, progress=i / 5))
    state = {k: v.clone() for k, v in term.state_dict().items()}
    assert {"student_bank", "teacher_bank", "normalizer"} <= set(state)
    fresh = _crd()
    assert not torch.equal(fresh.student_bank, term.student_bank)
    fresh.load_state_dict(state)
    fresh.train()
    step = _step([8, 9], seed=9, progress=0.6)
    assert torch.equal(term(step), fresh(step))
    assert torch.equal(term.student_bank, fresh.student_bank)
