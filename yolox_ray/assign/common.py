"""Shared pieces of every assigner: the result type, label splitting, the geometry prior,
candidate compaction and scattering candidate results back to all anchors.

Every assigner has the calling convention (whole batch, no loop over images or GTs)::

    assigner(pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid, cfg) -> Assignment

    pred_boxes  [B, A, 4] float  decoded predicted boxes (cx, cy, w, h), input pixels (`boxes.decode_boxes`)
    obj_logits  [B, A]    float  objectness logits
    cls_logits  [B, A, C] float  class logits
    gt_boxes    [B, G, 4] float  ground truths (cx, cy, w, h), input pixels, padded
    gt_classes  [B, G]    long   class index in [0, C) (any value on padding rows)
    gt_valid    [B, G]    bool   real rows (see `split_labels`)
    grid        AnchorGrid for the A predictions
    cfg         AssignConfig

Predictions are only read (no gradient flows through an assignment).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from yolox_ray.boxes import AnchorGrid, pairwise_iou_cxcywh


@dataclass(frozen=True)
class Assignment:
    """Per-anchor result of an assigner for a batch.

    fg_mask:     [B, A] bool   positives
    matched_gt:  [B, A] long   index into the padded G axis of the matched GT, -1 for negatives
    matched_iou: [B, A] float  IoU(matched GT, predicted box) for positives (the soft cls target), 0 elsewhere
    dynamic_ks:  [B, G] long   positives each GT asked for before conflicts were resolved
                               (SimOTA/OTA: the dynamic k; others: proposed anchors), 0 on padding rows
    num_gt:      [B]    long   real GTs per image
    """

    fg_mask: Tensor
    matched_gt: Tensor
    matched_iou: Tensor
    dynamic_ks: Tensor
    num_gt: Tensor

    @property
    def num_fg(self) -> Tensor:
        """[B] positives per image."""
        return self.fg_mask.sum(dim=1)

    @staticmethod
    def cat(parts: list["Assignment"]) -> "Assignment":
        """Concatenate assignments of consecutive image chunks along the batch axis."""
        return Assignment(*(torch.cat([getattr(p, f) for p in parts]) for f in
                            ("fg_mask", "matched_gt", "matched_iou", "dynamic_ks", "num_gt")))


def split_labels(labels: Tensor, num_classes: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Padded labels [B, G, 5] rows (class, cx, cy, w, h) -> (gt_boxes [B,G,4], gt_classes [B,G], gt_valid [B,G]).

    A row is real iff w > 0 and h > 0 (docs/architecture.md). With `num_classes`, a real row whose
    class is not an integer in [0, num_classes) raises ValueError naming it.
    """
    if labels.dim() != 3 or labels.shape[-1] != 5:
        raise ValueError(f"labels must have shape [B, G, 5] (class, cx, cy, w, h), got {tuple(labels.shape)}")
    boxes = labels[..., 1:5].float()
    valid = (boxes[..., 2] > 0) & (boxes[..., 3] > 0)
    cls = labels[..., 0]
    if num_classes is not None and bool(valid.any()):
        real = cls[valid]
        bad = (real < 0) | (real >= num_classes) | (real != real.round())
        if bool(bad.any()):
            raise ValueError(f"labels: class {real[bad][0].item()!r} is not an integer in [0, {num_classes})")
    return boxes, cls.long(), valid


def empty_assignment(batch: int, num_anchors: int, gt_valid: Tensor, device: torch.device) -> Assignment:
    """All anchors negative (no GT in the batch, or no candidate anchor anywhere)."""
    return Assignment(
        fg_mask=torch.zeros(batch, num_anchors, dtype=torch.bool, device=device),
        matched_gt=torch.full((batch, num_anchors), -1, dtype=torch.long, device=device),
        matched_iou=torch.zeros(batch, num_anchors, dtype=torch.float32, device=device),
        dynamic_ks=torch.zeros(gt_valid.shape, dtype=torch.long, device=device),
        num_gt=gt_valid.sum(dim=1),
    )


