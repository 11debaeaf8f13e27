"""Every shipped study file in configs/ runs end to end at a tiny budget and all its trials finish
(real local Ray, real MLflow server over SQLite, real Optuna). The files are used as they are, with a
tiny model, input, dataset and schedule as `key=value`-style overrides, few samples, and a grid cut
to its corners (lowest and highest value, one seed). The first trial of an Optuna search is the
official defaults of the searched keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from yolox_ray.cluster import tracking
from yolox_ray.cluster.tune import SearchParam, run_study
from yolox_ray.study import load_study, with_changes

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = ("tune_simota.yaml", "tune_k_sweep.yaml", "tune_aug_schedule.yaml")


def tiny(cache: Path, epochs: int, **extra) -> dict:
    """One iteration per epoch on 16 images of 128 px with the narrowest model."""
    return {"model.width": 0.125, "data.input_size": [128, 128], "data.test_size": [128, 128],
            "data.random_size": [4, 4], "data.synthetic_train": 16, "data.synthetic_val": 8,
            "data.synthetic_size": 128, "data.cache_dir": str(cache), "train.max_iters": 1, "train.batch_size": 4,
            "eval.batch_size": 8, "train.epochs": epochs, **extra}






def test_the_shipped_files_are_the_ones_tested():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(SHIPPED)


def _run(spec, server, tmp_path):
    result = run_study(spec, storage_root=tmp_path / "studies", tracking_uri=server.uri)
    assert len(result.trials) == spec.total_trials()
    assert [t.status for t in result.trials] == ["finished"] * spec.total_trials(), \
        [(t.trial_id, t.status, t.error) for t in result.trials]
    client = tracking.client_for(server.uri)
    runs = [client.get_run(t.run_id) for t in result.trials]
    assert all(r.info.status == "FINISHED" and "AP" in r.data.metrics for r in runs)
    return result


def test_tune_simota_runs_and_starts_from_the_official_defaults(server, ray_cluster, tmp_path):
    spec = with_changes(load_study(CONFIGS / "tune_simota.yaml"), samples=2, name="shipped_simota",
                        overrides=tiny(tmp_path / "data", 1, **{"train.warmup_epochs": 0, "train.no_aug_epochs": 0,
                                                                 "train.eval_interval": 1}))
    result = _run(spec, server, tmp_path)
    # The official YOLOX values (reference §SimOTA and the loss): k 10, r 1.5 with the centre-only
    # geometry of the current code, cost cls + 3 IoU, loss 5 IoU + obj + cls.
    official = {"assign.candidate_k": 10, "assign.center_radius": 1.5, "assign.geometry": "center",
                "assign.iou_cost_weight": 3.0, "assign.cls_cost_weight": 1.0, "loss.reg_weight": 5.0,
                "loss.obj_weight": 1.0, "loss.cls_weight": 1.0}
    first = result.trials[0]
    assert {k: first.params[k] for k in official} == official
    assert result.trials[1].params != first.params  # the second one is sampled
    import optuna

    ostudy = optuna.load_study(study_name="shipped_simota", storage=f"sqlite:///{result.study_dir / 'optuna.db'}")
    by_number = sorted(ostudy.trials, key=lambda t: t.number)
    assert by_number[0].params == official and len(by_number) == 2
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in by_number)


def test_tune_k_sweep_runs_at_its_corners(server, ray_cluster, tmp_path):
    sweep = load_study(CONFIGS / "tune_k_sweep.yaml")
    k = next(p for p in sweep.space if p.key == "assign.candidate_k")
    corners = (min(k.values), max(k.values))
    spec = with_changes(sweep, name="shipped_k_sweep", seeds=sweep.seeds[:1], max_concurrent=2,
                        space=(SearchParam(k.key, "grid", values=corners),),
                        overrides=tiny(tmp_path / "data", 1, **{"train.warmup_epochs": 0, "train.no_aug_epochs": 0,
                                                                 "train.eval_interval": 1}))
    result = _run(spec, server, tmp_path)
    assert sorted(t.params[k.key] for t in result.trials) == [5, 15]


def test_tune_aug_schedule_runs(server, ray_cluster, tmp_path):
    aug = load_study(CONFIGS / "tune_aug_schedule.yaml")
    no_aug = next(p for p in aug.space if p.key == "train.no_aug_epochs")
    # The shortest schedule that holds the file's whole no-aug range after its warm-up.
    epochs = int(no_aug.high) + 1
    spec = with_changes(aug, samples=2, name="shipped_aug", overrides=tiny(tmp_path / "data", epochs))
    result = _run(spec, server, tmp_path)
    assert all(t.metrics["epoch"] == epochs for t in result.trials)
    assert all(1 <= t.params["train.no_aug_epochs"] <= 5 for t in result.trials)
