"""EMA decay ramp and update over params and float buffers, hand-computed."""

import math

import pytest
import torch
from torch import nn

from yolox_ray.engine.ema import ModelEMA


def test_decay_ramp_official_values():
    ema = ModelEMA(nn.Linear(1, 1))
    assert ema.decay(1) == pytest.approx(0.9998 * (1 - math.exp(-1 / 2000)))
    assert ema.decay(2000) == pytest.approx(0.9998 * 0.6321205588, rel=1e-9)
    assert ema.decay(10000) == pytest.approx(0.99306, abs=1e-5)


def test_update_weights_and_bn_buffers():
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(0.0)
    ema = ModelEMA(net, decay=0.5, ramp=1.0)
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[1].running_mean.fill_(2.0)
        net[1].num_batches_tracked.fill_(7)
    ema.update(net)
    d1 = 0.5 * (1 - math.exp(-1))  # 0.316060...
    assert ema.module[0].weight.item() == pytest.approx(1 - d1)
    assert ema.module[1].running_mean.item() == pytest.approx(2 * (1 - d1))
    assert ema.module[1].running_var.item() == pytest.approx(1.0)  # 1 -> 1 stays 1
    assert ema.module[1].num_batches_tracked.item() == 0  # integer buffers are not averaged
    with torch.no_grad():
        net[0].weight.fill_(3.0)
    ema.update(net)
    d2 = 0.5 * (1 - math.exp(-2))
    assert ema.module[0].weight.item() == pytest.approx(d2 * (1 - d1) + (1 - d2) * 3.0)
    assert ema.updates == 2
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_state_roundtrip_keeps_update_count():
    net = nn.Linear(2, 2)
    a = ModelEMA(net)
    for _ in range(3):
        a.update(net)
    b = ModelEMA(nn.Linear(2, 2))
    b.load_state_dict(a.state_dict())
    assert b.updates == 3
    assert torch.equal(b.module.weight, a.module.weight)
