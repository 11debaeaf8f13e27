"""Helpers of the evaluation tests: load synthetic splits, write hand-made COCO sets."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np

from yolox_ray.data import COCODataset, DataWarning
from yolox_ray.data.synthetic import TRAIN_ANN, VAL_ANN


def load_split(root: Path, split: str) -> COCODataset:
    ann = TRAIN_ANN if split == "train" else VAL_ANN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return COCODataset(root / ann, root / f"{split}2017")


def coco_set(root: Path, boxes_per_image: list[list[tuple[int, list[float]]]], cats: list[int],
             hw: tuple[int, int] = (300, 400)) -> COCODataset:
    """A dataset with one grey image per entry and the given (category id, [x, y, w, h]) boxes."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    images, anns = [], []
    for i, objs in enumerate(boxes_per_image):
        name = f"{i + 1}.png"
        cv2.imwrite(str(root / "images" / name), np.full((*hw, 3), 80, np.uint8))
        images.append({"id": i + 1, "file_name": name, "height": hw[0], "width": hw[1]})
        for cat, bbox in objs:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": bbox,
                         "area": bbox[2] * bbox[3], "iscrowd": 0})
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                "categories": [{"id": c, "name": f"c{c}"} for c in cats]}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return COCODataset(root / "ann.json", root / "images")
