"""Detections in original-image pixels → COCO results JSON → COCOeval (12 stats + per-class AP)."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
from pycocotools.cocoeval import COCOeval

from yolox_ray.data.coco import COCODataset
from yolox_ray.metrics import COCO_STAT_KEYS


@dataclass(frozen=True)
class EvalResult:
    """COCO metrics of one evaluation; AP values are fractions (0..1), -1 where COCOeval has no GT."""

    stats: dict[str, float]
    per_class_ap: dict[str, float]  # class name → AP@[.5:.95]; nan for a class without GT
    forward_ms: float = 0.0  # average model time per image
    nms_ms: float = 0.0  # average postprocess (filter + NMS) time per image
    num_images: int = 0
    num_detections: int = 0
    summary: str = field(default="", repr=False)  # pycocotools' printed summary


def to_coco_results(dataset: COCODataset, detections: Mapping[int, np.ndarray]) -> list[dict]:
    """COCO result dicts from {image_id: [n, 6] (x1, y1, x2, y2, score, class_index)}."""
    known = set(dataset.image_ids)
    class_ids = np.asarray(dataset.class_ids, np.int64)
    results: list[dict] = []
    for image_id, det in detections.items():
        if int(image_id) not in known:
            raise ValueError(f"detections for image id {image_id}, which is not in {dataset.ann_file}")
        det = np.asarray(det, np.float64).reshape(-1, 6)
        if len(det) == 0:
            continue
        cls = det[:, 5].astype(np.int64)
        if cls.min() < 0 or cls.max() >= len(class_ids):
            raise ValueError(f"image {image_id}: class index outside [0, {len(class_ids)})")
        xywh = np.concatenate((det[:, :2], det[:, 2:4] - det[:, :2]), axis=1).tolist()
        cats = class_ids[cls].tolist()
        scores = det[:, 4].tolist()
        results.extend({"image_id": int(image_id), "category_id": c, "bbox": b, "score": s}
                       for b, c, s in zip(xywh, cats, scores))
    return results


def evaluate_predictions(dataset: COCODataset, detections: Mapping[int, np.ndarray],
                         results_file: str | Path | None = None) -> EvalResult:
    """Run COCOeval (bbox) on detections {image_id: [n, 6] (x1, y1, x2, y2, score, class_index)}.

    Images absent from `detections` count as having no detections.  With no detections at all
    every stat is 0 (pycocotools cannot load an empty result list).
    """
    results = to_coco_results(dataset, detections)
    if results_file is not None:
        Path(results_file).write_text(json.dumps(results))
    gt = dataset.coco
    names = dataset.class_names
    if not results:
        has_gt = {c: len(gt.getAnnIds(catIds=[c], iscrowd=False)) > 0 for c in dataset.class_ids}
        per_class = {n: (0.0 if has_gt[c] else float("nan")) for n, c in zip(names, dataset.class_ids)}
        return EvalResult({k: 0.0 for k in COCO_STAT_KEYS}, per_class, num_images=len(dataset),
                          summary="no detections")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {k: float(v) for k, v in zip(COCO_STAT_KEYS, ev.stats)}
    precision = ev.eval["precision"]  # [T, R, K, A, M]; K follows ev.params.catIds (sorted ids)
    per_class: dict[str, float] = {}
    cat_pos = {c: k for k, c in enumerate(ev.params.catIds)}
    for name, cat in zip(names, dataset.class_ids):
        p = precision[:, :, cat_pos[cat], 0, -1]  # all areas, maxDets 100
        p = p[p > -1]
        per_class[name] = float(p.mean()) if p.size else float("nan")
    return EvalResult(stats, per_class, num_images=len(dataset), num_detections=len(results),
                      summary=out.getvalue())
