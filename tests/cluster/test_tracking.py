"""MLflow tracking against a real `mlflow server` on a temporary SQLite store, with the real engine."""

from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from yolox_ray.cluster import tracking
from yolox_ray.config import apply_overrides, experiment_preset, load_yaml, to_flat_dict

pytestmark = pytest.mark.slow  # one server start (~15-30 s on a loaded 2-core box)

TINY = {
    "model.width": 0.125, "model.num_classes": 8, "data.input_size": [128, 128], "data.test_size": [128, 128],
    "data.random_size": [4, 4], "data.synthetic_train": 16, "data.synthetic_val": 8, "data.synthetic_size": 128,
    "data.workers": 0, "train.epochs": 3, "train.warmup_epochs": 1, "train.no_aug_epochs": 1,
    "train.max_iters": 2, "train.batch_size": 4, "train.print_interval": 1, "train.eval_interval": 2,
}




@pytest.fixture(autouse=True)
def one_torch_thread():
    # The box is shared: with 2 intra-op threads on 2 loaded cores a tiny step is ~10x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(tmp_path: Path, **extra):
    over = dict(TINY, **{"data.cache_dir": str(tmp_path / "data_cache")})
    over.update(extra)
    return apply_overrides(experiment_preset("yolox_nano"), over)


def history(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_server_is_local_sqlite_backed_and_reused(server):
    assert server.uri.startswith("http://127.0.0.1:")
    assert tracking.server_healthy(server.uri)
    assert (server.root / "mlflow.db").is_file()
    record = json.loads((server.root / "server.json").read_text())
    assert record["pid"] == server.pid and record["uri"] == server.uri
    again = tracking.start_server(server.root)  # reused, not a second server
    assert (again.pid, again.uri) == (server.pid, server.uri)


def test_study_and_trial_runs_are_nested_and_reattached(server, tmp_path):
    study_dir = tmp_path / "study"
    parent = tracking.ensure_study_run(server.uri, study="nest", study_dir=study_dir, tags={"searcher": "grid"})
    t1 = tracking.ensure_trial_run(parent, "aaaa_00000", run_name="r1", tags={"study": "nest", "row": "x", "seed": 0})
    t2 = tracking.ensure_trial_run(parent, "aaaa_00001", run_name="r2", tags={"study": "nest", "row": "y", "seed": 1})
    assert t1 != t2
    client = tracking.client_for(server.uri)
    tracking.finish_run(server.uri, t1, "FAILED")

    # A restarted driver: same study dir -> same parent; same trial id -> same child, RUNNING again.
    parent2 = tracking.ensure_study_run(server.uri, study="nest", study_dir=study_dir)
    assert parent2 == parent
    assert tracking.ensure_trial_run(parent2, "aaaa_00000", run_name="r1", tags={}) == t1
    assert client.get_run(t1).info.status == "RUNNING"

    children = tracking.child_runs(server.uri, parent.experiment_id, parent.run_id)
    assert sorted(r.info.run_id for r in children) == sorted([t1, t2])
    by_id = {r.info.run_id: r for r in children}
    assert by_id[t2].data.tags["mlflow.parentRunId"] == parent.run_id
    assert (by_id[t2].data.tags["row"], by_id[t2].data.tags["seed"], by_id[t2].data.tags["study"]) == ("y", "1", "nest")
    assert client.get_run(parent.run_id).data.tags["searcher"] == "grid"
    # A different study directory is a different study: a new parent run.
    other = tracking.ensure_study_run(server.uri, study="nest", study_dir=tmp_path / "elsewhere")
    assert other.run_id != parent.run_id


def test_engine_logger_writes_params_metrics_and_artifacts_and_resumes_into_the_same_run(server, tmp_path):
    from yolox_ray.engine import Trainer

    parent = tracking.ensure_study_run(server.uri, study="logger", study_dir=tmp_path / "study")
    run_id = tracking.ensure_trial_run(parent, "bbbb_00000", run_name="t", tags={})
    cfg = tiny_cfg(tmp_path)

    class StopAfter:  # a real interruption: keep the epoch-2 checkpoint, then abort the run
        def __init__(self):
            self.saved = None

        def on_epoch_end(self, trainer, epoch, metrics, checkpoint):
            if epoch == 2:
                self.saved = checkpoint
                raise KeyboardInterrupt

    class KeepEMA:  # the EMA weights each epoch ended with, to compare with the uploaded file
        def __init__(self):
            self.ema = {}

        def on_epoch_end(self, trainer, epoch, metrics, checkpoint):
            self.ema[epoch] = {k: v.clone() for k, v in checkpoint["ema"]["module"].items()}

    stopper, kept = StopAfter(), KeepEMA()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="MLflow logging")  # a failed MLflow call would warn
        with pytest.raises(KeyboardInterrupt):
            Trainer(cfg, callbacks=[tracking.MLflowTrialLogger(server.uri, run_id), kept, stopper]).fit()
        assert stopper.saved is not None
        resumed = Trainer(cfg, callbacks=[tracking.MLflowTrialLogger(server.uri, run_id), kept], resume=stopper.saved)
        summary = resumed.fit()

    client = tracking.client_for(server.uri)
    run = client.get_run(run_id)
    # Params: the flattened resolved config, logged once (a second, different value would raise).
    expected = {k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in to_flat_dict(cfg).items()}
    assert run.data.params == expected
    # Iteration metrics: step = global iteration, 2 iterations per epoch, 3 epochs.
    assert [s for s, _ in history(client, run_id, "train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in history(client, run_id, "train/lr")] == [1, 2, 3, 4, 5, 6]
    assert history(client, run_id, "train/fg_per_gt")
    # Epoch metrics: step = epoch; COCO stats only after an evaluation (eval_interval 2 and the
    # last/no-aug epoch 3 -> epochs 2 and 3), each of the 12 present.
    assert [s for s, _ in history(client, run_id, "loss")] == [1, 2, 3]
    for key in tracking.COCO_STAT_KEYS:
        assert [s for s, _ in history(client, run_id, key)] == [2, 3], key
    ap3 = dict(history(client, run_id, "AP"))[3]
    assert ap3 == pytest.approx(summary["AP"])
    # Artifacts: resolved config, best checkpoint, curves.
    files = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "checkpoints", "curves.png"} <= files
    local = Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path)))
    assert load_yaml(local) == cfg
    ckpt_path = Path(client.download_artifacts(run_id, "checkpoints/best_ckpt.pth", str(tmp_path)))
    ckpt = torch.load(ckpt_path, weights_only=True)
    best_points = history(client, run_id, "best_checkpoint_AP")
    assert best_points and best_points[-1][1] == pytest.approx(max(v for _, v in history(client, run_id, "AP")))
    _check_weights_only_artifact(ckpt, ckpt_path, cfg, kept.ema, best_points[-1], client, run_id)
    png = Path(client.download_artifacts(run_id, "curves.png", str(tmp_path))).read_bytes()
    assert png.startswith(b"\x89PNG")
    # The run is left open for its owner (the Tune trial function) to close.
    assert run.info.status == "RUNNING"
    assert resumed.tracking_run_id == run_id


