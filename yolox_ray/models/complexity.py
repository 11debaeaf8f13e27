"""Model cost: parameter count, GFLOPs under the paper's counting rule, measured forward latency.

Paper convention (reference §3, "A"; the hook rules of the 2020 thop that produced the published
numbers): GFLOPs = 2 × (conv multiply-accumulates + one add per output element of a conv with a
bias + 2 ops per BatchNorm input element + 1 op per LeakyReLU input element) / 1e9. SiLU, ReLU,
max-pool, upsampling and concatenation count zero. Every term is linear in H·W, so counting once on
a small input and scaling by area is exact for inputs that are multiples of 32.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import Tensor, nn

_PROBE = 64  # probe side: the smallest input whose stride-32 map is not degenerate (2×2)


def count_params(model: nn.Module) -> int:
    """Number of parameters (BN affine weights included, running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def _ops_hook(totals: list[float]):
    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            per_output = (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
            totals[0] += output.numel() * (per_output + (1 if module.bias is not None else 0))
        elif isinstance(module, nn.BatchNorm2d):
            totals[0] += 2 * inputs[0].numel()
        elif isinstance(module, nn.LeakyReLU):
            totals[0] += inputs[0].numel()
    return hook


def _parse_size(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ValueError(f"size must be positive multiples of 32 (the largest stride), got {size!r}")
    return h, w


@torch.no_grad()
def count_gflops(model: nn.Module, size: int | tuple[int, int]) -> float:
    """GFLOPs of one forward pass at input `size` (side or (H, W)), paper convention (see module doc)."""
    h, w = _parse_size(size)
    totals = [0.0]
    hook = _ops_hook(totals)
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU))]
    was_training = model.training
    param = next(model.parameters())
    try:
        model.eval()
        model(torch.zeros(1, 3, _PROBE, _PROBE, dtype=param.dtype, device=param.device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return 2.0 * totals[0] * (h * w) / (_PROBE * _PROBE) / 1e9


# Latency protocol: batch 1, eval mode, no autograd, these untimed warm-up runs then the median of
# the timed ones (the median ignores the odd preempted run on a shared machine).
LATENCY_WARMUP = 5
LATENCY_ITERS = 20


@torch.no_grad()
def measure_latency_ms(model: nn.Module, size: int | tuple[int, int], *, threads: int | None = None,
                       warmup: int = LATENCY_WARMUP, iters: int = LATENCY_ITERS) -> float:
    """Median milliseconds of one eval-mode forward pass (decode included, no NMS) of a batch of 1 at
    `size`, on the model's device, with `threads` torch intra-op threads (None: as set now).

    The input comes from a private generator and the train/eval mode and the thread count are
    restored, so measuring leaves the training RNG streams and the run as they were.
    """
    h, w = _parse_size(size)
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got {warmup}, {iters}")
    param = next(model.parameters())
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(1, 3, h, w, generator=gen) * 255).to(device=param.device, dtype=param.dtype)
    cuda = param.device.type == "cuda"
    was_training = model.training
    old_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))
        model.eval()
        times = []
        for i in range(warmup + iters):
            if cuda:
                torch.cuda.synchronize(param.device)
            start = time.perf_counter()
            model(images)
            if cuda:
                torch.cuda.synchronize(param.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
        torch.set_num_threads(old_threads)
    return 1000.0 * statistics.median(times)
