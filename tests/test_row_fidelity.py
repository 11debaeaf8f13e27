"""The roadmap rows' YOLOv3 / fixed-positive options on hand-computed cases: the ignore rule, the
sigmoid centre decode, targets that cannot contradict themselves, k-means anchors, the diagnostics."""

from __future__ import annotations

import json
import math

import pytest
import torch

from yolox_ray.boxes import decode_boxes, make_anchor_grid
from yolox_ray.config import AssignConfig, ConfigError, LossConfig, ModelConfig
from yolox_ray.data.anchors import kmeans_anchors
from yolox_ray.losses import YOLOXLoss

LN2 = math.log(2.0)
# One 64 px level-0-only-relevant grid, 3 anchor shapes per level (shape 0 = 8x8 on level 0).
ANCHORS = ((8, 8), (12, 12), (16, 16), (20, 20), (24, 24), (28, 28), (40, 40), (48, 48), (56, 56))


def _grid(sigmoid_xy=False):
    return make_anchor_grid([(8, 8), (4, 4), (2, 2)], (8, 16, 32), n_anchors=3, anchors=ANCHORS,
                            sigmoid_xy=sigmoid_xy)


def test_yolov3_decode_against_hand_computed_boxes():
    grid = _grid(sigmoid_xy=True)
    # Level 0, cell (x=2, y=3), anchor slot 1 (12x12): index (3*8 + 2)*3 + 1 = 79.
    reg = torch.zeros(grid.num, 4)
    reg[79] = torch.tensor([math.log(3.0), -math.log(3.0), math.log(2.0), 0.0])  # sigmoid -> 0.75, 0.25
    boxes = decode_boxes(reg, grid)
    assert boxes[79].tolist() == pytest.approx([(2 + 0.75) * 8, (3 + 0.25) * 8, 24.0, 12.0])
    # An untrained (zero) output sits at its cell's centre, not its corner.
    assert boxes[78].tolist() == pytest.approx([(2 + 0.5) * 8, (3 + 0.5) * 8, 8.0, 8.0])
    # Level 2 (stride 32), cell (1, 0), slot 2 (56x56): the linear decode puts it on the corner.
    index = 8 * 8 * 3 + 4 * 4 * 3 + (0 * 2 + 1) * 3 + 2
    assert decode_boxes(reg, grid)[index].tolist() == pytest.approx([48.0, 16.0, 56.0, 56.0])
    assert decode_boxes(reg, _grid(sigmoid_xy=False))[index].tolist() == pytest.approx([32.0, 0.0, 56.0, 56.0])


def test_yolov3_decode_is_for_anchor_based_heads_only():
    with pytest.raises(ConfigError, match="model.box_decode"):
        ModelConfig(box_decode="yolov3", n_anchors=1)
    assert ModelConfig(box_decode="yolov3", n_anchors=3).box_decode == "yolov3"


def _ignore_case(offset_x: float):
    """GT 8x8 at (20, 28) -> YOLOv3 assigner: shape 0 (8x8) at level-0 cell (2, 3), anchor 78. A second
    prediction (anchor 81: cell (3, 3), shape 0) is moved by the linear decode so that its 8x8 box sits
    at (20 + offset_x, 28): overlapping the GT, but not the positive."""
    grid = _grid(sigmoid_xy=False)
    raw = torch.zeros(1, grid.num, 5 + 2)
    # Anchor 81's linear-decoded centre is (3 + tx) * 8; put it at 20 + offset_x (GT centre x + offset).
    raw[0, 81, 0] = (20.0 + offset_x) / 8 - 3
    raw[0, 81, 1] = 28.0 / 8 - 3
    labels = torch.tensor([[[1.0, 20.0, 28.0, 8.0, 8.0]]])
    return raw, grid, labels


