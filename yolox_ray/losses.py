"""The YOLOX loss (yolox.md §4.4, §5): label assignment, then IoU + obj + cls (+ L1) terms.

    total = reg_weight·Σ(1 − IoU²) + obj_weight·Σ BCE(obj, fg) + cls_weight·Σ BCE(cls, onehot·IoU)
            + l1_weight·Σ|reg − l1 target|            (each Σ divided by N_fg)

N_fg = max(1, number of positives in the batch of this process). DDP: like the official code, the
count is **not** all-reduced — each process normalises by its own positives and DDP then averages
the gradients. Pass `num_fg_reduce` (e.g. all-reduce / world size) to normalise by a shared count
instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from yolox_ray.assign import Assignment, build_assigner, split_labels
from yolox_ray.boxes import AnchorGrid, decode_boxes, decode_xy_offsets, pairwise_iou_cxcywh
from yolox_ray.config import AssignConfig, LossConfig


@dataclass(frozen=True)
class LossOutput:
    """total: scalar with grad; terms: weighted scalars iou/obj/cls/l1 (each already / N_fg);
    num_fg: positives in the batch; num_gt: real GTs; fg_per_gt: num_fg / max(1, num_gt) (the
    official log's "num_fg"); assignment: the per-anchor assignment (for inspection);
    diagnostics: sums over this batch's positives (see `assignment_diagnostics`)."""

    total: Tensor
    terms: dict[str, Tensor]
    num_fg: int
    num_gt: int
    fg_per_gt: float
    assignment: Assignment
    diagnostics: dict[str, float]

    def log_dict(self) -> dict[str, float]:
        """Plain floats: total_loss, iou_loss, obj_loss, cls_loss, l1_loss, num_fg, num_gt, fg_per_gt."""
        out = {"total_loss": float(self.total.detach())}
        out.update({f"{name}_loss": float(value.detach()) for name, value in self.terms.items()})
        out.update(num_fg=float(self.num_fg), num_gt=float(self.num_gt), fg_per_gt=float(self.fg_per_gt))
        out.update(diagnostics_means(self.diagnostics, self.num_fg))
        return out


# Per-positive sums the trainer all-reduces and averages over positives; the means are logged as
# `pos_iou` (mean IoU of a positive's box with its GT), `pos_iou_zero` (fraction of positives whose
# box misses its GT: no IoU-loss gradient, and under YOLOX's IoU-weighted class target a class target
# of 0) and `pos_score` (mean obj x class score of a positive for its GT's class).
DIAGNOSTIC_SUMS = ("pos_iou_sum", "pos_iou_zero_sum", "pos_score_sum")


def assignment_diagnostics(matched_iou: Tensor, obj_logits: Tensor, cls_logits: Tensor,
                           classes: Tensor) -> dict[str, float]:
    """Sums over positives: matched_iou, obj_logits [N], cls_logits [N, C], classes [N] (GT class)."""
    with torch.no_grad():
        score = obj_logits.sigmoid() * cls_logits.gather(1, classes[:, None])[:, 0].sigmoid()
        return {"pos_iou_sum": float(matched_iou.sum()), "pos_iou_zero_sum": float((matched_iou <= 0).sum()),
                "pos_score_sum": float(score.sum())}


def diagnostics_means(sums: dict[str, float], num_fg: float) -> dict[str, float]:
    """{pos_iou, pos_iou_zero, pos_score} from the DIAGNOSTIC_SUMS over `num_fg` positives."""
    n = max(float(num_fg), 1.0)
    return {name[:-4]: float(sums.get(name, 0.0)) / n for name in DIAGNOSTIC_SUMS}


def ignore_mask(pred_boxes: Tensor, gt_boxes: Tensor, gt_valid: Tensor, fg: Tensor, threshold: float) -> Tensor:
    """[B, A] bool: negatives whose predicted box overlaps some real GT above `threshold` (YOLOv3's
    ignore rule: such a prediction is neither pushed to object nor to background)."""
    g = int(gt_valid.sum(dim=1).max()) if gt_valid.numel() else 0
    if g == 0:
        return torch.zeros_like(fg)
    # Real GTs come first in the padded labels, so the first g columns hold them all.
    iou = pairwise_iou_cxcywh(pred_boxes, gt_boxes[:, :g])  # [B, A, g]
    iou = torch.where(gt_valid[:, None, :g], iou.nan_to_num(0.0), iou.new_zeros(()))
    return (iou.amax(dim=-1) > threshold) & ~fg


def iou_loss(pred: Tensor, target: Tensor, kind: str = "iou") -> Tensor:
    """Per-box loss for aligned cxcywh boxes [..., 4]: "iou" 1 − IoU², "giou" 1 − clamp(GIoU, −1, 1).

    IoU = inter / (union + 1e-16) as the official IOUloss.
    """
    if kind not in ("iou", "giou"):
        raise ValueError(f"unknown IoU loss {kind!r} (iou, giou)")
    p_tl, p_br = pred[..., :2] - pred[..., 2:] / 2, pred[..., :2] + pred[..., 2:] / 2
    t_tl, t_br = target[..., :2] - target[..., 2:] / 2, target[..., :2] + target[..., 2:] / 2
    tl, br = torch.maximum(p_tl, t_tl), torch.minimum(p_br, t_br)
    inter = (br - tl).prod(dim=-1) * (tl < br).to(tl.dtype).prod(dim=-1)
    union = pred[..., 2] * pred[..., 3] + target[..., 2] * target[..., 3] - inter
    iou = inter / (union + 1e-16)
    if kind == "iou":
        return 1.0 - iou**2
    enclosing = (torch.maximum(p_br, t_br) - torch.minimum(p_tl, t_tl)).prod(dim=-1)
    giou = iou - (enclosing - union) / enclosing.clamp(min=1e-16)
    return 1.0 - giou.clamp(min=-1.0, max=1.0)


def l1_targets(gt_boxes: Tensor, grid_xy: Tensor, strides: Tensor, anchor_wh: Tensor | None) -> Tensor:
    """Raw-space targets [N, 4]: (cx/s − gx, cy/s − gy, log(w/s + 1e-8), log(h/s + 1e-8)); anchor-based
    heads divide w, h by the anchor shape instead of the stride."""
    s = strides[:, None]
    xy = gt_boxes[:, :2] / s - grid_xy
    scale = s if anchor_wh is None else anchor_wh
    wh = torch.log(gt_boxes[:, 2:4] / scale + 1e-8)
    return torch.cat([xy, wh], dim=1)


class YOLOXLoss:
    """YOLOXLoss(loss_cfg, assign_cfg, num_classes)(raw, grid, labels, use_l1) -> LossOutput.

    raw [B, A, 5 + C] (train-mode head output, layout of `boxes.py`), grid the AnchorGrid of those A
    predictions, labels [B, G, 5] (class, cx, cy, w, h) in input pixels, zero-padded. The assignment
    runs under no_grad in float32 (autocast off); the loss terms are computed in float32.
    num_fg_reduce: optional hook mapping this process's positive count (float scalar tensor) to the
    normaliser, e.g. `lambda n: all_reduce(n) / world_size`; default None = official per-process count.
    """

    def __init__(self, loss_cfg: LossConfig, assign_cfg: AssignConfig, num_classes: int,
                 num_fg_reduce: Callable[[Tensor], Tensor] | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.loss_cfg = loss_cfg
        self.assign_cfg = assign_cfg
        self.num_classes = num_classes
        self.num_fg_reduce = num_fg_reduce
        self.assigner = build_assigner(assign_cfg)

    def __call__(self, raw: Tensor, grid: AnchorGrid, labels: Tensor, use_l1: bool = False) -> LossOutput:
        if raw.dim() != 3 or raw.shape[-1] != 5 + self.num_classes:
            raise ValueError(f"raw must be [B, A, 5 + {self.num_classes}], got {tuple(raw.shape)}")
        if raw.shape[1] != grid.num:
            raise ValueError(f"raw has {raw.shape[1]} predictions but the AnchorGrid has {grid.num}")
        if labels.shape[0] != raw.shape[0]:
            raise ValueError(f"labels batch {labels.shape[0]} != raw batch {raw.shape[0]}")
        cfg = self.loss_cfg
        with torch.autocast(device_type=raw.device.type, enabled=False):
            raw = raw.float()
            reg, obj, cls = raw[..., :4], raw[..., 4], raw[..., 5:]
            pred_boxes = decode_boxes(reg, grid)
            gt_boxes, gt_classes, gt_valid = split_labels(labels.to(raw.device), self.num_classes)
            with torch.no_grad():
                assignment = self.assigner(pred_boxes.detach(), obj.detach(), cls.detach(),
                                           gt_boxes, gt_classes, gt_valid, grid)
            fg = assignment.fg_mask
            img, anchor = fg.nonzero(as_tuple=True)
            matched = assignment.matched_gt[img, anchor]
            target_boxes = gt_boxes[img, matched]
            num_fg_local = torch.tensor(float(img.numel()), device=raw.device)
            normaliser = num_fg_local if self.num_fg_reduce is None else self.num_fg_reduce(num_fg_local)
            normaliser = normaliser.clamp(min=1.0)

            box_sum = iou_loss(pred_boxes[img, anchor], target_boxes, cfg.iou_type).sum()
            obj_per = F.binary_cross_entropy_with_logits(obj, fg.float(), reduction="none")
            if cfg.ignore_iou is not None:
                with torch.no_grad():
                    ignored = ignore_mask(pred_boxes.detach(), gt_boxes, gt_valid, fg, cfg.ignore_iou)
                obj_per = obj_per.masked_fill(ignored, 0.0)
            obj_sum = obj_per.sum()
            pos_classes = gt_classes[img, matched]
            pos_iou = assignment.matched_iou[img, anchor]
            cls_target = F.one_hot(pos_classes, self.num_classes).float()
            if cfg.cls_target == "iou":
                cls_target = cls_target * pos_iou[:, None]
            cls_sum = F.binary_cross_entropy_with_logits(cls[img, anchor], cls_target, reduction="sum")
            terms = {
                "iou": cfg.reg_weight * box_sum / normaliser,
                "obj": cfg.obj_weight * obj_sum / normaliser,
                "cls": cfg.cls_weight * cls_sum / normaliser,
            }
            if use_l1 or cfg.l1_always:
                anchor_wh = None if grid.anchor_wh is None else grid.anchor_wh[anchor]
                target = l1_targets(target_boxes, grid.grid_xy[anchor], grid.strides[anchor], anchor_wh)
                pos_reg = reg[img, anchor]
                pred = torch.cat((decode_xy_offsets(pos_reg[:, :2], grid), pos_reg[:, 2:]), dim=1)
                terms["l1"] = cfg.l1_weight * (pred - target).abs().sum() / normaliser
            else:
                terms["l1"] = raw.new_zeros(())
            total = terms["iou"] + terms["obj"] + terms["cls"] + terms["l1"]
        num_fg = int(img.numel())
        num_gt = int(gt_valid.sum())
        diagnostics = assignment_diagnostics(pos_iou, obj[img, anchor], cls[img, anchor], pos_classes)
        return LossOutput(total=total, terms=terms, num_fg=num_fg, num_gt=num_gt,
                          fg_per_gt=num_fg / max(1, num_gt), assignment=assignment, diagnostics=diagnostics)
