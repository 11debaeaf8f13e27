"""Necks: PAFPN (YOLOX-Nano…X) and the YOLOv3 FPN (Darknet-53), §2.3–§2.4.

As in the official code the neck owns the backbone (attribute `backbone`), which is why official
state-dict keys read `backbone.backbone.*` for the backbone and `backbone.*` for the neck.
Every concat puts the upsampled / downsampled path first and the lateral feature second.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from yolox_ray.models.backbones import CSPDarknet, Darknet53
from yolox_ray.models.blocks import Act, BaseConv, CSPLayer, conv3x3


def _up(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class PAFPN(nn.Module):
    """Top-down then bottom-up path over CSPDarknet; outputs 256w / 512w / 1024w channels."""

    def __init__(self, depth: float, width: float, depthwise: bool = False, act: Act = "silu"):
        super().__init__()
        self.backbone = CSPDarknet(depth, width, depthwise=depthwise, act=act)
        c3, c4, c5 = (int(c * width) for c in (256, 512, 1024))
        n = round(3 * depth)
        self.out_channels = (c3, c4, c5)
        self.lateral_conv0 = BaseConv(c5, c4, 1, 1, act=act)
        self.C3_p4 = CSPLayer(2 * c4, c4, n, shortcut=False, depthwise=depthwise, act=act)
        self.reduce_conv1 = BaseConv(c4, c3, 1, 1, act=act)
        self.C3_p3 = CSPLayer(2 * c3, c3, n, shortcut=False, depthwise=depthwise, act=act)
        self.bu_conv2 = conv3x3(c3, c3, 2, depthwise, act)
        self.C3_n3 = CSPLayer(2 * c3, c4, n, shortcut=False, depthwise=depthwise, act=act)
        self.bu_conv1 = conv3x3(c4, c4, 2, depthwise, act)
        self.C3_n4 = CSPLayer(2 * c4, c5, n, shortcut=False, depthwise=depthwise, act=act)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x2, x1, x0 = self.backbone(x)
        fpn_out0 = self.lateral_conv0(x0)
        f_out0 = self.C3_p4(torch.cat([_up(fpn_out0), x1], dim=1))
        fpn_out1 = self.reduce_conv1(f_out0)
        p3 = self.C3_p3(torch.cat([_up(fpn_out1), x2], dim=1))
        p4 = self.C3_n3(torch.cat([self.bu_conv2(p3), fpn_out1], dim=1))
        p5 = self.C3_n4(torch.cat([self.bu_conv1(p4), fpn_out0], dim=1))
        return p3, p4, p5


def _embedding(c_in: int, c_mid: int, c_wide: int, act: Act) -> nn.Sequential:
    """YOLOv3's five-conv block: 1×1, 3×3, 1×1, 3×3, 1×1 alternating c_mid and c_wide channels."""
    return nn.Sequential(
        BaseConv(c_in, c_mid, 1, 1, act=act),
        BaseConv(c_mid, c_wide, 3, 1, act=act),
        BaseConv(c_wide, c_mid, 1, 1, act=act),
        BaseConv(c_mid, c_wide, 3, 1, act=act),
        BaseConv(c_wide, c_mid, 1, 1, act=act),
    )


class YOLOFPN(nn.Module):
    """YOLOv3 top-down FPN over Darknet-53; outputs 128 / 256 / 512 channels (P5 = dark5 itself)."""

    out_channels = (128, 256, 512)

    def __init__(self, act: Act = "lrelu"):
        super().__init__()
        self.backbone = Darknet53(act=act)
        self.out1_cbl = BaseConv(512, 256, 1, 1, act=act)
        self.out1 = _embedding(512 + 256, 256, 512, act)
        self.out2_cbl = BaseConv(256, 128, 1, 1, act=act)
        self.out2 = _embedding(256 + 128, 128, 256, act)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x2, x1, x0 = self.backbone(x)
        p4 = self.out1(torch.cat([_up(self.out1_cbl(x0)), x1], dim=1))
        p3 = self.out2(torch.cat([_up(self.out2_cbl(p4)), x2], dim=1))
        return p3, p4, x0
