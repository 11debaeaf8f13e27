"""Ray Train driver for the engine: `make_trainer`, the per-worker loop, `run_training`, `yolox-ray train`.

Follows ray_stack.md §1–§3b: Train V2 `TorchTrainer`, gloo on CPU / nccl on GPU, every rank calls
`ray.train.report` exactly once per epoch with rank 0's checkpoint (`epoch_NNNN`), resume from
`ray.train.get_checkpoint()`, a deterministic run name so a rerun (or a Tune retry) resumes.
Evaluation runs on rank 0 only (on the EMA model) while the other ranks wait at the report barrier;
the val sets we use are small next to an epoch, so sharding it is not worth the gather.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from yolox_ray.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    experiment_preset,
    from_flat_dict,
    load_yaml,
    to_flat_dict,
)
from yolox_ray.metrics import AP, AP50, BEST_AP, LOSS
from yolox_ray.storage import StoragePath, as_storage, ray_storage

# Metrics every per-epoch report carries (plus the 12 COCO stats after an evaluation).
REPORT_KEYS = ("epoch", AP, AP50, BEST_AP, "evaluated", LOSS, "lr")

# `yolox-ray train` on the synthetic data with no GPU: the README's learning run. Measured on the idle
# 2-core box (`yolox-ray train --model yolox_nano --data synthetic --workers 1 --cpus-per-worker 2`):
# 1,536 iterations of batch 8 at 192 px in 6 min 25 s wall, AP50 0.50 after epoch 16 and 0.56 at the
# end on the easy synthetic val set (at 256 px: 12 min 40 s, AP50 0.62). Short schedules want a higher
# lr than the official 0.01/64 per image, and no Mosaic (it slows early learning).
QUICK_CPU_OVERRIDES: dict[str, Any] = {
    "data.input_size": (192, 192),
    "data.test_size": (192, 192),
    "data.random_size": (4, 8),
    "data.mosaic_prob": 0.0,
    "data.workers": 1,
    "train.epochs": 24,
    "train.warmup_epochs": 1,
    "train.no_aug_epochs": 4,
    "train.batch_size": 8,
    "train.lr_per_image": 0.02 / 8,
    "train.eval_interval": 4,
    "train.print_interval": 16,
    "train.max_train_seconds": 3600.0,
}


# Validation (before any cluster work): the Ray-free checks live in yolox_ray.study.
from yolox_ray.study import validate_run  # noqa: E402,F401  (re-exported)


def check_data(cfg: ExperimentConfig, out=None) -> list:
    """The dataset rules of `yolox_ray.data.checks` on both splits, before any cluster work:
    DatasetError (a ConfigError) for a fatal problem, else one `SplitReport` per split saying
    what the workers will skip. Progress goes to `out` (stderr by default) while it takes a while."""
    from yolox_ray.data.checks import check_dataset

    return check_dataset(cfg.data, progress=out or sys.stderr)


def check_study_data(configs: Iterable[tuple[str | None, ExperimentConfig]], out=None, prefix: str = "") -> None:
    """`check_data` once per distinct dataset among a study's `(row name, base config)`s, printing
    what will be skipped, before any cluster starts. When no row has usable data this raises the
    (first) DatasetError/ConfigError; a row whose data alone is unusable gets one warning line and its
    trials fail at once (not retried) while the other rows run."""
    from yolox_ray.data.checks import print_reports

    out = out or sys.stdout
    results: dict[tuple, ConfigError | None] = {}
    errors: list[tuple[str | None, ConfigError]] = []
    for row, cfg in configs:
        d = cfg.data
        key = (d.root, d.train_ann, d.train_images, d.val_ann, d.val_images, d.max_labels, d.cache_dir,
               d.synthetic_train, d.synthetic_val, d.synthetic_size, d.synthetic_seed, d.synthetic_style)
        if key not in results:
            try:
                print_reports(check_data(cfg), out, prefix=prefix)
                results[key] = None
            except ConfigError as exc:
                results[key] = exc
        if results[key] is not None:
            errors.append((row, results[key]))
    if results and all(v is not None for v in results.values()):  # nothing in the study could run
        raise errors[0][1]
    for row, exc in errors:
        print(f"{prefix}warning: row {row}: {getattr(exc, 'kind', 'invalid configuration')}: {exc} "
              "(its trials will fail)", file=out, flush=True)


def default_run_name(cfg: ExperimentConfig, workers: int) -> str:
    """`<name>-<hash of the config and world size>`: the same command resumes the same run."""
    blob = json.dumps({"config": to_flat_dict(cfg), "workers": workers}, sort_keys=True, default=str)
    return f"{cfg.name}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def _resolve_storage(storage: str | os.PathLike | StoragePath | None) -> StoragePath:
    """`--storage` (default ./ray_results): a local folder made absolute, or a URI pyarrow opens."""
    return as_storage("ray_results" if storage is None else storage, what="--storage")


# ------------------------------------------------------------------------------------------------
# Deterministic errors: the same config and data fail the same way again, so they are never retried


class DeterministicError(RuntimeError):
    """Raised by a worker for a ConfigError (DatasetError included) or a NonFiniteLossError."""

    MARK = "[deterministic]"

    def __init__(self, message: str) -> None:
        super().__init__(message if message.startswith(self.MARK) else f"{self.MARK} {message}")

    @property
    def reason(self) -> str:
        return " ".join(str(self)[len(self.MARK):].split())


class DeterministicTrainingError(RuntimeError):
    """The run failed with a deterministic error (not retried); the message is one line."""


def deterministic_errors() -> tuple[type[BaseException], ...]:
    from yolox_ray.engine import NonFiniteLossError

    return (ConfigError, NonFiniteLossError)


def deterministic_reason(error: BaseException | None) -> str | None:
    """The one-line reason when `error` (a Ray Train failure, or a worker's exception) is deterministic."""
    if error is None:
        return None
    failures = getattr(error, "worker_failures", None)
    candidates = list(failures.values()) if isinstance(failures, dict) else [error]
    for err in candidates:
        base = getattr(err, "_base_exc", err)  # Ray wraps a worker's exception with its traceback text
        if isinstance(base, DeterministicError):
            return base.reason
        text = str(base)
        if DeterministicError.MARK in text:  # the class did not survive unpickling
            line = text[text.rindex(DeterministicError.MARK) + len(DeterministicError.MARK):].splitlines()[0]
            return " ".join(line.split())
    return None


def error_summary(error: BaseException | str | None, limit: int = 300) -> str:
    """One line for a failed run or trial: the failing rank's own exception. A Train failure's text is
    every rank's traceback, and Tune wraps it again (RayTaskError), which buries the message."""
    if error is None:
        return "unknown error"
    if isinstance(error, str):
        lines = [line.strip() for line in error.splitlines() if line.strip()]
        return (lines[-1] if lines else "unknown error")[:limit]
    cause = getattr(error, "cause", None) or error  # RayTaskError: the trial function's exception
    failures = getattr(cause, "worker_failures", None)  # ray.train.WorkerGroupError: {rank: exception}
    where = ""
    if isinstance(failures, dict) and failures:
        rank, cause = min(failures.items(), key=lambda item: item[0])
        cause = getattr(cause, "_base_exc", cause)
        where = f"rank {rank}: "
    first = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
    return f"{where}{type(cause).__name__}: {first}"[:limit]


class RetryingTrainer:
    """A TorchTrainer whose `fit()` retries crashes but not deterministic errors.

    Ray Train's FailureConfig retries every worker error alike, so Ray's own retries are off
    (`max_failures=0`) and `fit()` retries here: after a crash (a killed worker, a lost node, a dead
    Train controller actor) a fresh TorchTrainer with the same run name resumes from the latest checkpoint, up to
    `max_failures` times (-1: forever); a DeterministicError raises DeterministicTrainingError at once.
    `attempts`: how many times the run was started by the last `fit()`.
    """

    def __init__(self, factory, max_failures: int, on_retry=None) -> None:
        self._factory = factory
        self.max_failures = max_failures
        self.on_retry = on_retry
        self.trainer = factory()
        self.attempts = 0

    def fit(self):
        from ray.exceptions import RayActorError
        from ray.train import TrainingFailedError

        self.attempts = 0
        while True:
            self.attempts += 1
            trainer, self.trainer = self.trainer, None
            try:
                return (trainer or self._factory()).fit()
            except (TrainingFailedError, RayActorError) as exc:
                # RayActorError: Train's controller actor itself died (its process or node was lost), a crash.
                reason = deterministic_reason(exc) if isinstance(exc, TrainingFailedError) else None
                if reason is not None:
                    raise DeterministicTrainingError(f"{reason} (a deterministic error: not retried)") from None
                if self.max_failures != -1 and self.attempts > self.max_failures:
                    raise
                if self.on_retry is not None:
                    self.on_retry(self.attempts, exc)


# ------------------------------------------------------------------------------------------------
# Worker side


class _RayReporter:
    """Engine callback: every rank reports once per epoch; rank 0 attaches the checkpoint."""

    def on_epoch_end(self, trainer, epoch: int, metrics: Mapping[str, Any], checkpoint: dict | None) -> None:
        import ray.train

        from yolox_ray.engine.checkpoint import FILENAME, save_checkpoint

        report = {k: v for k, v in metrics.items() if isinstance(v, (bool, int, float))}
        with tempfile.TemporaryDirectory(prefix="yolox_ckpt_") as tmp:
            ckpt = None
            if checkpoint is not None:
                save_checkpoint(checkpoint, Path(tmp) / FILENAME)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(report, checkpoint=ckpt, checkpoint_dir_name=f"epoch_{epoch:04d}")


def rank_log_path(log_path: str | os.PathLike, rank: int) -> Path:
    """Rank 0 writes `log_path` itself, rank r `<stem>.rank<r>.log` beside it (one writer per file)."""
    path = Path(log_path)
    return path if rank == 0 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


class _Tee:
    """A text stream that writes to the worker's own stream (Ray's node-local worker log) and a file."""

    def __init__(self, stream, file) -> None:
        self._stream, self._file = stream, file

    def write(self, text: str) -> int:
        try:
            self._file.write(text)
        except (OSError, ValueError):  # a full disk or a closed file must not fail training
            pass
        return self._stream.write(text)

    def flush(self) -> None:
        try:
            self._file.flush()
        except (OSError, ValueError):
            pass
        self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _worker_log(log_path: str | None, rank: int):
    """Copy this worker's stdout/stderr, and its traceback when it fails, into its log file (appended per
    attempt). Ray keeps worker output on the worker's node only (the driver runs with log_to_driver off),
    so a trial failing on another node would otherwise show nothing useful. The file is on the study's
    storage, which a multi-node cluster shares (Train's checkpoints need it too); one that cannot be
    written is a warning, not a failure."""
    if not log_path:
        yield
        return
    from yolox_ray.cluster.ray_setup import node_ip

    target = rank_log_path(log_path, rank)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        file = open(target, "a", buffering=1, encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"warning: cannot write the worker log {target}: {exc}", file=sys.stderr, flush=True)
        yield
        return
    file.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} Train worker rank {rank} on node {node_ip()} "
               f"(pid {os.getpid()}) started ---\n")
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, file), _Tee(err, file)
    try:
        yield
    except BaseException:
        file.write(f"--- rank {rank} failed ---\n{traceback.format_exc()}")
        raise
    finally:
        sys.stdout, sys.stderr = out, err
        file.close()


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Runs on every Ray Train worker: build from the flat config, resume, train under DDP (output and
    traceback also into the run's worker log when `config["log_path"]` is set)."""
    import ray.train

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    with _worker_log(config.get("log_path"), rank):
        return _train_worker(config, rank, ctx.get_world_size())


def _train_worker(config: dict[str, Any], rank: int, world: int) -> dict[str, Any]:
    import ray.train
    import ray.train.torch

    from yolox_ray.engine import Trainer
    from yolox_ray.engine.checkpoint import load_checkpoint

    cfg = from_flat_dict(config["config"])
    device = ray.train.torch.get_device()

    resume = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            resume = load_checkpoint(d)

    callbacks: list[Any] = list(config.get("worker_callbacks") or ())
    tracking = dict(config.get("tracking") or {}) or None
    if tracking and rank == 0:
        from yolox_ray.cluster.tracking import apply_auth

        apply_auth(tracking.pop("auth", None))  # this worker process exists for this run only
    _check_tracking_reachable(tracking, rank)
    if tracking and rank == 0:
        from yolox_ray.cluster.tracking import MLflowTrialLogger

        callbacks.append(MLflowTrialLogger(**tracking))
    callbacks.append(_RayReporter())
    try:
        trainer = Trainer(cfg, callbacks=callbacks, rank=rank, world_size=world, device=device, resume=resume,
                          cpus=config.get("cpus"))  # loader processes + threads fit cpus_per_worker
        if tracking and tracking.get("run_id"):
            trainer.tracking_run_id = tracking["run_id"]
        return trainer.fit()
    except deterministic_errors() as exc:  # the same inputs give the same error: the driver must not retry
        from yolox_ray.data import DatasetError

        where = ""
        if isinstance(exc, DatasetError):  # the driver checked its own view of the data only
            where = f" ({_worker_location(rank)}: every node needs the dataset at the same path, e.g. a shared mount)"
        raise DeterministicError(f"{type(exc).__name__}: {exc}{where}") from exc


def _worker_location(rank: int) -> str:
    from yolox_ray.cluster.ray_setup import node_ip

    return f"Train worker rank {rank} on node {node_ip()}"


def _check_tracking_reachable(tracking: Mapping[str, str] | None, rank: int) -> None:
    """Rank 0 logs to the tracking server: fail now, naming node and URI, if it cannot reach it (the
    logger would otherwise swallow every call into a warning). Deterministic, so not retried."""
    if not tracking or rank != 0:
        return
    from yolox_ray.cluster.tracking import TrackingUnreachableError, check_reachable

    try:
        check_reachable(tracking["tracking_uri"], _worker_location(rank))
    except TrackingUnreachableError as exc:
        raise DeterministicError(f"TrackingUnreachableError: {exc}") from exc


# ------------------------------------------------------------------------------------------------
# Driver side


def make_trainer(
    cfg: ExperimentConfig,
    *,
    run_name: str,
    storage_path: str | StoragePath,
    num_workers: int = 1,
    use_gpu: bool = False,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    max_failures: int = 2,
    num_to_keep: int = 2,
    callbacks: Iterable[Any] = (),
    tracking: Mapping[str, str] | None = None,
    worker_callbacks: Iterable[Any] = (),
    data_reports: list | None = None,
    on_retry=None,
    log_path: str | None = None,
) -> RetryingTrainer:
    """A `RetryingTrainer` around a `TorchTrainer` for `cfg` (works inside a Tune function trainable too).

    callbacks: `ray.train.UserCallback`s (driver/controller side, e.g. TuneReportCallback).
    tracking: `{"tracking_uri": ..., "run_id": ...}`: rank 0 logs to that MLflow run, with this
    process's MLflow credential (`tracking.current_auth`, carried hidden in the loop config).
    worker_callbacks: picklable engine callbacks run on every worker (e.g. fault injection in tests).
    Checkpoints: the latest is always kept, plus the `num_to_keep` best by AP.
    The dataset is checked first (`data_reports`: the result of `check_data` when already done);
    with `tracking`, what the checks skipped is logged to that MLflow run. Crashes are retried
    `max_failures` times, deterministic errors never (see `RetryingTrainer`).
    log_path: each worker appends its stdout/stderr and traceback there (rank r > 0: `rank_log_path`).
    """
    validate_run(cfg, workers=num_workers, cpus_per_worker=cpus_per_worker,
                 gpus_per_worker=gpus_per_worker, max_failures=max_failures, num_to_keep=num_to_keep)
    if data_reports is None:
        data_reports = check_data(cfg)
    if tracking:
        from yolox_ray.cluster.tracking import log_data_checks

        log_data_checks(tracking["tracking_uri"], tracking["run_id"], data_reports)
    from yolox_ray.cluster.ray_setup import set_ray_env_defaults

    set_ray_env_defaults()
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    resources: dict[str, float] = {"CPU": float(cpus_per_worker)}
    if use_gpu:
        resources["GPU"] = float(gpus_per_worker or 1.0)
    if tracking:
        from yolox_ray.cluster.tracking import current_auth

        tracking = {**tracking, "auth": current_auth()}  # a TrackingAuth: Ray's str() of it hides the password
    loop_config = {
        "config": to_flat_dict(cfg),
        "tracking": dict(tracking) if tracking else None,
        "worker_callbacks": list(worker_callbacks),
        "cpus": float(cpus_per_worker),
        "log_path": str(log_path) if log_path else None,
    }
    return RetryingTrainer(lambda: TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                               resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            name=run_name,
            **ray_storage(_resolve_storage(storage_path)),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=num_to_keep, checkpoint_score_attribute=AP, checkpoint_score_order="max"),
            failure_config=ray.train.FailureConfig(max_failures=0),  # RetryingTrainer retries crashes
            callbacks=list(callbacks),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    ), max_failures, on_retry)


