"""The shipped CIFAR-100 suite: its manifest, every recipe planned and validated, the published numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdlab.benchmarks.suite import SuiteOptions, plan_suite
from kdlab.benchmarks.suite_manifest import load_manifest

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "benchmarks" / "cifar100"
PAIRS = ["resnet56_resnet20", "resnet110_resnet32", "resnet32x4_resnet8x4", "wrn_40_2_wrn_16_2", "wrn_40_2_wrn_40_1",
         "vgg13_vgg8", "vgg13_MobileNetV2", "ResNet50_MobileNetV2", "resnet32x4_ShuffleV1", "resnet32x4_ShuffleV2",
         "wrn_40_2_ShuffleV1"]
METHODS = ["student", "kd", "fitnet", "at", "sp", "rkd", "pkt", "crd", "dkd", "sskd", "ckd", "ckd-480", "coss",
           "vid", "cc", "nst", "ab", "ft", "fsp", "ofd", "reviewkd", "dist", "kd+ls", "dkd+ls", "kd+ctkd",
           "mlkd", "mlkd+ls"]
COSS_PAIRS = {"resnet56_resnet20", "resnet32x4_resnet8x4", "wrn_40_2_wrn_16_2", "vgg13_vgg8"}


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """The full plan from the repository root (recipe paths are relative to it), files present or not."""
    out = tmp_path_factory.mktemp("cifar100") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        return plan_suite(SuiteOptions(suite_dir=SUITE, out_dir=out), strict=False)


def test_manifest_lists_the_pairs_and_methods():
    manifest = load_manifest(SUITE)
    assert list(manifest.pair_names) == PAIRS and list(manifest.method_names) == METHODS
    assert manifest.baseline == "student" and manifest.seeds == 3 and manifest.teacher.evaluate_pretrained
    assert manifest.mini.pairs == ("resnet56_resnet20",) and manifest.mini.methods == ("student", "kd")


def test_every_recipe_validates_and_only_the_known_ones_are_absent(plan):
    assert plan.problems.invalid == []
    absent = {(a.method, a.pair) for a in plan.absent}
    assert absent == {("sskd", "resnet110_resnet32")} | {("coss", p) for p in PAIRS if p not in COSS_PAIRS} | {
        ("fsp", p) for p in PAIRS
        if p not in {"resnet56_resnet20", "resnet110_resnet32", "resnet32x4_resnet8x4", "wrn_40_2_wrn_16_2", "vgg13_vgg8"}
    }
    per_seed = [r for r in plan.runs if r.seed == 0]
    assert len(per_seed) == len(METHODS) * len(PAIRS) - len(absent) - 2  # MobileNetV2 and ShuffleV1 students shared
    assert len(plan.runs) == 3 * len(per_seed) and not (plan.out_dir).exists()
    assert [m.what for m in plan.problems.missing.values()].count("data.root") <= 1  # named once, whoever needs it


def test_each_released_teacher_is_one_evaluation(plan):
    assert [t.label for t in plan.teachers] == ["resnet56", "resnet110", "resnet32x4", "wrn_40_2", "vgg13", "ResNet50"]
    for teacher in plan.teachers:
        assert teacher.checkpoint == REPO / "weights" / "cifar_teachers" / f"{teacher.label}_vanilla" / "ckpt_epoch_240.pth"
    wrn = plan.teacher("wrn_40_2")
    assert wrn.pairs == ["wrn_40_2_wrn_16_2", "wrn_40_2_wrn_40_1", "wrn_40_2_ShuffleV1"]


def _first(plan, method: str, instance: str):
    return next(r for r in plan.runs if r.method == method and r.instance == instance and r.seed == 0).load()


def test_ckd_runs_on_both_protocols(plan):
    standard, own = _first(plan, "ckd", "wrn_40_2_wrn_40_1"), _first(plan, "ckd-480", "wrn_40_2_wrn_40_1")
    assert (standard.trainer.epochs, standard.schedule.name, standard.schedule.milestones, standard.data.batch_size) == (
        240, "step", [150, 180, 210], 64)
    assert (own.trainer.epochs, own.schedule.name, own.data.batch_size) == (480, "cosine", 32)
    assert standard.distill.terms == own.distill.terms  # the CKD recipe's loss, weight and temperature kept


def test_students_alone_follow_the_repdistiller_recipe(plan):
    for arch, lr in (("resnet20", 0.05), ("MobileNetV2", 0.01), ("ShuffleV2", 0.01)):
        cfg = _first(plan, "student", arch)
        assert (cfg.model.name, cfg.optim.lr, cfg.trainer.epochs, cfg.schedule.milestones) == (arch, lr, 240, [150, 180, 210])
        assert [t["name"] for t in cfg.distill.terms] == ["ce"] and cfg.teacher.name is None
    assert {r.data.root for r in (_first(plan, "sskd", "vgg13_vgg8"), _first(plan, "kd", "vgg13_vgg8"))} == {"data/cifar100"}


def test_mini_is_one_pair_two_methods_one_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    mini = plan_suite(SuiteOptions(suite_dir=SUITE, out_dir=tmp_path / "out", mini=True), strict=False)
    assert [(r.method, r.instance, r.seed) for r in mini.runs] == [("student", "resnet20", 0), ("kd", "resnet56_resnet20", 0)]
    assert mini.runs[1].load().data.subset == 1000 and [t.label for t in mini.teachers] == ["resnet56"]


def _reproducing_tables() -> dict[tuple[str, str], float]:
    """(pair, method) -> number from the CIFAR-100 tables of docs/reproducing.md."""
    text = (REPO / "docs" / "reproducing.md").read_text()
    columns = ["teacher", "student", "kd", "fitnet", "at", "sp", "rkd", "pkt", "crd", "dkd"]
    found = {}
    in_main_tables = False  # the tables whose columns are the ones above (other sections have other columns)
    for line in text.splitlines():
        if line.startswith("| pair"):
            in_main_tables = line.replace(" ", "").lower().startswith("|pair(`<teacher>_<student>.yaml`)|teacher|student|kd|fitnet|")
        match = re.match(r"^\| `(\w+)` \| ([\d. |]+)\|", line)
        if in_main_tables and match and match.group(1) in PAIRS:
            values = [float(v) for v in match.group(2).split("|") if v.strip()]
            found.update({(match.group(1), m): v for m, v in zip(columns, values)})
    return found


def test_published_numbers_match_docs_reproducing_and_name_their_source():
    published = load_manifest(SUITE).published
    expected = _reproducing_tables()
    assert len(expected) == 11 * 10
    for (pair, method), value in expected.items():
        number, source = published.lookup(pair, method)
        assert number == value, (pair, method)
        assert ("mdistiller" if method == "dkd" else "RepDistiller") in source


def test_published_coverage_sskd_coss_and_no_ckd():
    published = load_manifest(SUITE).published
    covered = {(p, m) for t in published.tables for p, values in t.top1.items() for m in values}
    assert {p for p, m in covered if m == "sskd"} == set(PAIRS) - {"resnet110_resnet32"}
    assert {p for p, m in covered if m == "coss"} == COSS_PAIRS - {"wrn_40_2_wrn_16_2"}
    assert not {m for _, m in covered} & {"ckd", "ckd-480"}  # the CKD paper's tables could not be read
    assert published.lookup("vgg13_MobileNetV2", "sskd") == (71.53, published.tables[2].source)
    counts = {m: sum(1 for _, n in covered if n == m)
              for m in ("vid", "cc", "nst", "dist", "kd+ls", "dkd+ls", "kd+ctkd", "mlkd", "mlkd+ls")}
    assert counts == {"vid": 11, "cc": 11, "nst": 11, "dist": 6, "kd+ls": 9, "dkd+ls": 9, "kd+ctkd": 5,
                      "mlkd": 9, "mlkd+ls": 9}
    assert not {m for _, m in covered} & {"ofd", "reviewkd"}  # no source for them could be read here


def test_ready_with_released_teachers_in_the_repdistiller_layout(tmp_path, monkeypatch):
    """Two pairs, stand-in teachers where the recipes look and a CIFAR-100 folder: every check passes (exit 0)."""
    from pair_fixtures import save_repdistiller_teacher

    monkeypatch.chdir(tmp_path)
    for arch in ("resnet56", "vgg13"):
        folder = tmp_path / "weights" / "cifar_teachers" / f"{arch}_vanilla"
        folder.mkdir(parents=True)
        save_repdistiller_teacher(folder / "ckpt_epoch_240.pth", arch)
    (tmp_path / "data" / "cifar100" / "cifar-100-python").mkdir(parents=True)
    (tmp_path / "data" / "cifar100" / "cifar-100-python" / "meta").write_bytes(b"")  # only its presence is checked
    plan = plan_suite(SuiteOptions(suite_dir=SUITE, out_dir=tmp_path / "out", pairs=("resnet56_resnet20", "vgg13_MobileNetV2")))
    assert plan.problems.exit_code == 0 and plan.with_prerequisites == (
        "sskd:resnet56", "ab:resnet56", "ft:resnet56", "fsp:resnet56", "sskd:vgg13", "ab:vgg13", "ft:vgg13"
    )
    evaluation = plan.teacher("vgg13")
    assert "model.name=vgg13" in evaluation.overrides and "distill.terms=[{name: ce, weight: 1.0}]" in evaluation.overrides
    assert evaluation.link == tmp_path / "out" / "teachers" / "vgg13" / "ckpt_epoch_240.pth"
