"""COCODataset: cleaning (§7), id mapping, and every bad input of issue 4 item 7."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from data_helpers import ann, write_coco

from yolox_ray.data import COCODataset, DatasetError, DataWarning

CATS = [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}, {"id": 11, "name": "eleven"}]


def _images(n: int, h: int = 60, w: int = 80) -> list[dict]:
    return [{"id": i + 1, "file_name": f"im{i + 1}.png", "height": h, "width": w} for i in range(n)]


def test_mapping_cleaning_and_crowd(tmp_path):
    anns = [
        ann(1, 1, 7, [10, 5, 20, 30]),
        ann(2, 1, 11, [-5, -4, 20, 10]),  # §7: x1 = max(0, x), x2 = min(W, x1 + w) -> (0, 0, 20, 10)
        ann(3, 2, 3, [70, 50, 30, 30]),  # clipped to (70, 50, 80, 60)
        ann(4, 2, 7, [1, 1, 10, 10], iscrowd=1),  # crowd: not a training box
    ]
    with pytest.warns(DataWarning, match="2 boxes clipped"):
        ds = COCODataset(*write_coco(tmp_path, _images(2), anns, CATS))
    assert ds.class_ids == (3, 7, 11) and ds.class_names == ("three", "seven", "eleven")
    assert ds.num_classes == 3 and len(ds) == 2
    img, boxes, classes = ds.load(0)
    assert img.shape == (60, 80, 3) and img.dtype == np.uint8
    np.testing.assert_allclose(boxes, [[10, 5, 30, 35], [0, 0, 20, 10]])
    assert classes.tolist() == [1, 2]
    _, boxes, classes = ds.load(1)
    np.testing.assert_allclose(boxes, [[70, 50, 80, 60]])
    assert classes.tolist() == [0]
    # The crowd box stays in the evaluation ground truth (COCOeval ignores it).
    assert len(ds.coco.getAnnIds(imgIds=[2])) == 2


def test_invalid_json_names_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match=r"bad\.json is not valid JSON"):
        COCODataset(bad, tmp_path / "images")


def test_missing_annotation_file_and_missing_keys(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="does not exist"):
        COCODataset(tmp_path / "nope.json", tmp_path / "images")
    (tmp_path / "a.json").write_text('{"images": []}')
    with pytest.raises(DatasetError, match="'annotations'"):
        COCODataset(tmp_path / "a.json", tmp_path / "images")


def test_missing_image_detected_when_building(tmp_path):
    ann_file, image_dir = write_coco(tmp_path, _images(3), [ann(1, 1, 7, [1, 1, 5, 5])], CATS)
    (image_dir / "im2.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of 3 images .* are unreadable \(more than 5%; e\.g\. .*im2\.png: missing"):
        COCODataset(ann_file, image_dir)


def test_empty_image_file_detected_when_building(tmp_path):
    ann_file, image_dir = write_coco(tmp_path, _images(2), [ann(1, 1, 7, [1, 1, 5, 5])], CATS)
    (image_dir / "im2.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"1 of 2 images .* unreadable .*im2\.png: empty file"):
        COCODataset(ann_file, image_dir)


def test_unreadable_image_raises_naming_file(tmp_path):
    ann_file, image_dir = write_coco(tmp_path, _images(1), [ann(1, 1, 7, [1, 1, 5, 5])], CATS)
    (image_dir / "im1.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=r"1 of 1 images .* unreadable .*im1\.png: not a decodable image"):
        COCODataset(ann_file, image_dir)


def test_decode_failure_while_training_is_replaced_by_the_next_image(tmp_path):
    pixels = {f"im{i}.png": np.full((60, 80, 3), 10 * i, np.uint8) for i in (1, 2, 3)}
    anns = [ann(1, 1, 7, [1, 1, 5, 5]), ann(2, 2, 3, [2, 2, 6, 6]), ann(3, 3, 11, [3, 3, 7, 7])]
    ann_file, image_dir = write_coco(tmp_path, _images(3), anns, CATS, pixels=pixels)
    ds = COCODataset(ann_file, image_dir)
    (image_dir / "im2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # broken after the check
    with pytest.warns(DataWarning, match=r"im2\.png cannot be read or decoded: replaced"):
        img, boxes, classes = ds.load(1)
    assert int(img[0, 0, 0]) == 30  # image 3, with image 3's box and class
    np.testing.assert_allclose(boxes, [[3, 3, 10, 10]])
    assert classes.tolist() == [2]
    img, boxes, _ = ds.load(1)  # the same replacement again (no second warning needed)
    assert int(img[0, 0, 0]) == 30 and ds.read_failures == {1: "cannot be read or decoded"}


def test_image_size_disagreeing_with_json(tmp_path):
    ann_file, image_dir = write_coco(tmp_path, _images(1), [ann(1, 1, 7, [1, 1, 5, 5])], CATS,
                                     pixels={"im1.png": np.zeros((10, 10, 3), np.uint8)})
    with pytest.raises(DatasetError, match=r"im1\.png: image is 10x10 \(h x w\) but the annotation file says 60x80"):
        COCODataset(ann_file, image_dir)


def test_skipped_annotations_are_counted(tmp_path):
    anns = [
        ann(1, 1, 7, [1, 1, 5, 5]),
        ann(2, 99, 7, [1, 1, 5, 5]),  # unknown image
        ann(3, 1, 42, [1, 1, 5, 5]),  # unknown category
        ann(4, 1, 42, [1, 1, 5, 5]),  # unknown category
        ann(5, 1, 7, [1, 1, 0, 5]),  # zero width
        ann(6, 1, 7, [1, 1, 5, -2]),  # negative height
        ann(7, 1, 7, [200, 10, 5, 5]),  # entirely right of the 80-px image
    ]
    with pytest.warns(DataWarning) as record:
        ds = COCODataset(*write_coco(tmp_path, _images(1), anns, CATS))
    message = str(record[0].message)
    assert "1 annotations on unknown image ids" in message
    assert "2 annotations with unknown category ids" in message
    assert "2 boxes with non-positive width/height" in message
    assert "1 boxes outside their image" in message
    assert ds.num_boxes == 1
    assert len(ds.coco.getAnnIds()) == 1  # skipped ones are not in the evaluation GT either


def test_background_image_kept(tmp_path):
    with pytest.warns(DataWarning, match="1 images with no annotations, kept as background"):
        ds = COCODataset(*write_coco(tmp_path, _images(2), [ann(1, 1, 7, [1, 1, 5, 5])], CATS))
    assert len(ds) == 2
    img, boxes, classes = ds.load(1)
    assert img.shape == (60, 80, 3) and boxes.shape == (0, 4) and classes.shape == (0,)


def test_empty_dataset_refused(tmp_path):
    with pytest.raises(DatasetError, match="lists no images"):
        COCODataset(*write_coco(tmp_path / "a", [], [], CATS))
    with pytest.raises(DatasetError, match="no usable"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        COCODataset(*write_coco(tmp_path / "b", _images(2), [ann(1, 1, 7, [1, 1, 0, 0])], CATS))


def test_in_ram_cache_returns_copies(tmp_path):
    ann_file, image_dir = write_coco(tmp_path, _images(1), [ann(1, 1, 7, [1, 1, 5, 5])], CATS)
    ds = COCODataset(ann_file, image_dir, cache_images=True)
    (image_dir / "im1.png").unlink()  # served from RAM now
    img, boxes, _ = ds.load(0)
    img[:] = 0
    boxes[:] = -1
    img2, boxes2, _ = ds.load(0)
    assert int(img2[0, 0, 0]) == 90 and boxes2[0, 0] == 1
