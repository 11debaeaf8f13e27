"""`yolox-ray dashboard`: refuses a missing study in one line (exit 2); serves a real one on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, **kwargs) -> list[str]:
    return [sys.executable, "-c", "import sys; from yolox_ray.cli import main; sys.exit(main())", "dashboard", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@pytest.mark.parametrize("make", ["nothing", "empty_dir", "other_study"])
def test_missing_study_or_storage_is_refused_with_exit_2(tmp_path, make):
    root = tmp_path / "studies"
    root.mkdir()
    if make == "empty_dir":  # a study folder without optuna.db (a grid study)
        (root / "s1").mkdir()
    if make == "other_study":  # optuna.db holds a study of another name
        (root / "s1").mkdir()
        optuna.create_study(study_name="other", storage=f"sqlite:///{root / 's1' / 'optuna.db'}")
    name = "nope" if make == "nothing" else "s1"
    proc = subprocess.run(_cli("--study", name, "--out", str(root)), capture_output=True, text=True, timeout=120,
                          env=_env(), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("yolox-ray dashboard: ") and repr(name) in lines[0], proc.stderr
    assert proc.stdout == ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serves_the_study_on_loopback_then_stops(tmp_path):
    study_dir = tmp_path / "studies" / "search1"
    study_dir.mkdir(parents=True)
    study = optuna.create_study(study_name="search1", storage=f"sqlite:///{study_dir / 'optuna.db'}",
                                direction="maximize")
    study.enqueue_trial({"assign.candidate_k": 10})
    study.optimize(lambda t: t.suggest_int("assign.candidate_k", 5, 15) / 100, n_trials=2)
    port = _free_port()
    # By directory (the name form is covered by the refusal test's resolution).
    proc = subprocess.Popen(_cli("--study", str(study_dir), "--port", str(port)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline, status, body = time.monotonic() + 300, None, b""  # slow on a loaded CI machine
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/api/studies", timeout=5) as r:
                    status, body = r.status, r.read()
                break
            except OSError:
                time.sleep(0.5)
        assert status == 200, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert '"search1"' in json.dumps(json.loads(body))  # the API lists our study
        with urllib.request.urlopen(f"{url}/dashboard/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        other = socket.gethostbyname(socket.gethostname())
        if not other.startswith("127."):  # bound to loopback only: another local address is refused
            with pytest.raises(OSError):
                urllib.request.urlopen(f"http://{other}:{port}/dashboard/", timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    first = proc.stdout.read().splitlines()[0]
    assert f"http://127.0.0.1:{port}/dashboard/" in first and "search1" in first
