"""Exact parameter counts and paper-convention GFLOPs (reference §3, §3.1; paper Table 2 / model zoo)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from yolox_ray.models import build_model, count_gflops, count_params

# name: (exact params at 80 classes, GFLOPs measured with the official code under the paper's rule
#        (reference §3 convention A), paper's printed GFLOPs, input side)
SIZES = {
    "yolox_nano": (912_159, 1.079, 1.08, 416),
    "yolox_tiny": (5_055_855, 6.451, 6.45, 416),
    "yolox_s": (8_968_255, 26.806, 26.8, 640),
    "yolox_m": (25_326_495, 73.755, 73.8, 640),
    "yolox_l": (54_208_895, 155.651, 155.6, 640),
    "yolox_x": (99_071_455, 281.931, 281.9, 640),
    "yolox_darknet53": (63_724_767, 185.273, 185.3, 640),
    "yolov3_coupled": (62_998_749, 157.279, 157.3, 640),
    "yolov3_decoupled_anchor": (63_855_837, 186.007, 186.0, 640),
}


@pytest.mark.parametrize("name", list(SIZES))
def test_params_and_gflops_match_paper(name):
    params, measured, paper, side = SIZES[name]
    model = build_model(name)
    assert count_params(model) == params
    gflops = count_gflops(model, side)
    assert abs(gflops - paper) / paper < 0.005, (gflops, paper)
    assert gflops == pytest.approx(measured, abs=6e-4)
    # Non-square sizes scale with the area.
    assert count_gflops(model, (side, 2 * side)) == pytest.approx(2 * gflops, rel=1e-9)


def test_param_count_with_other_class_count():
    # Only the three cls_preds convs of the decoupled head depend on C: each has (C·hidden + C)
    # parameters, hidden = 128 for yolox_s; 20 classes instead of 80 removes 3·60·129 = 23,220.
    assert count_params(build_model("yolox_s", num_classes=20)) == 8_968_255 - 23_220


class _Tiny(nn.Module):
    """One conv without bias + BN + LeakyReLU, one conv with bias + SiLU, max-pool: hand-countable."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.lrelu = nn.LeakyReLU(0.1)
        self.c2 = nn.Conv2d(4, 2, 1, stride=2, bias=True)
        self.silu = nn.SiLU()
        self.pool = nn.MaxPool2d(3, 1, 1)

    def forward(self, x):
        return self.pool(self.silu(self.c2(self.lrelu(self.bn(self.c1(x))))))


def test_counting_rule_by_hand():
    # At 64×64: c1 MACs 64·64·4·(3·3·3) = 442,368; BN 2·(4·64·64) = 32,768; LeakyReLU 4·64·64 = 16,384;
    # c2 output 2·32·32 = 2,048 elements × (4 MACs + 1 bias add) = 10,240; SiLU and max-pool count 0.
    ops = 442_368 + 32_768 + 16_384 + 10_240
    model = _Tiny()
    assert count_gflops(model, 64) == pytest.approx(2 * ops / 1e9, rel=1e-12)
    assert count_gflops(model, 128) == pytest.approx(4 * 2 * ops / 1e9, rel=1e-12)
    assert count_params(model) == 3 * 4 * 9 + 4 + 4 + 4 * 2 + 2
    assert model.training  # counting does not leave the model in eval mode


@pytest.mark.parametrize("bad", [100, 0, (640, 100), -32])
def test_gflops_rejects_sizes_off_the_stride(bad):
    with pytest.raises(ValueError, match="multiples of 32"):
        count_gflops(_Tiny(), bad)


def test_split_of_params_between_backbone_neck_head():
    # Reference §2.6 / §2.4 measured splits.
    def split(model):
        total_neck = count_params(model.backbone)
        backbone = count_params(model.backbone.backbone)
        return backbone, total_neck - backbone, count_params(model.head)

    with torch.device("meta"):
        assert split(build_model("yolox_s")) == (4_212_672, 2_834_688, 1_920_895)
        assert split(build_model("yolox_nano")) == (459_968, 347_424, 104_767)
        assert split(build_model("yolox_darknet53")) == (52_651_744, 3_692_544, 7_380_479)


def test_other_head_combinations_build():
    # Reference §3.1 "(extra)" row: coupled 3×3+1×1 head, anchor-free (85 outputs) on Darknet53.
    from dataclasses import replace

    from yolox_ray.config import model_preset

    with torch.device("meta"):
        assert count_params(build_model(replace(model_preset("yolov3_coupled"), n_anchors=1))) == 62_693_599
    # Any neck with any head: nano's PAFPN with the anchor-based coupled head.
    model = build_model(replace(model_preset("yolox_nano"), head="coupled", n_anchors=3), num_classes=4)
    assert model.train()(torch.zeros(1, 3, 64, 64)).shape == (1, 3 * (64 + 16 + 4), 9)
