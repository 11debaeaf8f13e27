"""Ray Train driver on a real local cluster (tiny sizes): reports, checkpoints, SIGKILL recovery, NaN stop.

The fault test kills rank 1 of a 2-worker DDP run with SIGKILL in the middle of epoch 2 (first attempt
only, marker file); Ray restarts the worker group from the last registered checkpoint and the run must
end with bitwise the same weights and the same metrics as an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.2"

from yolox_ray.config import ConfigError  # noqa: E402
from yolox_ray.engine.checkpoint import load_checkpoint  # noqa: E402
from tiny_config import tiny_cfg as shared_tiny_cfg  # noqa: E402

COCO_KEYS = {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}


def tiny_cfg(cache_dir: str, **overrides):
    return shared_tiny_cfg(cache_dir, epochs=3, no_aug_epochs=1, **overrides)


class KillOnce:
    """Rank `rank` SIGKILLs its own process after global step `step`, unless `marker` exists."""

    def __init__(self, rank: int, step: int, marker: str):
        self.rank, self.step, self.marker = rank, step, marker

    def on_iter_end(self, trainer, step, metrics):
        if trainer.rank == self.rank and step == self.step and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonWeights:
    """NaN weights (the first step's loss is non-finite), after a line on stdout and one on stderr."""

    def on_train_start(self, trainer):
        import sys

        print(f"poisoning the weights of rank {trainer.rank}")
        print("a line on stderr", file=sys.stderr)
        with torch.no_grad():
            next(trainer.model.parameters()).fill_(float("nan"))


class RecordCpuUse:
    """Writes what the worker's trainer runs with (loader processes, torch threads) to `path`."""

    def __init__(self, path: str):
        self.path = path

    def on_train_start(self, trainer):
        import json

        Path(self.path).write_text(json.dumps({"plan": list(vars(trainer.cpu_plan).values()),
                                               "loaders": trainer.train_loader.loader.num_workers,
                                               "threads": torch.get_num_threads()}))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    from yolox_ray.data import resolve_dataset

    path = str(tmp_path_factory.mktemp("synthetic_cache"))
    resolve_dataset(tiny_cfg(path).data)  # generate once, before the workers race for it
    return path


def _final_state(result) -> dict:
    return load_checkpoint(result.checkpoint.path)


def test_bad_input_fails_before_ray_starts(cache_dir, tmp_path):
    import ray

    from yolox_ray.cluster.train import run_training

    assert not ray.is_initialized()
    with pytest.raises(ConfigError, match="not divisible by 3 workers"):
        run_training(tiny_cfg(cache_dir), workers=3, storage=str(tmp_path), track=False)
    with pytest.raises(ConfigError, match="data.root"):
        run_training(tiny_cfg(cache_dir, **{"data.root": str(tmp_path / "nope")}), storage=str(tmp_path), track=False)
    with pytest.raises(ConfigError, match="model.num_classes: the model has 80 classes but the synthetic dataset has 8"):
        run_training(tiny_cfg(cache_dir, **{"model.num_classes": 80}), storage=str(tmp_path), track=False)
    with pytest.raises(ConfigError, match="--cpus-per-worker"):
        run_training(tiny_cfg(cache_dir), cpus_per_worker=0, storage=str(tmp_path), track=False)
    assert not ray.is_initialized()


@pytest.mark.slow
def test_sigkill_mid_epoch_recovers_to_the_same_result(ray_cluster, cache_dir, tmp_path):
    from yolox_ray.cluster.train import make_trainer

    cfg = tiny_cfg(cache_dir)
    clean = make_trainer(cfg, run_name="clean", storage_path=str(tmp_path), num_workers=2, max_failures=0,
                         num_to_keep=1).fit()
    marker = tmp_path / "killed.marker"
    faulty = make_trainer(cfg, run_name="faulty", storage_path=str(tmp_path), num_workers=2, max_failures=2,
                          num_to_keep=1, worker_callbacks=[KillOnce(rank=1, step=3, marker=str(marker))]).fit()
    assert marker.exists(), "the fault was not injected"
    assert faulty.error is None

    # Reports and checkpoints of the clean run: every report has the pinned keys; checkpoints epoch_NNNN.
    m = clean.metrics
    assert m["epoch"] == 3 and m["evaluated"] is True
    assert {"epoch", "AP", "AP50", "best_AP", "evaluated", "loss", "lr"} | COCO_KEYS <= m.keys()
    assert Path(clean.checkpoint.path).name == "epoch_0003"
    kept = sorted(p.name for p in (tmp_path / "clean").glob("epoch_*"))
    assert "epoch_0003" in kept and len(kept) <= 2  # the latest + the best by AP

    a, b = _final_state(clean), _final_state(faulty)
    assert len(a["rng"]) == 2 and a["world_size"] == 2  # every worker's RNG state is in the checkpoint
    for key in ("model",):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k}"
    for k in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]), f"ema.{k}"
    assert (a["iteration"], a["ema"]["updates"], a["best_ap"]) == (b["iteration"], b["ema"]["updates"], b["best_ap"])
    for key in ("loss", "AP", "AP50", "best_AP", "lr"):
        assert clean.metrics[key] == faulty.metrics[key], key


