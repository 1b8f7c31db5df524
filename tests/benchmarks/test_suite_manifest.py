"""The manifest's pairs, templates, per-method baseline/overrides and published tables; the published comparison."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlab.benchmarks.suite import SuiteOptions, plan_suite
from kdlab.benchmarks.suite_manifest import SuiteError, load_manifest
from kdlab.benchmarks.suite_published import band, compare
from kdlab.benchmarks.suite_compare import apply_gains

from pair_fixtures import make_pair_suite


def _rewrite(suite: Path, old: str, new: str) -> None:
    path = suite / "suite.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.fixture
def pair_suite(tmp_path) -> Path:
    return make_pair_suite(tmp_path, teachers=False)


# ---------------------------------------------------------------------------------------------- pairs and templates
def test_pairs_and_templates_load(pair_suite):
    manifest = load_manifest(pair_suite)
    assert manifest.pair_names == ("resnet14_resnet8", "resnet20_resnet8")
    kd = manifest.method("kd")
    assert kd.template == "kd/{pair}.yaml" and kd.fields == {"pair"}
    assert kd.config_for(manifest.pairs[1]) == pair_suite / "kd" / "resnet20_resnet8.yaml"
    assert manifest.method("student").instance(manifest.pairs[0]) == "resnet8"
    assert manifest.baseline_of("kd-slow") == "kd" and manifest.baseline_of("kd") == "student"
    assert manifest.mini.pairs == ("resnet20_resnet8",) and manifest.teacher.config is None


@pytest.mark.parametrize("old, new, message", [
    ('"kd/{pair}.yaml", teacher_cache', '"kd/{pairs}.yaml", teacher_cache', r"unknown placeholder\(s\) \['pairs'\]"),
    ('"at/{pair}.yaml"', '"at/{student}_x.yaml"', r"methods\[2\].config='at/\{student\}_x.yaml': no config file for any pair"),
    ("baseline: kd}", "baseline: kdd}", r"methods\[3\].baseline='kdd' is not one of the methods"),
    ("teacher: {evaluate_pretrained: true}", "teacher: {config: x.yaml}", r"with pairs: each recipe's teacher.checkpoint"),
    ("  - {teacher: resnet20, student: resnet8}\n", "  - {teacher: resnet14, student: resnet8}\n",
     r"pairs lists \['resnet14_resnet8'\] more than once"),
    ('overrides: ["optim.lr=0.01"', 'overrides: ["optim.lr"', r"methods\[3\].overrides must be a list of key=value"),
    ("mini:\n  pairs: [resnet20_resnet8]", "mini:\n  pairs: [resnet9_resnet8]", r"mini.pairs names \['resnet9_resnet8'\]"),
])
def test_manifest_errors_name_the_file_and_key(pair_suite, old, new, message):
    _rewrite(pair_suite, old, new)
    with pytest.raises(SuiteError, match=message):
        load_manifest(pair_suite)


def test_placeholders_need_pairs(tiny_suite):
    (tiny_suite / "suite.yaml").write_text((tiny_suite / "suite.yaml").read_text().replace(
        "config: kd.yaml", 'config: "{pair}.yaml"'))
    with pytest.raises(SuiteError, match=r"methods\[1\]: \{pair\}, \{teacher\} and \{student\} need the suite's pairs"):
        load_manifest(tiny_suite)


def test_pairs_option_on_a_suite_without_pairs(tiny_suite, tmp_path):
    with pytest.raises(SuiteError, match="--pairs: .* has no pairs"):
        plan_suite(SuiteOptions(suite_dir=tiny_suite, out_dir=tmp_path / "out", pairs=("a_b",)))


# ---------------------------------------------------------------------------------------------- published tables
@pytest.mark.parametrize("old, new, message", [
    ("resnet20_resnet8: {kd: 98.0}", "resnet9_resnet8: {kd: 98.0}", r"top1.resnet9_resnet8: not one of the pairs"),
    ("resnet20_resnet8: {kd: 98.0}", "resnet20_resnet8: {kdd: 98.0}", r"top1.resnet20_resnet8.kdd: not one of the methods"),
    ("resnet14_resnet8: {at: 97.0}", "resnet14_resnet8: {kd: 97.0}", r"tables\[1\].top1.resnet14_resnet8.kd: already given in published.tables\[0\]"),
    ("resnet20_resnet8: {kd: 98.0}", "resnet20_resnet8: {kd: high}", r"top1.resnet20_resnet8.kd must be a number"),
    ('- source: "table B"', "- source: ''", r"tables\[1\].source must say where the numbers come from"),
    ("epoch: final", "epoch: last", r"epoch must be final or best"),
])
def test_published_table_errors(pair_suite, old, new, message):
    _rewrite(pair_suite, old, new)
    with pytest.raises(SuiteError, match=message):
        load_manifest(pair_suite)


def test_published_tables_need_pairs(tiny_suite):
    text = (tiny_suite / "suite.yaml").read_text() + '  tables: [{source: x, top1: {a_b: {kd: 1.0}}}]\n'
    (tiny_suite / "suite.yaml").write_text(text)
    with pytest.raises(SuiteError, match=r"published.tables needs the suite's pairs"):
        load_manifest(tiny_suite)


def test_lookup_gives_the_number_and_its_source(pair_suite):
    published = load_manifest(pair_suite).published
    assert published.lookup("resnet14_resnet8", "kd") == (99.0, "table A")
    assert published.lookup("resnet14_resnet8", "at") == (97.0, "table B")
    assert published.lookup("resnet20_resnet8", "at") is None
    assert [t.epoch for t in published.tables] == ["final", None]


def test_band_is_at_least_half_a_point_and_otherwise_two_stds():
    assert band(None) == 0.5 and band(0.1) == 0.5 and band(0.4) == pytest.approx(0.8)


def test_compare_marks_rows_outside_the_band_for_each_epoch():
    row = {"top1_mean": 70.3, "top1_std": 0.1, "best_top1_mean": 71.2, "best_top1_std": 0.3}
    fields = compare(row, (70.0, "src"))
    assert fields["delta_top1"] == pytest.approx(0.3) and fields["outside_final"] is False  # band 0.5
    assert fields["delta_best_top1"] == pytest.approx(1.2) and fields["outside_best"] is True  # band 0.6
    assert fields["published_source"] == "src" and fields["band_best"] == pytest.approx(0.6)
    assert compare(row, None) == {k: None for k in fields}
    wide = compare({"top1_mean": 68.0, "top1_std": 1.5, "best_top1_mean": None}, (70.0, "s"))
    assert wide["outside_final"] is False and wide["delta_best_top1"] is None  # 2.0 < 2 x 1.5


# ---------------------------------------------------------------------------------------------- suites without pairs
_EXTRA = """\
  - {name: student-half, config: student.yaml, overrides: [data.subset=12]}
  - {name: kd-half, config: kd.yaml, teacher_cache: true, overrides: [data.subset=12], baseline: student-half}
