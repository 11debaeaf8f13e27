"""YOLOv3 anchor shapes fitted to a dataset's training boxes at a training input size.

The quick ablation preset trains the anchor-based rows on the synthetic set, whose box shapes are not
COCO's: the COCO anchors scaled to 192 px leave 4 of 9 shapes unused and a mean best-shape IoU of
0.69. YOLOv3 itself picked its anchors by k-means on its training boxes (YOLOv2's recipe), so the
quick rows do the same. The fit is deterministic and cached next to the training annotations,
keyed on the annotation file's size and mtime, so every worker and rerun gets the same shapes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from yolox_ray.assign.yolov3_anchors import fit_anchors_kmeans
from yolox_ray.data.coco import DatasetError


def training_box_shapes(ann_file: str | Path, side: int) -> np.ndarray:
    """[N, 2] (w, h) of the non-crowd boxes of `ann_file` after the letterbox resize to `side`
    (ratio side / max(image h, w), as the train and val transforms)."""
    ann_file = Path(ann_file)
    try:
        data = json.loads(ann_file.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"annotation file {ann_file}: cannot read it ({exc})") from None
    ratio = {img["id"]: side / max(img["width"], img["height"]) for img in data.get("images", [])}
    shapes = [(a["bbox"][2] * ratio[a["image_id"]], a["bbox"][3] * ratio[a["image_id"]])
              for a in data.get("annotations", [])
              if not a.get("iscrowd", 0) and a["image_id"] in ratio and a["bbox"][2] > 0 and a["bbox"][3] > 0]
    if not shapes:
        raise DatasetError(f"annotation file {ann_file}: no boxes to fit anchors to")
    return np.asarray(shapes, dtype=np.float64)


def kmeans_anchors(ann_file: str | Path, side: int, k: int = 9) -> tuple[tuple[float, float], ...]:
    """k anchor shapes (px at `side`, sorted by area, 2 decimals) fitted by IoU k-means; cached."""
    ann_file = Path(ann_file)
    stat = ann_file.stat()
    cache = ann_file.with_name(f"{ann_file.stem}.anchors-k{k}-px{side}.json")
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "k": k, "side": side}
    if cache.is_file():
        try:
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                return tuple((float(w), float(h)) for w, h in cached["anchors"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a broken cache is refitted
    anchors = tuple((round(w, 2), round(h, 2)) for w, h in fit_anchors_kmeans(training_box_shapes(ann_file, side), k))
    try:  # read-only dataset folders (a shared COCO mount) just skip the cache
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "anchors": anchors}))
        os.replace(tmp, cache)
    except OSError:
        pass
    return anchors
