"""Exact greedy class-aware NMS, vectorised in torch (torchvision is not a dependency).

Greedy NMS keeps box i (in descending score order within its group) iff no *kept* earlier box of
the group overlaps it by IoU > threshold.  That is a triangular system keep = f(keep); iterating
it from "all kept" fixes one more position per pass, and its fixed point is exactly the greedy
result.  Each pass is one scatter over the overlapping pairs, so the Python loop runs over passes
(the longest suppression chain, a handful in practice), never over boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor

_PAIR_CHUNK = 1 << 22  # candidate pairs per chunk: bounds memory for crowded groups


def pairwise_iou_xyxy(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise IoU of matching xyxy boxes a[i], b[i] (torchvision's arithmetic: no epsilon)."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter)


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """Indices of the boxes kept by per-group greedy NMS, sorted by decreasing score.

    boxes [N, 4] xyxy, scores [N], groups [N] integer (e.g. class, or image·C + class).
    """
    n = boxes.shape[0]
    device = boxes.device
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    by_score = torch.argsort(scores, descending=True, stable=True)
    order = by_score[torch.argsort(groups[by_score], stable=True)]  # group-major, score-descending
    sorted_boxes = boxes[order].float()
    g = groups[order]
    # Each position i pairs with the later positions of its group: i+1 .. group_end-1.
    _, counts = torch.unique_consecutive(g, return_counts=True)
    group_end = torch.repeat_interleave(torch.cumsum(counts, 0), counts)
    pair_counts = group_end - torch.arange(n, device=device) - 1
    pair_end = torch.cumsum(pair_counts, 0)
    pair_start = pair_end - pair_counts
    total = int(pair_end[-1])
    src_parts, dst_parts = [], []
    for p0 in range(0, total, _PAIR_CHUNK):
        p = torch.arange(p0, min(total, p0 + _PAIR_CHUNK), device=device)
        src = torch.searchsorted(pair_end, p, right=True)
        dst = src + 1 + (p - pair_start[src])
        over = pairwise_iou_xyxy(sorted_boxes[src], sorted_boxes[dst]) > iou_threshold
        src_parts.append(src[over])
        dst_parts.append(dst[over])
    keep = torch.ones(n, dtype=torch.bool, device=device)
    if src_parts:
        src, dst = torch.cat(src_parts), torch.cat(dst_parts)
        while True:
            hits = torch.zeros(n, dtype=torch.int32, device=device).index_add_(0, dst, keep[src].int())
            new_keep = hits == 0
            if torch.equal(new_keep, keep):
                break
            keep = new_keep
    kept = order[keep]
    return kept[torch.argsort(scores[kept], descending=True, stable=True)]
