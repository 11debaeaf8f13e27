"""A straightforward per-image, per-GT SimOTA written from yolox.md §4 (the tests' reference).

Deliberately unbatched and unoptimised: per image it builds the geometry prior, the full
[G, N, C] class BCE (torch's F.binary_cross_entropy, like the official code) and then matches each GT
in a Python loop with numpy, using the documented tie rules: equal costs are taken lowest anchor
index first (stable sort), conflicts go to the first GT among equal column minima (numpy argmin),
and the top-IoU sum is accumulated in float32 in descending order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of cxcywh boxes a [n, 4] vs b [m, 4], official `bboxes_iou(xyxy=False)` arithmetic."""
    tl = torch.max(a[:, None, :2] - a[:, None, 2:] / 2, b[:, :2] - b[:, 2:] / 2)
    br = torch.min(a[:, None, :2] + a[:, None, 2:] / 2, b[:, :2] + b[:, 2:] / 2)
    area_a = torch.prod(a[:, 2:], 1)
    area_b = torch.prod(b[:, 2:], 1)
    en = (tl < br).type(tl.type()).prod(dim=2)
    area_i = torch.prod(br - tl, 2) * en
    return area_i / (area_a[:, None] + area_b - area_i)


def match_one_image(cost: np.ndarray, iou: np.ndarray, candidate_k: int,
                    ties: str = "first") -> tuple[np.ndarray, np.ndarray]:
    """Dynamic-k matching for one image: cost, iou [n_gt, n_cand] float32 -> (matched [n_cand] or -1, ks).

    ties="first" takes equal costs lowest index first (the documented rule); "last" the opposite
    (only used to show that a test case really contains ties that decide the result).
    """
    n_gt, n_cand = cost.shape
    matching = np.zeros((n_gt, n_cand), dtype=np.int64)
    ks = np.zeros(n_gt, dtype=np.int64)
    top_n = min(candidate_k, n_cand)
    for g in range(n_gt):
        top = np.sort(iou[g])[::-1][:top_n]
        total = np.float32(0.0)
        for value in top:
            total = np.float32(total + np.float32(value))
        ks[g] = max(1, int(total))
        if ties == "first":
            chosen = np.argsort(cost[g], kind="stable")[: ks[g]]
        else:
            chosen = n_cand - 1 - np.argsort(cost[g][::-1], kind="stable")[: ks[g]]
        matching[g, chosen] = 1
    for j in range(n_cand):
        if matching[:, j].sum() > 1:
            winner = int(np.argmin(cost[:, j]))
            matching[:, j] = 0
            matching[winner, j] = 1
    matched = np.where(matching.sum(0) > 0, matching.argmax(0), -1)
    return matched, ks


def image_costs(pred_boxes, obj_logits, cls_logits, gt, classes, grid, cfg):
    """One image: (candidate anchor indices, cost [n_gt, n_cand], iou, background cost [n_cand]) or None.

    background cost = cls_cost_weight · Σ_c BCE(p_c, 0) (what OTA's background sink pays).
    """
    num_classes = cls_logits.shape[-1]
    x_c = (grid.grid_xy[:, 0] + 0.5) * grid.strides
    y_c = (grid.grid_xy[:, 1] + 0.5) * grid.strides
    dist = grid.strides[None, :] * cfg.center_radius
    c_l = x_c[None, :] - (gt[:, 0:1] - dist)
    c_r = (gt[:, 0:1] + dist) - x_c[None, :]
    c_t = y_c[None, :] - (gt[:, 1:2] - dist)
    c_b = (gt[:, 1:2] + dist) - y_c[None, :]
    in_center = torch.stack([c_l, c_t, c_r, c_b], 2).min(dim=-1).values > 0.0
    if cfg.geometry == "center":
        candidate = in_center.sum(dim=0) > 0
        relation = in_center[:, candidate]
    else:
        b_l = x_c[None, :] - (gt[:, 0:1] - 0.5 * gt[:, 2:3])
        b_r = (gt[:, 0:1] + 0.5 * gt[:, 2:3]) - x_c[None, :]
        b_t = y_c[None, :] - (gt[:, 1:2] - 0.5 * gt[:, 3:4])
        b_b = (gt[:, 1:2] + 0.5 * gt[:, 3:4]) - y_c[None, :]
        in_box = torch.stack([b_l, b_t, b_r, b_b], 2).min(dim=-1).values > 0.0
        candidate = (in_box.sum(dim=0) > 0) | (in_center.sum(dim=0) > 0)
        relation = in_box[:, candidate] & in_center[:, candidate]
    n_gt, n_cand = gt.shape[0], int(candidate.sum())
    if n_cand == 0:
        return None
    iou = iou_matrix(gt, pred_boxes[candidate].float())
    iou_cost = -torch.log(iou + 1e-8)
    probs = (cls_logits[candidate].float().sigmoid()[None].repeat(n_gt, 1, 1)
             * obj_logits[candidate].float().sigmoid()[None, :, None].repeat(n_gt, 1, 1)).sqrt()
    onehot = F.one_hot(classes.long(), num_classes).float()[:, None, :].repeat(1, n_cand, 1)
    cls_cost = F.binary_cross_entropy(probs, onehot, reduction="none").sum(-1)
    penalty = 1e6 if cfg.geometry == "center" else 1e5
    cost = cfg.cls_cost_weight * cls_cost + cfg.iou_cost_weight * iou_cost + penalty * (~relation).float()
    background = cfg.cls_cost_weight * F.binary_cross_entropy(
        probs[0], torch.zeros_like(probs[0]), reduction="none").sum(-1)
    return np.nonzero(candidate.numpy())[0], cost, iou, background


def reference_simota(pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid, cfg,
                     ties="first"):
    """Returns numpy (fg [B, A], matched_gt [B, A], matched_iou [B, A], ks [B, G])."""
    batch, anchors, _ = cls_logits.shape
    num_gt = gt_boxes.shape[1]
    fg = np.zeros((batch, anchors), dtype=bool)
    matched_gt = np.full((batch, anchors), -1, dtype=np.int64)
    matched_iou = np.zeros((batch, anchors), dtype=np.float32)
    ks_out = np.zeros((batch, num_gt), dtype=np.int64)
    for b in range(batch):
        rows = [g for g in range(num_gt) if bool(gt_valid[b, g])]
        if not rows:
            continue
        costs = image_costs(pred_boxes[b], obj_logits[b], cls_logits[b], gt_boxes[b, rows].float(),
                            gt_classes[b, rows], grid, cfg)
        if costs is None:
            continue
        cand_idx, cost, iou, _ = costs
        matched, ks = match_one_image(cost.numpy(), iou.numpy(), cfg.candidate_k, ties)
        for slot, g in enumerate(matched):
            if g >= 0:
                fg[b, cand_idx[slot]] = True
                matched_gt[b, cand_idx[slot]] = rows[g]
                matched_iou[b, cand_idx[slot]] = iou[g, slot].item()
        ks_out[b, rows] = ks
    return fg, matched_gt, matched_iou, ks_out
