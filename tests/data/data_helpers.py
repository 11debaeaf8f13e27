"""Helpers of the data tests: write small hand-made COCO-format datasets."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np


def write_coco(root: Path, images: list[dict], annotations: list[dict], categories: list[dict],
               pixels: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    """Write annotations.json and an images/ folder; images get `pixels[file_name]` or a grey image."""
    root.mkdir(parents=True, exist_ok=True)
    image_dir = root / "images"
    image_dir.mkdir(exist_ok=True)
    for im in images:
        img = (pixels or {}).get(im["file_name"])
        if img is None:
            img = np.full((im["height"], im["width"], 3), 90, np.uint8)
        cv2.imwrite(str(image_dir / im["file_name"]), img)
    ann_file = root / "annotations.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file, image_dir


def ann(ann_id: int, image_id: int, cat: int, bbox: list[float], **extra) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": bbox, "area": bbox[2] * bbox[3],
            "iscrowd": 0, **extra}


# ---------------------------------------------------------------------------------------------
# Malformed variants of a small COCO 2017-layout dataset (issue 14)

CATEGORIES = [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}]


def write_coco_root(root: Path, n_train: int = 40, n_val: int = 6, size: int = 64) -> Path:
    """A COCO 2017 layout (annotations/instances_{train,val}2017.json, train2017/, val2017/) of real
    JPEGs, each with one box of category 1 or 2; usable as `--data root` with model.num_classes=2."""
    rng = np.random.default_rng(0)
    for split, n in (("train2017", n_train), ("val2017", n_val)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(1, n + 1):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            x, y = int(rng.integers(2, size // 2)), int(rng.integers(2, size // 2))
            img[y:y + 20, x:x + 20] = 200
            cv2.imwrite(str(folder / f"{i:06d}.jpg"), img)
            images.append({"id": i, "file_name": f"{i:06d}.jpg", "height": size, "width": size})
            annotations.append(ann(i, i, 1 + i % 2, [x, y, 20, 20]))
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES}))
    return root


def train_json(root: Path) -> Path:
    return root / "annotations" / "instances_train2017.json"


def edit_train(root: Path, fn) -> None:
    """Apply `fn(data)` to the train annotation dict and write it back."""
    path = train_json(root)
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _add_ann(data: dict, **fields) -> None:
    base = {"id": 10_000 + len(data["annotations"]), "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10],
            "area": 100, "iscrowd": 0}
    data["annotations"].append({**base, **fields})


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# case -> function(root) that damages the train split of a `write_coco_root` dataset
MALFORMED = {
    "invalid_json": lambda r: train_json(r).write_text('{"images": [{"id": 1,'),
    "empty_images": lambda r: edit_train(r, lambda d: d.update(images=[], annotations=[])),
    "duplicate_ids": lambda r: edit_train(r, lambda d: d["images"][1].update(id=d["images"][0]["id"])),
    "missing_jpeg": lambda r: (r / "train2017" / "000007.jpg").unlink(),
    "truncated_jpeg": lambda r: _truncate(r / "train2017" / "000007.jpg"),
    "zero_byte_jpeg": lambda r: (r / "train2017" / "000007.jpg").write_bytes(b""),
    "all_background": lambda r: edit_train(r, lambda d: d.update(annotations=[])),
    "unknown_image_id": lambda r: edit_train(r, lambda d: _add_ann(d, image_id=999)),
    "unknown_category_id": lambda r: edit_train(r, lambda d: _add_ann(d, category_id=77)),
    "zero_width_box": lambda r: edit_train(r, lambda d: _add_ann(d, bbox=[5, 5, 0, 10])),
    "negative_height_box": lambda r: edit_train(r, lambda d: _add_ann(d, bbox=[5, 5, 10, -3])),
    "out_of_image_box": lambda r: edit_train(r, lambda d: _add_ann(d, bbox=[500, 5, 10, 10])),
    "nan_box": lambda r: edit_train(r, lambda d: _add_ann(d, bbox=[float("nan"), 5, 10, 10])),
    "300_boxes": lambda r: edit_train(r, lambda d: [_add_ann(d, image_id=3, bbox=[k % 50, k // 50, 8, 8])
                                                     for k in range(299)]),
}
