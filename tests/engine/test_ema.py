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


def test_averages_exactly_the_state_dicts_float_entries():
    """Parameters and persistent float buffers move; a non-persistent buffer (not in the state dict,
    so not in any checkpoint) and integer buffers stay as they were."""

    class WithGrid(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)
            self.bn = nn.BatchNorm2d(1)
            self.register_buffer("grid", torch.zeros(2), persistent=False)

    net = WithGrid()
    ema = ModelEMA(net, decay=0.5, ramp=1.0)
    with torch.no_grad():
        for t in (net.conv.weight, net.conv.bias, net.bn.weight, net.bn.bias, net.bn.running_mean, net.grid):
            t.fill_(4.0)
        net.bn.running_var.fill_(4.0)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    ema.update(net)
    d = 0.5 * (1 - math.exp(-1))
    after = ema.module.state_dict()
    for key in ("conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        expected = d * before[key] + (1 - d) * 4.0
        assert torch.allclose(after[key], expected), key
    assert torch.equal(ema.module.grid, torch.zeros(2))
    assert ema.module.bn.num_batches_tracked.item() == 0
