"""One CPU training step (forward + SimOTA loss + backward) in the default and channels-last memory
formats (and, with `--compile`, the model under `torch.compile`), and how far apart their results are.

    python benchmarks/step_speed.py [--model yolox_s] [--side 640] [--batch 8] [--threads 2]
                                    [--iters 5] [--gts 10] [--profile] [--op-profile] [--compile]

`--op-profile` prints the torch profiler's aten operators of one default-format step by self CPU
time (where a step's time goes: convolutions and their backward, batch norm, activations, the loss).
`--compile` adds a third variant, the model wrapped by `torch.compile` (inductor; its compile time,
on the first call, is printed separately and not in the step times).

Both variants use the same weights, images and labels (10 GTs per image, log-uniform sizes, as
reference §11). Steps alternate between the two (A, B, A, B, ...) after one warm-up each, so a
load burst from another process hits both; the median and the fastest step of each are printed,
and the ratio of the medians. Exactness: the largest relative difference of the raw output, the
loss and the gradients between the two formats (float32 rounding only if the conv algorithms
differ). `--profile` prints the cProfile top functions of one default-format step.

Measured on the shared 2-core development machine with another engineer's training jobs running
(load average 3-7), `--model yolox_s --side 256 --batch 2 --threads 1 --iters 3`: default 1.034 s,
channels-last 1.017 s median per step (ratio 1.017, within the noise of this box); raw output max
relative difference 4e-5, loss 9e-7, gradients up to 6e-3 (median 3e-4) relative to each tensor's
largest entry: float32 reordering, not bit-exact. At YOLOX-S 640 B=8 neither variant finished its
first step within 7 minutes under that load, so there was no 640 figure then.

Measured on the 2-core Intel Xeon development machine of 2026-12-04 (AVX-512, AMX; nothing else
running), commit 181efaa, `--threads 2`: YOLOX-S 640 B=8 `--iters 3`: default 3.745 s, channels-last
2.947 s (1.27x); YOLOX-Nano 320 B=16 `--iters 5`: 0.571 s against 0.487 s (1.17x). Exactness: loss
relative difference 3e-6 and 8e-7; gradients up to 7e-3 of each tensor's largest entry. Against a
float64 step (Nano 320 B=4) NCHW's raw output is off by 4e-5 and NHWC's by 1.4e-4, one convolution
by 3e-7 and 1.2e-6: both float32 rounding, NHWC summing in another order. channels-last is now the
training default (`train.channels_last`).
"""

from __future__ import annotations

import argparse
import cProfile
import copy
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolox_ray.config import AssignConfig, LossConfig  # noqa: E402
from yolox_ray.losses import YOLOXLoss  # noqa: E402
from yolox_ray.models import build_model  # noqa: E402


def make_labels(batch: int, side: int, gts: int, num_classes: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(batch, 120, 5)
    wh = side * torch.exp(torch.empty(batch, gts, 2).uniform_(torch.log(torch.tensor(0.03)).item(),
                                                              torch.log(torch.tensor(0.6)).item(), generator=g))
    centre = wh / 2 + torch.rand(batch, gts, 2, generator=g) * (side - wh)
    labels[:, :gts, 0] = torch.randint(0, num_classes, (batch, gts), generator=g).float()
    labels[:, :gts, 1:3] = centre
    labels[:, :gts, 3:5] = wh
    return labels


def step(model, loss_fn, images, labels, grid_hw, channels_last: bool, bf16: bool = False):
    """One training step as the engine runs it; `bf16`: CPU autocast, as train.amp on a CPU."""
    model.zero_grad(set_to_none=True)
    x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        raw = model(x)
        out = loss_fn(raw, model.anchor_grid(grid_hw, images.device), labels, False)
    out.total.backward()
    return raw.detach(), out.total.detach()


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="yolox_s")
    ap.add_argument("--side", type=int, default=640)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--gts", type=int, default=10)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--op-profile", action="store_true", help="torch profiler: aten ops of one step by self CPU time")
    ap.add_argument("--compile", action="store_true", help="add the torch.compile'd model as a third variant")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.stdout.reconfigure(line_buffering=True)  # lines show as they come on a slow, loaded box

    torch.manual_seed(0)
    base = build_model(args.model).train()
    cl = copy.deepcopy(base).to(memory_format=torch.channels_last)
    num_classes = base.num_classes
    loss_fn = YOLOXLoss(LossConfig(), AssignConfig(), num_classes)
    images = torch.rand(args.batch, 3, args.side, args.side, generator=torch.Generator().manual_seed(1)) * 255
    labels = make_labels(args.batch, args.side, args.gts, num_classes)
    hw = (args.side, args.side)

    # Exactness: one step each from identical weights (BN in train mode updates running stats once in both).
    raw_a, loss_a = step(base, loss_fn, images, labels, hw, False)
    raw_b, loss_b = step(cl, loss_fn, images, labels, hw, True)
    grads = [rel_diff(p.grad, q.grad) for p, q in zip(base.parameters(), cl.parameters()) if p.grad is not None]
    print(f"{args.model} {args.side}px B={args.batch} threads={args.threads} GTs/img={args.gts}")
    print(f"exactness channels_last vs default: raw output max rel diff {rel_diff(raw_a, raw_b):.2e}, "
          f"loss {float(loss_a):.6f} vs {float(loss_b):.6f} (rel {rel_diff(loss_a, loss_b):.2e}), "
          f"gradients max rel diff {max(grads):.2e} (median {statistics.median(grads):.2e})")

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        step(base, loss_fn, images, labels, hw, False)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)

    if args.op_profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(base, loss_fn, images, labels, hw, False)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))

    variants = [("default", base, False), ("channels_last", cl, True)]
    if args.compile:
        compiled = torch.compile(copy.deepcopy(base))
        start = time.perf_counter()
        raw_c, loss_c = step(compiled, loss_fn, images, labels, hw, False)
        print(f"torch.compile: first step (compiles) {time.perf_counter() - start:.1f} s; raw output max rel diff "
              f"vs default {rel_diff(raw_a, raw_c):.2e}, loss {float(loss_c):.6f}")
        variants.append(("compiled", compiled, False))
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for _ in range(args.iters):
        for name, model, flag in variants:
            start = time.perf_counter()
            step(model, loss_fn, images, labels, hw, flag)
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, values in times.items():
        print(f"{name:>14}: median {med[name]:.3f} s  fastest {min(values):.3f} s  "
              f"({', '.join(f'{t:.2f}' for t in values)})")
    for name in med:
        if name != "default":
            print(f"ratio default / {name} (medians): {med['default'] / med[name]:.3f}")


if __name__ == "__main__":
    main()
