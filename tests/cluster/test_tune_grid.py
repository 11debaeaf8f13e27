"""Grid studies (ablation rows x seeds) on a real local Ray cluster.

One row's trial raises: the other trial still runs to the end, MLflow records one FAILED and one
FINISHED child run, and the failure is one printed line naming the trial's log file, which holds the
worker's traceback. (The broken row passes the checks before Ray, which read only the val
annotations' categories: its train annotation file is corrupt, which only the trial's dataset build
finds.) A study on a cluster short of CPUs right now waits for them instead of failing, and says so;
the State API check tells a cluster with a dashboard from one without."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from yolox_ray.cluster import tracking
from yolox_ray.cluster.tune import StudyError, StudyRow, StudySpec, _trial_resources, run_study

pytestmark = pytest.mark.slow

TINY = {
    "model.width": 0.125, "model.num_classes": 8, "data.input_size": [128, 128], "data.test_size": [128, 128],
    "data.random_size": [4, 4], "data.synthetic_train": 16, "data.synthetic_val": 8, "data.synthetic_size": 128,
    "data.workers": 0, "train.epochs": 2, "train.warmup_epochs": 1, "train.no_aug_epochs": 1,
    "train.max_iters": 2, "train.batch_size": 4, "train.print_interval": 1,
}


def corrupt_coco(tmp_path: Path) -> Path:
    """A COCO layout whose val annotations are fine (8 categories) and whose train file is not JSON."""
    root = tmp_path / "corrupt_coco"
    for sub in ("annotations", "train2017", "val2017"):
        (root / sub).mkdir(parents=True)
    cats = [{"id": i + 1, "name": f"c{i}"} for i in range(8)]
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps({"images": [], "annotations": [],
                                                                          "categories": cats}))
    (root / "annotations" / "instances_train2017.json").write_text("{not json")
    return root


def test_a_failing_trial_does_not_stop_the_others(server, ray_cluster, tmp_path, capsys):
    overrides = dict(TINY, **{"data.cache_dir": str(tmp_path / "data_cache")})
    spec = StudySpec(
        name="grid_fail", searcher="grid", preset="yolox_nano", overrides=overrides, seeds=(0,),
        rows=(StudyRow("broken", overrides={"data.root": str(corrupt_coco(tmp_path))}),
              StudyRow("simota", paper_ap=47.3)),
        max_concurrent=2, max_failures=0)
    result = run_study(spec, storage_root=tmp_path / "studies", tracking_uri=server.uri)

    by_row = {t.row: t for t in result.trials}
    assert sorted(by_row) == ["broken", "simota"]
    assert by_row["broken"].status == "failed"
    assert "instances_train2017.json" in by_row["broken"].error
    good = by_row["simota"]
    assert good.status == "finished" and good.metrics["epoch"] == 2 and good.seed == 0
    assert result.best is good and result.num_failed == 1 and result.num_finished == 1
    assert good.run_id in result.best_run_url

    client = tracking.client_for(server.uri)
    bad_run = client.get_run(by_row["broken"].run_id)
    good_run = client.get_run(good.run_id)
    assert bad_run.info.status == "FAILED" and "instances_train2017.json" in bad_run.data.tags["error"]
    assert good_run.info.status == "FINISHED"
    for run, row in ((bad_run, "broken"), (good_run, "simota")):
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert (run.data.tags["row"], run.data.tags["seed"], run.data.tags["study"]) == (row, "0", "grid_fail")
    assert good_run.data.tags["paper_ap"] == "47.3" and "paper_ap" not in bad_run.data.tags
    assert good_run.data.params["data.root"] == "synthetic"
    assert [m.step for m in client.get_metric_history(good.run_id, "loss")] == [1, 2]
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert (parent.data.tags["trials_failed"], parent.data.tags["trials_finished"]) == ("1", "1")

    # One printed line for the failure: the error and the trial's log file, which has the worker's traceback.
    bad_id = by_row["broken"].trial_id
    lines = [line for line in capsys.readouterr().out.splitlines() if " failed: " in line]
    assert len(lines) == 1, lines
    m = re.fullmatch(r"\[grid_fail\] trial (\S+) failed: (.*) \(log: (.*)\)", lines[0])
    assert m and m.group(1) == bad_id and "instances_train2017.json" in m.group(2), lines[0]
    log = Path(m.group(3))
    assert log == result.study_dir.local_path / "logs" / f"trial_{bad_id}.log"
    text = log.read_text()
    # The bad annotation file fails the trial's own data check, before any Train worker starts: the log
    # holds the error as the study driver got it (the worker part is checked on the good trial below and
    # in test_train's non-finite-loss test).
    assert f"trial {bad_id} failed; the error the study driver got" in text
    assert "DatasetError" in text and "is not valid JSON" in text
    good_log = (result.study_dir / "logs" / f"trial_{good.trial_id}.log").read_text()
    assert "Train worker rank 0 on node" in good_log and "Traceback" not in good_log


def test_an_existing_cluster_too_small_now_is_not_an_error(ray_cluster, capsys):
    """Sizing concurrency: an existing cluster (this one: 2 CPUs, 2 trial slots) may grow, so a trial that
    needs 3 CPUs is no error (one trial per slot, and a note); the same cluster started by the study itself
    is final."""
    big = StudySpec(name="big", searcher="grid", preset="yolox_nano", overrides=TINY, seeds=(0, 1, 2),
                    rows=(StudyRow("simota"),), workers=1, cpus_per_worker=3, max_concurrent=3)
    assert _trial_resources(big, fixed_cluster=False) == ({"trial_slot": 1}, 2)
    assert "[big] the cluster has 2 CPUs and 0 GPUs now; a trial needs 3 CPUs" in capsys.readouterr().out
    with pytest.raises(StudyError, match="a trial needs 3 CPUs and 0 GPUs but the cluster has 2 CPUs and 0 GPUs"):
        _trial_resources(big, fixed_cluster=True)
    small = StudySpec(name="small", searcher="grid", preset="yolox_nano", overrides=TINY, seeds=(0, 1, 2),
                      rows=(StudyRow("simota"),), workers=1, cpus_per_worker=1, max_concurrent=3)
    assert _trial_resources(small, fixed_cluster=True) == ({"trial_slot": 1}, 2)  # 2 slots, 2 CPUs


def test_progress_counts_trials_waiting_for_resources(ray_cluster):
    """The progress line of a cluster short of resources right now: a started trial whose Train
    workers' placement group is pending, and a queued trial whose driver cannot get a trial slot, are
    counted as waiting (not running), with what a trial needs and what is free. Ray's placement groups
    and resources are real; the two trials stand in for Tune's (status and last result only)."""
    import io
    from types import SimpleNamespace

    import ray

    from yolox_ray.cluster.progress import StudyCallback

    out = io.StringIO()
    callback = StudyCallback("short", "/nonexistent", 3, "AP", "max", 2, stream=out, workers=1, cpus_per_worker=3,
                             driver={"trial_slot": 1})
    started = SimpleNamespace(trial_id="t1", status="RUNNING", last_result={}, config={})
    queued = SimpleNamespace(trial_id="t2", status="PENDING", last_result={}, config={})
    slots = ray.util.placement_group([{"trial_slot": 1}] * 2)  # both slots taken: drivers cannot start
    workers = ray.util.placement_group([{"CPU": 3}])  # more CPUs than the cluster has: stays pending
    try:
        assert slots.wait(timeout_seconds=60)
        callback._progress([started, queued])
        line = out.getvalue().strip().splitlines()[-1]
        assert line.startswith("[short] trials: 0 running, 2 waiting for resources (a trial needs 3 CPU + 1 trial_slot;"), line
        assert "0/2 trial_slot" in line and "/2 CPU" in line and line.endswith("0 done, 0 failed (of 3)"), line
    finally:
        ray.util.remove_placement_group(workers)
        ray.util.remove_placement_group(slots)
    # Resources back: the same trials are no longer waiting.
    deadline = time.monotonic() + 60
    while ray.available_resources().get("trial_slot", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    started.last_result = {"epoch": 1}
    callback._progress([started, queued])
    assert out.getvalue().strip().splitlines()[-1] == "[short] trials: 1 running, 0 done, 0 failed (of 3)"


def test_state_api_check_tells_a_cluster_without_dashboard(ray_cluster):
    """The fixture's cluster runs its dashboard (init_ray); a head started without one has no State API."""
    from ray.cluster_utils import Cluster

    from yolox_ray.cluster.ray_setup import state_api_reachable

    assert state_api_reachable(timeout_s=120)  # a loaded 2-core machine answers slowly
    bare = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        assert not state_api_reachable(bare.address)
    finally:
        bare.shutdown()


def test_grid_study_respects_max_concurrent(server, ray_cluster, tmp_path):
    """The cluster fits two trials; max_concurrent=1 must run the grid one trial after the other."""
    overrides = dict(TINY, **{"data.cache_dir": str(tmp_path / "data_cache")})
    spec = StudySpec(name="grid_serial", searcher="grid", preset="yolox_nano", overrides=overrides, seeds=(0, 1),
                     rows=(StudyRow("simota"),), max_concurrent=1, max_failures=0)
    result = run_study(spec, storage_root=tmp_path / "studies", tracking_uri=server.uri)
    assert result.num_finished == 2
    client = tracking.client_for(server.uri)
    spans = sorted((r.info.start_time, r.info.end_time) for r in (client.get_run(t.run_id) for t in result.trials))
    assert spans[0][1] <= spans[1][0], f"trials overlapped: {spans}"


def test_trials_log_through_an_authenticated_server_without_exposing_the_password(auth_server, ray_cluster,
                                                                                  tmp_path):
    """The multi-node path's tracking on one node: the driver holds the server's credential (as
    `tracking_session` sets it), the trial process and its rank-0 Train worker (started by a raylet that
    never saw it) must be handed it, and it must land in no param, tag, printed line or study file."""
    import contextlib
    import io

    password = auth_server.auth.password
    overrides = dict(TINY, **{"data.cache_dir": str(tmp_path / "data_cache")})
    spec = StudySpec(name="grid_auth", searcher="grid", preset="yolox_nano", overrides=overrides, seeds=(0,),
                     rows=(StudyRow("simota"),), max_concurrent=1, max_failures=0)
    out = io.StringIO()
    with tracking.authenticated(auth_server.auth), contextlib.redirect_stdout(out):
        result = run_study(spec, storage_root=tmp_path / "studies", tracking_uri=auth_server.uri)
        client = tracking.client_for(auth_server.uri)
        runs = [client.get_run(result.parent_run_id), client.get_run(result.trials[0].run_id)]
    assert tracking.current_auth() is None  # the driver's environment is as before

    (trial,) = result.trials
    assert trial.status == "finished", trial.error
    child = runs[1]
    assert child.info.status == "FINISHED"
    assert child.data.params.get("assign.assigner") and len(child.data.params) > 20  # rank 0 logged
    assert "AP" in child.data.metrics and child.data.metrics["epoch"] == 2
    # The trial logged as the study's own user, which may edit the study's experiment and nothing else.
    assert child.data.tags["tracking_user"] == "study-grid_auth"
    from mlflow.server.auth.client import AuthServiceClient

    with tracking.authenticated(auth_server.auth):
        admin = AuthServiceClient(auth_server.uri)
        grant = admin.get_user_permission("study-grid_auth", "experiment", result.experiment_id)
        other = tracking.client_for(auth_server.uri).create_experiment(f"not-grid_auth-{tmp_path.name}")
        elsewhere = admin.get_user_permission("study-grid_auth", "experiment", other)
    assert grant.permission == "EDIT", grant.to_json()
    assert elsewhere.permission == "NO_PERMISSIONS", elsewhere.to_json()
    for run in runs:
        for key, value in {**run.data.params, **run.data.tags}.items():
            assert password not in key and password not in value, key
    assert password not in out.getvalue()
    leaked = [p for p in result.study_dir.local_path.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert not leaked
