"""Orchestration overhead of a study: sweep wall time vs the training time of its trials.

    python benchmarks/sweep_overhead.py [--trials 4] [--epochs 3] [--iters 4] [--size 128] [--concurrent 1]

Runs a small Optuna sweep over ``assign.candidate_k`` (5..15) through `run_study` on a fresh local
Ray cluster and a fresh local MLflow server (temporary SQLite store), then compares:

- ``train``: the sum over trials of the engine's own training time (``final/train_seconds``,
  measured inside the Train worker: iterations + evaluation + checkpoint building);
- ``fit``: the sum over trials of ``TorchTrainer.fit()`` (``trial/fit_seconds``: adds the Train
  worker-group start, report/checkpoint plumbing and MLflow logging);
- ``sweep``: the wall time of `run_study` on an already running cluster and server;
- ``total``: the same plus starting Ray and the MLflow server.

With ``--concurrent 1`` the trials run one after another, so ``1 - train/sweep`` is the share of the
sweep not spent training (Ray + Train + Tune + MLflow + Optuna). Trials here are deliberately tiny,
so this is the worst case; with real epochs (minutes each) the fixed per-trial cost is amortised.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--iters", type=int, default=4, help="iterations per epoch (train.max_iters)")
    p.add_argument("--size", type=int, default=128, help="input side")
    p.add_argument("--concurrent", type=int, default=1)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the temporary study/MLflow folders")
    args = p.parse_args(argv)

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    from yolox_ray.cluster import tracking
    from yolox_ray.cluster.ray_setup import init_ray, shutdown_ray
    from yolox_ray.cluster.tune import SearchParam, StudySpec, run_study

    work = Path(tempfile.mkdtemp(prefix="yolox_sweep_bench_"))
    side = args.size
    spec = StudySpec(
        name="sweep_overhead", preset="yolox_nano", num_samples=args.trials, max_concurrent=args.concurrent,
        early_stop=False, seed=0,
        space=(SearchParam("assign.candidate_k", "int", low=5, high=15),),
        overrides={"model.width": 0.125, "model.num_classes": 8, "data.input_size": [side, side],
                   "data.test_size": [side, side], "data.random_size": [side // 32, side // 32],
                   "data.synthetic_train": 64, "data.synthetic_val": 16, "data.synthetic_size": max(side, 128),
                   "data.workers": 0, "data.cache_dir": str(work / "data"), "train.epochs": args.epochs,
                   "train.warmup_epochs": 1, "train.no_aug_epochs": 1, "train.max_iters": args.iters,
                   "train.batch_size": 8, "train.eval_interval": 1, "train.print_interval": 1})
    try:
        t0 = time.perf_counter()
        server = tracking.start_server(work / "mlruns")
        t_server = time.perf_counter() - t0
        t1 = time.perf_counter()
        init_ray(num_cpus=args.num_cpus, trial_slots=args.concurrent, temp_dir=tempfile.mkdtemp(prefix="ysb", dir="/tmp"))
        t_ray = time.perf_counter() - t1
        t2 = time.perf_counter()
        result = run_study(spec, storage_root=work / "studies", tracking_uri=server.uri)
        sweep = time.perf_counter() - t2
        shutdown_ray()

        client = tracking.client_for(server.uri)
        train = fit = 0.0
        rows = []
        for trial in result.trials:
            metrics = client.get_run(trial.run_id).data.metrics
            tr, ft = metrics.get("final/train_seconds", float("nan")), metrics.get("trial/fit_seconds", float("nan"))
            train += tr
            fit += ft
            rows.append((trial.trial_id, trial.params.get("assign.candidate_k"), tr, ft, trial.status))
        tracking.stop_server(server)
    finally:
        shutdown_ray()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    total = sweep + t_server + t_ray
    print(f"\n{args.trials} trials x {args.epochs} epochs x {args.iters} iters, input {side}, "
          f"{args.concurrent} concurrent, {args.num_cpus} CPUs")
    print(f"{'trial':<22}{'k':>4}{'train s':>10}{'fit s':>10}  status")
    for tid, k, tr, ft, status in rows:
        print(f"{tid:<22}{k!s:>4}{tr:>10.1f}{ft:>10.1f}  {status}")
    print(f"\nMLflow server start {t_server:6.1f} s   Ray start {t_ray:6.1f} s")
    print(f"sum of training time      {train:7.1f} s")
    print(f"sum of Train fit() time   {fit:7.1f} s   (Ray Train overhead {100 * (fit - train) / fit:5.1f} % of fit)")
    print(f"sweep wall time           {sweep:7.1f} s   orchestration overhead {100 * (sweep - train) / sweep:5.1f} %"
          f"  (wall / train = {sweep / train:.2f}x)")
    print(f"incl. Ray + MLflow start  {total:7.1f} s   orchestration overhead {100 * (total - train) / total:5.1f} %")
    per_trial = (sweep - train) / max(1, len(rows))
    print(f"per-trial overhead        {per_trial:7.1f} s   (fit - train per trial: {(fit - train) / max(1, len(rows)):.1f} s)")
    for minutes in (10, 60):  # the fixed per-trial cost against trials of realistic length
        t = 60.0 * minutes
        print(f"  -> with {minutes:>3} min of training per trial: overhead {100 * per_trial / (per_trial + t):5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
