"""``kdlab export``: the student alone in ONNX / TorchScript / safetensors, read back by its runtime and
compared with PyTorch, with its metadata JSON; and the command's exit codes.

One tiny FitNets run (resnet8 student, random resnet8 teacher, an always-on regressor so the checkpoint
holds method weights) is shared by every test: the exports must hold the student's weights and nothing
of the teacher or the method.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from kdlab.checkpoint_io import file_sha256, load_checkpoint_file
from kdlab.cli.main import main
from kdlab.config import load_config, to_dict
from kdlab.deploy import verify
from kdlab.deploy.export import export_student, load_for_export, read_metadata
from kdlab.deploy.formats import ExportError, load_safetensors_student, read_safetensors_header
from kdlab.deploy.student import load_student
from kdlab.deploy.verify import Verification, difference
from kdlab.engine.trainer import Trainer
from kdlab.models import create_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = [
    "data.name=synthetic", "data.synthetic_train=32", "data.synthetic_test=16", "data.synthetic_classes=4",
    "data.synthetic_size=8", "data.batch_size=16", "data.num_workers=0", "trainer.progress=none",
    "trainer.device=cpu", "trainer.epochs=1", "model.name=resnet8",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    teacher = root / "teacher.pth"
    torch.save({"model": create_model("resnet8", num_classes=4).state_dict()}, teacher)
    out = root / "fitnet"
    cfg = load_config(None, [
        *TINY, "teacher.name=resnet8", f"teacher.checkpoint={teacher}", f"trainer.out_dir={out}",
        "distill.terms=[{name: ce}, {name: fitnet, weight: 10, regressor: always}]",
    ])
    assert Trainer(cfg).fit().completed
    return out


@pytest.fixture(scope="module")
def loaded(run_dir: Path):
    return load_student(run_dir)


def student_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_file(run_dir / "checkpoints" / "best.pt")["model"]


def batch(loaded, size: int) -> torch.Tensor:
    return loaded.example_input(size, seed=42)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).abs().max().item() <= 1e-4 * b.abs().max().item()


def test_the_checkpoint_holds_method_weights_the_exports_must_leave_out(run_dir: Path):
    state = load_checkpoint_file(run_dir / "checkpoints" / "best.pt")
    assert any("regressor" in key for key in state["method"])


def test_onnx_via_the_cli_round_trips_with_a_dynamic_batch_and_its_metadata(run_dir, loaded, capsys):
    import onnx
    import onnxruntime

    assert main(["export", str(run_dir), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "check: onnxruntime (CPU)" in out and out.rstrip().endswith(": ok")
    path = run_dir / "export" / "student_best.onnx"
    assert path.is_file() and not list(path.parent.glob(".*"))  # no temporary file left over

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "input" and inp.shape[0] == "batch" and inp.shape[1:] == [3, 8, 8]
    for size in (1, 5):
        x = batch(loaded, size)
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        assert got.shape == (size, 4) and close(got, loaded.model(x).detach())

    # the student's weights only: no initializer of the regressor or the teacher, no more numbers than the student
    graph = onnx.load(str(path)).graph
    names = [init.name for init in graph.initializer]
    assert not [n for n in names if "regressor" in n or "teacher" in n or n.startswith("terms.")]
    student_numel = sum(t.numel() for t in student_weights(run_dir).values())
    assert sum(int(torch.tensor(list(init.dims)).prod()) for init in graph.initializer) <= student_numel

    meta = read_metadata(path)
    assert meta["file"] == path.name and meta["sha256"] == file_sha256(path)
    assert meta["format"] == "onnx" and meta["architecture"] == "resnet8" and meta["num_classes"] == 4
    assert meta["classes"] == ["class_0", "class_1", "class_2", "class_3"]
    assert meta["input"]["shape"] == ["batch", 3, 8, 8] and meta["input"]["dtype"] == "float32"
    assert meta["input"]["layout"] == "NCHW" and meta["input"]["pixel_range"] == [0.0, 1.0]
    assert meta["input"]["mean"] == pytest.approx(list(loaded.facts.mean))
    assert meta["input"]["std"] == pytest.approx(list(loaded.facts.std))
    assert meta["output"]["shape"] == ["batch", 4]
    assert meta["source"]["epoch"] == 1 and meta["source"]["checkpoint"].endswith("best.pt")
    assert meta["opset"] == onnx.load(str(path)).opset_import[0].version and meta["batchnorm_folded"] == 0
    assert meta["verification"]["passed"] and meta["verification"]["batches"] == [1, 3]
    assert meta["verification"]["max_rel"] <= 1e-4
    assert {"kdlab", "torch", "onnx", "onnxruntime"} <= set(meta["versions"])


def test_onnx_folded_at_an_old_opset_has_no_batchnorm_and_still_matches(loaded, tmp_path: Path):
    import onnx

    result = export_student(loaded, "onnx", tmp_path / "folded.onnx", fold_batchnorm=True, opset=17)
    assert result.passed and result.folded > 0 and result.opset == 17
    model = onnx.load(str(result.path))
    assert model.opset_import[0].version == 17 and "legacy" in result.metadata["exporter"]
    assert not [node for node in model.graph.node if node.op_type == "BatchNormalization"]
    assert result.metadata["batchnorm_folded"] == result.folded
    assert result.verification.max_rel <= 1e-4  # compared with the unfolded student


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.parametrize("fold", [False, True])
def test_torchscript_round_trip(loaded, run_dir, tmp_path: Path, fold: bool):
    result = export_student(loaded, "torchscript", tmp_path / "student.pt", fold_batchnorm=fold)
    assert result.passed and result.metadata_path == tmp_path / "student.pt.json"
    module = torch.jit.load(str(result.path))
    for size in (1, 6):
        x = batch(loaded, size)
        assert close(module(x), loaded.model(x).detach())
    keys = set(module.state_dict())
    if fold:
        assert result.folded > 0 and not [k for k in keys if k.startswith("bn1.") or ".bn" in k]
    else:
        assert keys == set(student_weights(run_dir))


def test_safetensors_holds_exactly_the_student_and_rebuilds_it(loaded, run_dir, tmp_path: Path):
    from safetensors.torch import load_file

    result = export_student(loaded, "safetensors", tmp_path / "student.safetensors")
    assert result.passed
    tensors, weights = load_file(str(result.path)), student_weights(run_dir)
    assert tensors.keys() == weights.keys()  # no teacher, no regressor
    assert all(torch.equal(tensors[k], weights[k]) for k in weights)
    header = read_safetensors_header(result.path)
    assert header["architecture"] == "resnet8" and header["batchnorm_folded"] == "0"
    assert json.loads(header["data_facts"])["classes"] == loaded.facts.classes
    rebuilt = load_safetensors_student(result.path)
    x = batch(loaded, 3)
    assert torch.equal(rebuilt(x), loaded.model(x))


def test_folded_safetensors_rebuild_folds_a_fresh_network_first(loaded, tmp_path: Path):
    result = export_student(loaded, "safetensors", tmp_path / "folded.safetensors", fold_batchnorm=True)
    assert result.passed and result.folded > 0
    assert read_safetensors_header(result.path)["batchnorm_folded"] == str(result.folded)
    rebuilt = load_safetensors_student(result.path)
    assert not [m for m in rebuilt.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    x = batch(loaded, 2)
    assert close(rebuilt(x), loaded.model(x).detach())


def test_a_safetensors_file_without_kdlab_metadata_is_refused(tmp_path: Path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ExportError, match="no kdlab student metadata"):
        load_safetensors_student(tmp_path / "plain.safetensors")


def test_out_folder_and_a_checkpoint_file_outside_a_run(loaded, run_dir, tmp_path: Path, capsys):
    argv = ["export", str(run_dir), "--format", "torchscript", "--checkpoint", "last", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert (tmp_path / "student_last.pt").is_file() and (tmp_path / "student_last.pt.json").is_file()
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", f"{tmp_path}/new/"]) == 0
    assert (tmp_path / "new" / "student_best.pt").is_file()
    lone = tmp_path / "lone" / "weights.pt"
    lone.parent.mkdir()
    lone.write_bytes((run_dir / "checkpoints" / "best.pt").read_bytes())
    assert main(["export", str(lone), "--format", "safetensors"]) == 0
    assert (lone.parent / "export" / "student_weights.safetensors").is_file()
    assert read_metadata(lone.parent / "export" / "student_weights.safetensors")["source"]["run_dir"] is None
    capsys.readouterr()


def mismatching(format: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``format``'s runtime return outputs off by 1% of their scale."""
    runtime, make_runner = verify.RUNNERS[format]

    def make(path: Path):
        run = make_runner(path)
        return lambda x: run(x) * 1.01

    monkeypatch.setitem(verify.RUNNERS, format, (runtime, make))


