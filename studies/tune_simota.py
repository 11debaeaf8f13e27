#!/usr/bin/env python
"""SimOTA's hyperparameters on Ray Tune + Optuna: candidate_k (5..15 inclusive), the centre-prior
radius and geometry, the cost weights and the loss weights. Every trial is a Ray Train run tracked
in MLflow; the Optuna study is stored in `<out>/<name>/optuna.db`.

    python studies/tune_simota.py                        # quick: configs/tune_simota.yaml on the synthetic set
    python studies/tune_simota.py --k-grid --seeds 3     # configs/tune_k_sweep.yaml: every k in 5..15 x 3 seeds
    python studies/tune_simota.py --preset paper --data /path/to/coco --address auto --gpus-per-worker 1 --samples 40
    python studies/tune_simota.py --objective2 latency_ms   # AP against measured latency: a Pareto front

The search is defined once, in `configs/tune_simota.yaml` (Optuna) and `configs/tune_k_sweep.yaml`
(`--k-grid`); this script loads that file and puts its flags on top (`--samples`, `--epochs`,
`--data`, `key=value`, the cluster flags). `--preset paper` keeps the file's search and starts from
the ablation roadmap's SimOTA row at paper scale (`yolox_ray/ablation.py`). The first Optuna trial
is the official defaults (k 10, r 1.5, the official weights). `--k-grid` answers the paper's "k is
not sensitive in 5..15" directly (a k-vs-AP curve with seed error bars); the Optuna search ranks all
the knobs (parameter importances, over the full-length trials). `--objective2 params|gflops|latency_ms`
searches AP against that model cost too (multi-objective TPE, every trial to the end, the Pareto front in
the report); since the SimOTA knobs do not change the model, it also searches `model.width` over
`--widths` (default: 0.5x, 0.75x and 1x the base width).
Outputs in `<out>/<name>/`: best_config.yaml, k_curve.png, importances.json/.png (Optuna),
report/report.html. Running the same command again continues the study.
"""

from __future__ import annotations

import argparse
import json

from yolox_ray.cluster import tracking
from yolox_ray.cluster.tune import SearchParam, run_study
from yolox_ray.config import ConfigError
from yolox_ray.metrics import AP, MODEL_COST_KEYS
from yolox_ray.report import k_points, plot_k_curve, write_search_outputs
from yolox_ray.study import with_changes
from yolox_ray.study_cli import CONFIGS, add_study_args, run_script, study_from_file
from yolox_ray.tune_cli import print_result

STUDY_FILE = CONFIGS / "tune_simota.yaml"
K_GRID_FILE = CONFIGS / "tune_k_sweep.yaml"
K_KEY = "assign.candidate_k"
WIDTH_KEY = "model.width"
WIDTH_SCALES = (0.5, 0.75, 1.0)  # --objective2's default widths, relative to the base model's


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("quick", "paper"), default="quick")
    p.add_argument("--samples", type=int, default=None, help="Optuna trials (default: the study file's, 12)")
    p.add_argument("--k-grid", action="store_true", help="the grid over every k in 5..15 (tune_k_sweep.yaml)")
    p.add_argument("--k-values", default=None, help="with --k-grid: comma-separated subset of the file's k values")
    p.add_argument("--seeds", type=int, default=None, help="with --k-grid: seeds per k (default: the file's)")
    p.add_argument("--no-early-stop", action="store_true", help="run every Optuna trial to the end (no ASHA)")
    p.add_argument("--objective2", choices=MODEL_COST_KEYS, default=None,
                   help="search AP against this model cost too (multi-objective; adds model.width, no ASHA)")
    p.add_argument("--widths", default=None,
                   help="with --objective2: comma-separated model.width choices (default 0.5x,0.75x,1x the base)")
    add_study_args(p, name_help="study name (default tune_simota-<preset> / k_grid-<preset>)", max_concurrent=None,
                   max_concurrent_help="trials at once (default: the study file's; capped by what the cluster fits)")
    return p.parse_args(argv)


def width_param(spec, widths: str | None) -> SearchParam:
    """The `model.width` choices searched with a model-cost objective."""
    if widths:
        try:
            values = tuple(float(w) for w in widths.split(","))
        except ValueError:
            raise ConfigError(f"--widths: expected comma-separated numbers, got {widths!r}") from None
    else:
        base = spec.base_config().model.width
        values = tuple(round(base * s, 4) for s in WIDTH_SCALES)
    return SearchParam(WIDTH_KEY, "choice", values=values)


def build_spec(args: argparse.Namespace):
    """The study the flags ask for: the Optuna search of tune_simota.yaml or the k grid, flags on top."""
    if not args.k_grid and (args.seeds is not None or args.k_values):
        raise ConfigError("--seeds/--k-values need --k-grid (Optuna samples one seed per trial)")
    if args.widths and not args.objective2:
        raise ConfigError("--widths needs --objective2 (the width is searched for the model-cost objective)")
    if args.objective2 and args.k_grid:
        raise ConfigError("--objective2 needs the Optuna search (not --k-grid)")

    if args.k_grid:
        search: dict = {}
        if args.seeds is not None:
            search["seeds"] = tuple(range(args.seeds))
        if args.k_values:
            from yolox_ray.study import load_study

            grid = next(p for p in load_study(K_GRID_FILE).space if p.key == K_KEY)
            ks = tuple(int(k) for k in args.k_values.split(","))
            lo, hi = min(grid.values), max(grid.values)
            if not ks or any(k not in grid.values for k in ks):
                raise ConfigError(f"--k-values: must lie in {lo}..{hi}, got {list(ks)}")
            search["space"] = (SearchParam(K_KEY, "grid", values=ks),)
        spec = study_from_file(K_GRID_FILE, args, name=args.name or f"k_grid-{args.preset}", **search)
    else:
        spec = study_from_file(STUDY_FILE, args, name=args.name or f"tune_simota-{args.preset}",
                               samples=args.samples, no_early_stop=args.no_early_stop)
        if args.objective2:
            spec = with_changes(spec, objective2=args.objective2, space=spec.space + (width_param(spec, args.widths),))
    return spec


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = build_spec(args)
    base = spec.base_config()

    with tracking.tracking_session(args.tracking_uri, args.mlruns, address=args.address) as uri:
        result = run_study(spec, address=args.address, storage_root=args.out, tracking_uri=uri,
                           optuna_storage=args.optuna_storage)
        print_result(result)
        out = result.outputs_dir  # a local folder (the study folder, unless --out is a storage URI)
        out.mkdir(parents=True, exist_ok=True)

        # k-vs-AP: AP mean ± std over the full-length trials (seeds, or other sampled values) at each k.
        points = k_points((int(t.params.get(K_KEY, base.assign.candidate_k)), t.metrics.get(AP))
                          for t in result.trials if t.status == "finished" and t.metrics.get(AP) is not None)
        if points:
            plot_k_curve(points, out / "k_curve.png")
            (out / "k_curve.json").write_text(json.dumps([p.__dict__ for p in points], indent=1))
            print(f"\nk   {AP} (%)  ± std   n")
            for p in points:
                print(f"{p.k:<3} {p.ap_mean:6.2f}  {p.ap_std:5.2f}  {p.n}")
            print(f"k curve: {out / 'k_curve.png'}")
        # Parameter importances from the Optuna RDB study (PED-ANOVA), over the full-length trials.
        write_search_outputs(result, spec.name, uri, user_tracking_uri=args.tracking_uri,
                             importances=spec.searcher == "optuna")
    return 0 if result.num_finished > 0 else 1


if __name__ == "__main__":
    run_script(main, "tune_simota")
