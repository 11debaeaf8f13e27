"""YOLOv3 anchor-based assignment (paper Table 2 rows 1-3) and k-means anchor fitting.

Each GT goes to the anchor shape (of all 3·levels shapes) with the highest shape IoU (boxes aligned at
a common centre), at the grid cell holding the GT centre on that shape's level. With
`cfg.anchor_iou_threshold` set, every other shape whose shape IoU is strictly above it is taken as
well (at its own level's centre cell). An anchor claimed by several GTs goes to the GT with the
highest shape IoU for it, ties to the lowest GT index.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from yolox_ray.assign.common import (
    Assignment,
    check_inputs,
    level_offsets,
    matched_pred_iou,
    resolve_pairs,
)
from yolox_ray.boxes import AnchorGrid
from yolox_ray.config import AssignConfig


def shape_iou(wh_a: Tensor, wh_b: Tensor) -> Tensor:
    """IoU of boxes sharing a centre: wh_a [..., 2] vs wh_b [K, 2] -> [..., K]."""
    inter = torch.minimum(wh_a[..., None, 0], wh_b[:, 0]) * torch.minimum(wh_a[..., None, 1], wh_b[:, 1])
    return inter / (wh_a[..., None, 0] * wh_a[..., None, 1] + wh_b[:, 0] * wh_b[:, 1] - inter)


def yolov3(pred_boxes: Tensor, obj_logits: Tensor, cls_logits: Tensor, gt_boxes: Tensor,
           gt_classes: Tensor, gt_valid: Tensor, grid: AnchorGrid,
           cfg: AssignConfig = AssignConfig(assigner="yolov3")) -> Assignment:
    """YOLOv3 assignment for a batch (needs an anchor-based grid); arguments as `assign.simota`.

    Predictions are only used for matched_iou. dynamic_ks = anchors each GT proposed.
    """
    check_inputs(pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid)
    if grid.anchor_wh is None or grid.n_anchors < 2:
        raise ValueError("the yolov3 assigner needs an anchor-based AnchorGrid (n_anchors=3, anchor_wh set)")
    with torch.no_grad():
        device = pred_boxes.device
        gt_boxes = gt_boxes.float()
        per_cell = grid.n_anchors
        num_shapes = per_cell * len(grid.sizes)
        shapes = torch.zeros(num_shapes, 2, device=device)
        shapes[grid.anchor_idx] = grid.anchor_wh.float()
        level = torch.arange(num_shapes, device=device) // per_cell
        offsets = torch.tensor(level_offsets(grid), device=device)[level]
        stride = grid.strides[offsets].float()
        height = torch.tensor([h for h, _ in grid.sizes], device=device)[level]
        width = torch.tensor([w for _, w in grid.sizes], device=device)[level]

        ious = shape_iou(gt_boxes[..., 2:4], shapes)  # [B, G, S]
        take = torch.nn.functional.one_hot(ious.argmax(dim=-1), num_shapes).bool()
        if cfg.anchor_iou_threshold is not None:
            take |= ious > cfg.anchor_iou_threshold
        take &= gt_valid[..., None]
        gx = torch.minimum(torch.floor(gt_boxes[..., 0:1] / stride).long().clamp(min=0), width - 1)
        gy = torch.minimum(torch.floor(gt_boxes[..., 1:2] / stride).long().clamp(min=0), height - 1)
        anchor = offsets + (gy * width + gx) * per_cell + (torch.arange(num_shapes, device=device) % per_cell)
        fg, matched = resolve_pairs(anchor, take, ious, grid.num)
        return Assignment(fg_mask=fg, matched_gt=matched,
                          matched_iou=matched_pred_iou(pred_boxes.float(), gt_boxes, matched),
                          dynamic_ks=take.sum(dim=-1), num_gt=gt_valid.sum(dim=1))


def fit_anchors_kmeans(wh: Tensor | np.ndarray | Sequence[Sequence[float]], k: int = 9,
                       max_iter: int = 300) -> tuple[tuple[float, float], ...]:
    """Fit k anchor shapes to box sizes wh [N, 2] (px) by k-means with distance 1 − shape IoU (YOLOv2).

    Deterministic: centroids start at evenly spaced area quantiles of the distinct shapes; a cluster that empties
    keeps its centroid. Returns k (w, h) pairs sorted by area, ready for `ModelConfig.anchors`.
    """
    data = torch.as_tensor(np.asarray(wh, dtype=np.float64))
    if data.dim() != 2 or data.shape[1] != 2:
        raise ValueError(f"wh must have shape [N, 2], got {tuple(data.shape)}")
    if not bool(torch.isfinite(data).all()) or bool((data <= 0).any()):
        raise ValueError("wh must hold finite, positive widths and heights")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    distinct = torch.unique(data, dim=0)
    if distinct.shape[0] < k:
        raise ValueError(f"need at least k={k} distinct box shapes, got {distinct.shape[0]}")
    distinct = distinct[torch.argsort(distinct[:, 0] * distinct[:, 1], stable=True)]
    picks = ((torch.arange(k, dtype=torch.float64) + 0.5) / k * distinct.shape[0]).long()
    centroids = distinct[picks]
    assign = None
    for _ in range(max_iter):
        new_assign = shape_iou(data, centroids).argmax(dim=1)
        if assign is not None and bool((new_assign == assign).all()):
            break
        assign = new_assign
        sums = torch.zeros_like(centroids).index_add_(0, assign, data)
        counts = torch.bincount(assign, minlength=k).to(data.dtype)[:, None]
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    centroids = centroids[torch.argsort(centroids[:, 0] * centroids[:, 1], stable=True)]
    return tuple((float(w), float(h)) for w, h in centroids.tolist())