@pytest.mark.parametrize("offset_x, ignored", [(1.0, True), (4.0, False)])
def test_ignore_rule_drops_obj_loss_of_overlapping_negatives_only(offset_x, ignored):
    # Same-size boxes shifted by d along x: IoU = (8 - d) / (8 + d): d=1 -> 0.78 (> 0.5), d=4 -> 0.33.
    raw, grid, labels = _ignore_case(offset_x)
    assign = AssignConfig(assigner="yolov3")
    plain = YOLOXLoss(LossConfig(), assign, num_classes=2)(raw, grid, labels)
    rule = YOLOXLoss(LossConfig(ignore_iou=0.5), assign, num_classes=2)(raw, grid, labels)
    assert plain.num_fg == rule.num_fg == 1 and bool(plain.assignment.fg_mask[0, 78])
    # Every obj logit is 0: BCE = ln 2 per prediction; the ignored negative contributes nothing.
    assert plain.terms["obj"].item() == pytest.approx(grid.num * LN2, rel=1e-6)
    expected = (grid.num - 1) * LN2 if ignored else grid.num * LN2
    assert rule.terms["obj"].item() == pytest.approx(expected, rel=1e-6)


def test_ignore_rule_never_touches_the_positive():
    raw, grid, labels = _ignore_case(1.0)
    raw[0, 78, 4] = -3.0  # the positive's obj logit: BCE(-3, 1) = log(1 + e^3)
    out = YOLOXLoss(LossConfig(ignore_iou=0.01), AssignConfig(assigner="yolov3"), num_classes=2)(raw, grid, labels)
    # The positive keeps its loss; the overlapping negative (81) and the zero-IoU-free rest: only
    # predictions overlapping the GT above 0.01 are dropped, so count them by hand from the decode.
    boxes = decode_boxes(raw[0, :, :4], grid)
    gt = torch.tensor([20.0, 28.0, 8.0, 8.0])
    lo = torch.maximum(boxes[:, :2] - boxes[:, 2:] / 2, gt[:2] - 4)
    hi = torch.minimum(boxes[:, :2] + boxes[:, 2:] / 2, gt[:2] + 4)
    inter = (hi - lo).clamp(min=0).prod(dim=1)
    iou = inter / (boxes[:, 2] * boxes[:, 3] + 64 - inter)
    dropped = int(((iou > 0.01) & (torch.arange(grid.num) != 78)).sum())
    assert dropped >= 2
    expected = math.log1p(math.exp(3.0)) + (grid.num - 1 - dropped) * LN2
    assert out.terms["obj"].item() == pytest.approx(expected, rel=1e-6)


def _zero_iou_positive():
    """Centre assigner, anchor-free 64 px grid: GT 8x8 at (20, 28) -> anchor 26 (cell (2, 3)); its
    predicted box is moved far away (tx = 4), so the positive's IoU with its GT is 0."""
    grid = make_anchor_grid([(8, 8), (4, 4), (2, 2)], (8, 16, 32))
    raw = torch.zeros(1, grid.num, 5 + 3, requires_grad=False)
    raw[0, 26, 0] = 4.0
    labels = torch.tensor([[[1.0, 20.0, 28.0, 8.0, 8.0]]])
    return raw, grid, labels


def test_fixed_positive_with_zero_iou_still_gets_box_gradient_and_class_target():
    raw, grid, labels = _zero_iou_positive()
    center = AssignConfig(assigner="center")

    def grads(loss_cfg):
        x = raw.clone().requires_grad_(True)
        out = YOLOXLoss(loss_cfg, center, num_classes=3)(x, grid, labels)
        assert out.num_fg == 1 and out.assignment.matched_iou[0, 26].item() == 0.0
        out.total.backward()
        return x.grad[0, 26]

    official = grads(LossConfig())
    # YOLOX's targets: 1 - IoU^2 is flat at IoU 0 and the class target is one-hot x 0 = 0, so the
    # GT class logit is pushed *down* (BCE gradient sigmoid(0) - 0 = +0.5) while obj is pushed up.
    assert official[:4].abs().sum().item() == 0.0
    assert official[5 + 1].item() == pytest.approx(0.5)
    fixed = grads(LossConfig(iou_type="giou", cls_target="one_hot"))
    assert fixed[:4].abs().sum().item() > 0.0
    assert fixed[0].item() > 0.0  # the box is pulled back towards the GT (tx must decrease)
    assert fixed[5 + 1].item() == pytest.approx(-0.5)  # target 1: the class logit goes up
    always_l1 = grads(LossConfig(l1_always=True))
    assert always_l1[0].item() > 0.0


