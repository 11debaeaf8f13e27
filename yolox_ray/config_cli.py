"""`yolox-ray config`: print the exact resolved config a run or a study's trial would use, as YAML.

    yolox-ray config [--model M] [--data D] [--config FILE] [--epochs N] [key=value ...]
        the config `yolox-ray train` with the same flags trains (preset, quick CPU defaults on the
        synthetic set, YAML, --data/--epochs, overrides; model.num_classes from the data)
    yolox-ray config --study FILE [--model M] [--data D] [--epochs N] [--samples N] [key=value ...]
        the config of the study's first trial (an Optuna study's warm start, the official defaults
        of the searched keys; a grid's first row / seed / grid values), with the same flags on top
        as `yolox-ray tune`; the whole study is validated first (every config it can produce)

No Ray, no MLflow: this only builds and checks configs.
"""

from __future__ import annotations

import sys
from typing import Any

from yolox_ray.config import ConfigError, ExperimentConfig, dump_yaml


def resolved_config(args: Any) -> ExperimentConfig:
    if args.study:
        from dataclasses import replace

        from yolox_ray.study import load_study, with_changes, with_cli_args

        if args.config:
            raise ConfigError("config: give --config FILE or --study FILE, not both")
        spec = load_study(args.study)
        if args.model:
            spec = replace(spec, preset=args.model, base=None)
        extra: dict[str, Any] = {}
        if args.data:
            from pathlib import Path

            extra["data.root"] = args.data if args.data == "synthetic" else str(Path(args.data).expanduser().resolve())
        spec = with_changes(spec, overrides=extra, epochs=args.epochs)
        spec = with_cli_args(spec, args)
        return spec.trial_config(spec.first_trial_params())
    from yolox_ray.cluster.train import build_train_config

    return build_train_config(args.model or "yolox_nano", args.data or "synthetic", args.epochs, args.config,
                              args.overrides, quick=float(args.gpus_per_worker) == 0)


def run_config_cli(args: Any, out: Any = None) -> int:
    print(dump_yaml(resolved_config(args)), end="", file=out or sys.stdout)
    return 0
