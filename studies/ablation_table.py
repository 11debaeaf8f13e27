#!/usr/bin/env python
"""The YOLOX paper's ablation roadmap (Table 2) as one study: every row x seed is a Ray Tune trial
(a Ray Train run), tracked in MLflow under one parent run; the result is the paper's table, ours
beside theirs.

    python studies/ablation_table.py                  # quick: synthetic data, small proxy model, CPU
    python studies/ablation_table.py --seeds 3        # mean ± std over 3 seeds
    python studies/ablation_table.py --preset paper --data /path/to/coco --address auto --gpus-per-worker 1

Rows (yolox_ray/ablation.py): YOLOv3 baseline -> +decoupled head -> +strong augmentation ->
+anchor-free -> +multi positives -> +SimOTA. `--preset quick` trains the same switches on a small
CSPDarknet at a small input for a short schedule; `--preset paper` is Darknet53, 640, 300 epochs.

Running the same command again continues the study: finished trials are kept, interrupted ones
resume from their checkpoints, and the table is rewritten; with a larger `--seeds` only the new
seeds run (a 1-seed table grows into a 3-seed one). Outputs, in `<out>/<name>/`:
ablation_table.md, ablation_table.csv, report/report.html (plus the study's Tune/Train/Optuna state).
Extra `key=value` arguments override every row's config (e.g. `train.max_iters=5`).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

from yolox_ray.ablation import (
    ROW_KEYS,
    ModelCost,
    TrialResult,
    ablation_rows,
    build_table,
    dataset_num_classes,
    table_csv,
    table_markdown,
)
from yolox_ray.cluster import tracking
from yolox_ray.cluster.train import validate_run
from yolox_ray.cluster.tune import StudyRow, StudySpec, run_study
from yolox_ray.config import ConfigError, ExperimentConfig
from yolox_ray.metrics import AP, AP50, AP50_LOW_CONF, AP_LOW_CONF, TRAIN_SECONDS
from yolox_ray.models import WeightsError, build_model, count_gflops, count_params, load_backbone_weights
from yolox_ray.report import build_report
from yolox_ray.study_cli import add_study_args, run_script, study_data, study_overrides


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("quick", "paper"), default="quick", help="scale of the study (default quick)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per row (default 1)")
    p.add_argument("--rows", default=None, help=f"comma-separated subset of rows ({','.join(ROW_KEYS)})")
    p.add_argument("--size", type=int, default=None,
                   help="input size (multiple of 32; level ranges and anchors follow); default: the preset's")
    p.add_argument("--backbone-weights", default="",
                   help="an ImageNet-pretrained backbone state dict for the rows before strong augmentation "
                        "(the paper's YOLOv3 rows); default: every row from scratch")
    add_study_args(p, name_help="study name (default ablation-<preset>)", max_concurrent=None)
    return p.parse_args(argv)


def model_cost(cfg: ExperimentConfig) -> ModelCost:
    """Params and GFLOPs of the model a row actually trains, at its test size."""
    model = build_model(cfg.model)
    return ModelCost(params=count_params(model), gflops=count_gflops(model, cfg.data.test_size))


def local_concurrency(args: argparse.Namespace, trials: int) -> int:
    """Trials at once: on a new local cluster as many as its CPUs (or GPUs) fit, else all of them
    (an existing cluster queues the rest)."""
    if args.address is not None:
        return trials
    if args.gpus_per_worker > 0:
        import torch

        fit = int(torch.cuda.device_count() // (args.workers * args.gpus_per_worker))
    else:
        fit = int((os.cpu_count() or 1) // (args.workers * args.cpus_per_worker))
    return max(1, min(trials, fit))


def trial_result(t) -> TrialResult:
    """What the table needs from one Tune trial record (nothing but its identity when it failed)."""
    if t.status == "failed":
        return TrialResult(row=t.row, seed=t.seed, ap=None, ap50=None)
    m = t.metrics
    return TrialResult(row=t.row, seed=t.seed, ap=m.get(AP), ap50=m.get(AP50), seconds=m.get(TRAIN_SECONDS),
                       ap_low_conf=m.get(AP_LOW_CONF), ap50_low_conf=m.get(AP50_LOW_CONF))


def rows_by_key(rows, key: str) -> ExperimentConfig | None:
    return next((r.config for r in rows if r.key == key), None)


def anchor_text(cfg: ExperimentConfig | None) -> str:
    if cfg is None:
        return "–"
    return " ".join(f"{w:g}x{h:g}" for w, h in cfg.model.anchors) + " px"


def check_backbone_weights(cfg: ExperimentConfig) -> None:
    """A pretrained backbone file must load into the row's backbone: checked here, before the cluster."""
    if not cfg.model.backbone_weights:
        return
    try:
        load_backbone_weights(build_model(cfg.model), cfg.model.backbone_weights)
    except WeightsError as exc:
        raise ConfigError(f"--backbone-weights: {exc}") from None


