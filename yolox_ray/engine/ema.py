"""Exponential moving average of the model (weights and float buffers, i.e. BN statistics).

decay(u) = ema_decay · (1 − exp(−u / ema_ramp)), u = updates so far including this one (§6), so
early updates follow the model closely. Evaluation and the best checkpoint use the EMA copy.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def _averaged_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The state_dict's floating-point entries (parameters, persistent float buffers such as the BN
    statistics), gathered without building a state dict: that took most of an EMA step's time.
    Integer buffers (BN num_batches_tracked) are left alone, as in the official code."""
    out: list[torch.Tensor] = []
    for m in module.modules():
        out.extend(p for p in m._parameters.values() if p is not None)
        skip = m._non_persistent_buffers_set
        out.extend(b for name, b in m._buffers.items()
                   if b is not None and name not in skip and b.is_floating_point())
    return out


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float = 0.9998, ramp: float = 2000.0, updates: int = 0):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay_max = decay
        self.ramp = ramp
        self.updates = updates

    def decay(self, updates: int) -> float:
        return self.decay_max * (1.0 - math.exp(-updates / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards `model` (the unwrapped training model)."""
        self.updates += 1
        d = self.decay(self.updates)
        ema = _averaged_tensors(self.module)
        cur = _averaged_tensors(model)
        torch._foreach_mul_(ema, d)
        torch._foreach_add_(ema, cur, alpha=1.0 - d)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
