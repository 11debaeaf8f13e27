"""YOLOXLoss on hand-computed cases, its normaliser, and where gradients flow."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from yolox_ray.boxes import make_anchor_grid
from yolox_ray.config import YOLOV3_ANCHORS, AssignConfig, LossConfig
from yolox_ray.losses import YOLOXLoss, iou_loss

sys.path.insert(0, str(Path(__file__).parent / "assign"))
from assign_cases import random_case  # noqa: E402

LN2 = math.log(2.0)
CENTER = AssignConfig(assigner="center")


def _grid(side, n_anchors=1):
    sizes = [(side // s, side // s) for s in (8, 16, 32)]
    return make_anchor_grid(sizes, (8, 16, 32), n_anchors=n_anchors,
                            anchors=YOLOV3_ANCHORS if n_anchors == 3 else None)


def _one_positive_case(batch=1):
    """64 px, 84 anchors, 3 classes, zero raw outputs except cls logit 2.0 for class 1 at anchor 26.

    GT (class 1, cx 20, cy 28, 8x8) -> centre assigner: level 0, cell (2, 3), anchor 3*8+2 = 26, whose
    zero-regression box is 8x8 at (16, 24): overlap 4x4 = 16, union 112, IoU = 1/7.
    """
    grid = _grid(64)
    raw = torch.zeros(batch, grid.num, 8)
    raw[0, 26, 5 + 1] = 2.0
    labels = torch.zeros(batch, 4, 5)
    labels[0, 0] = torch.tensor([1.0, 20.0, 28.0, 8.0, 8.0])
    return raw, grid, labels


def test_hand_computed_terms_without_and_with_l1():
    raw, grid, labels = _one_positive_case()
    loss = YOLOXLoss(LossConfig(), CENTER, num_classes=3)
    out = loss(raw, grid, labels, use_l1=False)
    iou = 1.0 / 7.0
    expected = {
        "iou": 5.0 * (1.0 - iou**2),
        "obj": 84 * LN2,  # BCE(logit 0, 0 or 1) = ln 2 on every anchor
        "cls": 2 * LN2 + (math.log1p(math.exp(2.0)) - 2.0 * iou),  # target one-hot x IoU
        "l1": 0.0,
    }
    for name, value in expected.items():
        assert out.terms[name].item() == pytest.approx(value, rel=1e-5), name
    assert out.total.item() == pytest.approx(sum(expected.values()), rel=1e-5)
    assert (out.num_fg, out.num_gt, out.fg_per_gt) == (1, 1, 1.0)
    # L1 on: raw reg 0 vs (20/8 - 2, 28/8 - 3, log(8/8), log(8/8)) = (0.5, 0.5, 0, 0).
    out_l1 = loss(raw, grid, labels, use_l1=True)
    assert out_l1.terms["l1"].item() == pytest.approx(1.0, abs=1e-6)
    assert out_l1.total.item() == pytest.approx(sum(expected.values()) + 1.0, rel=1e-5)
    logs = out_l1.log_dict()
    assert set(logs) == {"total_loss", "iou_loss", "obj_loss", "cls_loss", "l1_loss", "num_fg", "num_gt", "fg_per_gt",
                         "pos_iou", "pos_iou_zero", "pos_score"}
    # The positive's box overlaps its GT with IoU 1/7; obj logit 0 and class-1 logit 2 score 0.5 x sigmoid(2).
    assert logs["pos_iou"] == pytest.approx(1 / 7) and logs["pos_iou_zero"] == 0.0
    assert logs["pos_score"] == pytest.approx(0.5 / (1 + math.exp(-2.0)))
    assert all(isinstance(v, float) for v in logs.values())


def test_giou_option_and_weights():
    raw, grid, labels = _one_positive_case()
    out = YOLOXLoss(LossConfig(iou_type="giou", reg_weight=2.0, obj_weight=0.5, cls_weight=3.0),
                    CENTER, num_classes=3)(raw, grid, labels, use_l1=False)
    # Enclosing box x 12..24, y 20..32 = 144; GIoU = 1/7 - (144 - 112) / 144.
    giou = 1.0 / 7.0 - 32.0 / 144.0
    assert out.terms["iou"].item() == pytest.approx(2.0 * (1.0 - giou), rel=1e-5)
    assert out.terms["obj"].item() == pytest.approx(0.5 * 84 * LN2, rel=1e-5)
    assert out.terms["cls"].item() == pytest.approx(3.0 * (2 * LN2 + math.log1p(math.exp(2.0)) - 2.0 / 7.0), rel=1e-5)


def test_iou_loss_function_values():
    pred = torch.tensor([[16.0, 24.0, 8.0, 8.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 2.0, 2.0]])
    target = torch.tensor([[20.0, 28.0, 8.0, 8.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
    assert iou_loss(pred, target, "iou").tolist() == pytest.approx([1 - 1 / 49, 0.0, 1.0], abs=1e-6)
    # Disjoint boxes x,y in 4..6 and -1..1: enclosing 7x7 = 49, union 8 -> GIoU = -41/49.
    assert iou_loss(pred, target, "giou").tolist() == pytest.approx([1 - (1 / 7 - 32 / 144), 0.0, 1 + 41 / 49], abs=1e-6)


def test_normaliser_is_batch_positive_count_and_hook():
    raw, grid, labels = _one_positive_case(batch=2)
    # Image 1: same geometry, class 0, at cell (5, 1) -> anchor 13; its cls logits are all 0.
    labels[1, 0] = torch.tensor([0.0, 44.0, 12.0, 8.0, 8.0])
    loss = YOLOXLoss(LossConfig(), CENTER, num_classes=3)
    out = loss(raw, grid, labels, use_l1=False)
    assert out.num_fg == 2 and out.num_gt == 2
    assert out.terms["obj"].item() == pytest.approx(2 * 84 * LN2 / 2, rel=1e-5)
    cls_img0 = 2 * LN2 + math.log1p(math.exp(2.0)) - 2.0 / 7.0
    cls_img1 = 3 * LN2  # logits 0: BCE = ln 2 whatever the target
    assert out.terms["cls"].item() == pytest.approx((cls_img0 + cls_img1) / 2, rel=1e-5)
    # An image without GT adds obj negatives only and N_fg is the batch count, not per image.
    labels[1] = 0
    out = loss(raw, grid, labels, use_l1=False)
    assert out.num_fg == 1 and out.terms["obj"].item() == pytest.approx(2 * 84 * LN2, rel=1e-5)
    # The DDP hook replaces the local count (here: pretend 4 processes' average is 4x larger).
    hooked = YOLOXLoss(LossConfig(), CENTER, num_classes=3, num_fg_reduce=lambda n: n * 4)
    out4 = hooked(raw, grid, labels, use_l1=False)
    for name in ("iou", "obj", "cls"):
        assert out4.terms[name].item() == pytest.approx(out.terms[name].item() / 4, rel=1e-6)


def test_anchor_based_l1_uses_anchor_shapes():
    # 256 px, 3 anchors per cell: GT 30x60 at (100, 50) -> anchor (30, 61), cell (6, 3) of level 1
    # (see the yolov3 assigner test). L1 target: (100/16 - 6, 50/16 - 3, log(30/30), log(60/61)).
    grid = _grid(256, n_anchors=3)
    raw = torch.zeros(1, grid.num, 5 + 2)
    labels = torch.tensor([[[1.0, 100.0, 50.0, 30.0, 60.0]]])
    out = YOLOXLoss(LossConfig(), AssignConfig(assigner="yolov3"), num_classes=2)(raw, grid, labels, use_l1=True)
    assert out.num_fg == 1
    assert out.terms["l1"].item() == pytest.approx(0.25 + 0.125 + abs(math.log(60 / 61)), rel=1e-5)
    # Decoded box 30x61 at (96, 48) vs GT 30x60 at (100, 50): overlap 26 x 59 (y 20..80 vs 17.5..78.5
    # -> 20..78.5 = 58.5), so IoU = 26*58.5 / (1800 + 1830 - 26*58.5).
    inter = 26 * 58.5
    iou = inter / (1800 + 1830 - inter)
    assert out.terms["iou"].item() == pytest.approx(5 * (1 - iou**2), rel=1e-5)


@pytest.mark.parametrize("assigner", ["simota", "ota", "multi_positive"])
def test_gradients_reach_exactly_the_outputs_that_should_get_one(assigner):
    pred, obj, cls, gt_boxes, gt_classes, gt_valid, grid = random_case(1, 128, 6, 4, ties=False, batch=2)
    labels = torch.cat([gt_classes[..., None].float(), gt_boxes], dim=-1)
    raw = (torch.randn(2, grid.num, 9, generator=torch.Generator().manual_seed(0)) * 0.5).requires_grad_()
    for use_l1 in (False, True):
        raw.grad = None
        out = YOLOXLoss(LossConfig(), AssignConfig(assigner=assigner), num_classes=4)(raw, grid, labels, use_l1)
        out.total.backward()
        grad, fg = raw.grad, out.assignment.fg_mask
        assert out.num_fg > 0
        assert bool((grad[..., 4] != 0).all())  # obj: every anchor, positive or negative
        assert bool((grad[fg][:, 5:] != 0).all())  # cls of positives
        assert bool((grad[~fg][:, 5:] == 0).all())  # no cls gradient for negatives
        assert bool((grad[~fg][:, :4] == 0).all())  # no box gradient for negatives
        overlapping = out.assignment.matched_iou[fg] > 0
        reg_moves = grad[fg][:, :4].abs().sum(-1) > 0
        assert bool(reg_moves[overlapping].all())  # IoU loss moves every overlapping positive's box
        if use_l1:
            assert bool(reg_moves.all())  # L1 reaches every positive


def test_no_gt_batch_has_only_objectness():
    raw, grid, labels = _one_positive_case()
    labels.zero_()
    raw.requires_grad_()
    out = YOLOXLoss(LossConfig(), AssignConfig(), num_classes=3)(raw, grid, labels, use_l1=True)
    assert out.num_fg == 0 and out.fg_per_gt == 0.0
    assert out.terms["iou"].item() == 0 and out.terms["cls"].item() == 0 and out.terms["l1"].item() == 0
    assert out.terms["obj"].item() == pytest.approx(84 * LN2, rel=1e-5)
    out.total.backward()
    assert bool((raw.grad[..., 4] != 0).all()) and bool((raw.grad[..., [0, 1, 2, 3, 5, 6, 7]] == 0).all())


def test_half_precision_input_assigns_in_float32():
    pred, obj, cls, gt_boxes, gt_classes, gt_valid, grid = random_case(2, 96, 5, 3, ties=False, batch=2)
    labels = torch.cat([gt_classes[..., None].float(), gt_boxes], dim=-1)
    raw = torch.randn(2, grid.num, 8, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    loss = YOLOXLoss(LossConfig(), AssignConfig(), num_classes=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss(raw, grid, labels, use_l1=False)
    ref = loss(raw.float(), grid, labels, use_l1=False)
    assert torch.equal(low.assignment.matched_gt, ref.assignment.matched_gt)
    assert low.total.dtype == torch.float32 and low.total.item() == pytest.approx(ref.total.item(), rel=1e-6)


def test_bad_inputs_fail_clearly():
    raw, grid, labels = _one_positive_case()
    loss = YOLOXLoss(LossConfig(), CENTER, num_classes=3)
    with pytest.raises(ValueError, match=r"raw must be \[B, A, 5 \+ 3\]"):
        loss(raw[..., :7], grid, labels)
    with pytest.raises(ValueError, match="AnchorGrid has"):
        loss(raw[:, :80], grid, labels)
    bad = labels.clone()
    bad[0, 0, 0] = 3.0
    with pytest.raises(ValueError, match=r"class 3.0 is not an integer in \[0, 3\)"):
        loss(raw, grid, bad)
    with pytest.raises(ValueError, match=r"labels must have shape \[B, G, 5\]"):
        loss(raw, grid, labels[..., :4])