def geometry_prior(gt_boxes: Tensor, gt_valid: Tensor, grid: AnchorGrid, geometry: str,
                   center_radius: float) -> tuple[Tensor, Tensor]:
    """The SimOTA geometry prior (yolox.md §4.1) for every (image, GT, anchor).

    Returns (candidate [B, A] bool, unpenalised [B, G, A] bool):
      "center":         candidate = in-centre of any real GT; unpenalised = in-centre of that GT.
      "box_and_center": candidate = in-box or in-centre of any real GT; unpenalised = in-box and in-centre.
    In-centre: strictly inside the square of half-side center_radius·stride around the GT centre;
    in-box: anchor centre strictly inside the GT box. Written as the official differences `> 0` so
    boundary cases round the same way. The tests are separable in x and y, so per level they run on
    [B, G, W] and [B, G, H] and only the final AND is [B, G, H·W·n_anchors].
    """
    if geometry not in ("center", "box_and_center"):
        raise ValueError(f"unknown geometry {geometry!r} ('center' or 'box_and_center')")
    centers = grid.centers
    radius_all = grid.strides * center_radius  # [A], as the official stride * radius in float32
    cx, cy = gt_boxes[..., 0:1], gt_boxes[..., 1:2]
    half_w, half_h = 0.5 * gt_boxes[..., 2:3], 0.5 * gt_boxes[..., 3:4]
    per = grid.n_anchors
    in_center_levels, in_box_levels = [], []
    start = 0
    for height, width in grid.sizes:
        count = height * width * per
        xs = centers[start:start + width * per:per, 0]  # [W] anchor-centre x of each column
        ys = centers[start:start + count:width * per, 1]  # [H] anchor-centre y of each row
        radius = radius_all[start:start + 1]
        in_x = ((xs - (cx - radius)) > 0) & (((cx + radius) - xs) > 0)
        in_y = ((ys - (cy - radius)) > 0) & (((cy + radius) - ys) > 0)
        in_center_levels.append(_outer(in_y, in_x, per))
        if geometry == "box_and_center":
            in_x = ((xs - (cx - half_w)) > 0) & (((cx + half_w) - xs) > 0)
            in_y = ((ys - (cy - half_h)) > 0) & (((cy + half_h) - ys) > 0)
            in_box_levels.append(_outer(in_y, in_x, per))
        start += count
    in_center = torch.cat(in_center_levels, dim=2) & gt_valid[..., None]
    if geometry == "center":
        return in_center.any(dim=1), in_center
    in_box = torch.cat(in_box_levels, dim=2) & gt_valid[..., None]
    return (in_box | in_center).any(dim=1), in_box & in_center


def _outer(in_y: Tensor, in_x: Tensor, per: int) -> Tensor:
    """[B, G, H] and [B, G, W] -> [B, G, H·W·per] in the (y, x, anchor) layout of `boxes.py`."""
    both = in_y[..., :, None] & in_x[..., None, :]
    if per > 1:
        both = both[..., None].expand(*both.shape, per)
    return both.reshape(*both.shape[:2], in_y.shape[-1] * in_x.shape[-1] * per)


@dataclass(frozen=True)
class Candidates:
    """Per image, the candidate anchors packed to the front of an [B, N] index (ascending anchor order).

    index: [B, N] long anchor index (0 on padding), valid: [B, N] bool, and the (image, slot) ->
    anchor map of all real slots for scattering back: rows, slots, anchors (1-D, same length).
    """

    index: Tensor
    valid: Tensor
    rows: Tensor
    slots: Tensor
    anchors: Tensor

    @property
    def size(self) -> int:
        return int(self.index.shape[1])


def compact(candidate: Tensor) -> Candidates:
    """Pack the True entries of candidate [B, A] to the front of each row (order kept)."""
    batch = candidate.shape[0]
    counts = candidate.sum(dim=1)
    size = int(counts.max()) if batch else 0
    rows, anchors = candidate.nonzero(as_tuple=True)
    slots = (candidate.cumsum(dim=1) - 1)[rows, anchors]
    index = torch.zeros(batch, size, dtype=torch.long, device=candidate.device)
    index[rows, slots] = anchors
    valid = torch.arange(size, device=candidate.device)[None, :] < counts[:, None]
    return Candidates(index=index, valid=valid, rows=rows, slots=slots, anchors=anchors)


