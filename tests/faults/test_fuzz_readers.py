"""Fuzzing every file reader: a hostile file is read, or refused as a user error in one line; never a traceback.

Each reader below is the function a command goes through for that kind of file (the CLI turns the
error types of :func:`kdlab.cli.main.user_errors` into one line and exit code 2). The inputs are
truncations of real files at random offsets, random bytes, empty files, folders, torch files holding
the wrong objects, and JSON / YAML / JSON-lines of the wrong shape. hypothesis is derandomized, so CI
sees the same inputs every run; the count is printed (pytest -s) and asserted.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from _fault_helpers import InputCounter, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from kdlab.cli.main import main, user_errors

FUZZ = fuzz_settings(max_examples=40)
SHARED_TEACHER = Path(__file__).resolve().parents[3] / "shared" / "teachers" / "resnet20-12fca82f.th"
COUNTS = InputCounter("hostile files read without a traceback")


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\n" + COUNTS.summary())


def refused_cleanly(read: Callable[[], Any], what: str) -> None:
    """``read()`` returns, or raises a user error whose message is one line."""
    COUNTS.add(what)
    try:
        read()
    except user_errors() as err:
        text = str(err)
        assert text and "\n" not in text.strip(), f"{what}: a multi-line message: {text!r}"
        assert "Traceback" not in text


def torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


#: torch files that load safely but hold the wrong thing
WRONG_OBJECTS = [
    torch.zeros(3, 4), [1, 2], {}, {"a": "b"}, {"model": 3}, {"model": {"w": "x"}}, {"neighbours": torch.zeros(3)},
    {"neighbours": "x", "teacher": 1, "dataset": None}, {"state_dict": [1]}, {"0.weight": torch.zeros(2, 3)},
    {"method": {"terms.sskd_head.head.0.weight": torch.zeros(4, 4)}}, None, 3.5, "text",
    {"neighbours": torch.zeros(4, 2, dtype=torch.long), "teacher": "t", "dataset": "d"},
]


def content(real: bytes) -> st.SearchStrategy[bytes | None]:
    """File contents: ``real`` cut at a random offset, flipped bytes in it, random bytes, wrong torch objects;
    None stands for a folder at the path."""
    return st.one_of(
        st.integers(min_value=0, max_value=max(len(real) - 1, 0)).map(lambda n: real[:n]),
        st.tuples(st.integers(min_value=0, max_value=max(len(real) - 1, 0)), st.integers(0, 255)).map(
            lambda at: real[: at[0]] + bytes([at[1]]) + real[at[0] + 1 :]),
        st.binary(max_size=300),
        st.sampled_from(range(len(WRONG_OBJECTS))).map(lambda i: torch_bytes(WRONG_OBJECTS[i])),
        st.just(b""),
        st.just(None),
        st.just(b"\x80\x04\x95" + pickle.dumps({"x": 1})[3:]),  # a pickle stream, not a torch file
    )


def place(path: Path, data: bytes | None) -> Path:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    if data is None:
        path.mkdir(parents=True)
    else:
        path.write_bytes(data)
    return path


@functools.cache
def real_files() -> dict[str, bytes]:
    """Real files of each kind (a module-level cache, not a fixture: hypothesis would print it in full)."""
    from kdlab.models import create_model

    model = create_model("resnet8", num_classes=4)
    checkpoint = {"model": model.state_dict(), "epoch": 1, "step": 0, "config": {"model": {"name": "resnet8"}}}
    files = {
        "checkpoint": torch_bytes(checkpoint),
        "knn": torch_bytes({"neighbours": torch.zeros(8, 3, dtype=torch.long), "teacher": "t", "dataset": "d", "k": 3}),
        "head": torch_bytes({f"{i}.{p}": torch.zeros((8, 8) if p == "weight" else (8,)) for i in (0, 2)
                             for p in ("weight", "bias")}),
        "cifar": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}),
        "npy": _npy_bytes(np.zeros((2, 4, 4, 3), np.uint8)),
    }
    if SHARED_TEACHER.is_file():
        files["third_party"] = SHARED_TEACHER.read_bytes()
    return files


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@st.composite
def checkpoint_bytes(draw):
    source = draw(st.sampled_from(sorted(k for k in ("checkpoint", "third_party") if k in real_files())))
    return draw(content(real_files()[source]))


@FUZZ
@given(data=st.data())
def test_checkpoints_into_a_model(tmp_path_factory, data):
    from kdlab.checkpoint_io import load_checkpoint_file
    from kdlab.models import create_model
    from kdlab.models.checkpoint import load_checkpoint

    path = place(tmp_path_factory.mktemp("ckpt") / "file.pt", data.draw(checkpoint_bytes()))
    refused_cleanly(lambda: load_checkpoint(create_model("resnet8", num_classes=4), path), "checkpoint into a model")
    refused_cleanly(lambda: load_checkpoint_file(path), "training checkpoint")


@FUZZ
@given(data=st.data())
def test_knn_index_files(tmp_path_factory, data):
    from kdlab.data.planners import load_knn_neighbours
    from kdlab.engine.knn_index import check_knn_index

    path = place(tmp_path_factory.mktemp("knn") / "index.pt", data.draw(content(real_files()["knn"])))
    refused_cleanly(lambda: check_knn_index(path, "t", "d"), "knn index")
    refused_cleanly(lambda: load_knn_neighbours(path, 8), "knn neighbours")


@FUZZ
@given(data=st.data())
def test_sskd_head_files(tmp_path_factory, data):
    from kdlab.methods.sskd.phase1 import load_head_state

    path = place(tmp_path_factory.mktemp("head") / "head.pt", data.draw(content(real_files()["head"])))
    refused_cleanly(lambda: load_head_state(path, dim=8), "sskd head")


@FUZZ
@given(data=st.data())
def test_cifar_batch_files(tmp_path_factory, data):
    from kdlab.data.sources.cifar import open_cifar

    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    good = real_files()["cifar"]
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(good)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}))
    victim = data.draw(st.sampled_from(["data_batch_1", "test_batch", "batches.meta"]))
    place(folder / victim, data.draw(content(good)))
    refused_cleanly(lambda: open_cifar("cifar10", str(root)), "cifar batch")


@FUZZ
@given(data=st.data())
def test_released_corruption_arrays(tmp_path_factory, data):
    from kdlab.data.sources.labelled_folder import open_corruption_set

    root = tmp_path_factory.mktemp("cifar_c")
    (root / "labels.npy").write_bytes(_npy_bytes(np.tile(np.array([0, 1], np.int64), 5)))
    (root / "fog.npy").write_bytes(_npy_bytes(np.zeros((10, 4, 4, 3), np.uint8)))
    victim = data.draw(st.sampled_from(["labels.npy", "fog.npy"]))
    place(root / victim, data.draw(content(real_files()["npy"])))
    refused_cleanly(lambda: open_corruption_set(root, ["a", "b"], names=["fog"], severities=[1, 2]), "corruption npy")


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=10,
)
#: metric rows: mostly the right keys, with values of any shape
metric_rows = st.dictionaries(
    st.sampled_from(["epoch", "val_top1", "train_loss", "seconds", "steps", "lr", "x"]), json_values, max_size=6)
json_text = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=80),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)


@FUZZ
@given(
    metrics=st.one_of(st.lists(st.one_of(metric_rows.map(json.dumps), json_text), max_size=4).map("\n".join),
                      st.binary(max_size=80).map(lambda b: b.decode("latin-1"))),
    final=st.one_of(st.none(), json_text,
                    st.fixed_dictionaries({"completed": st.booleans(), "best": json_values, "final": json_values,
                                           "epochs": json_values}).map(json.dumps)),
    config=st.one_of(st.none(), st.text(max_size=60), json_values.map(json.dumps)),
    evaluation=st.one_of(st.none(), json_text),
)
def test_run_folders_for_kdlab_report(tmp_path_factory, capsys, metrics, final, config, evaluation):
    from kdlab.reporting.runs import load_run

    run = tmp_path_factory.mktemp("report") / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(metrics, encoding="utf-8", errors="surrogateescape")
    for name, text in (("final.json", final), ("config.yaml", config), ("eval.json", evaluation)):
        if text is not None:
            (run / name).write_text(text, encoding="utf-8", errors="surrogateescape")
    refused_cleanly(lambda: load_run(run), "run folder")
    COUNTS.add("kdlab report")
    code = main(["report", str(run)])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert err.count("\n") == 1, err


@FUZZ
@given(
    meta=st.one_of(json_text, json_values.map(json.dumps)),
    array=st.one_of(st.binary(max_size=200), st.just(_npy_bytes(np.zeros((2, 3), np.float16)))),
)
def test_teacher_cache_folders(tmp_path_factory, meta, array):
    from kdlab.cache.storage import COMPLETE_FILE, META_FILE
    from kdlab.cache.teacher_cache import TeacherCache

    folder = tmp_path_factory.mktemp("cache") / "cache"
    folder.mkdir()
    (folder / META_FILE).write_text(meta, encoding="utf-8", errors="surrogateescape")
    (folder / COMPLETE_FILE).write_text("complete\n")
    (folder / "logits.npy").write_bytes(array)

    def read() -> None:
        cache = TeacherCache(folder)
        cache.files.array("logits")

    refused_cleanly(read, "teacher cache")


@FUZZ
@given(meta=st.one_of(json_text, json_values.map(json.dumps)), array=st.binary(max_size=120))
def test_fast_path_data_caches(tmp_path_factory, meta, array):
    from kdlab.data import cache as data_cache

    folder = tmp_path_factory.mktemp("datacache") / "c"
    folder.mkdir()
    (folder / "meta.json").write_text(meta, encoding="utf-8", errors="surrogateescape")
    for name in data_cache._FILES:
        (folder / name).write_bytes(array)
    # an unreadable cache is not an error: it is ignored (and rebuilt), never a crash
    COUNTS.add("data cache")
    assert data_cache._read(folder) is None


coco_entries = st.lists(st.one_of(
    st.fixed_dictionaries({"id": st.one_of(st.integers(-2, 3), st.text(max_size=2)), "file_name": st.text(max_size=5),
                           "width": json_values, "height": st.integers(-1, 50)}),
    st.fixed_dictionaries({"id": st.integers(0, 3), "image_id": json_values, "category_id": st.integers(0, 3),
                           "bbox": st.one_of(json_values, st.lists(st.floats(-5, 60), min_size=4, max_size=4)),
                           "area": json_values, "iscrowd": json_values}),
    st.fixed_dictionaries({"id": st.one_of(st.integers(0, 3), st.booleans()), "name": json_values}),
    json_values,
), max_size=4)


@FUZZ
@given(document=st.one_of(
    st.fixed_dictionaries({"images": coco_entries, "annotations": coco_entries, "categories": coco_entries}).map(json.dumps),
    json_text,
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
))
def test_coco_annotation_files(tmp_path_factory, document):
    from kdlab.data.detection.coco import read_coco

    path = tmp_path_factory.mktemp("coco") / "instances.json"
    path.write_text(document, encoding="utf-8", errors="surrogateescape")
    refused_cleanly(lambda: read_coco(path, "data.train_annotations", "train"), "coco annotations")


VOC_GOOD = (b"<annotation><filename>a.jpg</filename><size><width>8</width><height>8</height></size><object>"
            b"<name>cat</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>6</ymax>"
            b"</bndbox></object></annotation>")


@FUZZ
@given(xml=content(VOC_GOOD), split=st.one_of(st.just(b"a\n"), st.binary(max_size=12)))
def test_voc_annotation_files(tmp_path_factory, xml, split):
    from PIL import Image

    from kdlab.data.detection.voc import read_voc

    root = tmp_path_factory.mktemp("voc")
    for folder in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (root / folder).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "JPEGImages" / "a.jpg")
    (root / "ImageSets" / "Main" / "train.txt").write_bytes(split)
    place(root / "Annotations" / "a.xml", xml)
    refused_cleanly(lambda: read_voc(root, "train", "data.train_split", ["cat"]), "voc annotations")


def test_every_reader_was_fuzzed():
    if not COUNTS:
        pytest.skip("counts the inputs of the fuzz tests above; run with them")
    assert sum(COUNTS.values()) >= 300, COUNTS
