"""Study storage URIs and the Optuna storage option, with real parts: a real S3-compatible server on
loopback (moto's ThreadedMotoServer) read and written through pyarrow's S3 filesystem, a real local Ray
cluster, the real MLflow server, Optuna's JournalStorage and RDB (SQLite) storage.

- A study whose `--out` is an s3:// URI writes study.yaml, mlflow.json, optuna.json, trials.json and the
  Train checkpoints into the bucket (listed with boto3, not through our code), creates no local
  `s3:` folder, and a rerun resumes it (no trial, MLflow run or Optuna trial added).
- `--optuna-storage sqlite:///...` puts the Optuna study there (no optuna.db in the study folder); a
  resume without the flag reuses the recorded one; another URL is refused.
- The storage visibility check: the driver runs in its own mount namespace with a tmpfs over `--out`,
  so the folder it writes exists only for it, as a head node's local disk would; the Ray task on the
  cluster's node reads the folder underneath and the study stops before any trial, naming the storage
  and the node. (Both run on one machine: this shows the check reads through the worker's own view,
  not that a second machine was involved; tests/cluster/test_multinode.py covers two nodes.)
- Bad URIs are refused in one line before Ray starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from yolox_ray.cli import main as cli_main
from yolox_ray.cluster import tracking
from yolox_ray.cluster.tune import StudyError, StudySpec, run_study
from yolox_ray.storage import StorageError, resolve_storage
from yolox_ray.study_paths import check_optuna_storage

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "studies-bucket"
TINY = {
    "model.width": 0.125, "model.num_classes": 8, "data.input_size": [128, 128], "data.test_size": [128, 128],
    "data.random_size": [4, 4], "data.synthetic_train": 16, "data.synthetic_val": 8, "data.synthetic_size": 128,
    "data.workers": 0, "train.epochs": 2, "train.warmup_epochs": 1, "train.no_aug_epochs": 1,
    "train.max_iters": 1, "train.batch_size": 4, "train.print_interval": 1,
}


def optuna_spec(name: str, cache: Path) -> StudySpec:
    return StudySpec.from_dict({
        "name": name, "preset": "yolox_nano", "overrides": dict(TINY, **{"data.cache_dir": str(cache)}),
        "space": {"assign.candidate_k": {"type": "int", "low": 5, "high": 15}}, "searcher": "optuna",
        "num_samples": 1, "seed": 0, "max_concurrent": 1, "early_stop": False, "max_failures": 0})


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on loopback with one bucket; yields the base URI (credentials and endpoint in it,
    so Ray workers need no environment) and a boto3 client to look at the bucket independently."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    uri = f"s3://test:test@{BUCKET}/studies?scheme=http&endpoint_override={host}:{port}&region=us-east-1"
    yield uri, client
    server.stop()


def keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def journal_trials(path: Path, name: str) -> list:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return optuna.load_study(study_name=name, storage=storage).trials


# ------------------------------------------------------------------------------------------------
# No cluster


def test_resolve_storage_local_file_and_s3(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = resolve_storage("some/dir")
    assert rel.local and rel.path == str(tmp_path / "some" / "dir") and rel.uri == rel.path
    file_uri = resolve_storage(f"file://{tmp_path}/x")
    assert file_uri.local and file_uri.path == str(tmp_path / "x")
    remote = resolve_storage("s3://key:secret@bkt/root/studies?endpoint_override=127.0.0.1:9&scheme=http")
    assert not remote.local and remote.path == "bkt/root/studies"
    assert remote.uri == "s3://bkt/root/studies"  # no credentials or options in what is printed
    child = remote / "study1"
    assert (child.path, child.uri, child.name, child.parent.uri) == (
        "bkt/root/studies/study1", "s3://bkt/root/studies/study1", "study1", "s3://bkt/root/studies")
    for bad, needle in (("nosuchfs://x/y", "Unrecognized filesystem"), ("s3://", "give a bucket")):
        with pytest.raises(StorageError, match=needle) as info:
            resolve_storage(bad, what="--out")
        assert str(info.value).startswith("--out")


@pytest.mark.parametrize("url, needle", [
    ("/tmp/optuna.db", "expected an RDB URL"),
    ("nosuchdb://h/x", "not a database URL"),
    ("sqlite:///:memory:", "in-memory"),
    ("sqlite:////no/such/folder/optuna.db", "folder /no/such/folder does not exist"),
    ("journal:", "expected journal:PATH"),
    ("journal:/no/such/folder/optuna.log", "folder /no/such/folder does not exist"),
])
def test_bad_optuna_storage_is_refused(url, needle):
    with pytest.raises(StorageError, match=needle):
        check_optuna_storage(url)


def test_optuna_storage_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_optuna_storage("sqlite:///o.db") == f"sqlite:///{tmp_path / 'o.db'}"
    assert check_optuna_storage("journal:o.log") == f"journal:{tmp_path / 'o.log'}"


@pytest.mark.parametrize("extra, needle", [
    (["--out", "nosuchfs://bucket/x"], "--out 'nosuchfs://bucket/x'"),
    (["--optuna-storage", "/tmp/optuna.db"], "--optuna-storage '/tmp/optuna.db'"),
    (["--optuna-storage", "nosuchdb://h/x"], "not a database URL"),
])
def test_bad_uris_are_refused_before_ray_starts(tmp_path, capsys, extra, needle):
    import ray

    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump(optuna_spec("refused", tmp_path / "cache").to_dict()))
    args = ["tune", "--study", str(study), *extra]
    if "--out" not in extra:
        args += ["--out", str(tmp_path / "out")]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("yolox-ray: ") and needle in err[0], err
    assert not ray.is_initialized()
    assert not (tmp_path / "out").exists()


def test_remote_study_needs_an_optuna_storage(s3, tmp_path, capsys):
    import ray

    uri, _ = s3
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump(optuna_spec("needs_storage", tmp_path / "cache").to_dict()))
    assert cli_main(["tune", "--study", str(study), "--out", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --optuna-storage" in err[0] and f"s3://{BUCKET}/studies/needs_storage" in err[0]
    assert "test:test" not in err[0]
    assert not ray.is_initialized()


# ------------------------------------------------------------------------------------------------
# On a real local cluster


@pytest.mark.slow
def test_study_on_s3_with_journal_storage_runs_and_resumes(s3, server, ray_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri, client = s3
    journal = tmp_path / "optuna.log"
    spec = optuna_spec("on_s3", tmp_path / "cache")
    first = run_study(spec, storage_root=uri, tracking_uri=server.uri, optuna_storage=f"journal:{journal}")
    assert [t.status for t in first.trials] == ["finished"]
    assert str(first.study_dir) == f"s3://{BUCKET}/studies/on_s3"

    prefix = "studies/on_s3/"
    stored = keys(client, prefix)
    for name in ("study.yaml", "mlflow.json", "optuna.json", "trials.json"):
        assert prefix + name in stored, stored
    trial_id = first.trials[0].trial_id
    assert any(k.startswith(f"{prefix}train_runs/trial_{trial_id}/epoch_") and k.endswith("/checkpoint.pt")
               for k in stored), stored
    assert any(k.startswith(prefix + "tune/") for k in stored), stored
    assert not any(".storage_check" in k for k in stored)  # the token is removed again
    body = client.get_object(Bucket=BUCKET, Key=prefix + "trials.json")["Body"].read()
    assert [t["trial_id"] for t in json.loads(body)["trials"]] == [trial_id]
    assert json.loads(client.get_object(Bucket=BUCKET, Key=prefix + "optuna.json")["Body"].read())["storage"] == \
        f"journal:{journal}"
    assert not list(tmp_path.glob("s3*")), "a local s3: folder was created"
    assert len(journal_trials(journal, "on_s3")) == 1

    again = run_study(spec, storage_root=uri, tracking_uri=server.uri)  # resume: the recorded journal storage
    assert [t.trial_id for t in again.trials] == [trial_id] and again.trials[0].status == "finished"
    assert again.parent_run_id == first.parent_run_id and again.optuna_storage == f"journal:{journal}"
    assert len(journal_trials(journal, "on_s3")) == 1
    children = tracking.child_runs(server.uri, first.experiment_id, first.parent_run_id)
    assert [r.data.tags["trial_id"] for r in children] == [trial_id]


@pytest.mark.slow
def test_sqlite_optuna_storage_is_used_recorded_and_kept_on_resume(server, ray_cluster, tmp_path):
    import optuna

    db = tmp_path / "elsewhere" / "custom.db"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    spec = optuna_spec("custom_sqlite", tmp_path / "cache")
    out = tmp_path / "studies"
    first = run_study(spec, storage_root=out, tracking_uri=server.uri, optuna_storage=url)
    assert [t.status for t in first.trials] == ["finished"]
    assert not (out / "custom_sqlite" / "optuna.db").exists()
    assert json.loads((out / "custom_sqlite" / "optuna.json").read_text())["storage"] == url
    assert len(optuna.load_study(study_name="custom_sqlite", storage=url).trials) == 1
    parent = tracking.client_for(server.uri).get_run(first.parent_run_id)
    assert parent.data.tags["optuna_storage"] == url

    with pytest.raises(StudyError, match="was started with --optuna-storage"):
        run_study(spec, storage_root=out, tracking_uri=server.uri, optuna_storage=f"journal:{tmp_path / 'j.log'}")
    again = run_study(spec, storage_root=out, tracking_uri=server.uri)
    assert [t.trial_id for t in again.trials] == [t.trial_id for t in first.trials]
    assert len(optuna.load_study(study_name="custom_sqlite", storage=url).trials) == 1


def _private_mounts_unavailable() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True,
                           text=True)
    return None if probe.returncode == 0 else f"unshare --mount failed: {probe.stderr.strip()}"


@pytest.mark.slow
def test_storage_the_workers_cannot_see_stops_the_study_before_any_trial(server, ray_cluster, tmp_path):
    import ray

    reason = _private_mounts_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the storage visibility test must run in CI, but: {reason}")
        pytest.skip(reason)
    out = tmp_path / "driver_only"
    out.mkdir()
    study = tmp_path / "s.yaml"
    spec = StudySpec.from_dict({**optuna_spec("hidden", tmp_path / "cache").to_dict(), "searcher": "grid",
                                "space": {"assign.candidate_k": {"type": "grid", "values": [10]}}})
    study.write_text(yaml.safe_dump(spec.to_dict()))
    address = ray.get_runtime_context().gcs_address
    # The driver's --out is a tmpfs only the driver's mount namespace has (like a head node's local disk).
    script = (f"mount -t tmpfs tmpfs {out} && exec {sys.executable} -m yolox_ray.cli tune --study {study} "
              f"--out {out} --address {address} --tracking-uri {server.uri}")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("yolox-ray: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert f"study storage {out}/hidden is not visible from node " in lines[0], lines[0]
    assert "does not exist there" in lines[0] and "shared storage" in lines[0]
    assert list(out.iterdir()) == []  # the workers' view: nothing was written here, no trial ran
