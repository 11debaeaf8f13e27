"""Driver-side progress of a study on Ray Tune: one line per trial event (trials waiting for resources
counted), one line per failed trial (its error and log file), and each trial's final MLflow status
(also for trials Tune stops with ASHA or loses)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ray import tune

from yolox_ray.cluster import tracking
from yolox_ray.cluster.train import diagnostics_text, error_summary, rank_log_path
from yolox_ray.metrics import LOSS
from yolox_ray.storage import StoragePath, as_storage
from yolox_ray.study_paths import trial_log_path

# How often (seconds) the trial-count line is recomputed between trial events: a trial's Train workers
# can start waiting for, or get, resources without any Tune event.
RECHECK_S = 5.0


class StudyCallback(tune.Callback):
    """Prints progress (running/done/failed, best so far) and sets each trial's MLflow run to its
    final status from the driver, which also covers trials Tune stops (ASHA) or loses (actor died).

    Pickled with the experiment (Tuner.restore brings it back), so it keeps only plain data (the
    study storage: a path, or a `StoragePath` whose pyarrow filesystem pickles) and reads the current
    tracking URI from ``<study_dir>/mlflow.json``.
    """

    # Defaults for a callback unpickled from an experiment written before these existed.
    workers, cpus_per_worker, gpus_per_worker = 1, 1.0, 0.0
    driver: dict[str, float] = {}
    _last_check = 0.0

    def __init__(self, study: str, study_dir: str | StoragePath, total: int, metric: str, mode: str, max_epochs: int,
                 stream: Any = None, *, workers: int = 1, cpus_per_worker: float = 1.0,
                 gpus_per_worker: float = 0.0, driver: Mapping[str, float] | None = None,
                 shown: Sequence[str] = ()):
        self.study = study
        self.study_dir = study_dir
        self.total = total
        self.metric = metric
        self.mode = mode
        self.max_epochs = max_epochs
        self.workers, self.cpus_per_worker, self.gpus_per_worker = workers, cpus_per_worker, gpus_per_worker
        self.driver = dict(driver or {})
        self.shown = tuple(shown)  # further metrics in each epoch line (a multi-objective study's costs)
        self._best: tuple[float, str, dict] | None = None
        self._last_line = ""
        self._stream = stream

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_stream"] = None
        return state

    def _print(self, text: str) -> None:
        print(text, file=self._stream or sys.stdout, flush=True)

    def _progress(self, trials: Sequence[Any], starting: Any = None) -> None:
        running = sum(t.status == "RUNNING" or t is starting for t in trials)
        failed = sum(t.status == "ERROR" for t in trials)
        done = sum(t.status == "TERMINATED" for t in trials)
        waiting, started_waiting, note = self._waiting(trials, starting)
        line = f"[{self.study}] trials: {running - started_waiting} running"
        if waiting:
            line += f", {waiting} waiting for resources ({note})"
        line += f", {done} done, {failed} failed (of {self.total})"
        if self._best is not None:
            value, tid, params = self._best
            line += f" | best {self.metric}={value:.4f} ({tid}: {_short(params)})"
        if line != self._last_line:
            self._last_line = line
            self._print(line)

    def _waiting(self, trials: Sequence[Any], starting: Any = None) -> tuple[int, int, str]:
        """(trials waiting for resources, how many of them Tune counts as running, what is short).

        Tune holds a trial PENDING while its driver's resources are taken; a started trial's Train
        workers then wait for their own placement group (ray_stack.md §3b). A started trial without a
        result counts as waiting while a placement group of its workers' shape is pending.
        """
        import ray

        try:
            free, total = ray.available_resources(), ray.cluster_resources()
            groups = ray.util.placement_group_table().values()
        except Exception:  # noqa: BLE001 - progress must not stop the sweep
            return 0, 0, ""
        bundle = {"CPU": float(self.cpus_per_worker), "GPU": float(self.gpus_per_worker)}
        pending_groups = sum(
            g.get("state") in ("PENDING", "RESCHEDULING") and len(g.get("bundles") or {}) == self.workers
            and all({k: float(b.get(k, 0.0)) for k in bundle} == bundle for b in g["bundles"].values())
            for g in groups)
        no_result = sum((t.status == "RUNNING" or t is starting) and not t.last_result for t in trials)
        started_waiting = min(no_result, pending_groups)
        driver_short = any(free.get(k, 0.0) < v for k, v in self.driver.items())
        queued = sum(t.status == "PENDING" and t is not starting for t in trials) if driver_short else 0
        waiting = started_waiting + queued
        if not waiting:
            return 0, 0, ""
        need = {k: v * self.workers for k, v in bundle.items() if v > 0}
        for k, v in self.driver.items():
            need[k] = need.get(k, 0.0) + v
        wants = " + ".join(f"{v:g} {k}" for k, v in need.items())
        has = ", ".join(f"{free.get(k, 0.0):g}/{total.get(k, 0.0):g} {k}" for k in need)
        return waiting, started_waiting, f"a trial needs {wants}; the cluster has {has} free"

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self._last_check >= RECHECK_S:
            self._last_check = now
            self._progress(trials)

    def _better(self, value: float) -> bool:
        if self._best is None:
            return True
        return value > self._best[0] if self.mode == "max" else value < self._best[0]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._progress(trials, starting=trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        keys = dict.fromkeys((self.metric, LOSS, *getattr(self, "shown", ())))  # older pickles lack `shown`
        parts = [f"{k}={result[k]:.4g}" if k != self.metric and k != LOSS else f"{k}={result[k]:.4f}"
                 for k in keys if isinstance(result.get(k), (int, float))]
        self._print(f"[{self.study}] trial {trial.trial_id} epoch {result.get('epoch', '?')}/{self.max_epochs}: "
                    + ", ".join(parts) + diagnostics_text(result) + (" (evaluated)" if result.get("evaluated") else ""))
        if isinstance(value, (int, float)) and math.isfinite(value) and self._better(float(value)):
            self._best = (float(value), trial.trial_id, dict(trial.config))
        self._progress(trials)

    def _set_status(self, trial: Any, status: str, tags: dict[str, Any]) -> None:
        try:
            info = json.loads((as_storage(self.study_dir) / tracking.STUDY_RUN_FILE).read_text())
            client = tracking.client_for(info["tracking_uri"])
            run = tracking.find_trial_run(client, info["experiment_id"], info["run_id"], trial.trial_id)
            if run is not None:
                tracking.finish_run(info["tracking_uri"], run.info.run_id, status, tags=tags)
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not stop the sweep
            self._print(f"[{self.study}] warning: could not update the MLflow run of {trial.trial_id}: {exc!r}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epoch = (trial.last_result or {}).get("epoch")
        early = isinstance(epoch, (int, float)) and epoch < self.max_epochs
        self._set_status(trial, "FINISHED", {"early_stopped": str(bool(early)).lower()})
        self._progress(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._report_failure(trial, retried=False)
        self._set_status(trial, "FAILED", {})
        self._progress(trials)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._report_failure(trial, retried=True)
        self._progress(trials)

    def _report_failure(self, trial: Any, retried: bool) -> None:
        """One line: the failing rank's error and the trial's log file, where the error (every rank's
        traceback, as Tune got it) is appended below the workers' own output."""
        error = _trial_error(trial)
        log = trial_log_path(self.study_dir, trial.trial_id)
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            others = sorted(str(p) for p in log.parent.glob(rank_log_path(log, 1).name.replace(".rank1", ".rank*")))
            with open(log, "a", encoding="utf-8", errors="replace") as f:
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} trial {trial.trial_id} failed"
                        f"{' (Tune retries it)' if retried else ''}; the error the study driver got:\n"
                        f"{error if isinstance(error, str) else _error_text(error)}\n")
                if others:
                    f.write("other ranks' logs: " + ", ".join(others) + "\n")
            where = f" (log: {log})"
        except OSError as exc:
            where = f" (could not write {log}: {exc})"
        retry = " (retrying)" if retried else ""
        self._print(f"[{self.study}] trial {trial.trial_id} failed{retry}: {error_summary(error)}{where}")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._progress(trials)


def _short(params: Mapping[str, Any]) -> str:
    items = [f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
             for k, v in params.items()]
    return ", ".join(items) or "-"


def _trial_error(trial: Any) -> BaseException | str | None:
    """The exception Tune recorded for `trial` (its pickle in the trial's local folder), else its text."""
    try:
        path = trial.pickled_error_file
        if path and Path(path).exists():
            import ray.cloudpickle

            return ray.cloudpickle.loads(Path(path).read_bytes())
    except Exception:  # noqa: BLE001 - an error that does not unpickle: fall back to the text
        pass
    try:
        path = trial.error_file
        if path and Path(path).exists():
            return Path(path).read_text(errors="replace")
    except OSError:
        pass
    return None


def _error_text(error: BaseException | None) -> str:
    return "(no error recorded)" if error is None else str(error)
