"""Importances come from full-length trials only: Ray's OptunaSearch tells Optuna an ASHA-stopped
trial as COMPLETE with its rung value, so the report must leave those out (real Optuna, SQLite)."""

from __future__ import annotations

import random

import optuna
import pytest

from yolox_ray.report import ReportError, full_length_trials, optuna_importances

DISTS = {"assign.candidate_k": optuna.distributions.IntDistribution(5, 15),
         "loss.reg_weight": optuna.distributions.FloatDistribution(2.0, 8.0)}


def _trial(k: int, reg: float, value: float, epochs: int) -> optuna.trial.FrozenTrial:
    """A trial as OptunaSearch leaves it: one intermediate value per reported epoch, then COMPLETE."""
    return optuna.trial.create_trial(params={"assign.candidate_k": k, "loss.reg_weight": reg}, distributions=DISTS,
                                     value=value, intermediate_values={e: value * e / epochs for e in range(1, epochs + 1)})


def test_early_stopped_trials_are_left_out(tmp_path):
    rng = random.Random(0)
    full, early = [], []
    for _ in range(8):  # full length (6 epochs): AP depends on k only
        k, reg = rng.randint(5, 15), rng.uniform(2, 8)
        full.append(_trial(k, reg, 0.3 - 0.01 * abs(k - 10), epochs=6))
    for _ in range(8):  # stopped at the epoch-2 rung: a partial value that tracks reg_weight
        k, reg = rng.randint(5, 15), rng.uniform(2, 8)
        early.append(_trial(k, reg, 0.02 * reg, epochs=2))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.add_trials(full[:4] + early + full[4:])

    got_full, got_early = full_length_trials(optuna.load_study(study_name="s", storage=storage))
    assert len(got_full) == 8 and len(got_early) == 8
    assert all(max(t.intermediate_values) == 6 for t in got_full)
    assert all(max(t.intermediate_values) == 2 for t in got_early)

    # The importances equal Optuna's own over a study holding only the full-length trials.
    only_full = optuna.create_study(direction="maximize")
    only_full.add_trials(full)
    expected = optuna.importance.get_param_importances(only_full)
    name, importances = optuna_importances(storage, "s")
    assert name == "s" and importances == pytest.approx(dict(expected))
    everything = optuna.importance.get_param_importances(optuna.load_study(study_name="s", storage=storage))
    assert dict(everything) != pytest.approx(importances)  # mixing the rung values would change them


def test_too_few_full_length_trials_is_a_clear_error(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.add_trials([_trial(10, 5.0, 0.3, epochs=4), _trial(7, 3.0, 0.1, epochs=1), _trial(12, 6.0, 0.1, epochs=2)])
    with pytest.raises(ReportError, match="1 full-length complete trials \\(2 early-stopped"):
        optuna_importances(storage, "s")