def _progress_callback(queue):
    """A UserCallback (runs in the Train controller) that forwards rank 0's metrics to the driver."""
    from ray.train import UserCallback

    class ProgressCallback(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            queue.put({"kind": "report", "metrics": dict(metrics[0]) if metrics else {}})

        def after_exception(self, run_context, worker_exceptions):
            first = next(iter(worker_exceptions.items()), (None, None))
            if deterministic_reason(first[1]) is not None:
                return  # the driver prints it once, in one line
            queue.put({"kind": "error", "rank": first[0], "error": str(first[1]).splitlines()[-1:]})

    return ProgressCallback()


def format_epoch_line(m: Mapping[str, Any], epochs: int, epoch_start: float) -> str:
    """One progress line. Its seconds are the worker's own epoch time when reported: the driver
    receives a report only when Ray Train's controller polls (every 2 s), so its clock would show
    the poll period, not the epoch (18.1 s printed for an epoch of 17.9 s)."""
    seconds = m.get("epoch_seconds")
    if not isinstance(seconds, (int, float)):
        seconds = time.perf_counter() - epoch_start
    line = f"epoch {int(m.get('epoch', 0)):>3}/{epochs}  {LOSS} {m.get(LOSS, float('nan')):7.3f}  " \
           f"lr {m.get('lr', 0.0):.2e}  {AP} {m.get(AP, 0.0):.3f}  {AP50} {m.get(AP50, 0.0):.3f}  " \
           f"{seconds:6.1f} s"
    return line + diagnostics_text(m) + ("  [eval]" if m.get("evaluated") else "")


def diagnostics_text(m: Mapping[str, Any]) -> str:
    """The assignment diagnostics of an epoch (positives per GT, their IoU and score), so a row that
    does not learn says why in its progress line; "" when the metrics carry none."""
    if not all(isinstance(m.get(k), (int, float)) for k in ("fg_per_gt", "pos_iou", "pos_iou_zero", "pos_score")):
        return ""
    return (f"  pos/GT {m['fg_per_gt']:.2f}  pos IoU {m['pos_iou']:.2f} ({100 * m['pos_iou_zero']:.0f}% zero)"
            f"  pos score {m['pos_score']:.3f}")


def run_training(
    cfg: ExperimentConfig,
    *,
    address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0,
    cpus_per_worker: float = 1,
    storage: str | None = None,
    name: str | None = None,
    max_failures: int = 2,
    tracking_uri: str | None = None,
    track: bool = True,
    num_cpus: int | None = None,
    temp_dir: str | None = None,
    ray_dashboard: bool = False,
    out=None,
) -> dict[str, Any]:
    """Train one model on a local (default) or existing (`address`) Ray cluster; print progress.

    Rerunning with the same config (hence the same default name) resumes from the last checkpoint,
    and logs into the same MLflow run. track: log to MLflow (`tracking_uri`, or a local server over
    ./mlruns when None). ray_dashboard: start a local cluster with Ray's dashboard (why it is off:
    ray_setup.py).
    """
    validate_run(cfg, workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                 max_failures=max_failures)
    out = out or sys.stdout
    from yolox_ray.data.checks import print_reports

    data_reports = check_data(cfg)  # before Ray starts: bad data is one line and exit code 2
    print_reports(data_reports, out)
    storage_path = _resolve_storage(storage)  # a bad URI: StorageError before Ray starts
    run_name = name or default_run_name(cfg, workers)

    from yolox_ray.cluster.ray_setup import init_ray

    init_ray(address, num_cpus=num_cpus, temp_dir=temp_dir, dashboard=ray_dashboard)
    if not track:
        return _run_tracked(cfg, None, run_name, storage_path, workers, gpus_per_worker, cpus_per_worker,
                            max_failures, out, data_reports)
    from yolox_ray.cluster.tracking import end_training_run, start_training_run, tracking_session

    with tracking_session(tracking_uri) as uri:
        tracking = start_training_run(uri, cfg, run_name)
        print(f"MLflow: {uri} (run {run_name})", file=out, flush=True)
        status = "FAILED"
        try:
            summary = _run_tracked(cfg, tracking, run_name, storage_path, workers, gpus_per_worker,
                                   cpus_per_worker, max_failures, out, data_reports)
            status = "FINISHED"
        finally:
            end_training_run(tracking, status)
    return summary


def _run_tracked(cfg, tracking, run_name, storage_path, workers, gpus_per_worker, cpus_per_worker,
                 max_failures, out, data_reports=None) -> dict[str, Any]:
    from ray.util.queue import Empty, Queue

    def on_retry(attempt: int, exc: BaseException) -> None:
        left = "unlimited" if max_failures == -1 else max_failures - attempt + 1
        print(f"run {run_name}: attempt {attempt} crashed; resuming from the last checkpoint "
              f"({left} retries left)", file=out, flush=True)

    queue = Queue(actor_options={"num_cpus": 0})
    trainer = make_trainer(cfg, run_name=run_name, storage_path=storage_path, num_workers=workers,
                           use_gpu=gpus_per_worker > 0, cpus_per_worker=cpus_per_worker,
                           gpus_per_worker=gpus_per_worker, max_failures=max_failures,
                           callbacks=[_progress_callback(queue)], tracking=tracking, data_reports=data_reports,
                           on_retry=on_retry)
    print(f"run {run_name}: {cfg.name}, {workers} worker(s), {cfg.train.epochs} epochs, "
          f"storage {storage_path}/{run_name}", file=out, flush=True)

    done = threading.Event()
    history: list[dict[str, Any]] = []

    def show() -> None:
        epoch_start = time.perf_counter()
        while not (done.is_set() and queue.empty()):
            try:
                item = queue.get(timeout=0.5)
            except Empty:
                continue
            if item["kind"] == "report":
                history.append(item["metrics"])
                print(format_epoch_line(item["metrics"], cfg.train.epochs, epoch_start), file=out, flush=True)
                epoch_start = time.perf_counter()
            else:
                print(f"worker {item['rank']} failed: {' '.join(item['error'])}", file=out, flush=True)

    start = time.perf_counter()
    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    try:
        result = trainer.fit()
    finally:
        done.set()
        thread.join(timeout=5)
        queue.shutdown(force=True)
    elapsed = time.perf_counter() - start

    final = history[-1] if history else dict(result.metrics or {})
    best = max(result.best_checkpoints or [], key=lambda cm: cm[1].get(AP, 0.0), default=None)
    summary = {
        "run_name": run_name,
        "path": result.path,
        "epochs": final.get("epoch"),
        AP: final.get(AP, 0.0),
        AP50: final.get(AP50, 0.0),
        BEST_AP: final.get(BEST_AP, 0.0),
        "seconds": elapsed,
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "best_checkpoint": best[0].path if best else None,
        "history": history,
        "tracking": tracking,
    }
    print(f"done in {elapsed:.1f} s: {AP} {summary[AP]:.4f}  {AP50} {summary[AP50]:.4f}  "
          f"{BEST_AP} {summary[BEST_AP]:.4f}", file=out)
    print(f"latest checkpoint: {summary['checkpoint']}", file=out)
    print(f"best checkpoint:   {summary['best_checkpoint']}", file=out, flush=True)
    return summary


def build_train_config(model: str, data: str = "synthetic", epochs: int | None = None,
                       config_file: str | None = None, overrides: Iterable[str] = (),
                       quick: bool = True) -> ExperimentConfig:
    """preset → quick CPU defaults (synthetic data, `quick`) → YAML → --data/--epochs → key=value."""
    from yolox_ray.data.classes import NUM_CLASSES_KEY, with_data_classes

    cfg = experiment_preset(model)
    if data == "synthetic" and quick:
        cfg = apply_overrides(cfg, QUICK_CPU_OVERRIDES)
    if config_file:
        cfg = load_yaml(config_file, base=cfg)
    root = data if data == "synthetic" else str(Path(data).expanduser().resolve())  # workers' cwd differs
    cfg = replace(cfg, data=replace(cfg.data, root=root))
    # --epochs and key=value go in together, so e.g. `--epochs 3 train.no_aug_epochs=1` validates as a whole.
    items = ([f"train.epochs={epochs}"] if epochs is not None else []) + list(overrides)
    cfg = apply_overrides(cfg, items)
    # The class count comes from the data unless the user set it (then it must agree with the data).
    explicit = any(item.split("=", 1)[0].strip() == NUM_CLASSES_KEY for item in overrides) or \
        (config_file is not None and _file_sets_num_classes(config_file))
    return with_data_classes(cfg, explicit=explicit)


def _file_sets_num_classes(path: str) -> bool:
    """Whether a config YAML sets model.num_classes (nested `model: {num_classes: N}` or dotted)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    return isinstance(data, dict) and ("model.num_classes" in data or
                                       (isinstance(data.get("model"), dict) and "num_classes" in data["model"]))


def run_train_cli(args) -> int:
    """`yolox-ray train`: flags → config → validate → train on Ray → summary."""
    gpus = float(args.gpus_per_worker)
    cfg = build_train_config(args.model, args.data, args.epochs, args.config, args.overrides, quick=gpus == 0)
    validate_run(cfg, workers=args.workers, cpus_per_worker=args.cpus_per_worker, gpus_per_worker=gpus,
                 max_failures=args.max_failures)
    try:
        summary = run_training(cfg, address=args.address, workers=args.workers, gpus_per_worker=gpus,
                               cpus_per_worker=args.cpus_per_worker, storage=args.storage, name=args.name,
                               max_failures=args.max_failures, tracking_uri=args.tracking_uri,
                               ray_dashboard=args.ray_dashboard)
    except DeterministicTrainingError as exc:
        print(f"yolox-ray: training failed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0 if summary["checkpoint"] else 1
