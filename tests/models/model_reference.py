"""An independent, functional re-statement of the official YOLOX eval forward, for the tests.

It walks an official-layout state dict by key name with plain `torch.nn.functional` calls, following
the official source's op order (Megvii-BaseDetection/YOLOX `network_blocks.py`, `darknet.py`,
`yolo_pafpn.py`, `yolo_fpn.py`, `yolo_head.py`: concat orders, obj from the reg branch, decode).
It shares no code with `yolox_ray.models`, so agreement pins our module's op order to the official one.
BatchNorm runs in inference mode with eps 1e-3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-3


def _act(x: Tensor, act: str) -> Tensor:
    return F.silu(x) if act == "silu" else F.leaky_relu(x, 0.1)


def cba(sd: dict, p: str, x: Tensor, act: str, stride: int = 1, groups: int = 1) -> Tensor:
    """conv (same padding, no bias) -> BN (running stats) -> act."""
    w = sd[f"{p}.conv.weight"]
    y = F.conv2d(x, w, None, stride, (w.shape[-1] - 1) // 2, 1, groups)
    y = F.batch_norm(y, sd[f"{p}.bn.running_mean"], sd[f"{p}.bn.running_var"], sd[f"{p}.bn.weight"],
                     sd[f"{p}.bn.bias"], False, 0.0, EPS)
    return _act(y, act)


def conv3(sd: dict, p: str, x: Tensor, act: str, stride: int, dw: bool) -> Tensor:
    if dw:
        return cba(sd, f"{p}.pconv", cba(sd, f"{p}.dconv", x, act, stride, groups=x.shape[1]), act)
    return cba(sd, p, x, act, stride)


def csp(sd: dict, p: str, x: Tensor, n: int, shortcut: bool, dw: bool, act: str) -> Tensor:
    a = cba(sd, f"{p}.conv1", x, act)
    for i in range(n):
        y = conv3(sd, f"{p}.m.{i}.conv2", cba(sd, f"{p}.m.{i}.conv1", a, act), act, 1, dw)
        a = y + a if shortcut else y
    b = cba(sd, f"{p}.conv2", x, act)
    return cba(sd, f"{p}.conv3", torch.cat([a, b], 1), act)


def spp(sd: dict, p: str, x: Tensor, act: str) -> Tensor:
    x = cba(sd, f"{p}.conv1", x, act)
    pools = [F.max_pool2d(x, k, 1, k // 2) for k in (5, 9, 13)]
    return cba(sd, f"{p}.conv2", torch.cat([x, *pools], 1), act)


def upsample2(x: Tensor) -> Tensor:
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def cspdarknet_pafpn(sd: dict, x: Tensor, depth: float, dw: bool, act: str = "silu") -> list[Tensor]:
    n = max(round(3 * depth), 1)
    b = "backbone.backbone"
    # Focus: top-left, bottom-left, top-right, bottom-right.
    x = torch.cat([x[..., 0::2, 0::2], x[..., 1::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 1::2]], 1)
    x = cba(sd, f"{b}.stem.conv", x, act)
    x = csp(sd, f"{b}.dark2.1", conv3(sd, f"{b}.dark2.0", x, act, 2, dw), n, True, dw, act)
    x2 = csp(sd, f"{b}.dark3.1", conv3(sd, f"{b}.dark3.0", x, act, 2, dw), 3 * n, True, dw, act)
    x1 = csp(sd, f"{b}.dark4.1", conv3(sd, f"{b}.dark4.0", x2, act, 2, dw), 3 * n, True, dw, act)
    x0 = spp(sd, f"{b}.dark5.1", conv3(sd, f"{b}.dark5.0", x1, act, 2, dw), act)
    x0 = csp(sd, f"{b}.dark5.2", x0, n, False, dw, act)
    m = round(3 * depth)
    fpn_out0 = cba(sd, "backbone.lateral_conv0", x0, act)
    f_out0 = csp(sd, "backbone.C3_p4", torch.cat([upsample2(fpn_out0), x1], 1), m, False, dw, act)
    fpn_out1 = cba(sd, "backbone.reduce_conv1", f_out0, act)
    pan2 = csp(sd, "backbone.C3_p3", torch.cat([upsample2(fpn_out1), x2], 1), m, False, dw, act)
    p1 = conv3(sd, "backbone.bu_conv2", pan2, act, 2, dw)
    pan1 = csp(sd, "backbone.C3_n3", torch.cat([p1, fpn_out1], 1), m, False, dw, act)
    p0 = conv3(sd, "backbone.bu_conv1", pan1, act, 2, dw)
    pan0 = csp(sd, "backbone.C3_n4", torch.cat([p0, fpn_out0], 1), m, False, dw, act)
    return [pan2, pan1, pan0]


def darknet53_fpn(sd: dict, x: Tensor, act: str = "lrelu") -> list[Tensor]:
    b = "backbone.backbone"

    def res(p: str, x: Tensor) -> Tensor:
        return x + cba(sd, f"{p}.layer2", cba(sd, f"{p}.layer1", x, act), act)

    x = cba(sd, f"{b}.stem.0", x, act)
    x = res(f"{b}.stem.2", cba(sd, f"{b}.stem.1", x, act, 2))
    feats = {}
    for stage, blocks in (("dark2", 2), ("dark3", 8), ("dark4", 8), ("dark5", 4)):
        x = cba(sd, f"{b}.{stage}.0", x, act, 2)
        for i in range(1, blocks + 1):
            x = res(f"{b}.{stage}.{i}", x)
        feats[stage] = x
    x = cba(sd, f"{b}.dark5.5", x, act)
    x = cba(sd, f"{b}.dark5.6", x, act)
    x = spp(sd, f"{b}.dark5.7", x, act)
    x = cba(sd, f"{b}.dark5.8", x, act)
    x0 = cba(sd, f"{b}.dark5.9", x, act)

    def embed(p: str, x: Tensor) -> Tensor:
        for i in range(5):
            x = cba(sd, f"{p}.{i}", x, act)
        return x

    out4 = embed("backbone.out1", torch.cat([upsample2(cba(sd, "backbone.out1_cbl", x0, act)), feats["dark4"]], 1))
    out3 = embed("backbone.out2", torch.cat([upsample2(cba(sd, "backbone.out2_cbl", out4, act)), feats["dark3"]], 1))
    return [out3, out4, x0]


def decoupled_head_eval(sd: dict, feats: list[Tensor], dw: bool, act: str, strides=(8, 16, 32)) -> Tensor:
    """Official eval output: [reg, sigmoid(obj), sigmoid(cls)] per cell, decoded boxes."""
    levels, grids, level_strides = [], [], []
    for k, x in enumerate(feats):
        x = cba(sd, f"head.stems.{k}", x, act)
        c = conv3(sd, f"head.cls_convs.{k}.1", conv3(sd, f"head.cls_convs.{k}.0", x, act, 1, dw), act, 1, dw)
        r = conv3(sd, f"head.reg_convs.{k}.1", conv3(sd, f"head.reg_convs.{k}.0", x, act, 1, dw), act, 1, dw)
        cls = F.conv2d(c, sd[f"head.cls_preds.{k}.weight"], sd[f"head.cls_preds.{k}.bias"])
        reg = F.conv2d(r, sd[f"head.reg_preds.{k}.weight"], sd[f"head.reg_preds.{k}.bias"])
        obj = F.conv2d(r, sd[f"head.obj_preds.{k}.weight"], sd[f"head.obj_preds.{k}.bias"])
        levels.append(torch.cat([reg, obj.sigmoid(), cls.sigmoid()], 1).flatten(2))
        h, w = x.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        grids.append(torch.stack([xs, ys], -1).view(-1, 2).float())
        level_strides.append(torch.full((h * w, 1), float(strides[k])))
    out = torch.cat(levels, 2).permute(0, 2, 1)
    grid, stride = torch.cat(grids), torch.cat(level_strides)
    return torch.cat([(out[..., :2] + grid) * stride, torch.exp(out[..., 2:4]) * stride, out[..., 4:]], -1)