def _check_weights_only_artifact(ckpt, path, cfg, ema_by_epoch, best_point, client, run_id):
    """MLflow's best checkpoint is the EMA weights (+ config) of the best epoch, nothing of the training
    state, and `yolox-ray eval` reproduces the AP it was uploaded for."""
    from yolox_ray.cli import main
    from yolox_ray.engine.checkpoint import WEIGHTS_FORMAT
    from yolox_ray.models import build_model

    best_epoch, best_ap = best_point
    assert set(ckpt) == {"format", "config", "model", "from_ema", "epoch", "AP", "best_ap"}
    assert ckpt["format"] == WEIGHTS_FORMAT and ckpt["from_ema"] is True
    assert ckpt["epoch"] == best_epoch == int(client.get_run(run_id).data.tags["best_epoch"])
    assert ckpt["AP"] == pytest.approx(best_ap)
    assert ckpt["config"] == to_flat_dict(cfg)
    expected = ema_by_epoch[best_epoch]
    assert list(ckpt["model"]) == list(build_model(cfg.model).state_dict()) == list(expected)
    for key, value in expected.items():
        assert torch.equal(ckpt["model"][key], value), key
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["eval", "--weights", str(path)]) == 0
    ap_line = next(line for line in out.getvalue().splitlines() if "maxDets" in line)
    assert float(ap_line.rsplit("=", 1)[1]) == pytest.approx(best_ap, abs=5e-4)  # printed with 3 decimals


