#!/usr/bin/env python
"""The augmentation schedule on Ray Tune + Optuna: the length of the no-aug tail (`no_aug_epochs`),
the Mosaic and MixUp probabilities, and their scale ranges. Every trial is a Ray Train run tracked
in MLflow; the Optuna study is stored in `<out>/<name>/optuna.db`.

    python studies/aug_schedule.py                       # quick: 12 Optuna trials on the synthetic set
    python studies/aug_schedule.py --preset paper --data /path/to/coco --address auto --gpus-per-worker 1 --samples 30

The base config is the ablation roadmap's SimOTA row (`yolox_ray/ablation.py`). Early stopping is
off on purpose: trials with different `no_aug_epochs` leave the strong augmentation at different
epochs and their AP jumps there, so comparing them at an earlier rung would mis-rank them.
Outputs in `<out>/<name>/`: best_config.yaml, importances.json/.png, report/report.html.
Running the same command again continues the study.
"""

from __future__ import annotations

import argparse
import math

from yolox_ray.ablation import ablation_rows, dataset_num_classes
from yolox_ray.cluster import tracking
from yolox_ray.cluster.tune import SearchParam, StudySpec, print_result, run_study
from yolox_ray.config import TrainConfig
from yolox_ray.report import write_search_outputs
from yolox_ray.study_cli import add_study_args, run_script, study_data, study_overrides


def no_aug_range(train: TrainConfig) -> tuple[int, int]:
    """0 .. about 10 % of the schedule (at least 4 epochs), leaving the warm-up room to finish."""
    fits = min(train.epochs - 1, math.floor(train.epochs - train.warmup_epochs))
    return 0, max(0, min(fits, max(4, round(0.1 * train.epochs))))


def search_space(train: TrainConfig) -> tuple[SearchParam, ...]:
    low, high = no_aug_range(train)
    space = [
        SearchParam("data.mosaic_prob", "float", low=0.0, high=1.0),
        SearchParam("data.mixup_prob", "float", low=0.0, high=1.0),
        # The official large-model range, the nano/tiny one, and one in between (reference §1).
        SearchParam("data.mosaic_scale", "choice", values=((0.1, 2.0), (0.5, 1.5), (0.3, 1.7))),
        SearchParam("data.mixup_scale", "choice", values=((0.5, 1.5), (0.8, 1.2))),
    ]
    if high > low:
        space.insert(0, SearchParam("train.no_aug_epochs", "int", low=low, high=high))
    return tuple(space)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("quick", "paper"), default="quick")
    p.add_argument("--samples", type=int, default=12, help="Optuna trials (default 12)")
    add_study_args(p, name_help="study name (default aug_schedule-<preset>)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data, overrides = study_data(args), study_overrides(args.overrides)
    base = ablation_rows(args.preset, data_root=data, epochs=args.epochs, num_classes=dataset_num_classes(data),
                         rows=["simota"], overrides=overrides)[0].config
    name = args.name or f"aug_schedule-{args.preset}"
    spec = StudySpec(name=name, preset=None, base=base, searcher="optuna", space=search_space(base.train),
                     num_samples=args.samples, early_stop=False, max_concurrent=args.max_concurrent,
                     workers=args.workers, cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                     paper_reference="YOLOX (Ge et al. 2021): Mosaic+MixUp off for the last 15 of 300 epochs; "
                                     "smaller models want weaker augmentation (Table 5)",
                     description=f"augmentation schedule, preset {args.preset}")

    with tracking.tracking_session(args.tracking_uri, args.mlruns) as uri:
        result = run_study(spec, address=args.address, storage_root=args.out, tracking_uri=uri)
        print_result(result)
        write_search_outputs(result, name, uri, user_tracking_uri=args.tracking_uri)
    return 0 if result.num_finished > 0 else 1


if __name__ == "__main__":
    run_script(main, "aug_schedule")
