"""SGD with YOLOX's three parameter groups and the `yoloxwarmcos` learning-rate schedule (§6).

Kept apart from the trainer so the recipe can be checked against hand-computed values without
running a training loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from yolox_ray.config import TrainConfig

# Normalisation layers whose weights get no weight decay (the official code: BatchNorm2d or "bn").
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """(norm weights, other weights, biases): only the middle group is weight-decayed.

    Every trainable parameter lands in exactly one group; a parameter that is neither a weight nor
    a bias (rare) goes without decay, like the official code's norm weights.
    """
    norm, decay, bias = [], [], []
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if name == "bias":
                bias.append(p)
            elif isinstance(module, _NORM_TYPES) or name != "weight" or p.ndim <= 1:
                norm.append(p)
            else:
                decay.append(p)
    return norm, decay, bias


def base_lr(train: TrainConfig) -> float:
    """lr = lr_per_image × total batch (0.01 at batch 64)."""
    return train.lr_per_image * train.batch_size


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.SGD:
    """SGD(momentum, Nesterov) over (norm: no decay, weights: decay, biases: no decay).

    Every group starts at the schedule's lr for iteration 0 (the warm-up start).
    """
    norm, decay, bias = param_groups(model)
    start = LRSchedule.from_config(train, iters_per_epoch=1).lr(0)
    opt = torch.optim.SGD(norm, lr=start, momentum=train.momentum, nesterov=train.nesterov, weight_decay=0.0)
    opt.add_param_group({"params": decay, "weight_decay": train.weight_decay})
    opt.add_param_group({"params": bias, "weight_decay": 0.0})
    return opt


@dataclass(frozen=True)
class LRSchedule:
    """`yoloxwarmcos` over global iterations t (I = iterations per epoch):

    t <= T_w:            warmup_lr + (base - warmup_lr)·(t/T_w)²
    T_w < t < T - T_na:  min + ½(base - min)(1 + cos(π (t - T_w) / (T - T_w - T_na)))
    t >= T - T_na:       min = min_lr_ratio · base   (flat during the no-aug epochs)
    """

    base: float
    min_lr: float
    warmup_lr: float
    warmup_iters: float
    total_iters: int
    no_aug_iters: int

    @classmethod
    def from_config(cls, train: TrainConfig, iters_per_epoch: int) -> "LRSchedule":
        lr = base_lr(train)
        return cls(
            base=lr,
            min_lr=lr * train.min_lr_ratio,
            warmup_lr=train.warmup_lr,
            warmup_iters=train.warmup_epochs * iters_per_epoch,
            total_iters=train.epochs * iters_per_epoch,
            no_aug_iters=train.no_aug_epochs * iters_per_epoch,
        )

    def lr(self, t: int) -> float:
        if self.warmup_iters > 0 and t <= self.warmup_iters:
            return self.warmup_lr + (self.base - self.warmup_lr) * (t / self.warmup_iters) ** 2
        if t >= self.total_iters - self.no_aug_iters:
            return self.min_lr
        span = self.total_iters - self.warmup_iters - self.no_aug_iters
        progress = (t - self.warmup_iters) / span
        return self.min_lr + 0.5 * (self.base - self.min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
