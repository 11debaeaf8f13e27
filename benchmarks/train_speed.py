"""Seconds per training iteration: the bare engine vs the same run under Ray Train (1 and 2 workers).

    python benchmarks/train_speed.py [--epochs 3] [--iters 10] [--side 256] [--batch 8] [--threads 2]

Every mode trains the same config (synthetic data, yolox_nano at `--side`, `--batch` images per
iteration in total, data.workers=0) and times iterations from the epochs' own `iter_time` metric
(training only: no evaluation, no startup); the first epoch is dropped as warm-up and the fastest
remaining epoch is kept (load from other processes only ever adds time). The bare engine runs
before and after the Ray runs so drift in machine load shows; ratios are against their mean. The
ratio `ray_1_worker / bare` is the Ray overhead (target <= 1.05); `ray_2_workers / bare` shows what
DDP over gloo buys (or costs) on this machine with one thread per worker.

Measured on the idle 2-core development machine (yolox_nano, 256 px, batch 8, 40 iterations x 6
epochs): with `--threads 1` (the worker leaves a core to Ray's own processes) bare 0.415/0.392 s,
Ray 1 worker 0.377 s: ratio 0.93, i.e. no measurable overhead. With `--threads 2` (the worker takes
both cores) the ratio was 1.13, 1.32 and 1.27 in three runs: the ~20 processes of a local Ray
cluster with its dashboard (needed by Train V2, see ray_stack.md) and the Train
controller use about 10 % of a core, and every time one wakes it stalls one of the two intra-op
threads the step waits on. On machines with spare cores this cost disappears; on a 2-core box,
`--cpus-per-worker 1 --workers 2` (ratio 0.94-0.97 here) uses the cores better than one 2-thread
worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolox_ray.config import ExperimentConfig, apply_overrides, experiment_preset  # noqa: E402


def bench_config(args) -> ExperimentConfig:
    cfg = experiment_preset("yolox_nano")
    return apply_overrides(cfg, {
        "model.num_classes": 8,
        "data.input_size": (args.side, args.side), "data.test_size": (args.side, args.side),
        "data.multiscale_range": 0, "data.random_size": None, "data.workers": 0,
        "train.epochs": args.epochs, "train.warmup_epochs": 1, "train.no_aug_epochs": 0,
        "train.batch_size": args.batch, "train.max_iters": args.iters, "train.eval_interval": 1000,
        "train.print_interval": 1000, "eval.batch_size": 16, "data.synthetic_val": 8,
    })


def steady(iter_times: list[float]) -> float:
    return min(iter_times[1:]) if len(iter_times) > 1 else iter_times[0]


def run_bare(cfg: ExperimentConfig, threads: int) -> float:
    import torch

    from yolox_ray.engine import Trainer

    torch.set_num_threads(threads)
    times: list[float] = []

    class Collect:
        def on_epoch_end(self, trainer, epoch, metrics, checkpoint):
            times.append(metrics["iter_time"])

    Trainer(cfg, callbacks=[Collect()]).fit()
    return steady(times)


def run_ray(cfg: ExperimentConfig, workers: int, cpus_per_worker: float, storage: str, name: str) -> float:
    from yolox_ray.cluster.train import make_trainer

    trainer = make_trainer(cfg, run_name=name, storage_path=storage, num_workers=workers,
                           cpus_per_worker=cpus_per_worker, max_failures=0, num_to_keep=cfg.train.epochs)
    result = trainer.fit()
    rows = sorted((m["epoch"], m["iter_time"]) for _, m in result.best_checkpoints)
    return steady([t for _, t in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10, help="iterations per epoch")
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the bare run = CPUs of the 1-worker run")
    parser.add_argument("--skip-two", action="store_true", help="skip the 2-worker run")
    args = parser.parse_args()
    cfg = bench_config(args)

    from yolox_ray.data import resolve_dataset

    resolve_dataset(cfg.data)  # generate the synthetic set outside the timed runs
    print(f"config: yolox_nano {args.side}px, batch {args.batch}, {args.iters} iters x {args.epochs} epochs "
          f"(first epoch dropped), cpus={os.cpu_count()}", flush=True)

    bare_before = run_bare(cfg, args.threads)
    print(f"bare engine          {bare_before:.4f} s/iter", flush=True)

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    from yolox_ray.cluster.ray_setup import init_ray, shutdown_ray

    tmp = tempfile.mkdtemp(prefix="yolox_bench_")
    init_ray(num_cpus=max(2, args.threads), temp_dir=f"{tmp}/ray")
    try:
        stamp = int(time.time())
        one = run_ray(cfg, 1, float(args.threads), f"{tmp}/results", f"bench1-{stamp}")
        print(f"ray train, 1 worker  {one:.4f} s/iter", flush=True)
        two = None
        if not args.skip_two:
            two = run_ray(cfg, 2, max(1.0, args.threads / 2), f"{tmp}/results", f"bench2-{stamp}")
            print(f"ray train, 2 workers {two:.4f} s/iter", flush=True)
    finally:
        shutdown_ray()
    bare_after = run_bare(cfg, args.threads)
    bare = (bare_before + bare_after) / 2
    print(f"bare engine (again)  {bare_after:.4f} s/iter", flush=True)
    print(f"ratio ray 1 worker / bare  = {one / bare:.3f}   (Ray overhead; target <= 1.05)")
    if two is not None:
        print(f"ratio ray 2 workers / bare = {two / bare:.3f}   (DDP, same total batch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
