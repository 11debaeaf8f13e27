"""OTA (Ge et al., CVPR 2021): label assignment as optimal transport, solved with Sinkhorn-Knopp.

Suppliers are the image's real GTs plus one background sink; demanders are the image's candidate
anchors (the SimOTA geometry prior of `cfg.geometry`/`cfg.center_radius`), each demanding one unit.
GT g supplies its dynamic k (exactly SimOTA's k: the truncated sum of its top `candidate_k` IoUs);
the background supplies the rest, n_candidates − Σk (at least 1; if the GTs ask for more than there
are candidates, all supplies are scaled to total n_candidates). Transport costs: the SimOTA cost
(class cost + iou_cost_weight·IoU cost + geometry penalty) for GT→anchor, and
cls_cost_weight·Σ_c BCE(p_c, 0) for background→anchor. After `ota_iters` log-domain Sinkhorn
iterations with entropic regularisation `ota_epsilon`, each anchor goes to the supplier that sends it
the most mass; anchors won by the background are negatives. This is OTA's algorithm; it keeps
SimOTA's loss-aware cost, centre prior and dynamic k but solves the global problem (the paper:
similar AP at about +25 % training time).
"""

from __future__ import annotations

import torch
from torch import Tensor

from yolox_ray.assign.common import Assignment, check_inputs, empty_assignment, scatter_to_anchors
from yolox_ray.assign.sim_ota import candidate_costs, dynamic_ks
from yolox_ray.boxes import AnchorGrid
from yolox_ray.config import AssignConfig


def sinkhorn(cost: Tensor, supply: Tensor, demand: Tensor, epsilon: float, iters: int) -> Tensor:
    """Entropic optimal transport plan for cost [B, S, D] with marginals supply [B, S], demand [B, D].

    Log-domain Sinkhorn-Knopp (stable for costs of ~1e6 with epsilon 0.1). Rows/columns with a zero
    marginal take no part and get no mass (every active row needs an active column and vice versa).
    Returns the plan [B, S, D].
    """
    rows = supply > 0
    cols = demand > 0
    active = rows[:, :, None] & cols[:, None, :]
    scaled = torch.where(active, -cost / epsilon, torch.full_like(cost, float("-inf")))
    log_a = torch.where(rows, torch.log(supply), torch.zeros_like(supply))
    log_b = torch.where(cols, torch.log(demand), torch.zeros_like(demand))
    minus_inf_a = torch.full_like(supply, float("-inf"))
    minus_inf_b = torch.full_like(demand, float("-inf"))
    f = torch.where(rows, torch.zeros_like(supply), minus_inf_a)
    g = torch.where(cols, torch.zeros_like(demand), minus_inf_b)
    for _ in range(iters):
        g = torch.where(cols, log_b - torch.logsumexp(scaled + f[:, :, None], dim=1), minus_inf_b)
        f = torch.where(rows, log_a - torch.logsumexp(scaled + g[:, None, :], dim=2), minus_inf_a)
    return torch.exp(scaled + f[:, :, None] + g[:, None, :])


def ota(pred_boxes: Tensor, obj_logits: Tensor, cls_logits: Tensor, gt_boxes: Tensor,
        gt_classes: Tensor, gt_valid: Tensor, grid: AnchorGrid,
        cfg: AssignConfig = AssignConfig(assigner="ota")) -> Assignment:
    """OTA assignment for a batch; same arguments and result as `assign.simota`.

    Knobs: cfg.ota_iters, cfg.ota_epsilon, plus SimOTA's candidate_k, geometry, center_radius and
    cost weights (shared cost). dynamic_ks holds each GT's supply k. Runs without gradient in float32.
    """
    check_inputs(pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid)
    with torch.no_grad(), torch.autocast(device_type=pred_boxes.device.type, enabled=False):
        batch = pred_boxes.shape[0]
        step = cfg.chunk_size or max(batch, 1)
        parts = [
            _ota_chunk(pred_boxes[i:i + step].float(), obj_logits[i:i + step].float(),
                       cls_logits[i:i + step].float(), gt_boxes[i:i + step].float(),
                       gt_classes[i:i + step], gt_valid[i:i + step], grid, cfg)
            for i in range(0, batch, step)
        ]
        return parts[0] if len(parts) == 1 else Assignment.cat(parts)


def _ota_chunk(pred_boxes: Tensor, obj_logits: Tensor, cls_logits: Tensor, gt_boxes: Tensor,
               gt_classes: Tensor, gt_valid: Tensor, grid: AnchorGrid, cfg: AssignConfig) -> Assignment:
    batch, anchors = pred_boxes.shape[:2]
    costs = candidate_costs(pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid, cfg)
    if costs is None:
        return empty_assignment(batch, anchors, gt_valid, pred_boxes.device)
    cands, cost, iou, background = costs
    pair_ok = gt_valid[:, :, None] & cands.valid[:, None, :]
    iou = torch.where(pair_ok, iou, torch.zeros_like(iou))
    n_cand = cands.valid.sum(dim=1).float()  # [B]
    ks = torch.where(gt_valid & (n_cand > 0)[:, None], dynamic_ks(iou, cfg.candidate_k), 0)

    gt_supply = ks.float()
    wanted = gt_supply.sum(dim=1)
    bg_supply = (n_cand - wanted).clamp(min=1.0)
    scale = torch.where(wanted + bg_supply > n_cand, n_cand / (wanted + bg_supply), torch.ones_like(n_cand))
    supply = torch.cat([gt_supply, bg_supply[:, None]], dim=1) * scale[:, None]
    demand = cands.valid.float()

    full_cost = torch.cat([cost, background[:, None, :]], dim=1)  # background is the last row
    plan = sinkhorn(full_cost, supply, demand, cfg.ota_epsilon, cfg.ota_iters)

    winner = plan.argmax(dim=1)  # [B, N]; index G = background
    num_gt_rows = cost.shape[1]
    fg = (winner < num_gt_rows) & cands.valid
    matched = torch.where(fg, winner, torch.full_like(winner, -1))
    matched_iou = torch.gather(iou, 1, matched.clamp(min=0)[:, None, :])[:, 0, :]
    fg_mask, matched_gt, iou_out = scatter_to_anchors(cands, anchors, fg, matched, matched_iou)
    return Assignment(fg_mask=fg_mask, matched_gt=matched_gt, matched_iou=iou_out,
                      dynamic_ks=ks, num_gt=gt_valid.sum(dim=1))