"""


def test_per_method_overrides_and_baseline_without_pairs(tiny_suite, tmp_path):
    text = (tiny_suite / "suite.yaml").read_text().replace("mini:", _EXTRA.rstrip("\n") + "\nmini:", 1)
    (tiny_suite / "suite.yaml").write_text(text.replace("jobs: 1\n", "jobs: 1\noverrides: [data.subset=20]\n", 1))
    manifest = load_manifest(tiny_suite)
    assert manifest.baseline_of("kd-half") == "student-half" and manifest.baseline_of("kd") == "student"
    plan = plan_suite(SuiteOptions(suite_dir=tiny_suite, out_dir=tmp_path / "out", mini=True,
                                   methods=("student", "kd", "student-half", "kd-half")))
    subsets = {run.method: run.load().data.subset for run in plan.runs}
    assert subsets == {"student": 20, "kd": 20, "student-half": 12, "kd-half": 12}  # the method's wins over the suite's
    half = next(r for r in plan.runs if r.method == "kd-half")
    assert half.overrides.index("data.subset=20") < half.overrides.index("data.subset=12") < half.overrides.index(
        "trainer.epochs=1")  # suite, method, then --mini's


def test_apply_gains_uses_each_methods_baseline():
    rows = [
        {"method": "teacher", "top1_mean": 90.0, "top1_std": None, "seeds": 1},
        {"method": "student", "top1_mean": 60.0, "top1_std": 1.0, "seeds": 2},
        {"method": "student-half", "top1_mean": 50.0, "top1_std": 1.0, "seeds": 2},
        {"method": "kd-half", "top1_mean": 53.0, "top1_std": 1.0, "seeds": 2},
    ]
    baselines = {"student": "student", "student-half": "student", "kd-half": "student-half"}
    apply_gains(rows, baselines.__getitem__)
    gains = {row["method"]: row["gain"] for row in rows}
    assert gains == {"teacher": None, "student": 0.0, "student-half": -10.0, "kd-half": 3.0}
    assert rows[3]["gain_se"] == pytest.approx(1.0) and rows[3]["baseline"] == "student-half"


def test_no_gains_when_the_baseline_did_not_run():
    rows = [{"method": "kd", "top1_mean": 60.0, "top1_std": None, "seeds": 1}]
    apply_gains(rows, lambda method: "student")
    assert "gain" not in rows[0] and rows[0]["baseline"] == "student"
