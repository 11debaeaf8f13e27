"""The roadmap assigners (YOLOv3 anchors, single centre, multi positives, OTA) on hand-worked cases."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from assign_cases import grid_for, random_case
from simota_reference import image_costs
from yolox_ray.assign import (
    build_assigner,
    center,
    fit_anchors_kmeans,
    multi_positive,
    ota,
    simota,
    sinkhorn,
    yolov3,
)
from yolox_ray.config import YOLOV3_ANCHORS, AssignConfig


def _preds(grid, batch=1, num_classes=3):
    """Predicted boxes equal to each anchor's own cell (cx = (g+0.5)s, w = h = s), zero logits."""
    boxes = torch.cat([grid.centers, grid.strides[:, None].expand(-1, 2)], dim=1)
    return (boxes[None].expand(batch, -1, -1).clone(), torch.zeros(batch, grid.num),
            torch.zeros(batch, grid.num, num_classes))


def _gts(rows):
    boxes = torch.tensor([[r[1:] for r in rows]], dtype=torch.float32)
    classes = torch.tensor([[r[0] for r in rows]])
    return boxes, classes, torch.ones(1, len(rows), dtype=torch.bool)


# --- YOLOv3 -------------------------------------------------------------------------------------

def test_yolov3_best_anchor_at_centre_cell():
    # 256 px: levels 32x32, 16x16, 8x8, 3 anchors each; level-1 predictions start at 32*32*3 = 3072.
    # GT 30x60 at (100, 50): shape IoUs with (30,61) = 1800/1830 = 0.984 (best, index 3 -> level 1,
    # slot 0), (62,45) = 1350/3240 = 0.417, (33,23) = 690/1869 = 0.369. Cell (100//16, 50//16) = (6, 3).
    grid = grid_for(256, n_anchors=3, anchors=YOLOV3_ANCHORS)
    pred, obj, cls = _preds(grid)
    gt_boxes, gt_classes, gt_valid = _gts([(1, 100.0, 50.0, 30.0, 60.0)])
    best = 3072 + (3 * 16 + 6) * 3 + 0
    out = yolov3(pred, obj, cls, gt_boxes, gt_classes, gt_valid, grid)
    assert out.fg_mask[0].nonzero().flatten().tolist() == [best]
    assert out.matched_gt[0, best] == 0 and out.dynamic_ks.tolist() == [[1]]
    # Predicted box there (see _preds): x 96..112, y 48..64, inside the GT (x 85..115, y 20..80):
    # IoU = 256 / 1800.
    assert out.matched_iou[0, best].item() == pytest.approx(256 / 1800)
    # With a threshold of 0.4 the (62, 45) shape (index 4, level 1, slot 1) joins; 0.369 does not.
    cfg = AssignConfig(assigner="yolov3", anchor_iou_threshold=0.4)
    out = yolov3(pred, obj, cls, gt_boxes, gt_classes, gt_valid, grid, cfg)
    assert out.fg_mask[0].nonzero().flatten().tolist() == [best, best + 1]


def test_yolov3_conflict_goes_to_higher_shape_iou():
    grid = grid_for(256, n_anchors=3, anchors=YOLOV3_ANCHORS)
    pred, obj, cls = _preds(grid)
    # Both GTs sit in cell (6, 3) of level 1 and prefer (30, 61); the second fits it exactly.
    gt_boxes, gt_classes, gt_valid = _gts([(0, 100.0, 50.0, 28.0, 50.0), (2, 98.0, 52.0, 30.0, 61.0)])
    out = yolov3(pred, obj, cls, gt_boxes, gt_classes, gt_valid, grid)
    best = 3072 + (3 * 16 + 6) * 3
    assert out.fg_mask[0].nonzero().flatten().tolist() == [best]
    assert out.matched_gt[0, best] == 1 and out.dynamic_ks.tolist() == [[1, 1]]


def test_yolov3_needs_anchor_grid():
    grid = grid_for(64)
    pred, obj, cls = _preds(grid)
    with pytest.raises(ValueError, match="anchor-based AnchorGrid"):
        yolov3(pred, obj, cls, *_gts([(0, 10.0, 10.0, 5.0, 5.0)]), grid)


def test_fit_anchors_kmeans_recovers_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 12.0], [40.0, 20.0], [100.0, 150.0]])
    wh = np.concatenate([c * (1 + 0.02 * rng.standard_normal((50, 2))) for c in centres])
    anchors = fit_anchors_kmeans(wh, k=3)
    assert [a[0] for a in anchors] == pytest.approx(list(centres[:, 0]), rel=0.02)
    assert [a[1] for a in anchors] == pytest.approx(list(centres[:, 1]), rel=0.02)
    assert len(fit_anchors_kmeans(wh, k=9)) == 9
    with pytest.raises(ValueError, match="positive"):
        fit_anchors_kmeans([[1.0, 0.0]] * 20, k=3)
    with pytest.raises(ValueError, match="distinct"):
        fit_anchors_kmeans([[1.0, 2.0]] * 20, k=3)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        fit_anchors_kmeans([1.0, 2.0, 3.0], k=1)


# --- single centre and multi positives -----------------------------------------------------------