@pytest.mark.slow
def test_nonfinite_loss_fails_the_run_with_the_message(ray_cluster, cache_dir, tmp_path):
    from yolox_ray.cluster.train import make_trainer

    log = tmp_path / "logs" / "nan.log"
    trainer = make_trainer(tiny_cfg(cache_dir), run_name="nan", storage_path=str(tmp_path), num_workers=1,
                           max_failures=0, worker_callbacks=[PoisonWeights()], log_path=str(log))
    with pytest.raises(Exception, match=r"non-finite loss at iteration 0") as info:
        trainer.fit()
    assert "obj=" in str(info.value)
    # The worker's output and its traceback are in its log file (Ray keeps them on the worker's node).
    text = log.read_text()
    assert "Train worker rank 0 on node" in text
    assert "poisoning the weights of rank 0" in text and "a line on stderr" in text
    assert "Traceback (most recent call last)" in text and "NonFiniteLossError: non-finite loss at iteration 0" in text
    assert text.index("poisoning") < text.index("Traceback")


def test_error_summary_names_the_failing_rank_and_its_exception():
    from ray.train import WorkerGroupError

    from yolox_ray.cluster.train import error_summary, rank_log_path

    error = WorkerGroupError("rank 1 traceback ...", {1: ValueError("bad value\nsecond line"), 3: KeyError("k")})
    assert error_summary(error) == "rank 1: ValueError: bad value"
    assert error_summary(RuntimeError("crashed")) == "RuntimeError: crashed"
    assert error_summary("Traceback ...\n  File x\nOSError: disk full\n\n") == "OSError: disk full"
    assert error_summary(None) == "unknown error"
    assert rank_log_path("/s/logs/trial_a.log", 0) == Path("/s/logs/trial_a.log")
    assert rank_log_path("/s/logs/trial_a.log", 2) == Path("/s/logs/trial_a.rank2.log")


def test_worker_fits_its_loaders_and_threads_in_cpus_per_worker(ray_cluster, cache_dir, tmp_path):
    import json

    from yolox_ray.cluster.train import make_trainer

    record = tmp_path / "cpu_use.json"
    cfg = tiny_cfg(cache_dir, **{"data.workers": 2, "train.epochs": 1, "train.no_aug_epochs": 0, "train.warmup_epochs": 0,
                                 "train.max_iters": 1})
    make_trainer(cfg, run_name="cpus", storage_path=str(tmp_path), num_workers=1, cpus_per_worker=2,
                 max_failures=0, worker_callbacks=[RecordCpuUse(str(record))]).fit()
    seen = json.loads(record.read_text())
    assert seen == {"plan": [2, 0, 2], "loaders": 0, "threads": 2}  # 2 CPUs: data in-process, 2 threads


@pytest.mark.slow
def test_run_training_prints_progress_and_a_rerun_resumes(ray_cluster, cache_dir, tmp_path):
    import io

    from yolox_ray.cluster.train import run_training

    cfg = tiny_cfg(cache_dir, **{"train.epochs": 2, "train.no_aug_epochs": 0})
    out = io.StringIO()
    first = run_training(cfg, storage=str(tmp_path), name="rerun", track=False, out=out)
    text = out.getvalue()
    assert [m["epoch"] for m in first["history"]] == [1, 2]
    assert "epoch   1/2" in text and "epoch   2/2" in text and "[eval]" in text
    assert f"latest checkpoint: {tmp_path}/rerun/epoch_0002" in text
    assert first["AP50"] == first["history"][-1]["AP50"]

    # Same name, longer schedule: Ray hands the worker epoch_0002 and only epoch 3 runs.
    longer = tiny_cfg(cache_dir, **{"train.epochs": 3, "train.no_aug_epochs": 0})
    second = run_training(longer, storage=str(tmp_path), name="rerun", track=False, out=io.StringIO())
    assert [m["epoch"] for m in second["history"]] == [3]
    assert load_checkpoint(second["checkpoint"])["iteration"] == 6


def test_epoch_line_shows_the_workers_epoch_seconds_not_the_drivers_poll_clock():
    import time

    from yolox_ray.cluster.train import format_epoch_line

    long_ago = time.perf_counter() - 40.0  # the driver's clock: 40 s since the previous report
    line = format_epoch_line({"epoch": 3, "loss": 1.0, "epoch_seconds": 17.94}, 8, long_ago)
    assert " 17.9 s" in line and "40." not in line
    # without the worker's figure (an older checkpoint's metrics) the driver's clock is the fallback
    assert " 40." in format_epoch_line({"epoch": 3, "loss": 1.0}, 8, long_ago)