def test_diagnostics_of_a_zero_iou_positive():
    raw, grid, labels = _zero_iou_positive()
    raw[0, 26, 4] = math.log(3.0)  # obj score 0.75; class 1 logit 0 -> 0.5
    out = YOLOXLoss(LossConfig(), AssignConfig(assigner="center"), num_classes=3)(raw, grid, labels)
    logs = out.log_dict()
    assert logs["pos_iou"] == 0.0 and logs["pos_iou_zero"] == 1.0
    assert logs["pos_score"] == pytest.approx(0.75 * 0.5)


def _write_coco(path, boxes):
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": 200, "height": 100} for i in range(len(boxes))]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [0, 0, w, h], "area": w * h, "iscrowd": 0}
            for i, (w, h) in enumerate(boxes)]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]}))


def test_kmeans_anchors_are_deterministic_cached_and_scaled(tmp_path):
    gen = torch.Generator().manual_seed(0)
    boxes = (torch.rand(300, 2, generator=gen) * 150 + 10).round().tolist()
    ann = tmp_path / "a" / "train.json"
    ann.parent.mkdir()
    _write_coco(ann, boxes)
    first = kmeans_anchors(ann, 100, k=9)
    cache = list(ann.parent.glob("*.anchors-*.json"))
    assert len(cache) == 1
    cache[0].unlink()
    assert kmeans_anchors(ann, 100, k=9) == first  # refitted from scratch: the same shapes
    # The same dataset in another folder (another mtime) fits the same shapes.
    other = tmp_path / "b" / "train.json"
    other.parent.mkdir()
    _write_coco(other, boxes)
    assert kmeans_anchors(other, 100, k=9) == first
    assert len(first) == 9 and [w * h for w, h in first] == sorted(w * h for w, h in first)
    # Images are 200 px wide: at a 100 px input every box is halved, so every shape lies in the
    # halved data range (5..80 px).
    assert all(5.0 <= w <= 80.0 and 5.0 <= h <= 80.0 for w, h in first)
    # A cached answer is returned as is; a changed annotation file is refitted.
    cache = next(ann.parent.glob("*.anchors-*.json"))
    data = json.loads(cache.read_text())
    data["anchors"][0] = [1.0, 1.0]
    cache.write_text(json.dumps(data))
    assert kmeans_anchors(ann, 100, k=9)[0] == (1.0, 1.0)
    _write_coco(ann, boxes[:-1] + [[77, 31]])
    assert kmeans_anchors(ann, 100, k=9)[0] != (1.0, 1.0)


def test_kmeans_anchors_per_level_follow_the_anchor_free_levels(tmp_path):
    # Boxes of 10-20 px and 30-40 px at a 100 px input (images are 200 px wide: halved): with bounds
    # (25, 50) the small ones are level 0 and the large ones level 1; level 2 has none.
    gen = torch.Generator().manual_seed(1)
    small = (torch.rand(60, 2, generator=gen) * 20 + 20).round().tolist()   # 20-40 px -> 10-20 px
    large = (torch.rand(60, 2, generator=gen) * 20 + 60).round().tolist()   # 60-80 px -> 30-40 px
    ann = tmp_path / "train.json"
    _write_coco(ann, small + large)
    anchors = kmeans_anchors(ann, 100, k=9, level_bounds=(25.0, 50.0))
    assert kmeans_anchors(ann, 100, k=9, level_bounds=(25.0, 50.0)) == anchors
    level0, level1, level2 = anchors[:3], anchors[3:6], anchors[6:]
    assert all(10 <= w <= 20 and 10 <= h <= 20 for w, h in level0)
    assert all(30 <= w <= 40 and 30 <= h <= 40 for w, h in level1)
    # The empty coarsest level gets level 1's shapes one stride step (x2) up.
    assert [c for shape in level2 for c in shape] == pytest.approx([2 * c for shape in level1 for c in shape], abs=0.02)
    # Without bounds the 9 shapes are split by area (YOLOv3's rule): level 1 then mixes both groups.
    plain = kmeans_anchors(ann, 100, k=9)
    assert plain != anchors
