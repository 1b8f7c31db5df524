"""Detection batches: flip and scale jitter move boxes with the pixels, exact resume, rank sharding, seeds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import kdlab.data.detection.build as build_module
from kdlab.data.detection import build_detection_data
from kdlab.data.detection.augment import MIN_VISIBLE, DetectionAugment
from kdlab.data.errors import DataError
from test_det_data_helpers import batches_equal, detection_cfg, many_images, write_coco, zip_dir

CPU = torch.device("cpu")
#: the painted rectangles of the augmentation tests (COCO [x, y, w, h]) on a 48x40 image
RECTS = [[5, 8, 17, 20], [30, 3, 12, 9]]


def build(root: Path, *overrides: str, seed: int = 0, rank: int = 0, world_size: int = 1):
    cfg = detection_cfg(root, *overrides)
    return build_detection_data(cfg, seed=seed, device=CPU, rank=rank, world_size=world_size)


@pytest.fixture
def painted(tmp_path: Path) -> Path:
    """Two training images with bright boxes on a dark background (one of them 48x40)."""
    train = [("p.png", 48, 40, [(3, RECTS[0], 0), (42, RECTS[1], 0)]),
             ("q.png", 40, 48, [(7, [4, 20, 22, 14], 0)])]
    write_coco(tmp_path, train=train)
    return tmp_path


@pytest.fixture
def many(tmp_path: Path) -> Path:
    """20 training and 7 evaluation images (varied sizes, one or two boxes each)."""
    write_coco(tmp_path, train=many_images(20), evaluation=many_images(7, width=20, height=16))
    return tmp_path


def bright_mask(image: torch.Tensor) -> torch.Tensor:
    return image.mean(0) > 0.5


def samples(bundle, epochs: range):
    for epoch in epochs:
        for batch in bundle.train.epoch(epoch):
            for image, target, index in zip(batch["images"], batch["targets"], batch["index"].tolist()):
                yield epoch, index, image, target


# ------------------------------------------------------------------------------------------ augmentation


def test_flip_mirrors_the_boxes(painted) -> None:
    bundle = build(painted, "data.augment=flip", "data.batch_size=1")
    flipped = kept = 0
    for _, index, image, target in samples(bundle, range(12)):
        original = bundle.train.dataset[(index, None)][1]["boxes"]
        width = image.shape[-1]
        mirrored = torch.stack([width - original[:, 2], original[:, 1], width - original[:, 0], original[:, 3]], 1)
        boxes = target["boxes"]
        assert torch.equal(target["labels"], bundle.train.dataset[(index, None)][1]["labels"])
        if torch.equal(boxes, original):
            kept += 1
        else:
            assert torch.equal(boxes, mirrored)
            flipped += 1
        # every box covers exactly bright pixels, and together exactly all of them
        bright = bright_mask(image)
        covered = torch.zeros_like(bright)
        for x1, y1, x2, y2 in boxes.round().int().tolist():
            assert bright[y1:y2, x1:x2].all()
            covered[y1:y2, x1:x2] = True
        assert torch.equal(covered, bright)
    assert flipped and kept


def test_augmentation_is_seeded_by_seed_epoch_and_image() -> None:
    image = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[2.0, 3.0, 12.0, 15.0]])
    labels = torch.tensor([1])
    augment = DetectionAugment(flip=True, scale=(0.5, 1.5))
    a = augment(image, boxes, labels, 0, 3, 7)
    b = augment(image.clone(), boxes.clone(), labels.clone(), 0, 3, 7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    others = [augment(image, boxes, labels, *key)[0] for key in ((1, 3, 7), (0, 4, 7), (0, 3, 8))]
    assert any(not torch.equal(a[0], other) for other in others)
    plain = DetectionAugment()(image, boxes, labels, 0, 3, 7)
    assert plain[0] is image and plain[1] is boxes


def test_scale_jitter_keeps_boxes_inside_and_on_the_pixels(painted) -> None:
    bundle = build(painted, "data.augment=none", "data.scale_jitter=[0.5,1.6]", "data.batch_size=1")
    padded = cropped = dropped = 0
    for _, index, image, target in samples(bundle, range(25)):
        height, width = image.shape[1:]
        original = bundle.train.dataset[(index, None)]
        assert (height, width) == tuple(original[0].shape[1:])  # same size: cropped or padded back
        boxes, labels = target["boxes"], target["labels"]
        assert boxes.shape[0] == labels.shape[0] <= original[1]["boxes"].shape[0]
        assert set(labels.tolist()) <= set(original[1]["labels"].tolist())
        if boxes.numel():
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
            assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
            assert (boxes[:, 2] - boxes[:, 0] >= 1).all() and (boxes[:, 3] - boxes[:, 1] >= 1).all()
        if image[:, -1, :].abs().sum() == 0:  # the rescaled image was smaller: padded with zeros
            padded += 1
        else:
            cropped += 1
        # pixels whose centre lies 1 px inside a box are bright; 1 px outside every box, dark
        ys = torch.arange(height)[:, None] + 0.5
        xs = torch.arange(width)[None, :] + 0.5
        near = torch.zeros(height, width, dtype=torch.bool)
        for x1, y1, x2, y2 in boxes.tolist():
            inside = (xs >= x1 + 1) & (xs <= x2 - 1) & (ys >= y1 + 1) & (ys <= y2 - 1)
            assert (image.mean(0)[inside] > 0.5).all()
            near |= (xs >= x1 - 1) & (xs <= x2 + 1) & (ys >= y1 - 1) & (ys <= y2 + 1)
        leftover = int((bright_mask(image) & ~near).sum())
        if boxes.shape[0] == original[1]["boxes"].shape[0]:
            assert leftover == 0
        else:  # a box cropped below MIN_VISIBLE of its area was dropped: only a sliver of it may remain
            dropped += 1
            largest = max((b[2] - b[0]) * (b[3] - b[1]) for b in original[1]["boxes"].tolist())
            assert leftover < MIN_VISIBLE * largest * 1.6 ** 2
    assert padded and cropped and dropped


def test_scale_jitter_drops_boxes_mostly_cropped_away() -> None:
    """Upscaled x1.5 then cropped back: a box stays while >= MIN_VISIBLE of its scaled area is in the crop."""
    image = torch.zeros(3, 40, 40)
    anchor = [14.0, 14.0, 26.0, 26.0]  # x1.5 -> [21, 21, 39, 39] minus a crop offset in [0, 20]: always inside
    corner = [0.0, 0.0, 10.0, 10.0]  # x1.5 -> [0, 0, 15, 15]: partly or wholly cropped away
    boxes, labels = torch.tensor([anchor, corner]), torch.tensor([1, 2])
    augment = DetectionAugment(scale=(1.5, 1.5))
    outcomes = set()
    for epoch in range(60):
        _, out_boxes, out_labels = augment(image, boxes, labels, 0, epoch, 0)
        assert out_labels[0] == 1 and out_boxes[0, 2] - out_boxes[0, 0] == 18
        left, top = 21 - out_boxes[0, 0].item(), 21 - out_boxes[0, 1].item()
        visible = max(0.0, 15 - left) * max(0.0, 15 - top)
        expected = visible >= MIN_VISIBLE * 15 * 15
        assert (2 in out_labels.tolist()) == expected
        if expected:
            assert out_boxes[1].tolist() == [0.0, 0.0, 15 - left, 15 - top]
        outcomes.add(expected)
    assert outcomes == {True, False}
    # shrunk then padded: nothing leaves the image, every box stays, scaled
    _, small, kept = DetectionAugment(scale=(0.5, 0.5))(image, boxes, labels, 0, 0, 0)
    assert kept.tolist() == [1, 2] and small.tolist() == [[7.0, 7.0, 13.0, 13.0], [0.0, 0.0, 5.0, 5.0]]


def test_eval_images_are_never_augmented(painted) -> None:
    bundle = build(painted, "data.augment=flip", "data.scale_jitter=[0.5,1.5]", "data.batch_size=1")
    first = [batch for batch in bundle.eval]
    second = [batch for batch in bundle.eval]
    assert all(batches_equal(a, b) for a, b in zip(first, second))
    for batch in first:
        for image, target, position in zip(batch["images"], batch["targets"], batch["index"].tolist()):
            record = bundle.eval.dataset.records[position]
            keep = ~torch.from_numpy(record.crowd)
            assert torch.equal(target["boxes"], torch.from_numpy(record.boxes)[keep])


# ------------------------------------------------------------------------------------------ resume and seeds


def epoch_list(bundle, epoch: int, start_step: int = 0) -> list[dict]:
    return list(bundle.train.epoch(epoch, start_step=start_step))


def test_resume_is_exact(many) -> None:
    bundle = build(many, "data.augment=flip", "data.scale_jitter=[0.6,1.4]", "data.batch_size=4")
    assert bundle.train.steps_per_epoch == 5
    for epoch in (0, 3):
        whole = epoch_list(bundle, epoch)
        tail = epoch_list(bundle, epoch, start_step=2)
        assert len(whole) == 5 and len(tail) == 3
        assert all(batches_equal(a, b) for a, b in zip(whole[2:], tail))
    assert epoch_list(bundle, 0, start_step=5) == []
    with pytest.raises(ValueError, match="start_step=6 outside"):
        epoch_list(bundle, 0, start_step=6)


def test_consumer_keeps_every_thread(many) -> None:
    """Batches are assembled on one intra-op thread, but the code consuming them gets the caller's count back."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        bundle = build(many, "data.scale_jitter=[0.6,1.4]", "data.batch_size=4")
        for _ in bundle.train.epoch(0):
            assert torch.get_num_threads() == 2
        for _ in bundle.eval:
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_resume_with_workers_reading_a_zip(many, monkeypatch) -> None:
    """Not held in memory, two DataLoader workers reading one zip: the same batches as in-process."""
    zip_dir(many / "train2017", many / "train2017.zip", under="train2017/")
    shutil.rmtree(many / "train2017")
    overrides = ("data.augment=flip", "data.scale_jitter=[0.6,1.4]", "data.batch_size=4")
    in_memory = build(many, *overrides)
    assert in_memory.train.dataset.decoded is not None
    monkeypatch.setattr(build_module, "IN_MEMORY_BYTES", 0)
    workers = build(many, *overrides, "data.num_workers=2")
    assert workers.train.dataset.decoded is None and workers.train.dataset.container.is_zip
    reference = epoch_list(in_memory, 1)
    whole = epoch_list(workers, 1)
    tail = epoch_list(workers, 1, start_step=2)
    assert all(batches_equal(a, b) for a, b in zip(reference, whole)) and len(whole) == 5
    assert all(batches_equal(a, b) for a, b in zip(reference[2:], tail)) and len(tail) == 3
    eval_batches = list(workers.eval)
    assert all(batches_equal(a, b) for a, b in zip(list(in_memory.eval), eval_batches))


