"""COCO-format detection dataset (any annotation JSON + image folder), validated up front.

Bad input is found when the dataset is built, not hours into training: the JSON is parsed with a
clear error, annotations on unknown images/categories and degenerate boxes are skipped with one
warning that counts them, images missing from the folder raise an error naming them, and an
empty dataset is refused.  Boxes are cleaned as the official code does (§7); crowd boxes are
dropped for training but stay in the evaluation ground truth (COCOeval ignores them).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from pycocotools.coco import COCO


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the file and the problem."""


class DataWarning(UserWarning):
    """Something in a dataset was skipped or is unusual; the message says what and how many."""


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"annotation file {path} does not exist")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"annotation file {path} is not valid JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"annotation file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"annotation file {path}: expected a JSON object with 'images', 'annotations', "
                           f"'categories', got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"annotation file {path}: missing or non-list '{key}'")
    return data


class COCODataset:
    """Images and cleaned boxes of one COCO-format split.

    `load(i) -> (image BGR uint8 [h, w, 3], boxes xyxy float32 [n, 4], classes int64 [n])` in
    original-image pixels; class index = rank of the category id among the sorted ids, and
    `class_ids[index]` maps back.  `coco` is the pycocotools ground truth used by evaluation.
    """

    def __init__(self, ann_file: str | Path, image_dir: str | Path, cache_images: bool = False) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        data = _load_json(self.ann_file)
        if not self.image_dir.is_dir():
            raise DatasetError(f"image folder {self.image_dir} does not exist (annotations: {self.ann_file})")
        images, categories = data["images"], data["categories"]
        if not images:
            raise DatasetError(f"annotation file {self.ann_file} lists no images: the dataset is empty")
        if not categories:
            raise DatasetError(f"annotation file {self.ann_file} lists no categories")
        try:
            cat_ids = sorted(int(c["id"]) for c in categories)
            names = {int(c["id"]): str(c.get("name", c["id"])) for c in categories}
            image_info = {int(im["id"]): im for im in images}
            for im in images:
                im["width"], im["height"], im["file_name"] = int(im["width"]), int(im["height"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"annotation file {self.ann_file}: malformed image or category entry ({exc!r})") from None
        if len(cat_ids) != len(set(cat_ids)):
            raise DatasetError(f"annotation file {self.ann_file}: duplicate category ids")
        if len(image_info) != len(images):
            raise DatasetError(f"annotation file {self.ann_file}: duplicate image ids")
        self.class_ids: tuple[int, ...] = tuple(cat_ids)
        self.class_names: tuple[str, ...] = tuple(names[c] for c in cat_ids)
        self.num_classes = len(cat_ids)
        cat_index = {c: i for i, c in enumerate(cat_ids)}

        kept, skipped = self._clean(data["annotations"], image_info, cat_index)
        data["annotations"] = kept
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()

        self.image_ids: list[int] = sorted(image_info)
        self._files = [self.image_dir / image_info[i]["file_name"] for i in self.image_ids]
        self._hw = np.array([(image_info[i]["height"], image_info[i]["width"]) for i in self.image_ids], np.int64)
        if (self._hw <= 0).any():
            bad = self.image_ids[int(np.nonzero((self._hw <= 0).any(axis=1))[0][0])]
            raise DatasetError(f"annotation file {self.ann_file}: image id {bad} has a non-positive width/height")
        self._boxes, self._classes = self._per_image_targets(kept, cat_index)
        self._check_files()
        num_boxes = sum(len(b) for b in self._boxes)
        if num_boxes == 0:
            raise DatasetError(f"annotation file {self.ann_file}: no usable (non-crowd, non-empty) boxes; "
                               "the dataset is empty")
        background = sum(1 for b in self._boxes if len(b) == 0)
        if background:
            skipped["images with no annotations, kept as background images"] = background
        if skipped:
            details = ", ".join(f"{count} {what}" for what, count in skipped.items())
            warnings.warn(f"{self.ann_file}: {details}", DataWarning, stacklevel=2)
        self._cache: list[np.ndarray] | None = None
        if cache_images:
            self._cache = [self._read(i) for i in range(len(self))]

    # -----------------------------------------------------------------------------------------

    def _clean(self, annotations: list, image_info: dict, cat_index: dict) -> tuple[list, Counter]:
        """Drop annotations on unknown images/categories and degenerate boxes (counted); clean boxes."""
        skipped: Counter = Counter()
        kept = []
        for ann in annotations:
            try:
                image_id, cat_id = int(ann["image_id"]), int(ann["category_id"])
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (KeyError, TypeError, ValueError):
                raise DatasetError(f"annotation file {self.ann_file}: malformed annotation "
                                   f"{ann.get('id', '?') if isinstance(ann, dict) else ann!r} (needs image_id, "
                                   "category_id and bbox [x, y, w, h])") from None
            im = image_info.get(image_id)
            if im is None:
                skipped["annotations on unknown image ids"] += 1
                continue
            if cat_id not in cat_index:
                skipped["annotations with unknown category ids"] += 1
                continue
            # §7 cleaning: clip to the image; keep only boxes with a positive clipped extent.
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(im["width"]), x1 + max(0.0, w)), min(float(im["height"]), y1 + max(0.0, h))
            if not (w > 0 and h > 0):
                skipped["boxes with non-positive width/height"] += 1
                continue
            if not (x2 > x1 and y2 > y1):
                skipped["boxes outside their image"] += 1
                continue
            if x < 0 or y < 0 or x + w > im["width"] + 1e-3 or y + h > im["height"] + 1e-3:
                skipped["boxes clipped to their image (kept)"] += 1
            ann = dict(ann)
            ann.setdefault("iscrowd", 0)
            if "area" not in ann:
                ann["area"] = w * h
            ann["_clean"] = (x1, y1, x2, y2)
            kept.append(ann)
        return kept, skipped

    def _per_image_targets(self, anns: list, cat_index: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
        rows: dict[int, list] = {i: [] for i in self.image_ids}
        for ann in anns:
            if not ann["iscrowd"]:
                rows[int(ann["image_id"])].append((*ann["_clean"], cat_index[int(ann["category_id"])]))
            del ann["_clean"]
        boxes, classes = [], []
        for image_id in self.image_ids:
            arr = np.asarray(rows[image_id], np.float64).reshape(-1, 5)
            boxes.append(arr[:, :4].astype(np.float32))
            classes.append(arr[:, 4].astype(np.int64))
        return boxes, classes

    def _check_files(self) -> None:
        """Every listed image exists and is not empty (one directory scan; decoding waits for `load`)."""
        try:
            with os.scandir(self.image_dir) as entries:
                sizes = {e.name: e.stat().st_size for e in entries if e.is_file()}
        except OSError as exc:
            raise DatasetError(f"image folder {self.image_dir} cannot be listed: {exc}") from None
        missing, empty = [], []
        for f in self._files:
            size = sizes.get(f.name) if f.parent == self.image_dir else (f.stat().st_size if f.is_file() else None)
            if size is None:
                missing.append(f)
            elif size == 0:
                empty.append(f)
        for bad, what in ((missing, f"are missing from {self.image_dir}"), (empty, "are empty files")):
            if bad:
                shown = ", ".join(str(f) for f in bad[:5])
                raise DatasetError(f"{len(bad)} image(s) listed in {self.ann_file} {what}: {shown}"
                                   f"{' …' if len(bad) > 5 else ''}")

    def _read(self, i: int) -> np.ndarray:
        path = self._files[i]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"image {path} cannot be read or decoded")
        if img.shape[:2] != tuple(self._hw[i]):
            raise DatasetError(f"image {path} is {img.shape[0]}x{img.shape[1]} (h x w) but {self.ann_file} says "
                               f"{self._hw[i][0]}x{self._hw[i][1]}")
        return img

    # -----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image BGR uint8, boxes xyxy float32 [n, 4], classes int64 [n]); arrays are copies."""
        img = self._cache[i].copy() if self._cache is not None else self._read(i)
        return img, self._boxes[i].copy(), self._classes[i].copy()

    def targets(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Cleaned boxes and classes of image i without reading the image."""
        return self._boxes[i], self._classes[i]

    def image_hw(self, i: int) -> tuple[int, int]:
        return int(self._hw[i][0]), int(self._hw[i][1])

    def image_path(self, i: int) -> Path:
        return self._files[i]

    @property
    def num_boxes(self) -> int:
        return sum(len(b) for b in self._boxes)
