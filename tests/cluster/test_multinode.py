"""The quick ablation study on a real two-node Ray cluster (see `two_node.py`): the head and a worker
node in separate network namespaces (no shared loopback), the filesystem shared like NFS.

The study script is submitted as the README's cluster section does: `ray job submit --address
http://HEAD_IP:8265 --working-dir . -- python studies/ablation_table.py --address auto ...`, from the
head's namespace (the job's driver runs on the head). The head has no CPUs, so every Train worker runs
on the worker node, and the trial drivers (a `trial_slot` resource) on the head.
It checks what breaks off the driver's node: tracking (the local MLflow server must listen on the
head's node IP with authentication, refuse unauthenticated requests, and rank 0 on the worker node,
handed the credential, logs params and AP into it; the password is printed nowhere), shared storage (the
worker node's checkpoints land in the study folder), and a lost node: the worker node's Ray
processes are killed mid-trial and the node is restarted; the study still finishes with every
trial once, resumed from its checkpoint. The cluster uses Ray token auth, which the driver must
not override. Runs in CI (root); elsewhere skips, saying why, where namespaces are unavailable.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from configparser import ConfigParser
from pathlib import Path

import pytest

from two_node import TwoNodes, netns_unavailable

ROOT = Path(__file__).resolve().parents[2]
ROWS = ("yolov3_baseline", "simota")
# An epoch of the tiny budget takes about a second, and the first checkpoint is only noticed by
# polling: with 2 epochs a fast machine finished both trials before the kill (CI, 2026-12-02), so
# there are enough epochs left after the first checkpoint for the kill to land mid-trial.
EPOCHS = 6


def _tiny(cache: Path) -> list[str]:
    """The study scripts' tiny budget (tests/studies/test_study_scripts.py): 1 iteration per epoch."""
    return ["model.width=0.125", "data.input_size=[128,128]", "data.test_size=[128,128]", "data.random_size=[4,4]",
            "data.synthetic_train=16", "data.synthetic_val=8", "data.synthetic_size=128", f"data.cache_dir={cache}",
            "train.max_iters=1", "train.batch_size=4", "eval.batch_size=8"]


