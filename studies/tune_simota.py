#!/usr/bin/env python
"""SimOTA's hyperparameters on Ray Tune + Optuna: candidate_k (5..15 inclusive), the centre-prior
radius and geometry, the cost weights and the loss weights. Every trial is a Ray Train run tracked
in MLflow; the Optuna study is stored in `<out>/<name>/optuna.db`.

    python studies/tune_simota.py                        # quick: 12 Optuna trials on the synthetic set
    python studies/tune_simota.py --k-grid --seeds 3     # every k in 5..15 x 3 seeds, the rest fixed
    python studies/tune_simota.py --preset paper --data /path/to/coco --address auto --gpus-per-worker 1 --samples 40

The base config is the ablation roadmap's SimOTA row (`yolox_ray/ablation.py`) at the chosen
preset. `--k-grid` answers the paper's "k is not sensitive in 5..15" directly (a k-vs-AP curve with
seed error bars); the Optuna search ranks all the knobs (parameter importances).
Outputs in `<out>/<name>/`: best_config.yaml, k_curve.png, importances.json/.png (Optuna),
report/report.html. Running the same command again continues the study.
"""

from __future__ import annotations

import argparse
import json

from yolox_ray.ablation import ablation_rows, dataset_num_classes
from yolox_ray.cluster import tracking
from yolox_ray.cluster.tune import SearchParam, StudySpec, print_result, run_study
from yolox_ray.config import ConfigError
from yolox_ray.report import k_points, plot_k_curve, write_search_outputs
from yolox_ray.study_cli import add_study_args, run_script, study_data, study_overrides

# candidate_k is an integer in 5..15 inclusive (the paper's range); the rest around the official values.
OPTUNA_SPACE = (
    SearchParam("assign.candidate_k", "int", low=5, high=15),
    SearchParam("assign.center_radius", "float", low=1.0, high=3.0),
    SearchParam("assign.geometry", "choice", values=("center", "box_and_center")),
    SearchParam("assign.iou_cost_weight", "float", low=1.0, high=6.0),
    SearchParam("assign.cls_cost_weight", "float", low=0.5, high=2.0),
    SearchParam("loss.reg_weight", "float", low=2.0, high=8.0),
    SearchParam("loss.obj_weight", "float", low=0.5, high=2.0),
    SearchParam("loss.cls_weight", "float", low=0.5, high=2.0),
)
K_GRID = SearchParam("assign.candidate_k", "grid", values=tuple(range(5, 16)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("quick", "paper"), default="quick")
    p.add_argument("--samples", type=int, default=12, help="Optuna trials (default 12)")
    p.add_argument("--k-grid", action="store_true", help="grid over every k in 5..15 instead of Optuna")
    p.add_argument("--k-values", default=None, help="with --k-grid: comma-separated subset of 5..15")
    p.add_argument("--seeds", type=int, default=1, help="with --k-grid: seeds per k (error bars)")
    p.add_argument("--no-early-stop", action="store_true", help="run every Optuna trial to the end (no ASHA)")
    add_study_args(p, name_help="study name (default tune_simota-<preset> / k_grid-<preset>)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.k_grid and (args.seeds != 1 or args.k_values):
        raise ConfigError("--seeds/--k-values need --k-grid (Optuna samples one seed per trial)")
    data, overrides = study_data(args), study_overrides(args.overrides)
    base = ablation_rows(args.preset, data_root=data, epochs=args.epochs, num_classes=dataset_num_classes(data),
                         rows=["simota"], overrides=overrides)[0].config

    if args.k_grid:
        ks = tuple(int(k) for k in args.k_values.split(",")) if args.k_values else K_GRID.values
        if not ks or any(not 5 <= k <= 15 for k in ks):
            raise ConfigError(f"--k-values: must lie in 5..15, got {list(ks)}")
        search = dict(searcher="grid", space=(SearchParam("assign.candidate_k", "grid", values=ks),),
                      seeds=tuple(range(args.seeds)), early_stop=False)
        name = args.name or f"k_grid-{args.preset}"
    else:
        search = dict(searcher="optuna", space=OPTUNA_SPACE, num_samples=args.samples,
                      early_stop=False if args.no_early_stop else None)
        name = args.name or f"tune_simota-{args.preset}"
    spec = StudySpec(name=name, preset=None, base=base, max_concurrent=args.max_concurrent,
                     workers=args.workers, cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                     paper_reference="YOLOX (Ge et al. 2021) SimOTA: k=10, 'not sensitive' in 5..15",
                     description=f"SimOTA hyperparameters, preset {args.preset}", **search)

    with tracking.tracking_session(args.tracking_uri, args.mlruns) as uri:
        result = run_study(spec, address=args.address, storage_root=args.out, tracking_uri=uri)
        print_result(result)
        out = result.study_dir

        # k-vs-AP: AP mean ± std over the trials (seeds, or other sampled values) at each k.
        points = k_points((int(t.params.get("assign.candidate_k", base.assign.candidate_k)), t.metrics.get("AP"))
                          for t in result.trials if t.status != "failed" and t.metrics.get("AP") is not None)
        if points:
            plot_k_curve(points, out / "k_curve.png")
            (out / "k_curve.json").write_text(json.dumps([p.__dict__ for p in points], indent=1))
            print("\nk   AP (%)  ± std   n")
            for p in points:
                print(f"{p.k:<3} {p.ap_mean:6.2f}  {p.ap_std:5.2f}  {p.n}")
            print(f"k curve: {out / 'k_curve.png'}")
        # Parameter importances from the Optuna RDB study (Optuna's default evaluator, PED-ANOVA).
        write_search_outputs(result, name, uri, user_tracking_uri=args.tracking_uri,
                             importances=spec.searcher == "optuna")
    return 0 if result.num_finished > 0 else 1


if __name__ == "__main__":
    run_script(main, "tune_simota")
