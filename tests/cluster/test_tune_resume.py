"""An Optuna sweep over candidate_k whose driver is SIGKILLed three times and resumed with
`yolox-ray tune --resume`: exactly the requested trials, the interrupted trial continued from its
Train checkpoint, one MLflow run per trial under one parent, the Optuna history intact.

Real parts only: the `yolox-ray` CLI in a subprocess (its own session, so the kill takes its whole
process group: Ray's raylet/GCS/agents and the trial workers), a local Ray cluster, the MLflow
server the driver starts over a temporary SQLite store (it outlives the killed driver and is
adopted and stopped by the resumed one), Optuna's RDB storage.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from yolox_ray.cluster import tracking

pytestmark = pytest.mark.slow

SAMPLES = 3
EPOCHS = 8
STUDY = {
    "name": "ksweep",
    "preset": "yolox_nano",
    "overrides": {
        "model.width": 0.125, "model.num_classes": 8, "data.input_size": [128, 128], "data.test_size": [128, 128],
        "data.random_size": [4, 4], "data.synthetic_train": 16, "data.synthetic_val": 8, "data.synthetic_size": 128,
        "data.workers": 0, "train.epochs": EPOCHS, "train.warmup_epochs": 1, "train.no_aug_epochs": 1,
        "train.max_iters": 2, "train.batch_size": 4, "train.print_interval": 1, "train.eval_interval": 1,
    },
    "space": {"assign.candidate_k": {"type": "int", "low": 5, "high": 15}},
    "searcher": "optuna",
    "num_samples": SAMPLES,
    "seed": 3,
    "max_concurrent": 1,
    "early_stop": False,
    "max_failures": 1,
}


class Driver:
    """`yolox-ray tune ...` in its own session; stdout collected line by line."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]):
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "yolox_ray.cli", "tune", *args], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.lines):
                return
            if self.proc.poll() is not None:
                time.sleep(0.5)  # let the reader drain
                break
            time.sleep(0.1)
        raise AssertionError("driver did not reach the expected point:\n" + "\n".join(self.lines[-60:]))

    def kill_group(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


EPOCH_LINE = re.compile(r"\[ksweep\] trial (\S+) epoch (\d+)/")


def trial_epochs(lines):
    """{trial_id: [epochs reported, in order]} from the driver's progress lines."""
    seen: dict[str, list[int]] = {}
    for line in lines:
        m = EPOCH_LINE.search(line)
        if m:
            seen.setdefault(m.group(1), []).append(int(m.group(2)))
    return seen


def processes_with_env(marker: str) -> list[int]:
    """Pids whose environment holds `marker` (our private RAY_TMPDIR: the killed driver's cluster)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def wait_cluster_gone(marker: str, spare: set[int], timeout: float = 60.0) -> None:
    """Ray's raylet/GCS/workers notice their driver's death and exit; SIGKILL stragglers (ours)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not set(processes_with_env(marker)) - spare:
            return
        time.sleep(0.5)
    for pid in set(processes_with_env(marker)) - spare:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _process_group(pgid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    out.add(int(entry.name))
            except OSError:
                pass
    return out


def checkpoints(study_dir: Path) -> dict[str, list[int]]:
    """{trial_id: [epochs with a Train checkpoint on disk]}."""
    out = {}
    for run in sorted((study_dir / "train_runs").glob("trial_*")):
        out[run.name[len("trial_"):]] = sorted(int(d.name.split("_")[1]) for d in run.glob("epoch_*"))
    return out


def finished_trials(lines) -> list[str]:
    return [t for t, e in trial_epochs(lines).items() if EPOCHS in e]


def first_trial_mid_run(study_dir: Path):
    # Kill 1: no trial has finished; trial 1 has written its epoch-2 checkpoint (so epoch 1's is
    # registered) and is somewhere in epochs 3..7, and the driver has printed its progress (a
    # checkpoint reaches the disk before its result reaches the driver).
    def predicate(lines) -> bool:
        on_disk = checkpoints(study_dir)
        return (len(on_disk) == 1 and 2 in next(iter(on_disk.values())) and not finished_trials(lines)
                and next(iter(on_disk)) in trial_epochs(lines))
    return predicate


def second_trial_mid_run(study_dir: Path):
    # Kill 2: the resumed driver saw trial 1 finish, trial 2 has written its epoch-2 checkpoint, and
    # the driver has printed trial 2's progress (as kill 1: the checkpoint reaches the disk first).
    def predicate(lines) -> bool:
        done = finished_trials(lines)
        others = [t for t, e in checkpoints(study_dir).items() if t not in done and 2 in e]
        return len(done) == 1 and len(others) == 1 and others[0] in trial_epochs(lines)
    return predicate


def third_trial_started(study_dir: Path):
    # Kill 3, another point: trial 2 just finished and trial 3 has started (its first epoch line),
    # between a trial's end and the next one's first checkpoints.
    def predicate(lines) -> bool:
        return len(finished_trials(lines)) == 1 and len(trial_epochs(lines)) == 2 and len(checkpoints(study_dir)) == 3
    return predicate


def optuna_trials(db: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="ksweep", storage=f"sqlite:///{db}")
    return study.trials


def test_three_kills_of_the_driver_then_a_resume_run_exactly_the_requested_trials(tmp_path):
    study_file = tmp_path / "ksweep.yaml"
    STUDY["overrides"]["data.cache_dir"] = str(tmp_path / "data_cache")
    study_file.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "studies"
    study_dir = out / "ksweep"
    mlruns = tmp_path / "mlruns"
    ray_tmp = tempfile.mkdtemp(prefix="ytr", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = dict(os.environ, RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.2", TUNE_GLOBAL_CHECKPOINT_S="1",
               RAY_TMPDIR=ray_tmp, PYTHONWARNINGS="ignore::DeprecationWarning")
    drivers: list[Driver] = []
    marker = f"RAY_TMPDIR={ray_tmp}"
    try:
        # 1. Three SIGKILLs of the driver's whole process group, each at another point of the sweep:
        #    mid trial 1 / mid trial 2 (after a resume) / just after trial 3 started (after another).
        kill_points = [first_trial_mid_run(study_dir), second_trial_mid_run(study_dir), third_trial_started(study_dir)]
        cut: list[tuple[str, list[int]]] = []  # (trial cut by the kill, its checkpoints then)
        server_pid = None
        for n, kill_point in enumerate(kill_points):
            args = ["--study", str(study_file), "--out", str(out)] if n == 0 else ["--resume", str(study_dir)]
            driver = Driver(args, tmp_path, env)
            drivers.append(driver)
            driver.wait_for(kill_point, timeout=420)
            driver.kill_group()
            server_pid = json.loads((mlruns / "server.json").read_text())["pid"]
            wait_cluster_gone(marker, spare=set(processes_with_env(marker)) & _process_group(server_pid))
            on_disk = checkpoints(study_dir)  # final: nothing of the killed cluster is left to write
            running = [t for t, e in trial_epochs(driver.lines).items() if EPOCHS not in e]
            assert len(running) == 1, (n, trial_epochs(driver.lines))
            assert EPOCHS not in on_disk[running[0]], f"kill {n + 1} came after the trial finished: {on_disk}"
            cut.append((running[0], on_disk[running[0]]))
            assert tracking._pid_alive(server_pid), "the MLflow server must outlive the killed driver"
            if n == 0:
                parent_id = json.loads((study_dir / tracking.STUDY_RUN_FILE).read_text())["run_id"]
        optuna_before = {t.number: t.params for t in optuna_trials(study_dir / "optuna.db")
                         if t.state.name == "COMPLETE"}
        assert len(optuna_before) == 2

        # 2. The last resume runs to the end.
        last = Driver(["--resume", str(study_dir)], tmp_path, env)
        drivers.append(last)
        rc = last.proc.wait(timeout=480)
        last._reader.join(timeout=10)
        log = "\n".join(last.lines)
        assert rc == 0, log[-6000:]
        assert "resuming the study" in log
        # Each cut trial continued from its latest registered Train checkpoint (one written in the very
        # moment of the kill may not be registered yet) in the next driver, and no finished trial ran again.
        for n, (trial, on_disk) in enumerate(cut):
            after = trial_epochs(drivers[n + 1].lines)
            context = "\n".join(drivers[n].lines[-30:]) + "\n--- resumed ---\n" + "\n".join(drivers[n + 1].lines[-60:])
            assert trial in after, context
            assert after[trial][0] <= max(on_disk) + 1, f"{after[trial]} {on_disk}\n" + context
            if len(on_disk) >= 2:  # the older checkpoint was registered: the trial did not start over
                assert after[trial][0] > 1, f"{after[trial]} {on_disk}\n" + context
            assert after[trial][-1] == EPOCHS, context
        for n, driver in enumerate(drivers[1:], start=1):
            earlier = {t for d in drivers[:n] for t in finished_trials(d.lines)}
            assert not earlier & set(trial_epochs(driver.lines)), f"a finished trial ran again in driver {n + 1}"

        # The last driver adopted the orphaned server and stopped it at the end.
        assert not tracking._pid_alive(server_pid)
        assert not (mlruns / "server.json").exists()

        # 3. Exactly the requested trials, all finished.
        trials = json.loads((study_dir / "trials.json").read_text())["trials"]
        assert len(trials) == SAMPLES
        assert {t["status"] for t in trials} == {"finished"}
        ids = {t["trial_id"] for t in trials}
        assert len(ids) == SAMPLES and {trial for trial, _ in cut} == ids
        k_by_trial = {t["trial_id"]: t["params"]["assign.candidate_k"] for t in trials}
        assert all(5 <= k <= 15 for k in k_by_trial.values())

        # 4. MLflow: one parent (the same run across all drivers), one child per trial.
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{mlruns / 'mlflow.db'}")
        exp = client.get_experiment_by_name("ksweep")
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert [p.info.run_id for p in parents] == [parent_id]
        assert parents[0].info.status == "FINISHED"
        assert len(children) == SAMPLES
        assert {c.data.tags["trial_id"] for c in children} == ids
        for child in children:
            tid = child.data.tags["trial_id"]
            assert child.data.tags["mlflow.parentRunId"] == parent_id
            assert child.info.status == "FINISHED"
            assert child.data.tags["study"] == "ksweep" and child.data.tags["geometry"] == "center"
            assert child.data.params["assign.candidate_k"] == str(k_by_trial[tid])
            assert child.data.params["model.width"] == "0.125"
            # Every epoch landed in this one run (an epoch a kill cut short may appear twice).
            epochs = [m.step for m in client.get_metric_history(child.info.run_id, "epoch")]
            assert set(epochs) == set(range(1, EPOCHS + 1)), (tid, epochs)
            assert {m.step for m in client.get_metric_history(child.info.run_id, "AP")} == set(range(1, EPOCHS + 1))

        # 5. Optuna: the pre-kill history is intact and the study holds exactly the requested trials.
        ot = optuna_trials(study_dir / "optuna.db")
        assert [t.state.name for t in ot] == ["COMPLETE"] * SAMPLES
        for number, params in optuna_before.items():
            assert ot[number].params == params
        assert sorted(t.params["assign.candidate_k"] for t in ot) == sorted(k_by_trial.values())
    finally:  # on failure: stop what the drivers left behind (all ours: they carry our RAY_TMPDIR)
        for driver in drivers:
            if driver.proc.poll() is None:
                driver.kill_group()
        record = mlruns / "server.json"
        if record.exists():
            info = json.loads(record.read_text())
            tracking.stop_server(tracking.TrackingServer(info["uri"], int(info["pid"]), int(info["port"]),
                                                         mlruns, True))
        wait_cluster_gone(marker, spare=set(), timeout=20)
        shutil.rmtree(ray_tmp, ignore_errors=True)
