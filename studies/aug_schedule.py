#!/usr/bin/env python
"""The augmentation schedule on Ray Tune + Optuna: the length of the no-aug tail (`no_aug_epochs`),
the Mosaic and MixUp probabilities, their scale ranges and the learning rate. Every trial is a Ray
Train run tracked in MLflow; the Optuna study is stored in `<out>/<name>/optuna.db`.

    python studies/aug_schedule.py                       # quick: configs/tune_aug_schedule.yaml, synthetic set
    python studies/aug_schedule.py --preset paper --data /path/to/coco --address auto --gpus-per-worker 1 --samples 30

The search is defined once, in `configs/tune_aug_schedule.yaml`; this script loads it and puts its
flags on top. When `--epochs` or `--preset paper` change the schedule, the `no_aug_epochs` range
moves with it (proportionally, clipped to what fits after the warm-up; dropped when nothing is left
to search). Early stopping is off on purpose: trials with different `no_aug_epochs` leave the strong
augmentation at different epochs and their AP jumps there, so comparing them at an earlier rung
would mis-rank them. The first trial is the base config's values (the preset's official ones).
Outputs in `<out>/<name>/`: best_config.yaml, importances.json/.png, report/report.html.
Running the same command again continues the study.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

from yolox_ray.cluster import tracking
from yolox_ray.cluster.tune import SearchParam, run_study
from yolox_ray.config import TrainConfig
from yolox_ray.report import write_search_outputs
from yolox_ray.study_cli import CONFIGS, add_study_args, run_script, study_from_file
from yolox_ray.tune_cli import print_result

STUDY_FILE = CONFIGS / "tune_aug_schedule.yaml"
NO_AUG_KEY = "train.no_aug_epochs"


def fit_no_aug(space: tuple[SearchParam, ...], file_train: TrainConfig, train: TrainConfig) -> tuple[SearchParam, ...]:
    """The file's no_aug_epochs range moved to another schedule: scaled by the epoch ratio, then
    clipped so that the tail fits after the warm-up (dropped if one value at most is left)."""
    out = []
    for p in space:
        if p.key == NO_AUG_KEY and p.kind == "int" and train.epochs != file_train.epochs:
            ratio = train.epochs / file_train.epochs
            fits = min(train.epochs - 1, math.floor(train.epochs - train.warmup_epochs))
            high = min(fits, max(1, round(p.high * ratio)))
            low = min(high, max(0, round(p.low * ratio)))
            if high <= low:
                continue
            p = replace(p, low=low, high=high)
        out.append(p)
    return tuple(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("quick", "paper"), default="quick")
    p.add_argument("--samples", type=int, default=None, help="Optuna trials (default: the study file's, 12)")
    add_study_args(p, name_help="study name (default aug_schedule-<preset>)", max_concurrent=None,
                   max_concurrent_help="trials at once (default: the study file's; capped by what the cluster fits)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = study_from_file(STUDY_FILE, args, name=args.name or f"aug_schedule-{args.preset}", samples=args.samples,
                           adapt_space=fit_no_aug)

    with tracking.tracking_session(args.tracking_uri, args.mlruns, address=args.address) as uri:
        result = run_study(spec, address=args.address, storage_root=args.out, tracking_uri=uri,
                           optuna_storage=args.optuna_storage)
        print_result(result)
        write_search_outputs(result, spec.name, uri, user_tracking_uri=args.tracking_uri)
    return 0 if result.num_finished > 0 else 1


if __name__ == "__main__":
    run_script(main, "aug_schedule")
