"""SimOTA equals the reference algorithm (yolox.md §4) on the worked example and on random cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from assign_cases import grid_for, random_case
from simota_reference import reference_simota
from yolox_ray.assign import dynamic_k_matching, geometry_prior, simota
from yolox_ray.config import AssignConfig, ConfigError

GEOMETRIES = [AssignConfig(geometry="center", center_radius=1.5),
              AssignConfig(geometry="box_and_center", center_radius=2.5)]

# yolox.md §4.6: 2 GTs x 6 anchors.
EXAMPLE_COST = [[0.1, 0.2, 1.2, 2.9, 0.3, 0.5], [1.5, 7.7, 0.2, 0.1, 0.2, 8.6]]
EXAMPLE_IOU_GT2 = [0.3, 0.1, 0.7, 0.9, 0.8, 0.2]


@pytest.mark.parametrize("gt1_a6, expected_ks", [(0.2, [2, 3]), (0.5, [3, 3])])
def test_worked_example(gt1_a6, expected_ks):
    cost = torch.tensor([EXAMPLE_COST])
    iou = torch.tensor([[[0.9, 0.8, 0.1, 0.0, 0.7, gt1_a6], EXAMPLE_IOU_GT2]])
    fg, matched, ks = dynamic_k_matching(cost, iou, torch.ones(1, 2, dtype=torch.bool),
                                         torch.ones(1, 6, dtype=torch.bool), candidate_k=10)
    assert ks.tolist() == [expected_ks]
    assert fg.tolist() == [[True, True, True, True, True, False]]
    assert matched.tolist() == [[0, 0, 1, 1, 1, -1]]
    # cls-target IoUs of the positives: [0.9, 0.8, 0.7, 0.9, 0.8]
    picked = iou[0, matched[0, :5], torch.arange(5)]
    assert picked.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.9, 0.8])


def test_matching_ties_take_lowest_index_and_padding_is_ignored():
    # One GT with k = int(0.6 + 0.6) = 1 and three equal lowest costs -> the first of them.
    # A padding GT row and a padding slot (cost 0, IoU 1) must not change anything.
    cost = torch.tensor([[[5.0, 1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]])
    iou = torch.tensor([[[0.6, 0.6, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0]]])
    fg, matched, ks = dynamic_k_matching(cost, iou, torch.tensor([[True, False]]),
                                         torch.tensor([[True, True, True, True, False]]), candidate_k=10)
    assert ks.tolist() == [[1, 0]]
    assert matched.tolist() == [[-1, 0, -1, -1, -1]]


def test_conflict_goes_to_column_argmin_even_if_that_gt_did_not_pick_it():
    # GT0 (k=1) picks slot 0; GT1 (k=2) picks slots 0 and 1; GT2 (k=1) picks slot 2.
    # Slot 0 is contested -> column argmin over all GTs: GT2 (cost 0.5), which never selected it.
    cost = torch.tensor([[[1.0, 9.0, 9.0], [2.0, 2.5, 9.0], [0.5, 9.0, 0.1]]])
    iou = torch.tensor([[[0.9, 0.1, 0.0], [0.9, 0.9, 0.3], [0.2, 0.0, 0.9]]])
    fg, matched, ks = dynamic_k_matching(cost, iou, torch.ones(1, 3, dtype=torch.bool),
                                         torch.ones(1, 3, dtype=torch.bool), candidate_k=10)
    assert ks.tolist() == [[1, 2, 1]]
    assert matched.tolist() == [[2, 1, 2]]


def _assert_same(out, ref):
    fg, matched, matched_iou, ks = ref
    np.testing.assert_array_equal(out.fg_mask.numpy(), fg)
    np.testing.assert_array_equal(out.matched_gt.numpy(), matched)
    np.testing.assert_array_equal(out.dynamic_ks.numpy(), ks)
    np.testing.assert_array_equal(out.matched_iou.numpy(), matched_iou)


@pytest.mark.parametrize("cfg", GEOMETRIES, ids=lambda c: c.geometry)
@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
def test_random_cases_equal_reference(cfg, ties):
    tie_rule_mattered = False
    for seed in range(40):
        side = (64, 96, 128)[seed % 3]
        max_gt = (1, 3, 8, 20)[seed % 4]
        case = random_case(seed, side, max_gt, num_classes=5, ties=ties)
        out = simota(*case, cfg=cfg)
        ref = reference_simota(*case, cfg=cfg)
        _assert_same(out, ref)
        if ties:
            other = reference_simota(*case, cfg=cfg, ties="last")
            tie_rule_mattered |= not np.array_equal(other[1], ref[1])
    if ties:
        assert tie_rule_mattered, "the tie cases never depended on the tie rule"


@pytest.mark.parametrize("cfg", GEOMETRIES, ids=lambda c: c.geometry)
def test_candidate_k_sweep_and_weights_equal_reference(cfg):
    for k, iou_w, cls_w in ((1, 3.0, 1.0), (5, 3.0, 1.0), (15, 1.0, 2.0), (3, 0.0, 1.0)):
        cfg_k = AssignConfig(geometry=cfg.geometry, center_radius=cfg.center_radius, candidate_k=k,
                             iou_cost_weight=iou_w, cls_cost_weight=cls_w)
        case = random_case(100 + k, 96, 10, num_classes=4, ties=False)
        _assert_same(simota(*case, cfg=cfg_k), reference_simota(*case, cfg=cfg_k))


@pytest.mark.parametrize("cfg", GEOMETRIES, ids=lambda c: c.geometry)
def test_120_gts_equal_reference_and_chunking_changes_nothing(cfg):
    case = random_case(7, 320, 120, num_classes=80, ties=False, batch=2)
    out = simota(*case, cfg=cfg)
    _assert_same(out, reference_simota(*case, cfg=cfg))
    chunked = simota(*case, cfg=AssignConfig(geometry=cfg.geometry, center_radius=cfg.center_radius, chunk_size=1))
    for name in ("fg_mask", "matched_gt", "matched_iou", "dynamic_ks", "num_gt"):
        assert torch.equal(getattr(out, name), getattr(chunked, name)), name


@pytest.mark.parametrize("cfg", GEOMETRIES, ids=lambda c: c.geometry)
def test_invariants(cfg):
    for seed in range(6):
        case = random_case(seed, 128, 12, num_classes=3, ties=bool(seed % 2))
        gt_valid = case[5]
        out = simota(*case, cfg=cfg)
        fg, matched = out.fg_mask, out.matched_gt
        assert torch.equal(fg, matched >= 0)  # every positive has exactly one GT, negatives none
        b, a = fg.nonzero(as_tuple=True)
        assert bool(gt_valid[b, matched[b, a]].all())  # ... and it is a real one
        ks = out.dynamic_ks
        assert bool(((ks >= 1) & (ks <= cfg.candidate_k))[gt_valid].all())
        assert bool((ks[~gt_valid] == 0).all())
        assert torch.equal(out.num_gt, gt_valid.sum(1))
        assert bool((out.matched_iou[~fg] == 0).all()) and bool((out.matched_iou[fg] >= 0).all())
        no_gt = ~gt_valid.any(1)
        assert not bool(fg[no_gt].any())


def test_batch_without_any_gt_is_all_negative():
    pred, obj, cls, _, _, _, grid = random_case(0, 64, 3, num_classes=3, ties=False)
    gt_boxes = torch.zeros(3, 4, 4)
    out = simota(pred, obj, cls, gt_boxes, torch.zeros(3, 4, dtype=torch.long),
                 torch.zeros(3, 4, dtype=torch.bool), grid)
    assert not bool(out.fg_mask.any()) and bool((out.matched_gt == -1).all())
    assert out.dynamic_ks.tolist() == [[0] * 4] * 3


@pytest.mark.parametrize("cfg", GEOMETRIES, ids=lambda c: c.geometry)
def test_gt_without_own_candidate(cfg):
    # Image 0: a GT far outside the image (no anchor in its window or box) next to a normal GT: it
    # still gets k = max(1, int(0)) = 1 and takes the cheapest (penalised) candidate, as the reference.
    # Image 1: its only GT has no candidate at all -> no positives, k = 0 (the reference would raise).
    pred, obj, cls, _, _, _, grid = random_case(3, 64, 2, num_classes=3, ties=False, batch=2)
    gt_boxes = torch.tensor([[[30.0, 30.0, 20.0, 20.0], [-500.0, -500.0, 10.0, 10.0]],
                             [[-500.0, 900.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]]])
    gt_classes = torch.tensor([[1, 2], [0, 0]])
    gt_valid = torch.tensor([[True, True], [True, False]])
    out = simota(pred, obj, cls, gt_boxes, gt_classes, gt_valid, grid, cfg)
    assert out.dynamic_ks.tolist() == [[out.dynamic_ks[0, 0].item(), 1], [0, 0]]
    assert not bool(out.fg_mask[1].any())
    ref = reference_simota(pred[:1], obj[:1], cls[:1], gt_boxes[:1], gt_classes[:1], gt_valid[:1], grid, cfg)
    np.testing.assert_array_equal(out.matched_gt[:1].numpy(), ref[1])


def test_geometry_prior_hand_counts_and_anchor_based_layout():
    # GT centre (100, 100) on a 256 px input, r = 1.5: anchor centres within 12/24/48 px per axis are
    # 92,100,108 | 88,104,120 | 80,112,144 -> 3x3 cells on each level = 27 candidates.
    grid = grid_for(256)
    gt = torch.tensor([[[100.0, 100.0, 4.0, 4.0]]])
    candidate, unpenalised = geometry_prior(gt, torch.tensor([[True]]), grid, "center", 1.5)
    assert int(candidate.sum()) == 27 and torch.equal(candidate[0], unpenalised[0, 0])
    # box_and_center, r = 2.5: a 40x40 box around (100, 100) holds anchor centres in (80, 120) per
    # axis: stride 8: 84..116 -> 5x5; stride 16: 88, 104 -> 2x2 (120 is not < 120); stride 32: 112 -> 1.
    # The centre window |a - 100| < 20 / 40 / 80 holds 5 per axis on every level -> 75, a superset.
    gt = torch.tensor([[[100.0, 100.0, 40.0, 40.0]]])
    candidate, both = geometry_prior(gt, torch.tensor([[True]]), grid, "box_and_center", 2.5)
    assert int(both.sum()) == 25 + 4 + 1
    assert int(candidate.sum()) == 75
    # Anchor-based grids repeat each cell's flag for its 3 anchors, in the (y, x, anchor) layout.
    grid3 = grid_for(256, n_anchors=3, anchors=[(10, 13)] * 9)
    gt = torch.tensor([[[100.0, 100.0, 4.0, 4.0]]])
    c1, _ = geometry_prior(gt, torch.tensor([[True]]), grid, "center", 1.5)
    c3, _ = geometry_prior(gt, torch.tensor([[True]]), grid3, "center", 1.5)
    assert torch.equal(c3[0], c1[0].repeat_interleave(3))


@pytest.mark.parametrize("field, value, message", [
    ("candidate_k", 0, "assign.candidate_k"),
    ("center_radius", 0.0, "assign.center_radius"),
    ("center_radius", -1.0, "assign.center_radius"),
    ("geometry", "box", "unknown geometry"),
])
def test_invalid_knobs_fail_clearly(field, value, message):
    with pytest.raises(ConfigError, match=message):
        AssignConfig(**{field: value})


def test_bad_inputs_fail_clearly():
    pred, obj, cls, gt_boxes, gt_classes, gt_valid, grid = random_case(0, 64, 3, num_classes=3, ties=False)
    with pytest.raises(ValueError, match="anchors but the AnchorGrid"):
        simota(pred[:, :-1], obj[:, :-1], cls[:, :-1], gt_boxes, gt_classes, gt_valid, grid)
    with pytest.raises(ValueError, match="gt_classes of real GTs"):
        simota(pred, obj, cls, gt_boxes, gt_classes + 3 * gt_valid, gt_valid, grid)