@pytest.fixture
def two_nodes(request):
    reason = netns_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the multi-node test must run in CI, but: {reason}")
        pytest.skip(f"needs Linux network namespaces: {reason}")
    base = Path(tempfile.mkdtemp(prefix="yr2n", dir="/tmp"))
    cluster = TwoNodes(tag=str(os.getpid() % 100000), base=base, env={
        "PYTHONPATH": str(ROOT),  # the nodes' workers import this checkout
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        # Notice the killed node in ~3 s instead of ~15 s.
        "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    })

    def cleanup():
        cluster.destroy()  # every process of both namespaces, by pid, then the namespaces
        shutil.rmtree(base, ignore_errors=True)

    request.addfinalizer(cleanup)
    cluster.create_network()
    cluster.start_head({"trial_slot": 2}, dashboard=True)  # its job server takes the study
    cluster.start_worker(num_cpus=2)
    cluster.wait_nodes(2)
    return cluster


def _checkpoints(study: Path) -> dict[str, set[str]]:
    return {d.name: {e.name for e in d.glob("epoch_*") if (e / "checkpoint.pt").exists()}
            for d in (study / "train_runs").glob("trial_*")}


def _wait_for(pred, timeout_s: float, what: str, proc: subprocess.Popen, cluster: TwoNodes, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (script rc {proc.poll()}):\n"
                         f"{log.read_text(errors='replace')[-6000:]}\n{cluster.logs()}")


@pytest.mark.slow
def test_ablation_study_on_two_nodes_survives_a_lost_worker_node(two_nodes, tmp_path):
    cluster = two_nodes
    out, mlruns, log = tmp_path / "out", tmp_path / "mlruns", tmp_path / "study.log"
    study = out / "abl-2n"
    from two_node import DASHBOARD_PORT, RAY

    # The README's job command (the checkout as the working dir, `.rayignore` keeps .git out of it).
    cmd = [RAY, "job", "submit", "--address", f"http://{cluster.head_ip}:{DASHBOARD_PORT}", "--working-dir",
           str(ROOT), "--", sys.executable, "studies/ablation_table.py", "--address", "auto",
           "--epochs", str(EPOCHS), "--rows", ",".join(ROWS), "--name", "abl-2n", "--out", str(out),
           "--mlruns", str(mlruns), *_tiny(tmp_path / "data")]
    proc = cluster.popen(cluster.head_ns, cmd, log)

    # Mid-trial: a first checkpoint written by the worker node, the last epoch not yet everywhere.
    _wait_for(lambda: any(_checkpoints(study).values()), 420, "a first checkpoint", proc, cluster, log)
    killed = cluster.kill_worker()
    assert killed and proc.poll() is None
    # Read after the kill: the worker node's processes, the only writers of checkpoints, are gone, so
    # a trial without its last epoch here was hit in flight and must resume.
    after_kill = _checkpoints(study)
    unfinished = len(after_kill) < len(ROWS) or any(f"epoch_{EPOCHS:04d}" not in e for e in after_kill.values())
    assert unfinished, after_kill
    cluster.wait_nodes(1, timeout_s=60)
    # From the worker node, a request without the credential is refused (its trials were handed it).
    uri = re.search(r"MLflow tracking server for the cluster: (http://\S+)", log.read_text(errors="replace")).group(1)
    probe = ("import urllib.request, urllib.error\n"
             f"try:\n    print(urllib.request.urlopen('{uri}/api/2.0/mlflow/experiments/search?max_results=1',"
             " timeout=60).status)\n"
             "except urllib.error.HTTPError as exc:\n    print(exc.code)\n")
    answer = subprocess.run(["ip", "netns", "exec", cluster.worker_ns, sys.executable, "-c", probe],
                            capture_output=True, text=True, timeout=120)
    assert answer.stdout.split() == ["401"], (answer.stdout, answer.stderr)
    cluster.start_worker(num_cpus=2)

    try:
        rc = proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the study did not finish:\n{log.read_text(errors='replace')[-6000:]}\n{cluster.logs()}")
    printed = log.read_text(errors="replace")
    assert rc == 0, printed[-6000:] + cluster.logs()
    assert re.search(r"Job 'raysubmit_\w+' succeeded", printed), printed[-3000:]
    # The local server listened on the head's node address (not loopback), authenticated: the worker node
    # reached it with the credential it was handed, which no line of the study's output shows.
    assert f"MLflow tracking server for the cluster: http://{cluster.head_ip}:" in printed
    assert "basic auth" in printed
    ini = ConfigParser(interpolation=None)
    ini.read(mlruns / "auth" / "basic_auth.ini")
    password = ini["mlflow"]["admin_password"]
    assert stat.S_IMODE((mlruns / "auth" / "basic_auth.ini").stat().st_mode) == 0o600
    assert password not in printed and password not in cluster.logs()

    # Every trial once, finished, with its checkpoints on the shared storage.
    trials = json.loads((study / "trials.json").read_text())["trials"]
    assert sorted(t["params"]["row"] for t in trials) == sorted(ROWS)
    assert all(t["status"] == "finished" and t["metrics"]["epoch"] == EPOCHS for t in trials), trials
    ids = [t["trial_id"] for t in trials]
    assert len(set(ids)) == len(ROWS)
    final = _checkpoints(study)
    assert sorted(final) == sorted(f"trial_{i}" for i in ids)
    assert all(f"epoch_{EPOCHS:04d}" in eps for eps in final.values()), final

    # MLflow (read from the store the server wrote): one child run per trial, with params and AP.
    from mlflow.tracking import MlflowClient

    info = json.loads((study / "mlflow.json").read_text())
    client = MlflowClient(f"sqlite:///{mlruns / 'mlflow.db'}")
    children = client.search_runs([info["experiment_id"]],
                                  filter_string=f"tags.mlflow.parentRunId = '{info['run_id']}'")
    assert sorted(r.data.tags["trial_id"] for r in children) == sorted(ids)
    assert sorted(r.info.run_id for r in children) == sorted(t["run_id"] for t in trials)
    for run in children:
        assert run.info.status == "FINISHED", run.data.tags
        assert run.data.params.get("assign.assigner") and len(run.data.params) > 20, run.data.params
        assert "AP" in run.data.metrics and 0.0 <= run.data.metrics["AP"] <= 100.0
        assert run.data.metrics["epoch"] == EPOCHS
        assert all(password not in v for v in {**run.data.params, **run.data.tags}.values())
    assert not [p for p in study.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
