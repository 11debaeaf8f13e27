"""The dataset rules of data/checks.py (issue 14): every malformed case and its outcome, the cheap
per-image check and its cache, and that COCODataset applies the very same rules."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
from data_helpers import MALFORMED, train_json, write_coco_root

from yolox_ray.data import COCODataset, DatasetError, DataWarning
from yolox_ray.data import checks
from yolox_ray.data.checks import check_split, probe_image


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return write_coco_root(tmp_path_factory.mktemp("pristine") / "coco")


@pytest.fixture
def dataset(pristine, tmp_path):
    import shutil

    root = tmp_path / "coco"
    shutil.copytree(pristine, root)
    return root


def _check(root):
    return check_split(train_json(root), root / "train2017", split="train", max_labels=120)


def _dataset(root):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        ds = COCODataset(train_json(root), root / "train2017")
    return ds, " ".join(str(w.message) for w in caught)


def test_clean_dataset_has_nothing_to_report(dataset):
    report = _check(dataset)
    assert (report.num_images, report.num_boxes) == (40, 40)
    assert report.unreadable == {} and report.skipped == {} and report.truncated_images == 0
    assert report.lines() == [f"train: 40 images, 40 boxes ({train_json(dataset)})"]


@pytest.mark.parametrize("case, message", [
    ("invalid_json", r"instances_train2017\.json is not valid JSON"),
    ("empty_images", r"instances_train2017\.json lists no images: the dataset is empty"),
    ("duplicate_ids", r"instances_train2017\.json: duplicate image ids \[1\]"),
    ("all_background", r"instances_train2017\.json: no usable .* every image is background"),
])
def test_fatal_cases(dataset, case, message):
    MALFORMED[case](dataset)
    with pytest.raises(DatasetError, match=message) as info:
        _check(dataset)
    assert "\n" not in str(info.value)
    with pytest.raises(DatasetError, match=message):  # the workers' dataset refuses it the same way
        _dataset(dataset)


@pytest.mark.parametrize("case, reason", [
    ("missing_jpeg", "missing"),
    ("truncated_jpeg", "truncated JPEG (no end-of-image marker)"),
    ("zero_byte_jpeg", "empty file"),
])
def test_one_unreadable_image_among_40_is_skipped(dataset, case, reason):
    MALFORMED[case](dataset)
    report = _check(dataset)
    assert report.unreadable == {"000007.jpg": reason}
    assert (report.num_images, report.num_boxes) == (39, 39)
    assert report.metrics()["data/train/unreadable_images"] == 1.0
    assert f"train: 1 unreadable images skipped: 000007.jpg ({reason})" in report.lines()
    ds, warned = _dataset(dataset)
    assert len(ds) == 39 and 7 not in ds.image_ids and ds.unreadable == {"000007.jpg": reason}
    assert "1 unreadable images skipped" in warned
    assert not ds.coco.getAnnIds(imgIds=[7])  # not in the evaluation ground truth either


def test_too_many_unreadable_images_refuse_the_dataset(dataset, pristine):
    import shutil

    for name in ("000003.jpg", "000005.jpg", "000007.jpg"):  # 3 of 40 = 7.5 % > 5 %
        (dataset / "train2017" / name).unlink()
    with pytest.raises(DatasetError, match=r"3 of 40 images listed in .*instances_train2017\.json are unreadable "
                                           r"\(more than 5%; e\.g\. .*000003\.jpg: missing\)"):
        _check(dataset)
    with pytest.raises(DatasetError, match="more than 5%"):
        _dataset(dataset)
    shutil.copy(pristine / "train2017" / "000003.jpg", dataset / "train2017")  # 2 of 40 = 5 %: allowed
    assert sorted(_check(dataset).unreadable) == ["000005.jpg", "000007.jpg"]


@pytest.mark.parametrize("case, what", [
    ("unknown_image_id", "annotations on unknown image ids"),
    ("unknown_category_id", "annotations with unknown category ids"),
    ("zero_width_box", "boxes with non-positive width/height"),
    ("negative_height_box", "boxes with non-positive width/height"),
    ("out_of_image_box", "boxes outside their image"),
    ("nan_box", "boxes with non-finite (NaN/inf) coordinates"),
])
def test_skipped_annotations_are_counted_and_shown(dataset, case, what):
    MALFORMED[case](dataset)
    report = _check(dataset)
    assert report.skipped == {what: 1}
    assert report.num_boxes == 40 and report.unreadable == {}
    assert f"train: 1 {what}" in report.lines()
    assert report.metrics()["data/train/skipped_annotations"] == 1.0
    ds, warned = _dataset(dataset)
    assert ds.num_boxes == 40 and f"1 {what}" in warned


def test_300_boxes_on_one_image_are_reported_as_truncated(dataset):
    MALFORMED["300_boxes"](dataset)
    report = _check(dataset)
    assert report.num_boxes == 339 and report.truncated_images == 1
    assert "train: 1 images with more than data.max_labels=120 boxes (each sample keeps the first 120)" in report.lines()
    assert check_split(train_json(dataset), dataset / "train2017", max_labels=300).truncated_images == 0


def test_grayscale_and_png_behind_a_jpg_name_are_fine(dataset):
    folder = dataset / "train2017"
    cv2.imwrite(str(folder / "000002.jpg"), np.full((64, 64), 128, np.uint8))  # grayscale JPEG
    ok, png = cv2.imencode(".png", np.full((64, 64, 4), 77, np.uint8))  # 4-channel PNG named .jpg
    (folder / "000004.jpg").write_bytes(png.tobytes())
    assert _check(dataset).unreadable == {}
    ds, _ = _dataset(dataset)
    for i in (1, 3):
        img, _, _ = ds.load(i)
        assert img.shape == (64, 64, 3)


def test_probe_reads_headers_not_pixels(tmp_path):
    img = np.zeros((37, 53, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), img)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    cv2.imwrite(str(tmp_path / "a.bmp"), img)
    assert probe_image(tmp_path / "a.jpg") == ("ok", 37, 53)
    assert probe_image(tmp_path / "a.png") == ("ok", 37, 53)
    assert probe_image(tmp_path / "a.bmp") == ("ok", 37, 53)  # other formats: decoded
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "b.png").write_bytes(data[:-12])
    assert probe_image(tmp_path / "b.png")[0] == "truncated PNG (no IEND chunk)"
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    assert probe_image(tmp_path / "c.jpg")[0] == "JPEG without a readable frame header"
    assert probe_image(tmp_path / "nope.jpg")[0] == "missing"


def test_check_cache_is_keyed_on_size_and_mtime(dataset, monkeypatch):
    calls = []
    real = checks.probe_image
    monkeypatch.setattr(checks, "probe_image", lambda path, size=None: calls.append(path.name) or real(path, size))
    _check(dataset)
    assert len(calls) == 40
    cache = checks.default_check_cache(dataset / "train2017")
    assert cache.is_file() and len(json.loads(cache.read_text())["files"]) == 40
    calls.clear()
    _check(dataset)
    assert calls == []  # a rerun only stats the folder
    MALFORMED["truncated_jpeg"](dataset)  # size and mtime change: probed again, found
    report = _check(dataset)
    assert calls == ["000007.jpg"] and list(report.unreadable) == ["000007.jpg"]
    calls.clear()
    ds, _ = _dataset(dataset)  # the workers' dataset uses the same cache
    assert calls == [] and len(ds) == 39


def test_progress_line_for_slow_checks(dataset, monkeypatch):
    import io

    clock = iter(range(0, 1000, 3))  # every probe "takes" 3 s
    monkeypatch.setattr(checks.time, "monotonic", lambda: float(next(clock)))
    out = io.StringIO()
    check_split(train_json(dataset), dataset / "train2017", progress=out)
    lines = out.getvalue().splitlines()
    assert lines and lines[-1].startswith(f"checking images of {dataset / 'train2017'}: 40/40")


def test_probe_finds_the_frame_header_after_a_large_metadata_segment(tmp_path):
    ok, jpg = cv2.imencode(".jpg", np.zeros((21, 34, 3), np.uint8))
    data = jpg.tobytes()
    app = b"\xff\xe2" + (65535).to_bytes(2, "big") + b"\0" * 65533  # a 64 KiB APP2 (ICC-like) segment
    (tmp_path / "big.jpg").write_bytes(data[:2] + app + app + data[2:])
    assert probe_image(tmp_path / "big.jpg") == ("ok", 21, 34)
    assert cv2.imread(str(tmp_path / "big.jpg")).shape == (21, 34, 3)  # a valid JPEG indeed
