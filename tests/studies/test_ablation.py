"""The roadmap presets (pure config) and the ablation table arithmetic."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from yolox_ray.ablation import (
    PAPER_TABLE2,
    ModelCost,
    TrialResult,
    ablation_config,
    ablation_rows,
    build_table,
    rescale_schedule,
    scale_spec,
    table_csv,
    table_markdown,
)
from yolox_ray.config import ConfigError, TrainConfig, to_flat_dict

PAPER_JSON = Path(__file__).resolve().parents[3] / "shared" / "reference" / "paper_tables.json"


def test_paper_values_match_reference_json():
    rows = json.loads(PAPER_JSON.read_text())["ablation_roadmap"]["rows"]
    by_key = {r["key"]: r for r in rows}
    assert [r.key for r in PAPER_TABLE2] == [r["key"] for r in rows if r["key"] != "nms_free"]
    for ours in PAPER_TABLE2:
        ref = by_key[ours.key]
        assert (ours.label, ours.ap, ours.params_m, ours.gflops) == (ref["label"], ref["ap"], ref["params_m"], ref["gflops"])


# The switches each step of the roadmap may (and must) change, per scale. The per-row recipe of the
# quick preset (ablation_recipes.json: lr, EMA) may differ too and is checked separately.
STEP_SWITCHES = {
    "decoupled_head": {"model.head"},
    "strong_augmentation": {"data.mosaic_prob", "data.enable_mixup"},
    "anchor_free": {"model.n_anchors", "model.box_decode", "assign.assigner", "loss.ignore_iou"},
    "multi_positives": {"assign.assigner"},
    "simota": {"assign.assigner", "assign.geometry", "assign.center_radius", "loss.cls_target", "loss.iou_type"},
    "simota_2023": {"assign.geometry", "assign.center_radius"},
}


@pytest.mark.parametrize("scale", ["quick", "paper"])
def test_each_row_changes_exactly_its_switch(scale):
    rows = ablation_rows(scale)
    keys = [r.key for r in rows]
    assert keys[:6] == ["yolov3_baseline", "decoupled_head", "strong_augmentation", "anchor_free",
                        "multi_positives", "simota"]
    assert keys[6:] == (["simota_2023"] if scale == "paper" else [])
    recipe_keys = {k for overrides in scale_spec(scale).row_overrides.values() for k in overrides}
    flat = [to_flat_dict(r.config) for r in rows]
    switches = dict(STEP_SWITCHES)
    if scale == "quick":  # the small-model strong augmentation: MixUp stays off, Mosaic scale 0.5-1.5
        switches["strong_augmentation"] = {"data.mosaic_prob", "data.mosaic_scale"}
    for prev, cur, row in zip(flat, flat[1:], rows[1:]):
        changed = {k for k in cur if k != "name" and k not in recipe_keys and cur[k] != prev[k]}
        assert changed == switches[row.key], (row.key, changed)
    base = rows[0].config
    assert (base.model.head, base.model.n_anchors, base.assign.assigner) == ("coupled", 3, "yolov3")
    assert base.data.mosaic_prob == 0 and not base.data.enable_mixup
    assert base.data.flip_prob > 0 and base.data.hsv_prob > 0 and base.train.multiscale
    simota = rows[5].config
    assert (simota.model.head, simota.model.n_anchors, simota.assign.assigner) == ("decoupled", 1, "simota")
    assert simota.data.mosaic_prob == 1.0 and simota.data.enable_mixup == (scale == "paper")


# The paper's recipe for each Table 2 row (paper §2.1-§2.4, reference yolox.md §6 and §13), written out
# independently of yolox_ray/ablation.py: head, predictions per cell, assignment, centre decode,
# ignore rule, Mosaic/MixUp, SimOTA geometry and radius.
PAPER_ROWS = [
    # key                  head        n  assigner          decode    ignore mosaic mixup geometry          r
    ("yolov3_baseline",     "coupled",   3, "yolov3",         "yolov3", 0.5,  0.0,   False, None,             None),
    ("decoupled_head",      "decoupled", 3, "yolov3",         "yolov3", 0.5,  0.0,   False, None,             None),
    ("strong_augmentation", "decoupled", 3, "yolov3",         "yolov3", 0.5,  1.0,   True,  None,             None),
    ("anchor_free",         "decoupled", 1, "center",         "linear", None, 1.0,   True,  None,             None),
    ("multi_positives",     "decoupled", 1, "multi_positive", "linear", None, 1.0,   True,  None,             None),
    ("simota",              "decoupled", 1, "simota",         "linear", None, 1.0,   True,  "box_and_center", 2.5),
]


def test_paper_preset_rows_are_the_papers_recipe_item_by_item():
    rows = {r.key: r.config for r in ablation_rows("paper", data_root="/data/coco", backbone_weights="/w/dn53.pth")}
    for key, head, n, assigner, decode, ignore, mosaic, mixup, geometry, radius in PAPER_ROWS:
        c = rows[key]
        assert (c.model.head, c.model.n_anchors, c.assign.assigner, c.model.box_decode) == (head, n, assigner, decode), key
        assert (c.loss.ignore_iou, c.data.mosaic_prob, c.data.enable_mixup) == (ignore, mosaic, mixup), key
        if geometry is not None:
            assert (c.assign.geometry, c.assign.center_radius, c.assign.penalty) == (geometry, radius, 1e5), key
            assert (c.assign.candidate_k, c.assign.iou_cost_weight, c.assign.cls_cost_weight) == (10, 3.0, 1.0)
            # SimOTA keeps YOLOX's own targets exactly: 1 - IoU^2, one-hot x IoU, no ignore rule.
            assert (c.loss.iou_type, c.loss.cls_target, c.loss.l1_always) == ("iou", "iou", False)
        # Common recipe: Darknet53 + SPP at 640, multi-scale 448-832, 300 epochs (5 warm-up, 15 no-aug),
        # batch 64 at lr 0.01/64 per image, SGD momentum 0.9, wd 5e-4, EMA 0.9998, Mosaic scale 0.1-2,
        # MixUp scale 0.5-1.5, rotation 10, translate 0.1, shear 2, COCO anchors.
        assert (c.model.backbone, c.model.neck, c.model.act) == ("darknet53", "yolofpn", "lrelu")
        assert c.data.input_size == (640, 640) and c.data.test_size == (640, 640) and c.data.root == "/data/coco"
        lo, hi = c.data.multiscale_sides()
        assert (32 * lo, 32 * hi) == (448, 832)
        assert (c.train.epochs, c.train.warmup_epochs, c.train.no_aug_epochs, c.train.batch_size) == (300, 5, 15, 64)
        assert c.train.lr_per_image * 64 == pytest.approx(0.01)
        assert (c.train.momentum, c.train.weight_decay, c.train.ema_decay) == (0.9, 5e-4, 0.9998)
        assert (c.data.mosaic_scale, c.data.mixup_scale) == ((0.1, 2.0), (0.5, 1.5))
        assert (c.data.degrees, c.data.translate, c.data.shear) == (10.0, 0.1, 2.0)
        assert c.model.anchors == ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119),
                                   (116, 90), (156, 198), (373, 326))
    # ImageNet-pretrained backbone for rows 1-2 only: "from scratch" from strong augmentation on.
    assert [rows[k].model.backbone_weights for k, *_ in PAPER_ROWS] == ["/w/dn53.pth"] * 2 + [""] * 4
    # The current official geometry is an extra, labelled row after the paper's SimOTA row.
    extra = ablation_rows("paper", rows=["simota_2023"])[0]
    assert (extra.config.assign.geometry, extra.config.assign.center_radius) == ("center", 1.5)
    assert "not in the paper" in extra.label


def test_paper_scale_is_darknet53_at_640_for_300_epochs():
    rows = ablation_rows("paper", data_root="/data/coco")
    for r in rows:
        c = r.config
        assert (c.model.backbone, c.model.neck, c.model.act) == ("darknet53", "yolofpn", "lrelu")
        assert c.data.input_size == (640, 640) and c.data.root == "/data/coco"
        assert (c.train.epochs, c.train.warmup_epochs, c.train.no_aug_epochs) == (300, 5, 15)
    assert rows[3].config.model.anchors == rows[0].config.model.anchors


def test_quick_scale_is_small_and_scales_geometry_with_input(tmp_path):
    spec = scale_spec("quick")
    c = ablation_config("yolov3_baseline", "quick")
    assert c.model.backbone == "cspdarknet" and not c.model.depthwise and c.model.width <= 0.375
    assert c.data.root == "synthetic" and c.data.input_size[0] <= 320
    side = c.data.input_size[0]
    # FCOS level bounds (128 / 256 px of the longer side at 640) cover the same fraction of the image.
    assert c.assign.level_ranges == pytest.approx((128 * side / 640, 256 * side / 640))
    assert 0 < c.train.no_aug_epochs < c.train.epochs == spec.train.epochs
    # The EMA averages over a small share of the run's updates (the official 5000 of a 555k-update COCO
    # run: 0.9 %), not over most of it as the official 0.9998 would on this short run.
    updates = c.train.epochs * c.data.synthetic_train // c.train.batch_size
    assert 1 / (1 - c.train.ema_decay) <= 0.05 * updates and c.train.ema_ramp <= 0.05 * updates
    # Anchors: 9 shapes sorted by area, inside the training boxes' range at this size, and another
    # size refits them in proportion.
    areas = [w * h for w, h in c.model.anchors]
    assert len(areas) == 9 and areas == sorted(areas) and max(max(a) for a in c.model.anchors) <= side
    other = ablation_rows("quick", rows=["yolov3_baseline"], size=side * 2)[0].config
    assert other.data.input_size == (2 * side, 2 * side)
    assert other.model.anchors[4][0] == pytest.approx(2 * c.model.anchors[4][0], rel=0.05)


def test_rescale_schedule_moves_warmup_and_tail_proportionally():
    base = TrainConfig(epochs=300, warmup_epochs=5, no_aug_epochs=15)
    t = rescale_schedule(base, 30)
    assert (t.epochs, t.warmup_epochs, t.no_aug_epochs) == (30, 0.5, 2)  # 15/10 = 1.5 rounds to 2
    # The EMA keeps its share of the run: horizon 1 / (1 - 0.9998) = 5000 updates -> 500, ramp 2000 -> 200.
    assert 1 / (1 - t.ema_decay) == pytest.approx(500) and t.ema_ramp == pytest.approx(200)
    assert rescale_schedule(base, 300) == base
    longer = rescale_schedule(TrainConfig(epochs=72, ema_decay=0.99, ema_ramp=200), 144)
    assert 1 / (1 - longer.ema_decay) == pytest.approx(200) and longer.ema_ramp == pytest.approx(400)
    t = rescale_schedule(base, 2)
    assert (t.epochs, t.no_aug_epochs) == (2, 1) and 0 < t.warmup_epochs < 1
    t = rescale_schedule(base, 1)
    assert (t.epochs, t.no_aug_epochs) == (1, 0) and t.warmup_epochs < 1
    with pytest.raises(ConfigError, match="epochs"):
        rescale_schedule(base, 0)


def test_bad_input_is_rejected():
    with pytest.raises(ConfigError, match="unknown ablation scale"):
        ablation_rows("huge")
    with pytest.raises(ConfigError, match="rows"):
        ablation_rows("quick", rows=["simota", "yolo9000"])
    with pytest.raises(ConfigError, match="train.max_iters"):
        ablation_rows("quick", overrides={"train.max_iters": 0})


def test_rows_subset_keeps_roadmap_order_and_overrides_apply():
    rows = ablation_rows("quick", rows=["simota", "yolov3_baseline"], epochs=2, overrides={"train.max_iters": 3})
    assert [r.key for r in rows] == ["yolov3_baseline", "simota"]
    assert all(r.config.train.max_iters == 3 and r.config.train.epochs == 2 for r in rows)


def test_build_table_mean_std_deltas_and_failures():
    rows = ablation_rows("quick", rows=["yolov3_baseline", "decoupled_head", "strong_augmentation"])
    results = [
        TrialResult("yolov3_baseline", 0, 0.10, 0.30),
        TrialResult("yolov3_baseline", 1, 0.20, 0.40),
        TrialResult("decoupled_head", 0, 0.25, 0.50),
        TrialResult("decoupled_head", 1, None, None),  # failed seed
    ]
    costs = {"yolov3_baseline": ModelCost(params=1_500_000, gflops=0.75)}
    table = build_table(rows, results, costs)
    b, d, s = table
    assert (b.n, b.n_missing) == (2, 0)
    assert b.ap_mean == pytest.approx(15.0) and b.ap_std == pytest.approx(7.0710678)  # sample std of 10, 20
    assert b.ap50_mean == pytest.approx(35.0) and b.delta is None and b.paper_delta is None
    assert (b.params_m, b.gflops) == (1.5, 0.75)
    assert (d.n, d.n_missing, d.ap_mean, d.ap_std) == (1, 1, pytest.approx(25.0), 0.0)
    assert d.delta == pytest.approx(10.0) and d.paper_delta == pytest.approx(39.6 - 38.5)
    assert s.ap_mean is None and s.delta is None and d.params_m is None
    labels = {"preset": "quick", "commit": "abc123"}
    md = table_markdown(table, labels)
    assert "**commit**: abc123" in md and "15.0 ± 7.1" in md and "+10.0" in md and "38.5" in md
    assert md.count("\n| ") == 1 + len(rows)  # header + one line per row
    parsed = list(csv.DictReader(io.StringIO(table_csv(table, labels))))
    assert [p["key"] for p in parsed] == ["yolov3_baseline", "decoupled_head", "strong_augmentation"]
    assert float(parsed[1]["paper_ap"]) == 39.6 and parsed[0]["commit"] == "abc123"
    with pytest.raises(ValueError, match="not in the table"):
        build_table(rows, [TrialResult("simota", 0, 0.3, 0.5)])


def test_adding_a_row_is_one_entry_in_the_roadmap_list(monkeypatch):
    """A new step between two rows: its config is the row above plus its overrides, the rows below it
    inherit it, and the table has a line for it (no paper value: it is not a Table 2 row)."""
    from yolox_ray import ablation

    new = ablation.RoadmapStep("no_flip", "+no flip", {"data.flip_prob": 0.0}, "a made-up step for this test")
    steps = list(ablation.ROADMAP_STEPS)
    steps.insert([s.key for s in steps].index("strong_augmentation"), new)
    monkeypatch.setattr(ablation, "ROADMAP_STEPS", tuple(steps))

    rows = ablation_rows("quick", epochs=2)
    keys = [r.key for r in rows]
    assert keys == ["yolov3_baseline", "decoupled_head", "no_flip", "strong_augmentation", "anchor_free",
                    "multi_positives", "simota"]
    by_key = {r.key: r.config for r in rows}
    assert by_key["decoupled_head"].data.flip_prob > 0
    assert by_key["no_flip"].data.flip_prob == 0.0 and by_key["simota"].data.flip_prob == 0.0
    flat_above, flat_new = to_flat_dict(by_key["decoupled_head"]), to_flat_dict(by_key["no_flip"])
    recipe = set(scale_spec("quick").row_overrides.get("decoupled_head", {}))  # that row's own lr (not inherited)
    assert {k for k in flat_new if flat_new[k] != flat_above[k]} - recipe == {"name", "data.flip_prob"}

    table = build_table(rows, [TrialResult(k, 0, 0.1 * (i + 1), 0.2) for i, k in enumerate(keys)])
    assert [r.key for r in table] == keys
    line = next(r for r in table if r.key == "no_flip")
    assert line.label == "+no flip" and line.ap_mean == pytest.approx(30.0) and line.delta == pytest.approx(10.0)
    assert line.paper_ap is None or line.paper_ap != line.paper_ap  # no paper value (None or NaN)
    assert "| +no flip |" in table_markdown(table, {"preset": "quick"})