def order(bundle, epoch: int) -> list[list[int]]:
    return [batch["index"].tolist() for batch in bundle.train.epoch(epoch)]


def test_seed_and_epoch_decide_the_order(many) -> None:
    a, b = build(many, "data.batch_size=4"), build(many, "data.batch_size=4")
    assert order(a, 0) == order(b, 0)
    assert all(batches_equal(x, y) for x, y in zip(epoch_list(a, 2), epoch_list(b, 2)))
    assert order(a, 0) != order(a, 1)
    assert order(a, 0) != order(build(many, "data.batch_size=4", seed=1), 0)
    for epoch in (0, 1):  # 20 images, batches of 4: every image once per epoch
        assert sorted(i for row in order(a, epoch) for i in row) == list(range(20))


def test_subset_is_fixed_across_seeds(many) -> None:
    ids = [[r.image_id for r in build(many, "data.subset=6", "data.batch_size=2", seed=s).train.dataset.records]
           for s in (0, 1, 5)]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 6 and len(set(ids[0])) == 6
    bundle = build(many, "data.subset=6", "data.batch_size=2")
    assert bundle.train_size == 6 and bundle.train.steps_per_epoch == 3
    assert bundle.eval.num_samples == 7  # the evaluation split is never subset
    assert build(many, "data.subset=6", "data.batch_size=2").fingerprint == bundle.fingerprint
    assert build(many, "data.subset=5", "data.batch_size=1").fingerprint != bundle.fingerprint
    with pytest.raises(DataError, match=r"^data.subset=21 exceeds the 20 training samples"):
        build(many, "data.subset=21")


