"""Random assignment inputs shared by the assigner tests (small sizes, seeded)."""

from __future__ import annotations

import math

import torch

from yolox_ray.boxes import decode_boxes, make_anchor_grid


def grid_for(side: int, n_anchors: int = 1, anchors=None):
    sizes = [(side // s, side // s) for s in (8, 16, 32)]
    return make_anchor_grid(sizes, (8, 16, 32), n_anchors=n_anchors, anchors=anchors)


def random_case(seed: int, side: int, max_gt: int, num_classes: int, ties: bool, batch: int = 3):
    """(pred_boxes, obj, cls, gt_boxes, gt_classes, gt_valid, grid).

    Each image has a random number of real GTs in [0, max_gt] packed first. With ties=True every
    prediction is a small integer jitter of one of the GT boxes and all logits are 0 (sigmoid(0) = 0.5
    exactly), so IoUs and costs repeat exactly and the tie rules decide.
    """
    gen = torch.Generator().manual_seed(seed)
    grid = grid_for(side)
    anchors = grid.num
    n_real = torch.randint(0, max_gt + 1, (batch,), generator=gen)
    n_real[0] = max_gt  # at least one full image
    wh = torch.exp(torch.rand(batch, max_gt, 2, generator=gen) * math.log(side / 4)) + 2
    cxy = torch.rand(batch, max_gt, 2, generator=gen) * side
    boxes = torch.cat([cxy, wh], -1)
    if ties:
        boxes = boxes.round()
    valid = torch.arange(max_gt)[None] < n_real[:, None]
    gt_boxes = boxes * valid[..., None]
    gt_classes = torch.randint(0, num_classes, (batch, max_gt), generator=gen) * valid
    if ties:
        source = torch.randint(0, max_gt, (batch, anchors), generator=gen)
        jitter = torch.randint(-3, 4, (batch, anchors, 4), generator=gen).float()
        pred = torch.gather(boxes, 1, source[..., None].expand(-1, -1, 4)) + jitter
        pred[..., 2:] = pred[..., 2:].clamp(min=1)
        obj = torch.zeros(batch, anchors)
        cls = torch.zeros(batch, anchors, num_classes)
    else:
        pred = decode_boxes(torch.randn(batch, anchors, 4, generator=gen) * 0.5, grid)
        obj = torch.randn(batch, anchors, generator=gen) * 2
        cls = torch.randn(batch, anchors, num_classes, generator=gen) * 2
    return pred, obj, cls, gt_boxes, gt_classes, valid, grid