def test_a_mismatch_exits_2_prints_the_difference_and_keeps_the_previous_file(run_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.pt"
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", str(out)]) == 0
    before = (file_sha256(out), (tmp_path / "s.pt.json").read_text())
    capsys.readouterr()
    mismatching("torchscript", monkeypatch)
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", str(out), "--fold-batchnorm"]) == 2
    captured = capsys.readouterr()
    assert "MISMATCH" in captured.out and "max rel diff 0.01" in captured.out
    assert "differs from the PyTorch student" in captured.err and "nothing was written" in captured.err
    assert (file_sha256(out), (tmp_path / "s.pt.json").read_text()) == before  # the earlier, verified export
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pt", "s.pt.json"]


def test_keep_failed_writes_the_file_with_the_failed_check_recorded(loaded, tmp_path, monkeypatch):
    mismatching("safetensors", monkeypatch)
    result = export_student(loaded, "safetensors", tmp_path / "bad.safetensors", keep_failed=True)
    assert not result.passed and result.kept
    assert read_metadata(result.path)["verification"]["passed"] is False
    dropped = export_student(loaded, "safetensors", tmp_path / "dropped.safetensors")
    assert not dropped.kept and not dropped.path.exists() and dropped.metadata_path is None


@pytest.mark.parametrize("format, module", [("onnx", "onnxruntime"), ("onnx", "onnx"), ("safetensors", "safetensors")])
def test_a_missing_extra_names_the_pip_install(run_dir, monkeypatch, capsys, format: str, module: str):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    assert main(["export", str(run_dir), "--format", format]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and module in err and "pip install 'kdlab[export]'" in err


def detection_checkpoint(tmp_path: Path) -> Path:
    cfg = load_config(CONFIGS / "demo" / "detection" / "student.yaml")
    path = tmp_path / "detector.pt"
    torch.save({"config": to_dict(cfg), "model": {"w": torch.zeros(1)}}, path)
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{tmp}/nope", "--format", "onnx"], "no such run folder or checkpoint file"),
        (["{tmp}", "--format", "onnx"], "not a kdlab run folder"),
        (["{run}", "--format", "torchscript", "--opset", "17"], "applies to --format onnx only"),
        (["{run}", "--format", "onnx", "--opset", "99"], "knows opsets up to"),
        (["{run}", "--format", "onnx", "--out", "{tmp}/x.json"], "where the metadata JSON goes"),
        (["{det}", "--format", "onnx"], "detection students are not exported yet"),
    ],
)
def test_user_errors_exit_2_with_one_line(run_dir, tmp_path, capsys, argv: list[str], message: str):
    names = {"tmp": str(tmp_path), "run": str(run_dir), "det": str(detection_checkpoint(tmp_path))}
    assert main(["export", *(a.format(**names) for a in argv)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_an_unknown_format_is_a_usage_error(run_dir, capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", str(run_dir), "--format", "tflite"])
    assert info.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err


def test_load_for_export_refuses_detection_with_an_export_error(tmp_path: Path):
    with pytest.raises(ExportError, match="detection students are not exported yet"):
        load_for_export(detection_checkpoint(tmp_path))


def test_difference_is_relative_to_the_largest_reference_value():
    ref, cand = torch.tensor([[10.0, -2.0]]), torch.tensor([[10.0, -1.99]])
    max_abs, max_rel = difference([ref], [cand])
    assert max_abs == pytest.approx(0.01, abs=1e-6) and max_rel == pytest.approx(0.001, abs=1e-7)
    assert difference([ref], [cand[:, :1]]) == (float("inf"), float("inf"))
    assert difference([torch.zeros(2)], [torch.zeros(2)]) == (0.0, 0.0)
    nan = Verification("x", (1,), float("nan"), float("nan"), 1e-4)
    assert not nan.passed
