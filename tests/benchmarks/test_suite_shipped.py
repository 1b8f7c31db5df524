"""The shipped CIFAR-10 CPU suite: its manifest, every config validated, and its miniature on the real zip."""

from __future__ import annotations

from pathlib import Path

import torch

from kdlab.benchmarks.suite import SuiteOptions, build_tasks, plan_suite, run_suite
from kdlab.benchmarks.suite_manifest import load_manifest
from kdlab.models import create_model
from suite_fixtures import SHIPPED_SUITE, write_imagefolder_zip

#: the result names the brief fixes, in table order
METHODS = ["student", "kd", "ckd", "dkd", "sskd", "coss", "coss+kd", "crd", "fitnet", "at", "rkd", "pkt", "sp",
           "dist", "kd+ls", "dkd+ls", "kd+ctkd", "nkd", "cc", "vid", "nst", "ofd", "reviewkd",
           "mlkd", "fsp", "ab", "ft"]
#: the tiny ViT student's rows, each measured against the ViT's own plain run
VIT = ["vit-student", "vit-kd", "vit-deit", "vit-ofa"]
#: SSKD's few-shot and noisy-label regimes, each measured against its own plain student
REGIMES = ["student-25pc", "kd-25pc", "sskd-25pc", "student-noise50", "kd-noise50", "sskd-noise50"]


def test_shipped_manifest_lists_every_method_with_student_as_baseline():
    manifest = load_manifest(SHIPPED_SUITE)
    assert list(manifest.method_names) == METHODS + VIT + REGIMES
    baselines = {method.name: method.baseline for method in manifest.methods}
    assert {baselines[name] for name in VIT} == {"vit-student"}
    assert {baselines[name] for name in REGIMES[:3]} == {"student-25pc"}
    assert {baselines[name] for name in REGIMES[3:]} == {"student-noise50"}
    assert manifest.baseline == "student" and manifest.seeds == 3
    assert manifest.teacher.finetune and manifest.teacher.evaluate_pretrained
    assert list(manifest.mini.methods) == ["student", "kd"] and manifest.mini.seeds == 1
    published = {m for pair in manifest.published.order for m in pair} | set(manifest.published.top1)
    assert published <= set(METHODS)


def test_every_shipped_config_validates_against_a_stand_in_teacher(tmp_path):
    """All 27 methods, the 4 ViT rows, the 6 regime rows and the fine-tune, terms and parameters included, without ../shared."""
    zip_path = write_imagefolder_zip(tmp_path / "tiny.zip")
    weights = tmp_path / "resnet56.th"
    torch.save(create_model("resnet56", num_classes=10, shortcut="A").state_dict(), weights)
    plan = plan_suite(SuiteOptions(
        suite_dir=SHIPPED_SUITE, out_dir=tmp_path / "out", overrides=(f"data.root={zip_path}",),
        teacher_checkpoint=weights,
    ))
    assert len(plan.runs) == (len(METHODS) + len(VIT) + len(REGIMES)) * 3 and plan.jobs == 2
    # SSKD's teacher head runs once per training set, FSP/AB/FT's initialisation stages once per method,
    # each as its own task
    assert plan.with_prerequisites == ("sskd", "fsp", "ab", "ft", "sskd-25pc", "sskd-noise50")
    cached = {run.method for run in plan.runs if run.cache is not None}
    assert cached == {"kd", "ckd", "dkd", "sskd", "coss", "coss+kd", "crd", "rkd", "pkt",
                      "dist", "kd+ls", "dkd+ls", "kd+ctkd", "nkd", "cc", "mlkd", "vit-kd", "vit-deit", "vit-ofa",
                      "kd-25pc", "sskd-25pc", "kd-noise50", "sskd-noise50"}
    keys = [task.key for task in build_tasks(plan)]
    assert keys[:8] == ["pretrained", "teacher", "prerequisites:sskd", "prerequisites:fsp", "prerequisites:ab",
                        "prerequisites:ft", "prerequisites:sskd-25pc", "prerequisites:sskd-noise50"]
    assert keys.index("cache:0") < keys.index("run:kd:0") < keys.index("run:student:1")  # seeds outermost
    # SSKD's 4 rotated views, MLKD's weak and strong views and each regime's training set get caches of their own
    seed0_caches = {key for key in keys if key.startswith("cache:0:")}
    assert len(seed0_caches) == 6
    assert not (tmp_path / "out").exists()


def test_shipped_miniature_runs_end_to_end_on_the_real_zip(shared_dir, tmp_path):
    """`kdlab bench suite benchmarks/cifar10_cpu --mini`: student + kd, 1 seed, 256 images, 1 epoch."""
    options = SuiteOptions(
        suite_dir=SHIPPED_SUITE,
        mini=True,
        out_dir=tmp_path / "out",
        overrides=(f"data.root={shared_dir / 'data' / 'cifar10-jpg.zip'}", f"data.cache_dir={tmp_path / 'decoded'}"),
        teacher_checkpoint=shared_dir / "teachers" / "resnet56-4bfd9763.th",
    )
    result = run_suite(options, echo=lambda line: None)
    assert result.exit_code == 0, result.failures
    rows = {row["method"]: row for row in result.rows}
    assert set(rows) == {"student", "kd"}
    assert all(10.0 <= row["top1_mean"] <= 100.0 for row in rows.values())  # 10 classes: chance is 10%
    assert rows["kd"]["teacher_cache"] and rows["kd"]["gain"] is not None
    assert Path(result.plan.out_dir / "report.md").read_text().count("| kd |") >= 1
