"""Detection heads. Both return the raw output `[B, A, 5 + C]` in the layout of `yolox_ray.boxes`.

Per-level channel layout of the prediction convs (n = n_anchors, a = anchor index 0..n-1):

- Decoupled head (§2.5, paper Table 2 rows 2+): `reg_preds` has 4·n channels, channel a·4 + k for
  (tx, ty, tw, th)[k]; `obj_preds` has n channels, channel a; `cls_preds` has C·n channels, channel
  a·C + c. With n = 1 this is exactly the official YOLOX head (and its state dict). Objectness is
  predicted from the regression branch.
- Coupled YOLOv3 head (Table 2 row 1): per level a 3×3 BaseConv c→2c and one 1×1 conv 2c→n·(5+C)
  with bias (module lists `convs` and `preds`); channel a·(5+C) + j with j over [reg 4, obj 1, cls C].

Levels are flattened (y, x, anchor) and concatenated in stride order 8, 16, 32.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from yolox_ray.models.blocks import Act, BaseConv, conv3x3


def prior_bias(prior_prob: float) -> float:
    """Logit whose sigmoid is `prior_prob` (0.01 -> -4.59512): cls/obj start near 'background'."""
    return -math.log((1.0 - prior_prob) / prior_prob)


def _to_rows(pred: Tensor) -> Tensor:
    """[B, n, 5+C, H, W] -> [B, H·W·n, 5+C], rows ordered (y, x, anchor)."""
    b, n, k, h, w = pred.shape
    return pred.permute(0, 3, 4, 1, 2).reshape(b, h * w * n, k)


class DecoupledHead(nn.Module):
    """YOLOX head: per level a 1×1 stem, then separate cls and reg branches of two 3×3 convs."""

    def __init__(self, num_classes: int, in_channels: tuple[int, ...], width: float, n_anchors: int = 1,
                 depthwise: bool = False, act: Act = "silu", prior_prob: float = 0.01):
        super().__init__()
        self.num_classes = num_classes
        self.n_anchors = n_anchors
        hidden = int(256 * width)
        # Registration order follows the official head so state-dict key order matches too.
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.cls_preds = nn.ModuleList()
        self.reg_preds = nn.ModuleList()
        self.obj_preds = nn.ModuleList()
        self.stems = nn.ModuleList()
        for c_in in in_channels:
            self.stems.append(BaseConv(c_in, hidden, 1, 1, act=act))
            self.cls_convs.append(nn.Sequential(conv3x3(hidden, hidden, 1, depthwise, act),
                                                conv3x3(hidden, hidden, 1, depthwise, act)))
            self.reg_convs.append(nn.Sequential(conv3x3(hidden, hidden, 1, depthwise, act),
                                                conv3x3(hidden, hidden, 1, depthwise, act)))
            self.cls_preds.append(nn.Conv2d(hidden, n_anchors * num_classes, 1))
            self.reg_preds.append(nn.Conv2d(hidden, n_anchors * 4, 1))
            self.obj_preds.append(nn.Conv2d(hidden, n_anchors, 1))
        bias = prior_bias(prior_prob)
        with torch.no_grad():
            for conv in (*self.cls_preds, *self.obj_preds):
                conv.bias.fill_(bias)

    def forward(self, features: tuple[Tensor, ...]) -> Tensor:
        n, c = self.n_anchors, self.num_classes
        outputs = []
        for k, x in enumerate(features):
            x = self.stems[k](x)
            cls_out = self.cls_preds[k](self.cls_convs[k](x))
            reg_feat = self.reg_convs[k](x)
            reg_out = self.reg_preds[k](reg_feat)
            obj_out = self.obj_preds[k](reg_feat)
            b, _, h, w = x.shape
            # Interleave per anchor: [reg 4, obj 1, cls C] for anchor 0, then anchor 1, ...
            per_anchor = torch.cat((reg_out.view(b, n, 4, h, w), obj_out.view(b, n, 1, h, w),
                                    cls_out.view(b, n, c, h, w)), dim=2)
            outputs.append(_to_rows(per_anchor))
        return torch.cat(outputs, dim=1)


class CoupledHead(nn.Module):
    """YOLOv3 output block per level: 3×3 BaseConv c→2c, then one 1×1 conv 2c→n·(5+C) with bias."""

    def __init__(self, num_classes: int, in_channels: tuple[int, ...], n_anchors: int = 3,
                 depthwise: bool = False, act: Act = "lrelu", prior_prob: float = 0.01):
        super().__init__()
        self.num_classes = num_classes
        self.n_anchors = n_anchors
        self.convs = nn.ModuleList(conv3x3(c, 2 * c, 1, depthwise, act) for c in in_channels)
        self.preds = nn.ModuleList(nn.Conv2d(2 * c, n_anchors * (5 + num_classes), 1) for c in in_channels)
        bias = prior_bias(prior_prob)
        with torch.no_grad():
            for conv in self.preds:
                conv.bias.view(n_anchors, 5 + num_classes)[:, 4:].fill_(bias)  # obj and cls, not reg

    def forward(self, features: tuple[Tensor, ...]) -> Tensor:
        outputs = []
        for conv, pred, x in zip(self.convs, self.preds, features):
            out = pred(conv(x))
            b, _, h, w = out.shape
            outputs.append(_to_rows(out.view(b, self.n_anchors, 5 + self.num_classes, h, w)))
        return torch.cat(outputs, dim=1)
