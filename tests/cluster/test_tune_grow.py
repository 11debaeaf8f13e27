"""Studies as data, on a real local Ray cluster with the real MLflow server and real Optuna:

- A resumed search can grow its samples with the Optuna trial count exact: 2 samples, then
  `yolox-ray tune --resume DIR --samples 3` runs exactly one more trial on the same Optuna study
  (the warm start enqueued once, never again) under the same MLflow parent run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from yolox_ray.cli import main as cli_main
from yolox_ray.cluster import tracking
from yolox_ray.cluster.tune import SearchParam, StudySpec, run_study

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def tiny(cache: Path) -> dict:
    """One epoch of one iteration on 16 images of 128 px with the narrowest model, evaluated."""
    return {"model.width": 0.125, "data.input_size": [128, 128], "data.test_size": [128, 128],
            "data.random_size": [4, 4], "data.synthetic_train": 16, "data.synthetic_val": 8,
            "data.synthetic_size": 128, "data.cache_dir": str(cache), "data.workers": 0, "train.max_iters": 1,
            "train.batch_size": 4, "eval.batch_size": 8, "train.epochs": 1, "train.warmup_epochs": 0,
            "train.no_aug_epochs": 0, "train.eval_interval": 1}


def optuna_trials(study_dir: Path, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return sorted(optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir / 'optuna.db'}").trials,
                  key=lambda t: t.number)


def test_a_resumed_search_grows_its_samples_with_the_optuna_trial_count_exact(server, ray_cluster, tmp_path, capsys):
    spec = StudySpec(name="grow", preset="yolox_nano", overrides=tiny(tmp_path / "data"),
                     space=(SearchParam("assign.candidate_k", "int", low=5, high=15),
                            SearchParam("assign.center_radius", "float", low=1.0, high=3.0)),
                     num_samples=2, seed=3, max_concurrent=1, early_stop=False, max_failures=0)
    out = tmp_path / "studies"
    first = run_study(spec, storage_root=out, tracking_uri=server.uri)
    study_dir = first.study_dir
    assert [t.status for t in first.trials] == ["finished", "finished"]
    before = {t.number: t.params for t in optuna_trials(study_dir, "grow")}
    assert len(before) == 2
    capsys.readouterr()

    # Grow through the command line, as a user would: the stored study plus --samples 3.
    rc = cli_main(["tune", "--resume", str(study_dir), "--samples", "3", "--tracking-uri", server.uri])
    printed = capsys.readouterr().out
    assert rc == 0, printed[-3000:]
    assert "growing the study to 3 samples" in printed

    # Optuna: exactly 3 trials, the first two unchanged; the official defaults (k 10, r 1.5) enqueued
    # once, as trial 0, and the new trial sampled (not a repeat of the earlier sampled one).
    ot = optuna_trials(study_dir, "grow")
    assert [t.state.name for t in ot] == ["COMPLETE"] * 3
    assert {t.number: t.params for t in ot[:2]} == before
    enqueued = [t.number for t in ot if "fixed_params" in t.system_attrs]
    assert enqueued == [0]
    assert ot[0].params == {"assign.candidate_k": 10, "assign.center_radius": 1.5}
    assert ot[2].params != ot[1].params and ot[2].params != ot[0].params

    # trials.json (Tune's results): the two earlier trials plus one new one, all finished.
    trials = json.loads((study_dir / "trials.json").read_text())["trials"]
    assert len(trials) == 3 and {t["status"] for t in trials} == {"finished"}
    ids = [t["trial_id"] for t in trials]
    assert len(set(ids)) == 3 and set(ids[:2]) == {t.trial_id for t in first.trials}
    assert sorted(t["params"]["assign.center_radius"] for t in trials) == \
        sorted(t.params["assign.center_radius"] for t in ot)

    # MLflow: the same parent run, one child per trial; the first two were not run again.
    client = tracking.client_for(server.uri)
    assert json.loads((study_dir / tracking.STUDY_RUN_FILE).read_text())["run_id"] == first.parent_run_id
    children = tracking.child_runs(server.uri, first.experiment_id, first.parent_run_id)
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(ids)
    for child in children:
        assert child.info.status == "FINISHED" and "resumed" not in child.data.tags
        assert [m.step for m in client.get_metric_history(child.info.run_id, "epoch")] == [1]
    parent = client.get_run(first.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert (parent.data.tags["num_trials"], parent.data.tags["trials_total"]) == ("3", "3")

    # The stored spec says 3 now, and shrinking below it is one clear error.
    assert yaml.safe_load((study_dir / "study.yaml").read_text())["num_samples"] == 3
    rc = cli_main(["tune", "--resume", str(study_dir), "--samples", "2", "--tracking-uri", server.uri])
    err = capsys.readouterr().err
    assert rc == 2 and "already has 3 samples" in err and "not shrink" in err
    assert len(optuna_trials(study_dir, "grow")) == 3


def test_a_grid_grows_its_seeds_without_running_the_finished_ones_again(server, ray_cluster, tmp_path, capsys):
    """A 1-seed table becomes a 2-seed one: the rerun with one more seed runs only that seed, in a
    segment of its own, under the same MLflow parent; a further rerun runs nothing."""
    def spec(seeds):
        return StudySpec(name="seeds", preset="yolox_nano", overrides=tiny(tmp_path / "data"), searcher="grid",
                         seeds=seeds, max_concurrent=1, max_failures=0)

    out = tmp_path / "studies"
    first = run_study(spec((0,)), storage_root=out, tracking_uri=server.uri)
    study_dir = first.study_dir
    assert [(t.status, t.params["seed"]) for t in first.trials] == [("finished", 0)]
    capsys.readouterr()

    grown = run_study(spec((0, 1)), storage_root=out, tracking_uri=server.uri)
    printed = capsys.readouterr().out
    assert "adding seeds [1] to the study" in printed
    by_seed = {t.params["seed"]: t for t in grown.trials}
    assert sorted(by_seed) == [0, 1] and len(grown.trials) == 2
    assert by_seed[0].trial_id == first.trials[0].trial_id and by_seed[0].run_id == first.trials[0].run_id
    assert by_seed[1].status == "finished" and by_seed[1].trial_id != first.trials[0].trial_id
    segments = json.loads((study_dir / "tune_segments.json").read_text())["segments"]
    assert [s.get("seeds") for s in segments] == [[0], [1]]
    assert yaml.safe_load((study_dir / "study.yaml").read_text())["seeds"] == [0, 1]

    client = tracking.client_for(server.uri)
    children = tracking.child_runs(server.uri, first.experiment_id, first.parent_run_id)
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(t.trial_id for t in grown.trials)
    for child in children:  # the seed-0 trial trained once: one epoch record, not two
        assert [m.step for m in client.get_metric_history(child.info.run_id, "epoch")] == [1]
    assert client.get_run(first.parent_run_id).data.tags["num_trials"] == "2"

    again = run_study(spec((0, 1)), storage_root=out, tracking_uri=server.uri)
    assert sorted(t.trial_id for t in again.trials) == sorted(t.trial_id for t in grown.trials)
    assert len(tracking.child_runs(server.uri, first.experiment_id, first.parent_run_id)) == 2