def test_logger_never_stops_training_when_the_server_is_gone(tmp_path, monkeypatch):
    from yolox_ray.cluster.ray_setup import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    logger = tracking.MLflowTrialLogger(f"http://127.0.0.1:{free_port()}", "0" * 32)

    class Stub:  # only what the logger reads from a trainer
        cfg = experiment_preset("yolox_nano")
        rank = 0
        epoch = 1

    start = time.monotonic()
    with pytest.warns(UserWarning, match="MLflow logging"):
        logger.on_train_start(Stub())
        logger.on_iter_end(Stub(), 1, {"loss": 1.0})
        logger.on_epoch_end(Stub(), 1, {"loss": 1.0, "evaluated": True, "AP": 0.5}, {"model": {}})
        logger.on_train_end(Stub(), {"AP": 0.5})
    assert time.monotonic() - start < 60


def test_ui_command_points_at_the_running_study_server(server, capsys, tmp_path):
    assert tracking.run_ui_cli(Namespace(port=0, mlruns=str(server.root))) == 0
    assert server.uri in capsys.readouterr().out
    assert tracking.run_ui_cli(Namespace(port=0, mlruns=str(tmp_path / "nothing"))) == 2


def _log_like_a_trial(uri: str, run_id: str, steps: int, keys: int) -> list[str]:
    """One trial's logging (8 numbers an iteration, an epoch every 100 steps) in its own process."""
    from types import SimpleNamespace

    trainer = SimpleNamespace(rank=0, epoch=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logger = tracking.MLflowTrialLogger(uri, run_id, flush_every_s=0.5, flush_every_n=200,
                                            log_checkpoints=False, log_curves=False)
        for step in range(1, steps + 1):
            logger.on_iter_end(trainer, step, {f"m{i}": step + i / 10 for i in range(keys)})
            if step % 100 == 0:
                logger.on_epoch_end(trainer, step // 100, {"loss": float(step), "evaluated": False}, None)
        logger.on_train_end(trainer, {"AP": 0.5})
    return [str(w.message) for w in caught]


def test_eight_concurrent_trials_lose_no_metric_on_the_real_server(server):
    import multiprocessing

    from mlflow import MlflowClient

    client = MlflowClient(server.uri)
    experiment = tracking.get_or_create_experiment(client, "load-test")
    runs = [client.create_run(experiment, run_name=f"trial-{i}").info.run_id for i in range(8)]
    steps, keys = 300, 8
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        warned = pool.starmap(_log_like_a_trial, [(server.uri, run, steps, keys) for run in runs])
    assert warned == [[]] * 8  # no SQLite lock error, no failed batch, in any trial
    for run in runs:
        for i in range(keys):
            points = history(client, run, f"train/m{i}")
            assert points == [(s, s + i / 10) for s in range(1, steps + 1)], (run, i)
        assert [s for s, _ in history(client, run, "loss")] == [1, 2, 3]
        assert client.get_run(run).data.metrics["final/AP"] == 0.5


def test_a_hung_server_never_stalls_the_training_step(monkeypatch):
    # A socket that is listening but never answers: a request to it hangs until the HTTP timeout.
    # The iteration callback must return at once all the same (the sender thread is the one waiting).
    import socket

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    uri = f"http://127.0.0.1:{hung.getsockname()[1]}"
    from types import SimpleNamespace

    trainer = SimpleNamespace(rank=0, epoch=0)
    logger = tracking.MLflowTrialLogger(uri, "0" * 32, flush_every_n=1, log_checkpoints=False, log_curves=False)
    start = time.monotonic()
    for step in range(50):
        logger.on_iter_end(trainer, step, {"loss": 1.0})  # every call hands a batch to the sender
    returned_after = time.monotonic() - start
    assert logger._sender is not None and logger._sender.is_alive()
    assert logger._outbox.unfinished_tasks > 0  # the sender is still stuck on the hung server ...
    assert returned_after < 30  # ... while 50 steps went by (a blocking send would take 60 s for one)
    hung.close()  # the hung request now fails; the failure is a warning, never an exception
    with pytest.warns(UserWarning, match="MLflow logging"):
        logger.flush(wait=True)
