"""Every shipped study file in configs/ runs end to end at a tiny budget and all its trials finish
(real local Ray, real MLflow server over SQLite, real Optuna). The files are used as they are, with a
tiny model, input, dataset and schedule as `key=value`-style overrides, few samples, and a grid cut
to its corners (lowest and highest value, one seed). The first trial of an Optuna search is the
official defaults of the searched keys."""

from __future__ import annotations

import re
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


def test_tune_simota_against_params_draws_a_pareto_front(server, ray_cluster, tmp_path):
    """`studies/tune_simota.py --objective2 params`: a 2-direction Optuna study, the measured parameter
    count in every trial's results, the Pareto front in the result, MLflow and the report (drawn in
    headless Chromium)."""
    import importlib.util
    import json

    import optuna

    from headless_chromium import console_messages, headless, rendered
    from yolox_ray.models import build_model
    from yolox_ray.report import build_report

    mod_spec = importlib.util.spec_from_file_location("s_tune_simota", CONFIGS.parent / "studies" / "tune_simota.py")
    simota = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(simota)
    overrides = tiny(tmp_path / "data", 1, **{"train.warmup_epochs": 0, "train.no_aug_epochs": 0,
                                              "train.eval_interval": 1})
    args = simota.parse_args(["--objective2", "params", "--widths", "0.125,0.25", "--samples", "3",
                              "--max-concurrent", "2", "--name", "shipped_simota_params",
                              *(f"{k}={json.dumps(v)}" for k, v in overrides.items())])
    spec = simota.build_spec(args)
    result = _run(spec, server, tmp_path)
    assert result.objectives == ("AP", "params")

    # Each trial reported its own model's parameter count (learnable state-dict tensors, counted here).
    def weights(params: dict) -> int:
        state = build_model(spec.trial_config(params).model).state_dict()
        return sum(v.numel() for k, v in state.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    for t in result.trials:
        assert t.metrics["params"] == weights(t.params), t.params
    assert result.trials[0].params["model.width"] == 0.125  # the warm start: the base config's width

    # Optuna: two directions, each trial told its last (AP, params); its Pareto front is ours.
    ostudy = optuna.load_study(study_name=spec.name, storage=f"sqlite:///{result.study_dir / 'optuna.db'}")
    assert ostudy.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert len(ostudy.trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in ostudy.trials)
    tune_values = sorted((t.metrics["AP"], t.metrics["params"]) for t in result.trials)
    assert sorted(tuple(t.values) for t in ostudy.trials) == tune_values
    front = sorted(tuple(t.values) for t in ostudy.best_trials)
    assert sorted(r.values(result.objectives) for r in result.pareto) == front
    parent = tracking.client_for(server.uri).get_run(result.parent_run_id)
    assert parent.data.tags["objectives"] == "AP,params"
    assert sorted(parent.data.tags["pareto_trial_ids"].split(",")) == sorted(r.trial_id for r in result.pareto)

    page = build_report(spec.name, tmp_path / "report", server.uri)
    text = page.read_text()
    assert text.count('class="pareto-link"') == len(front) and "Pareto front: AP vs params" in text
    run = headless("--dump-dom", page.as_uri(), tmp=tmp_path)
    dom = run.stdout
    drawn = rendered(dom)
    assert {"plot-optuna-pareto", "plot-optuna-history", "plot-optuna-slice"} <= drawn, drawn
    plots = re.search(r'data-plots="(\d+)"', dom).group(1)
    assert f'data-plots-rendered="{plots}"' in dom and 'data-page-errors="0"' in dom
    assert console_messages(run.stderr) == []
