"""COCO-format detection dataset (any annotation JSON + image folder), validated up front.

Bad input is found when the dataset is built, not hours into training, by the rules of
`data/checks.py` (which the driver applies too, before any cluster starts): the JSON is parsed with
a clear error, annotations on unknown images/categories and degenerate boxes are skipped with one
warning that counts them, unreadable images (missing, empty, truncated) leave the index (refused
above `MAX_UNREADABLE_FRACTION`), and an empty or background-only dataset is refused.  An image
that still fails to decode while training is replaced by the next readable index.  Boxes are cleaned as the official code does (§7); crowd boxes are
dropped for training but stay in the evaluation ground truth (COCOeval ignores them).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from pycocotools.coco import COCO

from yolox_ray.data.checks import (
    DataWarning,
    DatasetError,
    background_only_message,
    check_images,
    load_annotations,
    parse_split,
    refuse_too_many_unreadable,
)

__all__ = ["COCODataset", "DataWarning", "DatasetError"]


class COCODataset:
    """Images and cleaned boxes of one COCO-format split.

    `load(i) -> (image BGR uint8 [h, w, 3], boxes xyxy float32 [n, 4], classes int64 [n])` in
    original-image pixels; class index = rank of the category id among the sorted ids, and
    `class_ids[index]` maps back.  `coco` is the pycocotools ground truth used by evaluation.
    """

    def __init__(self, ann_file: str | Path, image_dir: str | Path, cache_images: bool = False,
                 check_cache: str | Path | None = None) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        data = load_annotations(self.ann_file)
        if not self.image_dir.is_dir():
            raise DatasetError(f"image folder {self.image_dir} does not exist (annotations: {self.ann_file})")
        # The rules live in data/checks.py; the driver applies the same ones before the cluster starts.
        parsed = parse_split(self.ann_file, data)
        image_info, skipped = parsed.image_info, parsed.skipped
        self.class_ids: tuple[int, ...] = parsed.class_ids
        self.class_names: tuple[str, ...] = parsed.class_names
        self.num_classes = len(self.class_ids)
        cat_index = {c: i for i, c in enumerate(self.class_ids)}

        # Unreadable images (missing, empty, truncated, no header, wrong size) leave the index with
        # their annotations, also from the evaluation ground truth; too many refuse the dataset.
        ids = sorted(image_info)
        names = [image_info[i]["file_name"] for i in ids]
        unreadable = check_images(self.image_dir, names, [(image_info[i]["height"], image_info[i]["width"]) for i in ids],
                                  cache_file=None if check_cache is None else Path(check_cache))
        refuse_too_many_unreadable(self.ann_file, self.image_dir, unreadable, len(ids))
        self.unreadable: dict[str, str] = dict(sorted(unreadable.items()))
        kept = parsed.kept
        if unreadable:
            dropped = {i for i, n in zip(ids, names) if n in unreadable}
            image_info = {i: im for i, im in image_info.items() if i not in dropped}
            data["images"] = [im for im in data["images"] if int(im["id"]) not in dropped]
            kept = [a for a in kept if int(a["image_id"]) not in dropped]
            skipped["unreadable images skipped"] = len(dropped)
        data["annotations"] = kept
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()

        self.image_ids: list[int] = sorted(image_info)
        self._files = [self.image_dir / image_info[i]["file_name"] for i in self.image_ids]
        self._hw = np.array([(image_info[i]["height"], image_info[i]["width"]) for i in self.image_ids],
                            np.int64).reshape(-1, 2)
        self._boxes, self._classes = self._per_image_targets(kept, cat_index)
        num_boxes = sum(len(b) for b in self._boxes)
        if num_boxes == 0:
            raise DatasetError(background_only_message(self.ann_file))
        background = sum(1 for b in self._boxes if len(b) == 0)
        if background:
            skipped["images with no annotations, kept as background images"] = background
        if skipped:
            details = ", ".join(f"{count} {what}" for what, count in skipped.items())
            warnings.warn(f"{self.ann_file}: {details}", DataWarning, stacklevel=2)
        self.read_failures: dict[int, str] = {}  # index -> reason, for images that failed to decode here
        self._cache: list[tuple[int, np.ndarray]] | None = None
        if cache_images:
            self._cache = [self._readable(i) for i in range(len(self))]  # (source index, image)

    # -----------------------------------------------------------------------------------------

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

    def _try_read(self, i: int) -> tuple[np.ndarray | None, str]:
        path = self._files[i]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            return None, "cannot be read or decoded"
        if img.shape[:2] != tuple(self._hw[i]):
            return None, (f"is {img.shape[0]}x{img.shape[1]} (h x w) but {self.ann_file} says "
                          f"{self._hw[i][0]}x{self._hw[i][1]}")
        return img, ""

    def _read(self, i: int) -> np.ndarray:
        img, reason = self._try_read(i)
        if img is None:
            raise DatasetError(f"image {self._files[i]} {reason}")
        return img

    def _readable(self, i: int) -> tuple[int, np.ndarray]:
        """(i, image i), or the next index (cyclically) whose image decodes when image `i` does not.

        A pure function of the index and the files, so a resumed run replaces the same samples."""
        n = len(self)
        for step in range(n):
            j = (i + step) % n
            if j in self.read_failures:
                continue
            img, reason = self._try_read(j)
            if img is not None:
                return j, img
            self.read_failures[j] = reason
            warnings.warn(f"image {self._files[j]} {reason}: replaced by the next readable image", DataWarning,
                          stacklevel=3)
        raise DatasetError(f"no image listed in {self.ann_file} can be decoded")

    # -----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image BGR uint8, boxes xyxy float32 [n, 4], classes int64 [n]); arrays are copies."""
        if self._cache is not None:
            i, img = self._cache[i]
            img = img.copy()
        else:
            i, img = self._readable(i)  # a decode failure while training: a deterministic replacement
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
