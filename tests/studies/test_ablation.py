"""The roadmap presets (pure config) and the ablation table arithmetic."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from yolox_ray.ablation import (
    PAPER_TABLE2,
    ROW_KEYS,
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


@pytest.mark.parametrize("scale", ["quick", "paper"])
def test_each_row_changes_exactly_its_switch(scale):
    rows = ablation_rows(scale)
    assert [r.key for r in rows] == list(ROW_KEYS)
    flat = [to_flat_dict(r.config) for r in rows]
    # The switches each step of the roadmap is allowed to change (and must change).
    expected = {
        "decoupled_head": {"model.head"},
        "strong_augmentation": {"data.mosaic_prob", "data.enable_mixup"},
        "anchor_free": {"model.n_anchors", "assign.assigner"},
        "multi_positives": {"assign.assigner"},
        "simota": {"assign.assigner"},
    }
    for prev, cur, row in zip(flat, flat[1:], rows[1:]):
        changed = {k for k in cur if k != "name" and cur[k] != prev[k]}
        assert changed == expected[row.key], (row.key, changed)
    base = rows[0].config
    assert (base.model.head, base.model.n_anchors, base.assign.assigner) == ("coupled", 3, "yolov3")
    assert base.data.mosaic_prob == 0 and not base.data.enable_mixup
    assert base.data.flip_prob > 0 and base.data.hsv_prob > 0 and base.train.multiscale
    last = rows[-1].config
    assert (last.model.head, last.model.n_anchors, last.assign.assigner) == ("decoupled", 1, "simota")
    assert last.data.mosaic_prob == 1.0 and last.data.enable_mixup


def test_paper_scale_is_darknet53_at_640_for_300_epochs():
    rows = ablation_rows("paper", data_root="/data/coco")
    for r in rows:
        c = r.config
        assert (c.model.backbone, c.model.neck, c.model.act) == ("darknet53", "yolofpn", "lrelu")
        assert c.data.input_size == (640, 640) and c.data.root == "/data/coco"
        assert (c.train.epochs, c.train.warmup_epochs, c.train.no_aug_epochs) == (300, 5, 15)
    assert rows[3].config.model.anchors == rows[0].config.model.anchors


def test_quick_scale_is_small_and_scales_geometry_with_input():
    spec = scale_spec("quick")
    c = ablation_config("yolov3_baseline", "quick")
    assert c.model.backbone == "cspdarknet" and not c.model.depthwise and c.model.width <= 0.375
    assert c.data.root == "synthetic" and c.data.input_size[0] <= 320
    side = c.data.input_size[0]
    # The largest YOLOv3 anchor (373 x 326 px at 640) covers the same fraction of the smaller image.
    assert c.model.anchors[-1] == pytest.approx((373 * side / 640, 326 * side / 640), abs=0.01)
    assert c.assign.level_ranges == pytest.approx((64 * side / 640, 128 * side / 640))
    assert 0 < c.train.no_aug_epochs < c.train.epochs == spec.train.epochs


def test_rescale_schedule_moves_warmup_and_tail_proportionally():
    base = TrainConfig(epochs=300, warmup_epochs=5, no_aug_epochs=15)
    t = rescale_schedule(base, 30)
    assert (t.epochs, t.warmup_epochs, t.no_aug_epochs) == (30, 0.5, 2)  # 15/10 = 1.5 rounds to 2
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
