"""`yolox-ray tune`: run, resume or grow a study from the command line, and print its result.

Command-line level (above `cluster/`): it reads the flags, builds the `StudySpec` (`yolox_ray.study`)
and calls `yolox_ray.cluster.tune.run_study`, imported when the command runs. The study scripts in
`studies/` print their results with the same `print_result`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from yolox_ray.storage import resolve_storage
from yolox_ray.study import StudyError, load_study, with_cli_args
from yolox_ray.study_paths import DEFAULT_STUDIES_ROOT, STUDY_FILE


def run_tune_cli(args: Any) -> int:
    """`yolox-ray tune --study FILE [--samples N] [--no-early-stop] [--objective2 COST] [--address A]
    [--out DIR_OR_URI] [--resume STUDY_DIR_OR_URI] [--optuna-storage URL] [--tracking-uri URI] [key=value ...]`. On a resume `--samples` may grow
    the study (more trials, the Optuna history continues); any other change is refused."""
    if args.resume:
        study_dir = resolve_storage(args.resume, what="--resume")
        if not (study_dir / STUDY_FILE).exists():
            raise StudyError(f"--resume {args.resume}: no {STUDY_FILE} in that directory")
        spec = load_study(study_dir / STUDY_FILE)
        if spec.name != study_dir.name:
            raise StudyError(f"--resume {args.resume}: the directory name does not match study {spec.name!r}")
        storage_root = study_dir.parent
    else:
        if not args.study:
            raise StudyError("tune: give --study FILE (or --resume STUDY_DIR)")
        spec = load_study(args.study)
        storage_root = resolve_storage(args.out or getattr(args, "storage", None) or DEFAULT_STUDIES_ROOT)
    spec = with_cli_args(spec, args)

    from yolox_ray.cluster.tune import run_study

    result = run_study(spec, address=args.address, storage_root=storage_root, tracking_uri=args.tracking_uri,
                       resume=bool(args.resume), optuna_storage=getattr(args, "optuna_storage", None))
    print_result(result)
    return 0 if result.num_finished > 0 else 1


def print_result(result: Any, stream: Any = None) -> None:
    """A `cluster.tune.StudyResult` as text: counts, the MLflow links, the best trial and its config."""
    out = stream or sys.stdout
    print(f"\nstudy {result.name}: {len(result.trials)} trials, {result.num_finished} finished, "
          f"{result.num_failed} failed  ({result.study_dir})", file=out)
    print(f"MLflow study run: {result.run_url()}", file=out)
    if result.best is None:
        print("no trial produced a result", file=out)
        return
    b = result.best
    print(f"best {result.metric} = {b.metrics[result.metric]:.4f}  (trial {b.trial_id}, epoch {b.metrics.get('epoch')})",
          file=out)
    print(f"best values: {json.dumps({k: v for k, v in b.params.items()}, sort_keys=True)}", file=out)
    print(f"best MLflow run: {result.best_run_url}", file=out)
    if result.objectives:
        print(f"Pareto front ({', '.join(result.objectives)}): {len(result.pareto)} of "
              f"{sum(t.status == 'finished' for t in result.trials)} finished trials", file=out)
        for r in sorted(result.pareto, key=lambda r: r.values(result.objectives)[1]):
            values = ", ".join(f"{k}={r.metrics[k]:.4g}" for k in result.objectives)
            print(f"  trial {r.trial_id}: {values}  {json.dumps(r.params, sort_keys=True)}", file=out)
    if result.best_config is not None:
        print("best config:", file=out)
        from yolox_ray.config import dump_yaml

        print("  " + dump_yaml(result.best_config).replace("\n", "\n  ").rstrip(), file=out)