def scatter_to_anchors(cands: Candidates, num_anchors: int, fg: Tensor, matched: Tensor,
                       matched_iou: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Candidate-slot results [B, N] -> per-anchor [B, A] (fg mask, matched GT or -1, IoU or 0)."""
    batch = fg.shape[0]
    device = fg.device
    fg_mask = torch.zeros(batch, num_anchors, dtype=torch.bool, device=device)
    matched_gt = torch.full((batch, num_anchors), -1, dtype=torch.long, device=device)
    iou = torch.zeros(batch, num_anchors, dtype=torch.float32, device=device)
    r, s, a = cands.rows, cands.slots, cands.anchors
    fg_mask[r, a] = fg[r, s]
    matched_gt[r, a] = torch.where(fg[r, s], matched[r, s], -1)
    iou[r, a] = torch.where(fg[r, s], matched_iou[r, s], 0.0)
    return fg_mask, matched_gt, iou


def matched_pred_iou(pred_boxes: Tensor, gt_boxes: Tensor, matched_gt: Tensor) -> Tensor:
    """[B, A] IoU between each positive's predicted box and its matched GT (0 for negatives).

    Same arithmetic as the SimOTA IoU matrix (official `bboxes_iou`, no epsilon).
    """
    iou = torch.zeros(matched_gt.shape, dtype=torch.float32, device=matched_gt.device)
    b, a = (matched_gt >= 0).nonzero(as_tuple=True)
    target = gt_boxes[b, matched_gt[b, a]]
    iou[b, a] = pairwise_iou_cxcywh(target[:, None, :], pred_boxes[b, a][:, None, :])[:, 0, 0].float()
    return iou


def check_inputs(pred_boxes: Tensor, obj_logits: Tensor, cls_logits: Tensor, gt_boxes: Tensor,
                 gt_classes: Tensor, gt_valid: Tensor, grid: AnchorGrid) -> None:
    """Raise ValueError naming the first shape mismatch of the assigner calling convention."""
    if pred_boxes.dim() != 3 or pred_boxes.shape[-1] != 4:
        raise ValueError(f"pred_boxes must be [B, A, 4], got {tuple(pred_boxes.shape)}")
    batch, anchors = pred_boxes.shape[:2]
    if anchors != grid.num:
        raise ValueError(f"predictions have {anchors} anchors but the AnchorGrid has {grid.num}")
    if obj_logits.shape != (batch, anchors):
        raise ValueError(f"obj_logits must be [B, A] = {(batch, anchors)}, got {tuple(obj_logits.shape)}")
    if cls_logits.dim() != 3 or cls_logits.shape[:2] != (batch, anchors):
        raise ValueError(f"cls_logits must be [B, A, C] with B, A = {(batch, anchors)}, got {tuple(cls_logits.shape)}")
    if gt_boxes.dim() != 3 or gt_boxes.shape[0] != batch or gt_boxes.shape[-1] != 4:
        raise ValueError(f"gt_boxes must be [B, G, 4] with B = {batch}, got {tuple(gt_boxes.shape)}")
    if gt_classes.shape != gt_boxes.shape[:2] or gt_valid.shape != gt_boxes.shape[:2]:
        raise ValueError(f"gt_classes and gt_valid must be [B, G] = {tuple(gt_boxes.shape[:2])}, got "
                         f"{tuple(gt_classes.shape)} and {tuple(gt_valid.shape)}")
    if gt_valid.dtype != torch.bool:
        raise ValueError(f"gt_valid must be a bool tensor, got {gt_valid.dtype}")
    real = gt_classes[gt_valid]
    bad = real[(real < 0) | (real >= cls_logits.shape[-1])]
    if bad.numel():
        raise ValueError(f"gt_classes of real GTs must be in [0, {cls_logits.shape[-1]}), got {bad[0].item()}")


def level_offsets(grid: AnchorGrid) -> list[int]:
    """Index of the first prediction of every level in the flattened A axis (layout of `boxes.py`)."""
    offsets, start = [], 0
    for h, w in grid.sizes:
        offsets.append(start)
        start += h * w * grid.n_anchors
    if start != grid.num:
        raise ValueError(f"AnchorGrid sizes {grid.sizes} x {grid.n_anchors} anchors do not add up to {grid.num}")
    return offsets


def resolve_pairs(pair_anchor: Tensor, pair_ok: Tensor, priority: Tensor, num_anchors: int) -> tuple[Tensor, Tensor]:
    """Turn proposed (GT, anchor) pairs into a one-GT-per-anchor assignment.

    pair_anchor [B, G, P] long anchor index proposed by GT g (any value where not pair_ok),
    pair_ok [B, G, P] bool, priority [B, G, P] float. An anchor proposed by several GTs goes to the
    highest priority, ties to the lowest GT index. Returns (fg_mask [B, A], matched_gt [B, A], -1 = none).
    """
    batch, num_gt, per = pair_anchor.shape
    device = pair_anchor.device
    b, g, p = pair_ok.nonzero(as_tuple=True)
    anchor = pair_anchor[b, g, p]
    prio = priority[b, g, p].float()
    slot = b * num_anchors + anchor
    best = torch.full((batch * num_anchors,), float("-inf"), device=device).scatter_reduce(
        0, slot, prio, reduce="amax", include_self=True)
    top = prio == best[slot]
    first = torch.full((batch * num_anchors,), num_gt, dtype=torch.long, device=device).scatter_reduce(
        0, slot[top], g[top], reduce="amin", include_self=True)
    matched = first.view(batch, num_anchors)
    fg = matched < num_gt
    return fg, torch.where(fg, matched, torch.full_like(matched, -1))
