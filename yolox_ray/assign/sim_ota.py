"""SimOTA (yolox.md §4), batched over images and GTs.

Equivalent to the official per-image `get_assignments` + `simota_matching`, with two documented rules
where the reference leaves things implementation-defined:

* ties: each GT takes its k lowest costs with **equal costs taken lowest anchor index first**
  (a stable sort); conflicts go to the first GT (lowest padded index) among equal column minima;
* the top-IoU sum that gives the dynamic k is accumulated **sequentially in float32 in descending
  order** of the IoUs, then truncated (so the worked example's 0.9+0.8+0.7+0.5+0.1+0 is exactly 3.0).

The class cost below is summed in a different order than the reference's per-pair BCE sum, so a
cost may differ from the reference's by float rounding (~1e-7 relative); that can only change the
assignment where two costs agree to that precision without being exactly equal (exact ties, such as
duplicated predictions, stay ties). The tests and `benchmarks/assign_speed.py` compare whole
assignments with a per-image reference and find them identical.

Beyond the reference: an image whose GTs have no candidate anchor at all (impossible for GT centres
inside the image; the reference would raise) gets no positives.

Speed and memory: the geometry prior is evaluated for [B, G, A] booleans; everything else (IoU, cost,
matching) only on each image's candidate anchors packed into [B, G, N] (N = most candidates of any
image). The class cost is not expanded over classes per pair: Σ_c BCE(p_c, onehot_c(g)) =
Σ_c BCE(p_c, 0) − BCE(p_cg, 0) + BCE(p_cg, 1), so it costs O(N·C + G·N) instead of O(G·N·C).
`AssignConfig.chunk_size` bounds the images processed at once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from yolox_ray.assign.common import (
    Assignment,
    Candidates,
    check_inputs,
    compact,
    empty_assignment,
    geometry_prior,
    scatter_to_anchors,
)
from yolox_ray.boxes import AnchorGrid, pairwise_iou_cxcywh
from yolox_ray.config import AssignConfig

# Cost of a pair that can never be chosen: a padding GT row or a padding candidate slot.
_NEVER = float("inf")


def dynamic_ks(iou: Tensor, candidate_k: int) -> Tensor:
    """k_g = max(1, int(sum of the min(candidate_k, N) largest IoUs of row g)) for iou [..., G, N].

    Padding entries must hold 0 (they then add nothing). The sum runs sequentially in float32 over
    the IoUs in descending order (a loop over at most candidate_k columns, not over GTs).
    """
    n_top = min(candidate_k, iou.shape[-1])
    if n_top == 0:
        return torch.ones(iou.shape[:-1], dtype=torch.long, device=iou.device)
    top = torch.topk(iou, n_top, dim=-1, largest=True, sorted=True).values
    total = torch.zeros(iou.shape[:-1], dtype=torch.float32, device=iou.device)
    for j in range(n_top):
        total = total + top[..., j]
    return total.to(torch.int32).clamp(min=1).long()


def dynamic_k_matching(cost: Tensor, iou: Tensor, gt_valid: Tensor, cand_valid: Tensor,
                       candidate_k: int) -> tuple[Tensor, Tensor, Tensor]:
    """SimOTA's matching step (§4.3) on given cost and IoU matrices.

    cost, iou:  [B, G, N] float32 for GT g and candidate n (values on padding are ignored)
    gt_valid:   [B, G] bool real GT rows; cand_valid: [B, N] bool real candidate slots
    Returns (fg [B, N] bool, matched [B, N] long GT index or -1, ks [B, G] long dynamic k, 0 on
    padding rows and in images without candidates).
    """
    pair_off = ~(gt_valid[:, :, None] & cand_valid[:, None, :])
    iou = iou.masked_fill(pair_off, 0.0)
    cost = cost.masked_fill(pair_off, _NEVER)
    has_cand = cand_valid.any(dim=1)
    ks = dynamic_ks(iou, candidate_k)
    ks = torch.where(gt_valid & has_cand[:, None], ks, torch.zeros_like(ks))

    num = cost.shape[-1]
    if num == 0:
        empty = torch.zeros(cand_valid.shape, dtype=torch.bool, device=cost.device)
        return empty, torch.full(cand_valid.shape, -1, dtype=torch.long, device=cost.device), ks
    # Threshold = the k-th smallest cost of each row (k <= min(candidate_k, #candidates)).
    lowest = torch.topk(cost, min(candidate_k, num), dim=-1, largest=False, sorted=True).values
    thresh = torch.gather(lowest, -1, (ks - 1).clamp(min=0)[..., None])
    below = cost < thresh
    at = cost == thresh
    need = ks - below.sum(dim=-1)  # how many equal-to-threshold entries row g still takes
    num_at = at.sum(dim=-1)
    selected = below | (at & (num_at <= need)[..., None])
    # Rows with more ties at the threshold than needed: take the lowest candidate slots first.
    tie_b, tie_g = ((num_at > need) & (ks > 0)).nonzero(as_tuple=True)
    if tie_b.numel():
        tied = at[tie_b, tie_g]
        take = tied & (tied.cumsum(dim=-1) <= need[tie_b, tie_g][:, None])
        selected[tie_b, tie_g] = below[tie_b, tie_g] | take
    selected &= (ks > 0)[..., None]

    count = selected.sum(dim=1)  # [B, N] GTs that picked each candidate
    fg = count > 0
    matched = torch.full(fg.shape, -1, dtype=torch.long, device=cost.device)
    sel_b, sel_g, sel_n = selected.nonzero(as_tuple=True)
    matched[sel_b, sel_n] = sel_g  # exact for columns picked once
    multi_b, multi_n = (count > 1).nonzero(as_tuple=True)
    if multi_b.numel():  # conflicts: column-wise argmin over all GTs, first GT among equal minima
        matched[multi_b, multi_n] = torch.min(cost[multi_b, :, multi_n], dim=1).indices
    return fg, matched, ks


def candidate_costs(pred_boxes: Tensor, obj_logits: Tensor, cls_logits: Tensor, gt_boxes: Tensor,
                    gt_classes: Tensor, gt_valid: Tensor, grid: AnchorGrid,
                    cfg: AssignConfig) -> tuple[Candidates, Tensor, Tensor, Tensor] | None:
    """The SimOTA cost and IoU of every (GT, candidate anchor) pair, packed per image.

    Returns (candidates, cost [B, G, N], iou [B, G, N], background_cost [B, N]) or None when no image
    has a candidate. background_cost = cls_cost_weight · Σ_c BCE(p_c, 0) (the cost of labelling the
    anchor background; OTA's sink uses it). Float32 throughout.
    """
    candidate, unpenalised = geometry_prior(gt_boxes, gt_valid, grid, cfg.geometry, cfg.center_radius)
    cands = compact(candidate)
    if cands.size == 0:
        return None
    batch, num = cands.index.shape
    boxes = pred_boxes[torch.arange(batch, device=cands.index.device)[:, None], cands.index]  # [B, N, 4]
    iou = pairwise_iou_cxcywh(gt_boxes, boxes)  # [B, G, N], GT rows, no epsilon (official bboxes_iou)
    iou_cost = -torch.log(iou + 1e-8)

    # Class cost: p per candidate and class, laid out [B, C, N] so that each GT's class row is a
    # plain row selection; log terms only for those [B, G, N] picks and for the all-negative sum.
    image = torch.arange(batch, device=boxes.device)[:, None]
    p = (cls_logits[image, cands.index].sigmoid() * obj_logits[image, cands.index].sigmoid()[..., None]).sqrt()
    all_negative = -torch.log1p(-p).clamp(min=-100.0).sum(dim=-1)  # [B, N] Σ_c BCE(p_c, 0)
    num_classes = p.shape[-1]
    by_class = p.transpose(1, 2).reshape(batch * num_classes, num)
    p_gt = by_class[(image * num_classes + gt_classes.clamp(min=0, max=num_classes - 1)).reshape(-1)]
    p_gt = p_gt.view(batch, -1, num)  # [B, G, N] p at each GT's class
    # torch BCE clamps its log terms at -100: BCE(p, 1) - BCE(p, 0) = -log p + log(1 - p)
    cls_cost = all_negative[:, None, :] + torch.log1p(-p_gt).clamp(min=-100.0) - torch.log(p_gt).clamp(min=-100.0)

    unpenalised = torch.gather(unpenalised, 2, cands.index[:, None, :].expand(-1, gt_boxes.shape[1], -1))
    cost = cfg.cls_cost_weight * cls_cost + cfg.iou_cost_weight * iou_cost
    cost = torch.where(unpenalised, cost, cost + cfg.penalty)  # = cost + penalty·(not unpenalised), exactly
    return cands, cost, iou, cfg.cls_cost_weight * all_negative


def simota(pred_boxes: Tensor, obj_logits: Tensor, cls_logits: Tensor, gt_boxes: Tensor,
           gt_classes: Tensor, gt_valid: Tensor, grid: AnchorGrid,
           cfg: AssignConfig = AssignConfig()) -> Assignment:
    """SimOTA assignment for a whole batch.

    Args (see `assign.common` for the shared convention):
        pred_boxes [B, A, 4] decoded (cx, cy, w, h); obj_logits [B, A]; cls_logits [B, A, C];
        gt_boxes [B, G, 4] (cx, cy, w, h); gt_classes [B, G] long; gt_valid [B, G] bool;
        grid: AnchorGrid; cfg: candidate_k, center_radius, geometry, iou/cls cost weights, chunk_size.
    Returns an `Assignment` ([B, A] fg_mask, matched_gt, matched_iou; [B, G] dynamic_ks; [B] num_gt).
    Runs without gradient, in float32 with autocast off.
    """
    check_inputs(pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid)
    with torch.no_grad(), torch.autocast(device_type=pred_boxes.device.type, enabled=False):
        batch = pred_boxes.shape[0]
        step = cfg.chunk_size or max(batch, 1)
        parts = [
            _simota_chunk(pred_boxes[i:i + step].float(), obj_logits[i:i + step].float(),
                          cls_logits[i:i + step].float(), gt_boxes[i:i + step].float(),
                          gt_classes[i:i + step], gt_valid[i:i + step], grid, cfg)
            for i in range(0, batch, step)
        ]
        return parts[0] if len(parts) == 1 else Assignment.cat(parts)


def _simota_chunk(pred_boxes: Tensor, obj_logits: Tensor, cls_logits: Tensor, gt_boxes: Tensor,
                  gt_classes: Tensor, gt_valid: Tensor, grid: AnchorGrid, cfg: AssignConfig) -> Assignment:
    batch, anchors = pred_boxes.shape[:2]
    costs = candidate_costs(pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid, cfg)
    if costs is None:
        return empty_assignment(batch, anchors, gt_valid, pred_boxes.device)
    cands, cost, iou, _ = costs
    fg, matched, ks = dynamic_k_matching(cost, iou, gt_valid, cands.valid, cfg.candidate_k)
    matched_iou = torch.gather(iou, 1, matched.clamp(min=0)[:, None, :])[:, 0, :]
    fg_mask, matched_gt, iou_out = scatter_to_anchors(cands, anchors, fg, matched, matched_iou)
    return Assignment(fg_mask=fg_mask, matched_gt=matched_gt, matched_iou=iou_out,
                      dynamic_ks=ks, num_gt=gt_valid.sum(dim=1))