# ------------------------------------------------------------------------------------------ ranks


def test_rank_sharding(many) -> None:
    overrides = ("data.augment=flip", "data.scale_jitter=[0.7,1.3]", "data.batch_size=4", "data.eval_batch_size=2")
    single = build(many, *overrides)
    ranks = [build(many, *overrides, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 1):
        whole = epoch_list(single, epoch)
        parts = [epoch_list(bundle, epoch) for bundle in ranks]
        assert len(parts[0]) == len(parts[1]) == len(whole)
        for step, batch in enumerate(whole):
            a, b = parts[0][step], parts[1][step]
            assert a["index"].numel() == b["index"].numel() == 2
            merged = {"images": a["images"] + b["images"], "targets": a["targets"] + b["targets"],
                      "index": torch.cat([a["index"], b["index"]]),
                      "image_id": torch.cat([a["image_id"], b["image_id"]])}
            assert batches_equal(merged, batch)
    shards = [[int(i) for batch in bundle.eval for i in batch["image_id"]] for bundle in ranks]
    assert [len(s) for s in shards] == [4, 3] and [bundle.eval.num_samples for bundle in ranks] == [4, 3]
    everything = [int(i) for batch in single.eval for i in batch["image_id"]]
    assert sorted(shards[0] + shards[1]) == sorted(everything) and len(set(everything)) == 7
    # every rank holds the ground truth of the whole evaluation split
    assert ranks[0].eval_ground_truth == ranks[1].eval_ground_truth == single.eval_ground_truth


def test_batch_must_split_over_ranks(many) -> None:
    with pytest.raises(DataError, match=r"^data.batch_size=3 \(the global batch\) is not divisible by the world size"):
        build(many, "data.batch_size=3", rank=0, world_size=2)


# ------------------------------------------------------------------------------------------ keys


@pytest.mark.parametrize("override, key", [
    ("data.image_size=32", "data.image_size"),
    ("data.mean=[0.5,0.5,0.5]", "data.mean"),
    ("data.std=[0.2,0.2,0.2]", "data.std"),
    ("data.views=rotate4", "data.views"),
    ("data.sampler=knn", "data.sampler"),
    ("data.pipeline=fast", "data.pipeline"),
    ("data.augment=crop_flip", "data.augment"),
    ("data.augment=random_resized_crop", "data.augment"),
    ("data.classes=[a,b]", "data.classes"),
    ("data.eval_split=val", "data.eval_split"),
    ("data.scale_jitter=[1.2,0.8]", "data.scale_jitter"),
    ("data.scale_jitter=[0,1]", "data.scale_jitter"),
    ("data.scale_jitter=[1]", "data.scale_jitter"),
])
def test_keys_that_do_not_apply_are_refused(many, override, key) -> None:
    with pytest.raises(DataError) as info:
        build(many, override)
    assert str(info.value).startswith(key + "=")


def test_batch_larger_than_the_training_set(many) -> None:
    with pytest.raises(DataError, match=r"^data.batch_size=64 exceeds the 20 training images"):
        build(many)  # the default global batch of 64
    assert build(many, "data.batch_size=20").train.steps_per_epoch == 1


def test_not_a_detection_dataset(many) -> None:
    cfg = detection_cfg(many, "data.batch_size=4")
    cfg.name = "digits"
    with pytest.raises(DataError, match=r"^data.name=digits is not a detection dataset"):
        build_detection_data(cfg, seed=0, device=CPU)
