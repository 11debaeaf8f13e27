"""The YOLOX detector module and `build_model`, its one builder.

Module tree (and so state-dict keys) follows the official code: `backbone` is the neck, which owns
the real backbone as `backbone.backbone`; `head` is the detection head.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from yolox_ray.boxes import AnchorGrid, decode_boxes, make_anchor_grid
from yolox_ray.config import ConfigError, ModelConfig, model_preset
from yolox_ray.models.blocks import set_batchnorm
from yolox_ray.models.heads import CoupledHead, DecoupledHead
from yolox_ray.models.necks import PAFPN, YOLOFPN

ARCH_STRIDES = (8, 16, 32)


def _feature_side(side: int, stride: int) -> int:
    """Feature size after log2(stride) stride-2 stages (each 3×3 s2 conv / Focus rounds up)."""
    while stride > 1:
        side = (side + 1) // 2
        stride //= 2
    return side


class YOLOX(nn.Module):
    """Backbone + neck (`backbone`) and head (`head`).

    Train mode: raw `[B, A, 5+C]` (layout in `yolox_ray.boxes`). Eval mode: the same rows decoded,
    (cx, cy, w, h) in input pixels, sigmoid(obj), sigmoid(cls) (§2.5).
    """

    def __init__(self, cfg: ModelConfig, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.n_anchors = cfg.n_anchors  # predictions per grid cell (1 = anchor-free)
        self.backbone = backbone
        self.head = head
        self._grids: dict[tuple[int, int, str], AnchorGrid] = {}

    def anchor_grid(self, input_hw: tuple[int, int] | torch.Size, device: torch.device | str = "cpu") -> AnchorGrid:
        """The AnchorGrid of this model for an input of size (H, W) on `device` (cached)."""
        h, w = int(input_hw[0]), int(input_hw[1])
        key = (h, w, str(torch.device(device)))
        grid = self._grids.get(key)
        if grid is None:
            sizes = [(_feature_side(h, s), _feature_side(w, s)) for s in ARCH_STRIDES]
            grid = make_anchor_grid(sizes, self.cfg.strides, self.cfg.n_anchors,
                                    self.cfg.anchors if self.cfg.n_anchors > 1 else None, device=device,
                                    sigmoid_xy=self.cfg.box_decode == "yolov3")
            self._grids[key] = grid
        return grid

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"YOLOX expects images [B, 3, H, W], got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"input height and width must be multiples of 32 (the largest stride), got {h}x{w}")
        raw = self.head(self.backbone(images))
        if self.training:
            return raw
        grid = self.anchor_grid((h, w), raw.device)
        return torch.cat((decode_boxes(raw[..., :4], grid), raw[..., 4:].sigmoid()), dim=-1)


def build_model(cfg_or_preset: ModelConfig | str, num_classes: int | None = None) -> YOLOX:
    """Build a YOLOX model from a ModelConfig or a preset name (`yolox_s`, `yolov3_coupled`, ...).

    `num_classes` overrides the config's. BatchNorm eps/momentum come from the config (official
    1e-3 / 0.03); cls/obj biases start at the prior-probability logit; convs keep PyTorch's init.
    """
    if isinstance(cfg_or_preset, str):
        cfg = model_preset(cfg_or_preset, num_classes)
    elif isinstance(cfg_or_preset, ModelConfig):
        cfg = cfg_or_preset if num_classes is None else replace(cfg_or_preset, num_classes=num_classes)
    else:
        raise TypeError(f"build_model takes a ModelConfig or a preset name, got {type(cfg_or_preset).__name__}")
    if tuple(cfg.strides) != ARCH_STRIDES:
        raise ConfigError(f"model.strides: the backbones downsample by {ARCH_STRIDES}, got {tuple(cfg.strides)}")

    if cfg.neck == "pafpn":
        neck: nn.Module = PAFPN(cfg.depth, cfg.width, depthwise=cfg.depthwise, act=cfg.act)
    elif cfg.neck == "yolofpn":
        neck = YOLOFPN(act=cfg.act)
    else:
        raise ConfigError(f"model.neck: unknown neck {cfg.neck!r}")

    if cfg.head == "decoupled":
        head: nn.Module = DecoupledHead(cfg.num_classes, neck.out_channels, cfg.width, n_anchors=cfg.n_anchors,
                                        depthwise=cfg.depthwise, act=cfg.act, prior_prob=cfg.prior_prob)
    elif cfg.head == "coupled":
        head = CoupledHead(cfg.num_classes, neck.out_channels, n_anchors=cfg.n_anchors,
                           depthwise=cfg.depthwise, act=cfg.act, prior_prob=cfg.prior_prob)
    else:
        raise ConfigError(f"model.head: unknown head {cfg.head!r}")

    model = YOLOX(cfg, neck, head)
    set_batchnorm(model, cfg)
    return model
