"""Package-level contracts of kdlab.losses: exports, isolation, teacher inputs that require grad."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kdlab import losses

LOSSES_DIR = Path(losses.__file__).resolve().parent


def test_every_name_in_all_is_importable() -> None:
    missing = [name for name in losses.__all__ if not hasattr(losses, name)]
    assert missing == []


def test_losses_import_nothing_from_kdlab_outside_losses() -> None:
    offending = []
    for path in sorted(LOSSES_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module.startswith("kdlab") and not module.startswith("kdlab.losses"):
                    offending.append(f"{path.name}: {module}")
    assert offending == []


def _two_input_cases() -> list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]]:
    targets = torch.tensor([0, 3, 1, 2])
    queue = torch.randn(6, 5)
    return [
        ("kd", losses.kd_loss),
        ("ckd", lambda s, t: losses.ckd_loss(s, t, intra_weight=1.0)),
        ("dkd", lambda s, t: losses.dkd_loss(s, t, targets)),
        ("pkt", losses.pkt_loss),
        ("rkd", losses.rkd_loss),
        ("sp", losses.sp_loss),
        ("coss", losses.coss_loss),
        ("seed", lambda s, t: losses.seed_loss(s, t, queue)),
        ("cosine", losses.cosine_embedding_loss),
        ("mse", losses.mse_embedding_loss),
        ("fitnet", losses.fitnet_loss),
    ]


@pytest.mark.parametrize(("name", "loss"), _two_input_cases(), ids=[name for name, _ in _two_input_cases()])
def test_teacher_requiring_grad_changes_neither_value_nor_student_gradient(
    name: str, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> None:
    student_data, teacher = torch.randn(4, 5), torch.randn(4, 5)
    results = []
    for teacher_input in (teacher, teacher.clone().requires_grad_(True)):
        student = student_data.clone().requires_grad_(True)
        value = loss(student, teacher_input)
        value.backward()
        results.append((value.detach(), student.grad))
    torch.testing.assert_close(results[1][0], results[0][0], msg=name)
    torch.testing.assert_close(results[1][1], results[0][1], msg=name)
