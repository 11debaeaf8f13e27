"""Fixed-geometry anchor-free assigners of the paper's roadmap (Table 2 rows 4 and 5).

A GT is handled by one FPN level chosen FCOS-style by its longer side m and
`cfg.level_ranges` = (r1, r2): m <= r1 → level 0 (stride 8), r1 < m <= r2 → level 1, m > r2 →
level 2 (default (128, 256) px: FCOS's 64 / 128 px bounds on the largest centre-to-side distance,
which is about half the longer side). `center` makes the single cell holding the GT centre positive;
`multi_positive` the 3×3 cells around it on that level (cells off the feature map dropped). An
anchor claimed by several GTs goes to the smallest GT (FCOS), ties to the lowest GT index.
"""

from __future__ import annotations

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


def center(pred_boxes: Tensor, obj_logits: Tensor, cls_logits: Tensor, gt_boxes: Tensor,
           gt_classes: Tensor, gt_valid: Tensor, grid: AnchorGrid,
           cfg: AssignConfig = AssignConfig(assigner="center")) -> Assignment:
    """One positive per GT: its centre cell on its scale-range level. Arguments as `assign.simota`."""
    return _centre_cells(pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid, cfg, 0)


def multi_positive(pred_boxes: Tensor, obj_logits: Tensor, cls_logits: Tensor, gt_boxes: Tensor,
                   gt_classes: Tensor, gt_valid: Tensor, grid: AnchorGrid,
                   cfg: AssignConfig = AssignConfig(assigner="multi_positive")) -> Assignment:
    """The 3×3 cells around each GT's centre cell on its level. Arguments as `assign.simota`."""
    return _centre_cells(pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid, cfg, 1)


def fcos_level(gt_wh: Tensor, level_ranges: tuple[float, ...]) -> Tensor:
    """[...] level index of boxes gt_wh [..., 2] by longer side: the count of range bounds below it."""
    side = gt_wh.max(dim=-1).values
    bounds = torch.tensor(level_ranges, dtype=side.dtype, device=side.device)
    return (side[..., None] > bounds).sum(dim=-1)


def _centre_cells(pred_boxes: Tensor, obj_logits: Tensor, cls_logits: Tensor, gt_boxes: Tensor,
                  gt_classes: Tensor, gt_valid: Tensor, grid: AnchorGrid, cfg: AssignConfig,
                  reach: int) -> Assignment:
    check_inputs(pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid)
    if grid.n_anchors != 1:
        raise ValueError(f"the {cfg.assigner!r} assigner needs an anchor-free AnchorGrid (n_anchors=1), "
                         f"got n_anchors={grid.n_anchors}")
    if len(cfg.level_ranges) != len(grid.sizes) - 1:
        raise ValueError(f"assign.level_ranges has {len(cfg.level_ranges)} bounds but the grid has "
                         f"{len(grid.sizes)} levels (needs {len(grid.sizes) - 1})")
    with torch.no_grad():
        device = pred_boxes.device
        gt_boxes = gt_boxes.float()
        offsets = torch.tensor(level_offsets(grid), device=device)
        heights = torch.tensor([h for h, _ in grid.sizes], device=device)
        widths = torch.tensor([w for _, w in grid.sizes], device=device)
        level = fcos_level(gt_boxes[..., 2:4], cfg.level_ranges)  # [B, G]
        stride = grid.strides[offsets][level].float()
        height, width = heights[level], widths[level]
        cx = torch.minimum(torch.floor(gt_boxes[..., 0] / stride).long().clamp(min=0), width - 1)
        cy = torch.minimum(torch.floor(gt_boxes[..., 1] / stride).long().clamp(min=0), height - 1)
        steps = torch.arange(-reach, reach + 1, device=device)
        dy, dx = torch.meshgrid(steps, steps, indexing="ij")
        gx = cx[..., None] + dx.reshape(-1)  # [B, G, P]
        gy = cy[..., None] + dy.reshape(-1)
        inside = (gx >= 0) & (gx < width[..., None]) & (gy >= 0) & (gy < height[..., None])
        take = inside & gt_valid[..., None]
        anchor = offsets[level][..., None] + gy * width[..., None] + gx
        area = (gt_boxes[..., 2] * gt_boxes[..., 3])[..., None].expand_as(gx)
        fg, matched = resolve_pairs(anchor, take, -area, grid.num)
        return Assignment(fg_mask=fg, matched_gt=matched,
                          matched_iou=matched_pred_iou(pred_boxes.float(), gt_boxes, matched),
                          dynamic_ks=take.sum(dim=-1), num_gt=gt_valid.sum(dim=1))
