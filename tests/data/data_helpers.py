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
