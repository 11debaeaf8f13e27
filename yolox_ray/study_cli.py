"""Command-line pieces every study script shares: cluster/output flags, data and override checks.

The scripts in `studies/` differ in what they search; how they reach the cluster, where they write
and how `key=value` overrides are read must be the same everywhere, so it is written once here.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import yaml

from yolox_ray.config import ConfigError
from yolox_ray.study_paths import DEFAULT_STUDIES_ROOT

# The shipped study files: the single definition of each search (the scripts load and extend them).
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def add_optuna_storage_arg(p: argparse.ArgumentParser) -> None:
    """--optuna-storage, shared by `yolox-ray tune` and the study scripts (see `study_paths`)."""
    p.add_argument("--optuna-storage", default=None,
                   help="the Optuna study's storage: an RDB URL (sqlite:////abs/optuna.db, postgresql://user@host/db) "
                        "or journal:PATH (a JournalStorage log file); default: optuna.db in a local study folder")


def add_study_args(p: argparse.ArgumentParser, *, name_help: str, max_concurrent: int | None = 2,
                   max_concurrent_help: str | None = None) -> None:
    """--data --epochs --address --workers --gpus/cpus-per-worker --max-concurrent --out --name
    --tracking-uri --mlruns and the positional key=value overrides."""
    p.add_argument("--data", default="synthetic", help="'synthetic' or a COCO-format root (required for --preset paper)")
    p.add_argument("--epochs", type=int, default=None, help="schedule length (warm-up and no-aug tail move with it)")
    p.add_argument("--address", default=None, help="Ray cluster ('auto' = the running one); default: a local cluster")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers per trial (DDP)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--max-concurrent", type=int, default=max_concurrent,
                   help=max_concurrent_help or ("trials at once (capped by what the cluster fits)" if max_concurrent else
                                                "trials at once (default: as many as the cluster fits)"))
    p.add_argument("--out", default=DEFAULT_STUDIES_ROOT,
                   help="studies folder or storage URI (s3://bucket/studies, gs://...); shared storage on a cluster")
    add_optuna_storage_arg(p)
    p.add_argument("--name", default=None, help=name_help)
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow server; default: a local one over --mlruns (on 127.0.0.1, or with authentication "
                        "on this driver's node address when the cluster has other nodes)")
    p.add_argument("--mlruns", default="mlruns", help="the local MLflow store when --tracking-uri is not given")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every trial's config")


def study_data(args: argparse.Namespace) -> str:
    """'synthetic' or the absolute COCO root (workers run in other folders); the paper preset needs COCO."""
    if args.preset == "paper" and args.data == "synthetic":
        raise ConfigError("--preset paper trains on COCO: pass --data /path/to/coco (and usually --address auto "
                          "--gpus-per-worker 1)")
    return args.data if args.data == "synthetic" else str(Path(args.data).expanduser().resolve())


def study_overrides(items: list[str]) -> dict[str, str]:
    """`key=value` items as a dict; anything else is refused by name."""
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ConfigError(f"overrides: expected key=value, got {bad}")
    return dict(item.split("=", 1) for item in items)


def study_from_file(path: str | Path, args: argparse.Namespace, *, name: str, samples: int | None = None,
                    no_early_stop: bool = False, adapt_space: Callable[..., tuple] | None = None, **fields: Any):
    """The study of a shipped YAML file with the script's flags on top (one definition per study).

    `--preset paper` starts from the ablation roadmap's SimOTA row at paper scale (dropping the
    file's quick-budget overrides), `--data` sets data.root, `--epochs` rescales the schedule
    (warm-up, no-aug tail and eval interval move with it), then the key=value overrides, the
    cluster flags, `name`, `samples`, `no_early_stop` and other StudySpec `fields`.
    `adapt_space(space, file_train, train)` may fit the file's dimensions to the new schedule.
    """
    from yolox_ray.ablation import ablation_rows, rescale_schedule
    from yolox_ray.config import apply_overrides, experiment_preset
    from yolox_ray.study import load_study, with_changes

    spec = load_study(path)
    file_train = spec.base_config().train
    data = study_data(args)
    if args.preset == "paper":
        base = ablation_rows("paper", data_root=data, rows=["simota"])[0].config
        spec = replace(spec, preset=None, base=base, overrides={}, epochs=None)
    start = spec.base if spec.base is not None else experiment_preset(spec.preset)
    overrides: dict[str, Any] = {"data.root": data}
    if args.epochs is not None:
        train = rescale_schedule(apply_overrides(start, {**spec.overrides, **overrides}).train, args.epochs)
        overrides.update({"train.epochs": train.epochs, "train.warmup_epochs": train.warmup_epochs,
                          "train.no_aug_epochs": train.no_aug_epochs, "train.eval_interval": train.eval_interval})
    overrides.update({k: yaml.safe_load(v) for k, v in study_overrides(args.overrides).items()})
    if adapt_space is not None:
        train = apply_overrides(start, {**spec.overrides, **overrides}).train
        fields["space"] = adapt_space(spec.space, file_train, train)
    return with_changes(spec, samples=samples, no_early_stop=no_early_stop, overrides=overrides, name=name,
                        workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                        gpus_per_worker=args.gpus_per_worker, max_concurrent=args.max_concurrent, **fields)


def run_script(main: Callable[[], int], prog: str) -> None:
    """Exit with main()'s code; an invalid configuration is one line on stderr and exit code 2."""
    try:
        sys.exit(main())
    except ConfigError as exc:
        print(f"{prog}: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(2)
