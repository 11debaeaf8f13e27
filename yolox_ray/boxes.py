"""Box geometry shared by models, assigners, losses and evaluation.

The *raw output layout* every head produces (train mode) is fixed here:

    raw: [B, A, 5 + C] float, channel order [reg (tx, ty, tw, th), obj logit, C class logits]

with A = sum over levels (strides 8, 16, 32, in that order) of H_l · W_l · n_anchors, each level
flattened as (y, x, anchor): index = (y · W_l + x) · n_anchors + a.  `AnchorGrid` describes,
for every one of the A predictions, its grid cell, stride and (for anchor-based heads) anchor shape.

Decoding (§2.5): cx = (tx + gx)·s, cy = (ty + gy)·s; anchor-free w = exp(tw)·s, anchor-based
w = exp(tw)·anchor_w (same for h). No sigmoid, no +0.5 on the centre. Assigners use cell
centres (g + 0.5)·s. A grid built with `sigmoid_xy=True` (the YOLOv3 decode of the anchor-based
ablation rows, `model.box_decode="yolov3"`) decodes cx = (sigmoid(tx) + gx)·s instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class AnchorGrid:
    """Per-prediction geometry for A predictions (all float32 unless noted).

    grid_xy:   [A, 2] cell indices (gx, gy) as floats
    strides:   [A]    stride in input pixels
    anchor_wh: [A, 2] anchor shape in input pixels, or None for anchor-free heads
    level:     [A]    level index (0, 1, 2), long
    anchor_idx:[A]    index into the model's anchor list (0..3·levels-1) or -1 for anchor-free, long
    sizes:     ((H0, W0), (H1, W1), (H2, W2)) feature sizes
    n_anchors: predictions per cell
    sigmoid_xy: centre offsets decode through a sigmoid (YOLOv3) instead of linearly (YOLOX)
    """

    grid_xy: Tensor
    strides: Tensor
    anchor_wh: Tensor | None
    level: Tensor
    anchor_idx: Tensor
    sizes: tuple[tuple[int, int], ...]
    n_anchors: int
    sigmoid_xy: bool = False

    @property
    def num(self) -> int:
        return int(self.strides.shape[0])

    @property
    def centers(self) -> Tensor:
        """[A, 2] cell centres (gx + 0.5)·s, (gy + 0.5)·s used by the assigners."""
        return (self.grid_xy + 0.5) * self.strides[:, None]

    def to(self, device: torch.device | str) -> "AnchorGrid":
        return AnchorGrid(
            grid_xy=self.grid_xy.to(device),
            strides=self.strides.to(device),
            anchor_wh=None if self.anchor_wh is None else self.anchor_wh.to(device),
            level=self.level.to(device),
            anchor_idx=self.anchor_idx.to(device),
            sizes=self.sizes,
            n_anchors=self.n_anchors,
            sigmoid_xy=self.sigmoid_xy,
        )


def make_anchor_grid(
    sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    n_anchors: int = 1,
    anchors: Sequence[tuple[float, float]] | None = None,
    device: torch.device | str = "cpu",
    sigmoid_xy: bool = False,
) -> AnchorGrid:
    """Build the AnchorGrid for feature maps `sizes` [(H, W) per level]; see the module layout."""
    grids, strides_all, anchor_wh, levels, anchor_idx = [], [], [], [], []
    for level, ((h, w), stride) in enumerate(zip(sizes, strides)):
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        xy = torch.stack((xs, ys), dim=-1).reshape(-1, 1, 2).expand(-1, n_anchors, 2).reshape(-1, 2)
        grids.append(xy.float())
        count = h * w * n_anchors
        strides_all.append(torch.full((count,), float(stride), device=device))
        levels.append(torch.full((count,), level, dtype=torch.long, device=device))
        if n_anchors > 1:
            if anchors is None:
                raise ValueError("anchor-based grid needs anchor shapes")
            shapes = torch.tensor(anchors[level * n_anchors:(level + 1) * n_anchors], dtype=torch.float32, device=device)
            anchor_wh.append(shapes.repeat(h * w, 1))
            idx = torch.arange(level * n_anchors, (level + 1) * n_anchors, device=device)
            anchor_idx.append(idx.repeat(h * w))
        else:
            anchor_idx.append(torch.full((count,), -1, dtype=torch.long, device=device))
    return AnchorGrid(
        grid_xy=torch.cat(grids),
        strides=torch.cat(strides_all),
        anchor_wh=torch.cat(anchor_wh) if n_anchors > 1 else None,
        level=torch.cat(levels),
        anchor_idx=torch.cat(anchor_idx),
        sizes=tuple((int(h), int(w)) for h, w in sizes),
        n_anchors=n_anchors,
        sigmoid_xy=sigmoid_xy,
    )


def decode_xy_offsets(reg_xy: Tensor, grid: AnchorGrid) -> Tensor:
    """Raw centre outputs [..., A, 2] -> the offset from the cell's corner in strides (tx or sigmoid(tx))."""
    return reg_xy.sigmoid() if grid.sigmoid_xy else reg_xy


def decode_boxes(reg: Tensor, grid: AnchorGrid) -> Tensor:
    """Raw regression [..., A, 4] -> boxes (cx, cy, w, h) in input pixels (§2.5)."""
    strides = grid.strides[:, None].to(reg.dtype)
    xy = (decode_xy_offsets(reg[..., :2], grid) + grid.grid_xy.to(reg.dtype)) * strides
    scale = strides if grid.anchor_wh is None else grid.anchor_wh.to(reg.dtype)
    wh = torch.exp(reg[..., 2:4]) * scale
    return torch.cat((xy, wh), dim=-1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def pairwise_iou_cxcywh(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every box in a [..., N, 4] with every box in b [..., M, 4] -> [..., N, M].

    Same arithmetic as the official `bboxes_iou(xyxy=False)`: no epsilon in the denominator.
    """
    tl = torch.maximum(a[..., :, None, :2] - a[..., :, None, 2:] / 2, b[..., None, :, :2] - b[..., None, :, 2:] / 2)
    br = torch.minimum(a[..., :, None, :2] + a[..., :, None, 2:] / 2, b[..., None, :, :2] + b[..., None, :, 2:] / 2)
    area_a = a[..., 2] * a[..., 3]
    area_b = b[..., 2] * b[..., 3]
    inside = (tl < br).to(tl.dtype).prod(dim=-1)
    inter = (br - tl).prod(dim=-1) * inside
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter)


def aligned_iou_cxcywh(a: Tensor, b: Tensor, eps: float = 1e-16) -> Tensor:
    """Elementwise IoU of matching boxes a[i] and b[i] ([..., 4] each), as the official IOUloss."""
    tl = torch.maximum(a[..., :2] - a[..., 2:] / 2, b[..., :2] - b[..., 2:] / 2)
    br = torch.minimum(a[..., :2] + a[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2)
    inside = (tl < br).to(tl.dtype).prod(dim=-1)
    inter = (br - tl).prod(dim=-1) * inside
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter / (union + eps)
