"""Backbones: CSPDarknet (YOLOX-Nano…X) and Darknet-53 with the YOLOv3-SPP block (§2.2, §2.4).

Both return the stride 8/16/32 features (dark3, dark4, dark5) as a tuple.
"""

from __future__ import annotations

from torch import Tensor, nn

from yolox_ray.models.blocks import Act, BaseConv, CSPLayer, Focus, ResLayer, SPPBottleneck, conv3x3


class CSPDarknet(nn.Module):
    """Focus stem + four stages of (3×3 s2 conv, CSPLayer); SPP before the last CSP.

    Output channels: 4·base, 8·base, 16·base with base = int(64·width).
    """

    def __init__(self, depth: float, width: float, depthwise: bool = False, act: Act = "silu"):
        super().__init__()
        base = int(width * 64)
        n = max(round(depth * 3), 1)
        self.out_channels = (4 * base, 8 * base, 16 * base)
        self.stem = Focus(3, base, k=3, act=act)
        self.dark2 = nn.Sequential(
            conv3x3(base, 2 * base, 2, depthwise, act),
            CSPLayer(2 * base, 2 * base, n=n, depthwise=depthwise, act=act),
        )
        self.dark3 = nn.Sequential(
            conv3x3(2 * base, 4 * base, 2, depthwise, act),
            CSPLayer(4 * base, 4 * base, n=3 * n, depthwise=depthwise, act=act),
        )
        self.dark4 = nn.Sequential(
            conv3x3(4 * base, 8 * base, 2, depthwise, act),
            CSPLayer(8 * base, 8 * base, n=3 * n, depthwise=depthwise, act=act),
        )
        self.dark5 = nn.Sequential(
            conv3x3(8 * base, 16 * base, 2, depthwise, act),
            SPPBottleneck(16 * base, 16 * base, act=act),
            CSPLayer(16 * base, 16 * base, n=n, shortcut=False, depthwise=depthwise, act=act),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.dark2(self.stem(x))
        c3 = self.dark3(x)
        c4 = self.dark4(c3)
        c5 = self.dark5(c4)
        return c3, c4, c5


def _group(c_in: int, n_res: int, act: Act) -> list[nn.Module]:
    """Darknet 'group layer': 3×3 s2 conv doubling the channels, then n_res ResLayers."""
    return [BaseConv(c_in, 2 * c_in, 3, 2, act=act), *(ResLayer(2 * c_in, act) for _ in range(n_res))]


class Darknet53(nn.Module):
    """Darknet-53 (residual blocks 1, 2, 8, 8, 4) whose last stage ends in the YOLOv3-SPP block.

    Output channels: 256 (dark3), 512 (dark4), 512 (dark5, after the SPP block). The depth/width
    multipliers do not apply: Darknet-53 has one size.
    """

    out_channels = (256, 512, 512)

    def __init__(self, act: Act = "lrelu"):
        super().__init__()
        self.stem = nn.Sequential(BaseConv(3, 32, 3, 1, act=act), *_group(32, 1, act))
        self.dark2 = nn.Sequential(*_group(64, 2, act))
        self.dark3 = nn.Sequential(*_group(128, 8, act))
        self.dark4 = nn.Sequential(*_group(256, 8, act))
        self.dark5 = nn.Sequential(
            *_group(512, 4, act),
            # YOLOv3-SPP block: 1×1 1024→512, 3×3 →1024, SPP(1024→512), 3×3 →1024, 1×1 →512.
            BaseConv(1024, 512, 1, 1, act=act),
            BaseConv(512, 1024, 3, 1, act=act),
            SPPBottleneck(1024, 512, act=act),
            BaseConv(512, 1024, 3, 1, act=act),
            BaseConv(1024, 512, 1, 1, act=act),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.dark2(self.stem(x))
        c3 = self.dark3(x)
        c4 = self.dark4(c3)
        c5 = self.dark5(c4)
        return c3, c4, c5
