"""`yolox-ray` command line: info | data | config | train | eval | tune | ablate | report | dashboard | ui.

Only argument parsing lives here; each command calls one plain function in the package, imported
lazily so that `yolox-ray info` does not pay for importing Ray.
"""

from __future__ import annotations

import argparse
import sys

from yolox_ray.config import ConfigError
from yolox_ray.metrics import MODEL_COST_KEYS
from yolox_ray.study_cli import add_optuna_storage_arg


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None, help="Ray cluster address ('auto' = existing cluster); default: start a local one")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers per trial (DDP world size)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (0 = CPU, gloo)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per worker")
    p.add_argument("--storage", default=None, help="storage_path for checkpoints and results: a folder or a storage "
                                                   "URI such as s3://bucket/path (shared storage on a cluster)")
    p.add_argument("--tracking-uri", default=None,
                   help="existing MLflow tracking server; default: a local server over SQLite (on 127.0.0.1, or "
                        "with authentication on this driver's node address when the cluster has other nodes)")


def _add_experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="yolox_nano", help="model preset (yolox_nano … yolox_x, yolox_darknet53, yolov3_coupled, …)")
    p.add_argument("--config", default=None, help="YAML config file (nested sections or dotted keys)")
    p.add_argument("--data", default="synthetic", help="'synthetic' (built-in) or a COCO-format root folder")
    p.add_argument("--epochs", type=int, default=None, help="total epochs")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. assign.candidate_k=12")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolox-ray", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="parameters, GFLOPs and anchor points of a model")
    p.add_argument("--model", default="yolox_s")
    p.add_argument("--size", type=int, default=None, help="square input side (default: the preset's test size)")
    p.add_argument("--num-classes", type=int, default=80)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser("synth", help="generate the synthetic COCO-format dataset")
    s.add_argument("--out", required=True)
    s.add_argument("--train", type=int, default=512)
    s.add_argument("--val", type=int, default=128)
    s.add_argument("--size", type=int, default=320)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--style", choices=("easy", "dense", "coco_like"), default="easy",
                   help="easy: few medium/large objects (learns in CPU minutes); dense: 6-12 objects per image (the quick ablation); coco_like: clutter, 45%% small objects")

    p = sub.add_parser("config", help="print the resolved config a run (or a study's first trial) would use, as YAML")
    p.add_argument("--model", default=None, help="model preset (default yolox_nano; with --study: replaces its preset)")
    p.add_argument("--config", default=None, help="YAML config file (as for `train`)")
    p.add_argument("--data", default=None, help="'synthetic' (default) or a COCO-format root folder")
    p.add_argument("--epochs", type=int, default=None, help="total epochs")
    p.add_argument("--study", default=None, help="study YAML: print its first trial's config (Optuna: the warm start)")
    p.add_argument("--samples", type=int, default=None, help="with --study: as for `tune`")
    p.add_argument("--objective2", choices=MODEL_COST_KEYS, default=None, help="with --study: as for `tune`")
    p.add_argument("--workers", type=int, default=1, help="with --study: Ray Train workers per trial (validated)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="> 0: no quick CPU defaults (as for `train`)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")

    p = sub.add_parser("train", help="train one model on Ray Train")
    _add_experiment_args(p)
    _add_cluster_args(p)
    p.add_argument("--name", default=None, help="run name (deterministic; rerunning the same name resumes)")
    p.add_argument("--max-failures", type=int, default=2)
    p.add_argument("--ray-dashboard", action="store_true",
                   help="start the local Ray cluster with its dashboard (off by default: on a 2-CPU machine its "
                        "idle processes slow training by about 4 %%; `tune` always starts it)")

    p = sub.add_parser("eval", help="evaluate a checkpoint of ours or an official model-zoo .pth")
    p.add_argument("--weights", required=True)
    _add_experiment_args(p)
    p.set_defaults(data=None)  # default: the checkpoint's own dataset (synthetic for official weights)
    p.add_argument("--conf", type=float, default=None)
    p.add_argument("--legacy", action="store_true", help="2021 weights: RGB/255 ImageNet-normalised input")

    p = sub.add_parser("tune", help="run or resume a Ray Tune + Optuna study")
    p.add_argument("--study", default=None, help="study YAML (search space + base config)")
    p.add_argument("--resume", default=None, help="study directory to resume")
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--no-early-stop", action="store_true")
    p.add_argument("--objective2", choices=MODEL_COST_KEYS, default=None,
                   help="search the study's metric against this model cost too (multi-objective Optuna, "
                        "Pareto front in the report; no early stopping); the study must search a key that "
                        "changes it, e.g. model.width")
    p.add_argument("--out", default=None, help="studies root: a folder (default ./studies_out) or a storage URI "
                                               "(s3://bucket/studies, gs://..., any pyarrow filesystem URI)")
    add_optuna_storage_arg(p)
    _add_cluster_args(p)
    p.add_argument("overrides", nargs="*")

    p = sub.add_parser("report", help="build the HTML report of a study from MLflow")
    p.add_argument("--study", required=True)
    p.add_argument("--out", default=None)
    p.add_argument("--tracking-uri", default=None)

    p = sub.add_parser("dashboard", help="start optuna-dashboard on a search study's Optuna storage, on 127.0.0.1")
    p.add_argument("--study", required=True, help="study name (under --out) or study directory")
    p.add_argument("--out", default=None, help="studies root folder (default ./studies_out, as for `tune`)")
    p.add_argument("--port", type=int, default=8080)

    p = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--mlruns", default="mlruns")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            from yolox_ray.models.info import run_info
            return run_info(args)
        if args.command == "data":
            from yolox_ray.data.synthetic import run_synth_cli
            return run_synth_cli(args)
        if args.command == "config":
            from yolox_ray.config_cli import run_config_cli
            return run_config_cli(args)
        if args.command == "train":
            from yolox_ray.cluster.train import run_train_cli
            return run_train_cli(args)
        if args.command == "eval":
            from yolox_ray.evaluation.cli import run_eval_cli
            return run_eval_cli(args)
        if args.command == "tune":
            from yolox_ray.tune_cli import run_tune_cli
            return run_tune_cli(args)
        if args.command == "report":
            from yolox_ray.report import run_report_cli
            return run_report_cli(args)
        if args.command == "dashboard":
            from yolox_ray.dashboard import run_dashboard_cli
            return run_dashboard_cli(args)
        if args.command == "ui":
            from yolox_ray.cluster.tracking import run_ui_cli
            return run_ui_cli(args)
    except ConfigError as exc:  # DatasetError is one too (kind "dataset error")
        print(f"yolox-ray: {getattr(exc, 'kind', 'invalid configuration')}: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
