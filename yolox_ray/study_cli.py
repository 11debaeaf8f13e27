"""Command-line pieces every study script shares: cluster/output flags, data and override checks.

The scripts in `studies/` differ in what they search; how they reach the cluster, where they write
and how `key=value` overrides are read must be the same everywhere, so it is written once here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from yolox_ray.config import ConfigError


def add_study_args(p: argparse.ArgumentParser, *, name_help: str, max_concurrent: int | None = 2) -> None:
    """--data --epochs --address --workers --gpus/cpus-per-worker --max-concurrent --out --name
    --tracking-uri --mlruns and the positional key=value overrides."""
    p.add_argument("--data", default="synthetic", help="'synthetic' or a COCO-format root (required for --preset paper)")
    p.add_argument("--epochs", type=int, default=None, help="schedule length (warm-up and no-aug tail move with it)")
    p.add_argument("--address", default=None, help="Ray cluster ('auto' = the running one); default: a local cluster")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers per trial (DDP)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--max-concurrent", type=int, default=max_concurrent,
                   help="trials at once (capped by what the cluster fits)" if max_concurrent else
                   "trials at once (default: as many as the cluster fits)")
    p.add_argument("--out", default="studies_out", help="studies folder (shared storage on a cluster)")
    p.add_argument("--name", default=None, help=name_help)
    p.add_argument("--tracking-uri", default=None, help="MLflow server; default: a local one over ./mlruns")
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


def run_script(main: Callable[[], int], prog: str) -> None:
    """Exit with main()'s code; an invalid configuration is one line on stderr and exit code 2."""
    try:
        sys.exit(main())
    except ConfigError as exc:
        print(f"{prog}: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(2)
