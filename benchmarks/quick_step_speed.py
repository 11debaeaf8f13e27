"""Where a quick-preset training step spends its time, and what the cheap fixes buy.

    python benchmarks/quick_step_speed.py [--row multi_positives] [--iters 40] [--rounds 3] [--threads 1]

Part 1, the EMA update on the quick model: the state-dict walk the engine used before (two
`state_dict()` calls per step) against `ModelEMA.update` now, on the same model, alternating.
Part 2, whole training iterations of the row through the engine (`Trainer`, in-process, no Ray), with
the images decoded from JPEG on every read against `data.cache_images=true`, alternating short runs
of `--iters` steps so a load burst hits both. Prints medians and ratios measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from yolox_ray.ablation import ROW_KEYS, ablation_rows
from yolox_ray.engine import Trainer
from yolox_ray.engine.ema import ModelEMA
from yolox_ray.models import build_model


def _state_dict_ema_update(ema: ModelEMA, model: torch.nn.Module, keys: list[str]) -> None:
    """The previous implementation, kept here as the baseline: two state dicts per step."""
    ema.updates += 1
    d = ema.decay(ema.updates)
    src, dst = model.state_dict(), ema.module.state_dict()
    with torch.no_grad():
        dst_t = [dst[k] for k in keys]
        torch._foreach_mul_(dst_t, d)
        torch._foreach_add_(dst_t, [src[k].detach() for k in keys], alpha=1.0 - d)


def ema_part(cfg, reps: int) -> None:
    model = build_model(cfg.model)
    old, new = ModelEMA(model), ModelEMA(model)
    keys = [k for k, v in old.module.state_dict().items() if v.dtype.is_floating_point]
    times: dict[str, list[float]] = {"state_dict walk (before)": [], "ModelEMA.update (now)": []}
    for _ in range(reps):
        t = time.perf_counter()
        _state_dict_ema_update(old, model, keys)
        times["state_dict walk (before)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        new.update(model)
        times["ModelEMA.update (now)"].append(time.perf_counter() - t)
    same = all(torch.equal(a, b) for a, b in zip(old.module.state_dict().values(), new.module.state_dict().values()))
    base = statistics.median(times["state_dict walk (before)"])
    print(f"EMA update, {sum(p.numel() for p in model.parameters()):,} params, {reps} updates each "
          f"(results bit-identical: {same})")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:26s} {1000 * med:7.2f} ms   {base / med:5.2f}x")


class _EpochSeconds:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_epoch_end(self, trainer, epoch, metrics, checkpoint) -> None:
        self.seconds.append(metrics["train_seconds_epoch"])


def step_part(row_key: str, iters: int, rounds: int) -> None:
    """Per variant and round, a fresh 2-epoch run of `iters` steps each; the second epoch is timed
    (the first pays one-off allocations), training only (the evaluation is timed apart)."""
    variants = {"images read per sample": {}, "data.cache_images=true": {"data.cache_images": True}}
    per_step: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, extra in variants.items():
            overrides = {"train.max_iters": iters, "train.epochs": 2, "train.warmup_epochs": 1,
                         "train.no_aug_epochs": 0, **extra}
            row = ablation_rows("quick", rows=[row_key], overrides=overrides)[0]
            timer = _EpochSeconds()
            Trainer(row.config, callbacks=[timer]).fit()
            per_step[name].append(timer.seconds[1] / iters)
    base = statistics.median(per_step["images read per sample"])
    print(f"training step of row {row_key}, quick preset, {iters} steps x {rounds} rounds per variant")
    for name, ts in per_step.items():
        med = statistics.median(ts)
        print(f"  {name:26s} {1000 * med:7.1f} ms/step   {base / med:5.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--row", choices=ROW_KEYS, default="multi_positives")
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ema-reps", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    cfg = ablation_rows("quick", rows=[args.row])[0].config
    ema_part(cfg, args.ema_reps)
    step_part(args.row, args.iters, args.rounds)


if __name__ == "__main__":
    main()
