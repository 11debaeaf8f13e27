"""Building blocks of the YOLOX family (§2.1 of the reference).

Attribute names (`conv`, `bn`, `dconv`, `pconv`, `conv1`…`conv3`, `m`, `layer1`, `layer2`) are the
official ones, because they become the state-dict keys that official checkpoints are loaded by.
BatchNorm eps/momentum are set once for the whole model by `build_model` (as the official
`init_yolo` does), so the blocks use PyTorch's defaults here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from yolox_ray.config import ModelConfig

Act = str  # one of ModelConfig.act: "silu" | "lrelu" | "relu"


def make_activation(act: Act) -> nn.Module:
    """The activation module for a ModelConfig.act value (in place, like the official code)."""
    if act == "silu":
        return nn.SiLU(inplace=True)
    if act == "lrelu":
        return nn.LeakyReLU(0.1, inplace=True)
    if act == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"unknown activation {act!r} (silu, lrelu, relu)")


class BaseConv(nn.Module):
    """Conv2d (same padding, no bias) -> BatchNorm2d -> activation."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: Act = "silu"):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, padding=(k - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(nn.Module):
    """Depthwise k×k BaseConv then pointwise 1×1 BaseConv (YOLOX-Nano's cheap 3×3 conv)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, act: Act = "silu"):
        super().__init__()
        self.dconv = BaseConv(c_in, c_in, k, stride, groups=c_in, act=act)
        self.pconv = BaseConv(c_in, c_out, 1, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return self.pconv(self.dconv(x))


def conv3x3(c_in: int, c_out: int, stride: int, depthwise: bool, act: Act) -> nn.Module:
    """The 3×3 conv of a stage/branch: DWConv when depthwise (nano), else BaseConv."""
    if depthwise:
        return DWConv(c_in, c_out, 3, stride, act=act)
    return BaseConv(c_in, c_out, 3, stride, act=act)


class Bottleneck(nn.Module):
    """1×1 c_in→hidden, 3×3 hidden→c_out, residual add iff shortcut and c_in == c_out."""

    def __init__(self, c_in: int, c_out: int, shortcut: bool = True, expansion: float = 0.5,
                 depthwise: bool = False, act: Act = "silu"):
        super().__init__()
        hidden = int(c_out * expansion)
        self.conv1 = BaseConv(c_in, hidden, 1, 1, act=act)
        self.conv2 = conv3x3(hidden, c_out, 1, depthwise, act)
        self.use_add = shortcut and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class ResLayer(nn.Module):
    """Darknet-53 residual unit: 1×1 c→c/2, 3×3 c/2→c, add the input."""

    def __init__(self, c: int, act: Act = "lrelu"):
        super().__init__()
        self.layer1 = BaseConv(c, c // 2, 1, 1, act=act)
        self.layer2 = BaseConv(c // 2, c, 3, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layer2(self.layer1(x))


class SPPBottleneck(nn.Module):
    """Parallel SPP (not SPPF): 1×1 to c_in/2, concat [x, pool5, pool9, pool13] (x first), 1×1 out."""

    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, ...] = (5, 9, 13), act: Act = "silu"):
        super().__init__()
        hidden = c_in // 2
        self.conv1 = BaseConv(c_in, hidden, 1, 1, act=act)
        self.m = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernels)
        self.conv2 = BaseConv(hidden * (len(kernels) + 1), c_out, 1, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))


class CSPLayer(nn.Module):
    """YOLOv5 C3: branch A = 1×1 + n Bottlenecks, branch B = 1×1; concat [A, B] -> 1×1."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True, expansion: float = 0.5,
                 depthwise: bool = False, act: Act = "silu"):
        super().__init__()
        hidden = int(c_out * expansion)
        self.conv1 = BaseConv(c_in, hidden, 1, 1, act=act)
        self.conv2 = BaseConv(c_in, hidden, 1, 1, act=act)
        self.conv3 = BaseConv(2 * hidden, c_out, 1, 1, act=act)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, 1.0, depthwise, act) for _ in range(n)))

    def forward(self, x: Tensor) -> Tensor:
        a = self.m(self.conv1(x))
        b = self.conv2(x)
        return self.conv3(torch.cat((a, b), dim=1))


class Focus(nn.Module):
    """Space-to-depth stem: four pixel phases stacked on channels, then a k×k BaseConv.

    Phase order (fixed by the official checkpoints): (even row, even col), (odd row, even col),
    (even row, odd col), (odd row, odd col).
    """

    def __init__(self, c_in: int, c_out: int, k: int = 3, stride: int = 1, act: Act = "silu"):
        super().__init__()
        self.conv = BaseConv(4 * c_in, c_out, k, stride, act=act)

    def forward(self, x: Tensor) -> Tensor:
        phases = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return self.conv(torch.cat(phases, dim=1))


def set_batchnorm(module: nn.Module, cfg: ModelConfig) -> None:
    """Give every BatchNorm2d the config's eps and momentum (official: 1e-3, 0.03)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = cfg.bn_eps
            m.momentum = cfg.bn_momentum
