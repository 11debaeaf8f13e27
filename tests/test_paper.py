"""yolox_ray.paper equals the project's transcription of the paper (tests/reference/paper_tables.json,
a verbatim copy of shared/reference/paper_tables.json, kept in the repo so a fresh clone can test)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from yolox_ray import paper
from yolox_ray.config import MODEL_PRESETS

TABLES = json.loads((Path(__file__).parent / "reference" / "paper_tables.json").read_text())


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def test_model_rows_equal_the_json():
    rows = TABLES["models"]["rows"]
    assert [_drop_none(asdict(r)) for r in paper.PAPER_MODELS] == rows


def test_ablation_rows_equal_the_json():
    roadmap = TABLES["ablation_roadmap"]
    assert [asdict(r) for r in paper.ABLATION_ROADMAP] == roadmap["rows"]
    ref = asdict(paper.ABLATION_REFERENCE_POINT)
    assert ref.pop("key") == "yolov3_ultralytics"
    assert ref == roadmap["reference_point"]
    assert "640x640" in roadmap["note"] and paper.ABLATION_SIZE == 640


def test_lookups_and_clear_errors():
    assert paper.paper_model("yolox_s").gflops == 26.8
    assert paper.ablation_row("simota").ap == 47.3
    with pytest.raises(KeyError, match="no paper model row 'yolox_q'.*yolox_nano"):
        paper.paper_model("yolox_q")
    with pytest.raises(KeyError, match="no ablation row 'mosaic'.*yolov3_baseline"):
        paper.ablation_row("mosaic")


def test_every_model_preset_has_its_published_size():
    # Numbers as printed in the paper: zoo table, Table 2 for the Darknet53 heads (two decimals).
    want = {
        "yolox_nano": (0.91, 1.08, 416), "yolox_tiny": (5.06, 6.45, 416), "yolox_s": (9.0, 26.8, 640),
        "yolox_m": (25.3, 73.8, 640), "yolox_l": (54.2, 155.6, 640), "yolox_x": (99.1, 281.9, 640),
        "yolox_darknet53": (63.72, 185.3, 640), "yolov3_coupled": (63.0, 157.3, 640),
        "yolov3_decoupled_anchor": (63.86, 186.0, 640),
    }
    assert set(want) == set(MODEL_PRESETS)
    for name, (params_m, gflops, size) in want.items():
        got = paper.paper_size(name)
        assert (got.params_m, got.gflops, got.size) == (params_m, gflops, size), name
    assert paper.paper_size("my_custom_model") is None
