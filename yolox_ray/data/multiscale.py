"""Batch-level multi-scale (§6): the loader makes `input_size` images, the trainer resizes batches.

A new side is drawn every `train.multiscale_interval` iterations; drawing it here keeps the
formula (32·randint(lo, hi), inclusive; width follows the input aspect) in one place.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from yolox_ray.config import DataConfig


def draw_multiscale_side(rng: random.Random | torch.Generator, data_cfg: DataConfig) -> tuple[int, int]:
    """(h, w) = (32·k, 32·int(k·W/H)) with k ~ randint(lo, hi) inclusive from `multiscale_sides()`."""
    lo, hi = data_cfg.multiscale_sides()
    if isinstance(rng, torch.Generator):
        k = int(torch.randint(lo, hi + 1, (1,), generator=rng).item())
    elif isinstance(rng, random.Random):
        k = rng.randint(lo, hi)
    else:
        raise TypeError(f"rng must be a random.Random or torch.Generator, got {type(rng).__name__}")
    factor = data_cfg.input_size[1] / data_cfg.input_size[0]
    return 32 * k, 32 * int(k * factor)


def resize_batch(images: torch.Tensor, labels: torch.Tensor, side_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear resize (align_corners=False) of [B, 3, H, W] to side_hw; label cx, w and cy, h scaled.

    Returns new tensors (the inputs are not modified); a no-op size returns the inputs.
    """
    h, w = images.shape[-2:]
    th, tw = int(side_hw[0]), int(side_hw[1])
    if (th, tw) == (h, w):
        return images, labels
    images = F.interpolate(images, size=(th, tw), mode="bilinear", align_corners=False)
    labels = labels.clone()
    labels[..., 1::2] *= tw / w
    labels[..., 2::2] *= th / h
    return images, labels
