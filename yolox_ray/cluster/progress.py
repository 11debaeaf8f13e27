"""Driver-side progress of a study on Ray Tune: one line per trial event, and each trial's final
MLflow status (also for trials Tune stops with ASHA or loses)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from ray import tune

from yolox_ray.cluster import tracking
from yolox_ray.cluster.train import diagnostics_text


class StudyCallback(tune.Callback):
    """Prints progress (running/done/failed, best so far) and sets each trial's MLflow run to its
    final status from the driver, which also covers trials Tune stops (ASHA) or loses (actor died).

    Pickled with the experiment (Tuner.restore brings it back), so it keeps only plain data and
    reads the current tracking URI from ``<study_dir>/mlflow.json``.
    """

    def __init__(self, study: str, study_dir: str, total: int, metric: str, mode: str, max_epochs: int,
                 stream: Any = None, shown: Sequence[str] = ()):
        self.study = study
        self.study_dir = study_dir
        self.total = total
        self.metric = metric
        self.mode = mode
        self.max_epochs = max_epochs
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
        line = f"[{self.study}] trials: {running} running, {done} done, {failed} failed (of {self.total})"
        if self._best is not None:
            value, tid, params = self._best
            line += f" | best {self.metric}={value:.4f} ({tid}: {_short(params)})"
        if line != self._last_line:
            self._last_line = line
            self._print(line)

    def _better(self, value: float) -> bool:
        if self._best is None:
            return True
        return value > self._best[0] if self.mode == "max" else value < self._best[0]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._progress(trials, starting=trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        keys = dict.fromkeys((self.metric, "loss", *getattr(self, "shown", ())))  # older pickles lack `shown`
        parts = [f"{k}={result[k]:.4g}" if k != self.metric and k != "loss" else f"{k}={result[k]:.4f}"
                 for k in keys if isinstance(result.get(k), (int, float))]
        self._print(f"[{self.study}] trial {trial.trial_id} epoch {result.get('epoch', '?')}/{self.max_epochs}: "
                    + ", ".join(parts) + diagnostics_text(result) + (" (evaluated)" if result.get("evaluated") else ""))
        if isinstance(value, (int, float)) and math.isfinite(value) and self._better(float(value)):
            self._best = (float(value), trial.trial_id, dict(trial.config))
        self._progress(trials)

    def _set_status(self, trial: Any, status: str, tags: dict[str, Any]) -> None:
        try:
            info = json.loads((Path(self.study_dir) / tracking.STUDY_RUN_FILE).read_text())
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
        self._set_status(trial, "FAILED", {})
        self._progress(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._progress(trials)


def _short(params: Mapping[str, Any]) -> str:
    items = [f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
             for k, v in params.items()]
    return ", ".join(items) or "-"
