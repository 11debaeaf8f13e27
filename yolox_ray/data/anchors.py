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


def kmeans_anchors(ann_file: str | Path, side: int, k: int = 9,
                   level_bounds: tuple[float, ...] | None = None) -> tuple[tuple[float, float], ...]:
    """k anchor shapes (px at `side`, 2 decimals) fitted by IoU k-means on the training boxes; cached.

    level_bounds: the longer-side bounds (px at `side`) that split the boxes over the 3 levels (the
    FCOS bounds the anchor-free rows use); then k/3 shapes are fitted per level on that level's boxes, so
    an object lands on the same level in the anchor-based rows as in the anchor-free ones. Without
    them, the k shapes sorted by area go 3 per level (YOLOv3's split), which on a proxy whose boxes
    span less than the strides' 4x range puts a third of them on the coarsest grid (measured: the
    YOLOv3 row learned several times slower that way). A level without enough boxes gets the shapes
    of the level below it doubled (one stride step).
    """
    ann_file = Path(ann_file)
    stat = ann_file.stat()
    bounds = None if level_bounds is None else [round(float(b), 4) for b in level_bounds]
    tag = "" if bounds is None else "-levels-" + "-".join(f"{b:g}" for b in bounds)
    cache = ann_file.with_name(f"{ann_file.stem}.anchors-k{k}-px{side}{tag}.json")
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "k": k, "side": side, "level_bounds": bounds}
    if cache.is_file():
        try:
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                return tuple((float(w), float(h)) for w, h in cached["anchors"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a broken cache is refitted
    shapes = training_box_shapes(ann_file, side)
    if bounds is None:
        fitted = fit_anchors_kmeans(shapes, k)
    else:
        fitted = _fit_per_level(shapes, k, bounds)
    anchors = tuple((round(w, 2), round(h, 2)) for w, h in fitted)
    try:  # read-only dataset folders (a shared COCO mount) just skip the cache
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "anchors": anchors}))
        os.replace(tmp, cache)
    except OSError:
        pass
    return anchors


def _fit_per_level(shapes: np.ndarray, k: int, bounds: list[float]) -> list[tuple[float, float]]:
    levels = len(bounds) + 1
    if k % levels:
        raise ValueError(f"k={k} anchors do not split evenly over {levels} levels")
    per = k // levels
    level = (shapes.max(axis=1)[:, None] > np.asarray(bounds)[None, :]).sum(axis=1)
    fitted: list[list[tuple[float, float]] | None] = []
    for i in range(levels):
        mine = shapes[level == i]
        enough = len(mine) >= per and len(np.unique(mine, axis=0)) >= per
        fitted.append(list(fit_anchors_kmeans(mine, per)) if enough else None)
    if all(f is None for f in fitted):
        raise DatasetError(f"no level has {per} distinct box shapes to fit anchors to")
    # Empty levels: one stride step (x2) from the nearest fitted level below, else (/2) from above.
    for i in range(levels):
        if fitted[i] is None:
            below = next((j for j in range(i - 1, -1, -1) if fitted[j] is not None), None)
            ref = below if below is not None else next(j for j in range(i + 1, levels) if fitted[j] is not None)
            scale = 2.0 ** (i - ref)
            fitted[i] = [(w * scale, h * scale) for w, h in fitted[ref]]
    return [shape for level_shapes in fitted for shape in level_shapes]