def test_center_levels_by_max_side_and_cell():
    # 256 px anchor-free: level offsets 0, 1024, 1280 (32x32, 16x16, 8x8).
    grid = grid_for(256)
    pred, obj, cls = _preds(grid)
    gt_boxes, gt_classes, gt_valid = _gts([
        (0, 20.0, 30.0, 64.0, 10.0),    # max side 64 -> level 0, cell (2, 3) -> 3*32+2 = 98
        (1, 100.0, 50.0, 10.0, 64.5),   # 64.5 -> level 1, cell (6, 3) -> 1024 + 3*16+6 = 1078
        (2, 200.0, 130.0, 128.0, 20.0),  # 128 -> level 1, cell (12, 8) -> 1024 + 8*16+12 = 1164
        (0, 250.0, 255.9, 129.0, 20.0),  # 129 -> level 2, cell (7, 7) -> 1280 + 63 = 1343
    ])
    out = center(pred, obj, cls, gt_boxes, gt_classes, gt_valid, grid,
                 AssignConfig(assigner="center", level_ranges=(64.0, 128.0)))
    pos = out.fg_mask[0].nonzero().flatten().tolist()
    assert pos == [98, 1078, 1164, 1343]
    assert out.matched_gt[0, pos].tolist() == [0, 1, 2, 3]
    # matched_iou: GT 0 is 64x10 at (20, 30); the cell box is 8x8 at (20, 28) -> overlap 8 x 7
    # (y 24..32 vs 25..35) = 56, union 640 + 64 - 56 = 648.
    assert out.matched_iou[0, 98].item() == pytest.approx(56 / 648)


def test_multi_positive_3x3_clipped_at_border_and_smaller_gt_wins():
    grid = grid_for(256)
    pred, obj, cls = _preds(grid)
    gt_boxes, gt_classes, gt_valid = _gts([
        (0, 3.0, 3.0, 10.0, 10.0),     # cell (0, 0) on level 0 -> 2x2 inside the map
        (1, 100.0, 100.0, 40.0, 40.0),  # cell (12, 12) on level 0 -> full 3x3
        (2, 108.0, 100.0, 20.0, 20.0),  # cell (13, 12): overlaps GT 1's cells, and is smaller
    ])
    out = multi_positive(pred, obj, cls, gt_boxes, gt_classes, gt_valid, grid)
    assert out.dynamic_ks.tolist() == [[4, 9, 9]]
    idx = lambda x, y: y * 32 + x  # noqa: E731
    assert sorted(out.fg_mask[0].nonzero().flatten().tolist()) == sorted(
        [idx(0, 0), idx(1, 0), idx(0, 1), idx(1, 1)]
        + [idx(x, y) for x in (11, 12, 13, 14) for y in (11, 12, 13)])
    assert out.matched_gt[0, idx(11, 12)] == 1
    assert all(out.matched_gt[0, idx(x, 12)] == 2 for x in (12, 13, 14))


def test_center_assigners_need_anchor_free_grid_and_matching_ranges():
    grid3 = grid_for(64, n_anchors=3, anchors=YOLOV3_ANCHORS)
    pred, obj, cls = _preds(grid3)
    with pytest.raises(ValueError, match="anchor-free"):
        center(pred, obj, cls, *_gts([(0, 10.0, 10.0, 5.0, 5.0)]), grid3)


# --- OTA -----------------------------------------------------------------------------------------

def test_sinkhorn_recovers_obvious_plan():
    cost = torch.tensor([[[0.0, 5.0, 5.0], [5.0, 0.0, 0.0]]])
    plan = sinkhorn(cost, torch.tensor([[1.0, 2.0]]), torch.ones(1, 3), epsilon=0.1, iters=50)
    assert plan.argmax(dim=1).tolist() == [[0, 1, 1]]
    assert plan.sum(dim=1)[0].tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    assert plan.sum(dim=2)[0].tolist() == pytest.approx([1.0, 2.0], abs=1e-3)


@pytest.mark.parametrize("geometry, radius", [("center", 1.5), ("box_and_center", 2.5)])
def test_ota_single_gt_takes_the_k_cheapest_relative_to_background(geometry, radius):
    # With one GT the transport optimum sends its k units to the k candidates with the smallest
    # (GT cost - background cost); at epsilon 0.1 Sinkhorn reaches it. Costs from the test reference.
    cfg = AssignConfig(assigner="ota", geometry=geometry, center_radius=radius)
    for seed in range(4):
        pred, obj, cls, gt_boxes, gt_classes, gt_valid, grid = random_case(seed, 128, 1, 4, ties=False, batch=1)
        out = ota(pred, obj, cls, gt_boxes, gt_classes, gt_valid, grid, cfg)
        cand, cost, iou, background = image_costs(pred[0], obj[0], cls[0], gt_boxes[0], gt_classes[0], grid, cfg)
        top = np.sort(iou[0].numpy())[::-1][:cfg.candidate_k]
        k = max(1, int(np.float32(sum(np.float32(v) for v in top))))
        order = np.argsort((cost[0] - background).numpy(), kind="stable")[:k]
        assert out.dynamic_ks.tolist() == [[k]]
        assert sorted(out.fg_mask[0].nonzero().flatten().tolist()) == sorted(cand[order].tolist())


def test_ota_batch_invariants_and_no_gt():
    case = random_case(5, 128, 10, 4, ties=False)
    out = ota(*case, cfg=AssignConfig(assigner="ota"))
    gt_valid = case[5]
    assert torch.equal(out.fg_mask, out.matched_gt >= 0)
    b, a = out.fg_mask.nonzero(as_tuple=True)
    assert bool(gt_valid[b, out.matched_gt[b, a]].all())
    assert int(out.fg_mask.sum()) > 0
    empty = ota(*case[:3], case[3], case[4], torch.zeros_like(gt_valid), case[6], AssignConfig(assigner="ota"))
    assert not bool(empty.fg_mask.any())


# --- builder ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, fn", [("simota", simota), ("ota", ota), ("yolov3", yolov3),
                                      ("center", center), ("multi_positive", multi_positive)])
def test_build_assigner(name, fn):
    cfg = AssignConfig(assigner=name, candidate_k=7)
    assigner = build_assigner(cfg)
    assert isinstance(assigner, functools.partial) and assigner.func is fn and assigner.keywords["cfg"] is cfg
