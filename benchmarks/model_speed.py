"""Forward and forward+backward seconds per image of YOLOX models on this machine's CPU.

Used to size studies. Each row: eval-mode forward under no_grad, and a train-mode forward plus
backward of a scalar made from the raw output (no loss/assignment, no optimizer step). Median of
`--iters` timed repetitions after `--warmup` untimed ones; ratios are against the first row,
measured in the same run.

    python benchmarks/model_speed.py                                   # default short table
    python benchmarks/model_speed.py --model yolox_s --size 640 --batch 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from yolox_ray.models import build_model, count_gflops

DEFAULT_ROWS = [("yolox_nano", 320), ("yolox_nano", 416), ("yolox_tiny", 416), ("yolox_s", 320), ("yolox_s", 640)]


def _median_seconds(fn, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, size: int, batch: int, warmup: int, iters: int) -> dict:
    torch.manual_seed(0)
    model = build_model(name)
    images = torch.rand(batch, 3, size, size) * 255

    def forward():
        with torch.no_grad():
            model(images)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        model(images).float().square().mean().backward()

    model.eval()
    fwd = _median_seconds(forward, warmup, iters)
    model.train()
    fwd_bwd = _median_seconds(forward_backward, warmup, iters)
    return {"model": name, "size": size, "batch": batch, "gflops": count_gflops(model, size),
            "fwd": fwd / batch, "fwd_bwd": fwd_bwd / batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="*", default=None, help="presets (default: a short built-in table)")
    parser.add_argument("--size", nargs="*", type=int, default=None, help="input sides (default per row)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        sizes = args.size or [416]
        rows = [(m, s) for m in args.model for s in sizes]
    else:
        rows = [(m, s) for m, s in DEFAULT_ROWS if not args.size or s in args.size]

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"median of {args.iters} after {args.warmup} warm-up")
    header = f"{'model':<24}{'size':>5}{'GFLOPs':>9}{'fwd s/img':>11}{'fwd+bwd s/img':>15}{'fwd ratio':>11}{'f+b ratio':>11}"
    print(header)
    print("-" * len(header))
    base = None
    for name, size in rows:
        r = measure(name, size, args.batch, args.warmup, args.iters)
        base = base or r
        print(f"{name:<24}{size:>5}{r['gflops']:>9.2f}{r['fwd']:>11.4f}{r['fwd_bwd']:>15.4f}"
              f"{r['fwd'] / base['fwd']:>11.2f}{r['fwd_bwd'] / base['fwd_bwd']:>11.2f}", flush=True)


if __name__ == "__main__":
    main()
