"""Studies as data, on a real local Ray cluster with the real MLflow server and real Optuna:

- A resumed search can grow its samples with the Optuna trial count exact: 2 samples, then
  `yolox-ray tune --resume DIR --samples 3` runs exactly one more trial on the same Optuna study
  (the warm start enqueued once, never again) under the same MLflow parent run.
- Renaming a metric in the contract changes it in the MLflow runs, the Tune results and the report
  alike: a copy of the package whose `yolox_ray/metrics.py` names AP "mAP" runs one tiny trial on
  this module's cluster (its own Ray job, whose workers import the copy) and builds the report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
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


RENAMED_RUN = """
import json, sys
import ray
from yolox_ray import metrics
from yolox_ray.cluster.tune import SearchParam, StudySpec, run_study
from yolox_ray.report import build_report

pkg, gcs, uri, out, overrides = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
assert metrics.AP == "mAP", metrics.__file__
ray.init(address=gcs, runtime_env={"env_vars": {"PYTHONPATH": pkg}}, log_to_driver=False)
spec = StudySpec(name="contract_rename", preset="yolox_nano", overrides=overrides,
                 space=(SearchParam("assign.candidate_k", "int", low=5, high=15),), num_samples=1,
                 max_concurrent=1, early_stop=False, max_failures=0)
result = run_study(spec, storage_root=out, tracking_uri=uri)
build_report(spec.name, f"{out}/report", uri)
print("RESULT " + json.dumps({"metric": result.metric, "status": [t.status for t in result.trials],
                              "errors": [t.error for t in result.trials], "run_id": result.trials[0].run_id,
                              "parent_run_id": result.parent_run_id}))
"""


def test_renaming_a_metric_in_the_contract_renames_it_in_mlflow_tune_and_the_report(server, ray_cluster, tmp_path):
    import ray

    # The package with one line of the contract changed, nothing else.
    pkg = tmp_path / "renamed"
    shutil.copytree(REPO / "yolox_ray", pkg / "yolox_ray", ignore=shutil.ignore_patterns("__pycache__"))
    contract = pkg / "yolox_ray" / "metrics.py"
    text = contract.read_text()
    assert text.count('AP = "AP"\n') == 1
    contract.write_text(text.replace('AP = "AP"\n', 'AP = "mAP"\n'))
    out = tmp_path / "studies"
    script = tmp_path / "run_renamed.py"
    script.write_text(RENAMED_RUN)
    env = dict(os.environ, PYTHONPATH=str(pkg), PYTHONWARNINGS="ignore::DeprecationWarning")
    gcs = ray.get_runtime_context().gcs_address
    proc = subprocess.run([sys.executable, str(script), str(pkg), gcs, server.uri, str(out),
                           json.dumps(tiny(tmp_path / "data"))], env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["status"] == ["finished"], result["errors"]
    assert result["metric"] == "mAP"  # the study's default metric is the contract's

    # Tune's result record (trials.json): the new names, not the old ones.
    record = json.loads((out / "contract_rename" / "trials.json").read_text())
    assert record["metric"] == "mAP"
    reported = record["trials"][0]["metrics"]
    assert {"mAP", "best_mAP", "AP50"} <= set(reported) and "AP" not in reported and "best_AP" not in reported

    # MLflow (logged by the trial's Train worker, so the workers used the renamed contract too).
    client = tracking.client_for(server.uri)
    run = client.get_run(result["run_id"])
    assert {"mAP", "best_mAP", "AP50"} <= set(run.data.metrics)
    assert not {"AP", "best_AP", "final/AP"} & set(run.data.metrics)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "mAP")] == [1]
    assert run.data.metrics["mAP"] == pytest.approx(reported["mAP"])
    assert "best_mAP" in client.get_run(result["parent_run_id"]).data.metrics

    # The report reads the renamed metric: its runs table heads a column "mAP" holding the run's value
    # (in percent), and the result line names it.
    page = (out / "report" / "report.html").read_text()
    table = re.search(r"<table id='runs'>(.*?)</table>", page, re.S).group(1)
    heads = re.findall(r"<th>(.*?)</th>", table)
    assert "mAP" in heads and "AP" not in heads
    cells = re.findall(r"<td>(.*?)</td>", table)
    assert float(cells[heads.index("mAP")]) == pytest.approx(100 * reported["mAP"], abs=0.006)
    assert re.search(r"Best mAP <b>[0-9.]+ %</b>", page)
