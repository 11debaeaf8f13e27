"""The model's cost as a study objective: an engine callback that measures it once per run.

A multi-objective study (`StudySpec.objectives`, e.g. ``[AP, latency_ms]``) needs the cost of each
trial's model next to its AP in every report Tune and Optuna see. `ModelCostProbe` measures it on
rank 0 at the start of the run (before the training RNG streams are seeded, so it changes nothing
the run computes) and puts it in `trainer.run_metrics`, which the trainer merges into every epoch's
metrics (so MLflow logs it and `ray.train.report` forwards it).

- `params`, `gflops`: of the trial's model at `data.test_size` (deterministic).
- `latency_ms`: `models.measure_latency_ms` on the trial's device: batch 1 at `data.test_size`, eval
  mode, no NMS, median of 20 timed forwards after 5 warm-up ones, with torch threads = the whole CPUs
  the worker was given (`trainer.cpu_plan.cpus`; the loader is idle then). It is measured again when a
  run resumes. On a shared machine the value includes whatever else runs there at that moment
  (other trials too): compare latencies from one study run with `max_concurrent: 1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yolox_ray.metrics import GFLOPS, LATENCY_MS, MODEL_COST_KEYS, PARAMS


def model_cost(model: Any, key: str, size: tuple[int, int], threads: int | None = None) -> float:
    """One cost metric (`yolox_ray.metrics.MODEL_COST_KEYS`) of `model` at input `size`."""
    from yolox_ray.models import count_gflops, count_params, measure_latency_ms

    if key == PARAMS:
        return float(count_params(model))
    if key == GFLOPS:
        return float(count_gflops(model, size))
    if key == LATENCY_MS:
        return measure_latency_ms(model, size, threads=threads)
    raise ValueError(f"unknown model cost {key!r}; one of {', '.join(MODEL_COST_KEYS)}")


@dataclass(frozen=True)
class ModelCostProbe:
    """Engine callback: measure `keys` (cost metric names) on rank 0 at train start."""

    keys: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = [k for k in self.keys if k not in MODEL_COST_KEYS]
        if unknown:
            raise ValueError(f"unknown model costs {unknown}; one of {', '.join(MODEL_COST_KEYS)}")

    def on_train_start(self, trainer: Any) -> None:
        if trainer.rank != 0:
            return
        threads = trainer.cpu_plan.cpus if trainer.cpu_plan is not None else None
        size = tuple(trainer.cfg.data.test_size)
        for key in self.keys:
            trainer.run_metrics[key] = model_cost(trainer.model, key, size, threads=threads)
