"""`yolox-ray info` prints params, paper-convention GFLOPs and anchor points."""

from __future__ import annotations

import json

import pytest

from yolox_ray.cli import main


def _info(capsys, *argv):
    assert main(["info", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_json_defaults_to_the_preset_test_size(capsys):
    info = _info(capsys, "--model", "yolox_nano")
    assert info["size"] == [416, 416]
    assert info["params"] == 912_159
    assert info["gflops"] == pytest.approx(1.079, abs=1e-3)
    assert info["anchor_points"] == 52 * 52 + 26 * 26 + 13 * 13 == 3549
    assert info["predictions"] == 3549
    assert info["paper"] == {"params_m": 0.91, "gflops": 1.08, "size": [416, 416], "num_classes": 80,
                             "source": "model zoo"}
    assert info["n_anchors"] == 1


def test_info_size_classes_and_anchor_based(capsys):
    info = _info(capsys, "--model", "yolox_nano", "--size", "320", "--num-classes", "20")
    assert info["anchor_points"] == 40 * 40 + 20 * 20 + 10 * 10 == 2100
    # 80-class GFLOPs scaled by area, minus the 60 dropped cls channels: each costs 64 MACs + 1 bias
    # add per cell (head width 64), over 2100 cells, ×2 ops.
    assert info["gflops"] == pytest.approx(1.079 * (320 / 416) ** 2 - 2 * 60 * 65 * 2100 / 1e9, abs=1e-3)
    assert info["params"] < 912_159
    info = _info(capsys, "--model", "yolov3_coupled")
    assert info["params"] == 62_998_749 and info["gflops"] == pytest.approx(157.279, abs=1e-3)
    assert info["anchor_points"] == 8400 and info["predictions"] == 3 * 8400
    assert info["n_anchors"] == 3
    assert info["paper"]["params_m"] == 63.0 and info["paper"]["source"] == "Table 2 'YOLOv3 baseline'"


def test_info_text_and_errors(capsys):
    assert main(["info", "--model", "yolox_s"]) == 0
    out = capsys.readouterr().out
    assert "8,968,255" in out and "26.806" in out and "8400" in out and "paper" in out
    assert main(["info", "--model", "yolox_q"]) == 2
    assert "unknown preset 'yolox_q'" in capsys.readouterr().err
    assert main(["info", "--model", "yolox_s", "--size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