def describe_model(cfg: ExperimentConfig) -> str:
    m = cfg.model
    if m.backbone == "darknet53":
        return "Darknet53 + SPP + YOLOv3 FPN (paper)"
    return f"CSPDarknet d{m.depth:g} w{m.width:g} + PAFPN (small proxy, {m.act})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()

    # 1. The rows, validated before any cluster work.
    if args.seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {args.seeds}")
    data, overrides = study_data(args), study_overrides(args.overrides)
    # The table always shows the whole roadmap; --rows runs a subset (the others read "–").
    num_classes = dataset_num_classes(data)
    common = dict(data_root=data, epochs=args.epochs, num_classes=num_classes, overrides=overrides,
                  size=args.size, backbone_weights=args.backbone_weights)
    roadmap = ablation_rows(args.preset, **common)
    rows = ablation_rows(args.preset, rows=args.rows.split(","), **common) if args.rows else roadmap
    for row in rows:
        validate_run(row.config, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                     gpus_per_worker=args.gpus_per_worker, max_failures=2)
        check_backbone_weights(row.config)
    seeds = tuple(range(args.seeds))
    name = args.name or f"ablation-{args.preset}"
    first = rows[0].config
    spec = StudySpec(
        name=name, preset=None, searcher="grid", early_stop=False,
        rows=tuple(StudyRow(name=r.key, config=r.config, paper_ap=None if math.isnan(r.paper.ap) else r.paper.ap)
                   for r in rows), seeds=seeds,
        max_concurrent=args.max_concurrent or local_concurrency(args, len(rows) * len(seeds)),
        workers=args.workers, cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
        paper_reference="YOLOX (Ge et al. 2021) Table 2, YOLOX-DarkNet53 640x640 300 epochs COCO val2017",
        description=f"ablation roadmap, preset {args.preset}",
    )
    labels = {
        "preset": args.preset,
        "model": describe_model(first),
        "input size": f"{first.data.input_size[0]}x{first.data.input_size[1]} (test {first.data.test_size[0]})",
        "data": (f"built-in synthetic shapes (8 classes, style {first.data.synthetic_style}, "
                 f"{first.data.synthetic_train}/{first.data.synthetic_val} images)") if data == "synthetic" else data,
        "epochs": f"{first.train.epochs} (warm-up {first.train.warmup_epochs:g}, no-aug tail {first.train.no_aug_epochs})"
                  + (f", max {first.train.max_iters} iterations/epoch" if first.train.max_iters else ""),
        "anchors (rows 1-3)": anchor_text(rows_by_key(roadmap, "yolov3_baseline")),
        "pretrained backbone (rows 1-2)": args.backbone_weights or "none (every row from scratch)",
        "seeds": len(seeds),
        "rows run": "all" if len(rows) == len(roadmap) else ", ".join(r.key for r in rows),
        "commit": tracking.git_commit() or "unknown",
        "study": name,
    }

    # 2. Run (or continue) the grid study on Ray Tune; one MLflow server for the whole script.
    with tracking.tracking_session(args.tracking_uri, args.mlruns, address=args.address) as uri:
        result = run_study(spec, address=args.address, storage_root=args.out, tracking_uri=uri,
                           optuna_storage=args.optuna_storage)

        # 3. The table: per row AP mean ± std over seeds, deltas, the paper's values, params/GFLOPs.
        trials = [trial_result(t) for t in result.trials]
        table = build_table(roadmap, trials, {r.key: model_cost(r.config) for r in roadmap})
        # A local server lives only while the script runs: point at `yolox-ray ui` (port 5000) instead.
        ui_url = None if args.tracking_uri else "http://127.0.0.1:5000"
        labels["MLflow"] = result.run_url() if args.tracking_uri else \
            f"study run {result.parent_run_id} in {Path(args.mlruns).resolve()} (open with `yolox-ray ui`)"
        md, csv_text = table_markdown(table, labels), table_csv(table, labels)
        (result.study_dir / "ablation_table.md").write_text(md)
        (result.study_dir / "ablation_table.csv").write_text(csv_text)
        client = tracking.client_for(uri)
        client.log_text(result.parent_run_id, md, "ablation_table.md")
        client.log_text(result.parent_run_id, csv_text, "ablation_table.csv")
        for key in ("preset", "model", "input size", "data", "epochs", "commit"):
            client.set_tag(result.parent_run_id, key.replace(" ", "_"), str(labels[key]))
        report = build_report(name, result.outputs_dir / "report", uri, ui_url=ui_url)

    print()
    print(md)
    print(f"table:  {result.study_dir / 'ablation_table.md'} (and .csv)")
    print(f"report: {report}")
    missing = sum(r.n_missing for r in table)
    print(f"{len(result.trials)} trials ({result.num_failed} failed) in {time.perf_counter() - start:.0f} s")
    if missing:
        print(f"{missing} trial(s) have no result yet: run the same command again to continue the study")
    return 0 if result.num_failed == 0 and missing == 0 else 1


if __name__ == "__main__":
    run_script(main, "ablation_table")
