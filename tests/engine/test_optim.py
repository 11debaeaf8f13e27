"""Parameter groups and the warm-cos lr schedule against hand-computed values (§6)."""

import math

import pytest
from torch import nn

from yolox_ray.config import TrainConfig
from yolox_ray.engine.optim import LRSchedule, base_lr, build_optimizer, param_groups


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.SiLU(), nn.Conv2d(4, 2, 1))


def test_three_groups_decay_only_conv_weights():
    net = _net()
    norm, decay, bias = param_groups(net)
    assert [id(p) for p in norm] == [id(net[1].weight)]
    assert [id(p) for p in decay] == [id(net[0].weight), id(net[3].weight)]
    assert [id(p) for p in bias] == [id(net[1].bias), id(net[3].bias)]

    opt = build_optimizer(net, TrainConfig(weight_decay=5e-4, momentum=0.9))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.0, 5e-4, 0.0]
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in opt.param_groups)
    assert all(g["lr"] == 0.0 for g in opt.param_groups)  # warm-up starts at warmup_lr = 0
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))


def test_base_lr_scales_with_total_batch():
    assert base_lr(TrainConfig(batch_size=64)) == pytest.approx(0.01)
    assert base_lr(TrainConfig(batch_size=128)) == pytest.approx(0.02)
    assert base_lr(TrainConfig(batch_size=8, lr_per_image=0.001)) == pytest.approx(0.008)


def test_warm_cos_values():
    # base = 0.01/64 * 8 = 0.00125, min = 6.25e-5; I = 5: T_w = 10, T = 50, T_na = 10, cosine span 30.
    cfg = TrainConfig(epochs=10, warmup_epochs=2, no_aug_epochs=2, batch_size=8, min_lr_ratio=0.05)
    s = LRSchedule.from_config(cfg, iters_per_epoch=5)
    assert s.lr(0) == 0.0
    assert s.lr(5) == pytest.approx(0.0003125)  # 0.00125 * (5/10)^2
    assert s.lr(10) == pytest.approx(0.00125)
    assert s.lr(25) == pytest.approx(0.00065625)  # halfway down the cosine: (base + min) / 2
    assert s.lr(39) == pytest.approx(6.25e-5 + 0.5 * 0.0011875 * (1 + math.cos(math.pi * 29 / 30)))
    assert s.lr(40) == pytest.approx(6.25e-5)  # flat for the no-aug epochs
    assert s.lr(49) == pytest.approx(6.25e-5)


def test_warmup_from_nonzero_start_and_no_warmup():
    cfg = TrainConfig(epochs=4, warmup_epochs=1, no_aug_epochs=0, batch_size=64, warmup_lr=0.002)
    s = LRSchedule.from_config(cfg, iters_per_epoch=4)
    assert s.lr(2) == pytest.approx(0.002 + (0.01 - 0.002) * 0.25)
    flat = LRSchedule.from_config(TrainConfig(epochs=4, warmup_epochs=0, no_aug_epochs=0, batch_size=64), 4)
    assert flat.lr(0) == pytest.approx(0.01)
    assert flat.lr(8) == pytest.approx(0.0005 + 0.5 * 0.0095)
