"""`yolox-ray eval`: our training checkpoint (EMA weights + its own config) and an official-format .pth."""

from __future__ import annotations

import pytest
import torch

from yolox_ray.cli import main
from yolox_ray.engine import Trainer
from yolox_ray.engine.checkpoint import WEIGHTS_FORMAT, save_checkpoint, weights_file
from tiny_config import tiny_cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("eval_cli")
    cfg = tiny_cfg(str(tmp / "cache"), **{"train.epochs": 1, "train.no_aug_epochs": 0, "train.warmup_epochs": 0})
    states = []

    class Keep:
        def on_epoch_end(self, trainer, epoch, metrics, checkpoint):
            states.append((metrics, checkpoint))

    Trainer(cfg, callbacks=[Keep()]).fit()
    metrics, state = states[-1]
    ours = save_checkpoint(state, tmp / "ours.pt")
    official = tmp / "official.pth"
    torch.save({"model": state["ema"]["module"], "start_epoch": 1}, official)  # the model-zoo layout
    torch.save(weights_file(state), tmp / "weights.pth")  # what MLflow receives
    return cfg, metrics, ours, official


def _stats(text: str) -> list[float]:
    return [float(line.rsplit("=", 1)[1]) for line in text.splitlines() if "maxDets" in line]


def test_eval_our_checkpoint_matches_training_eval(trained, capsys):
    cfg, metrics, ours, _ = trained
    assert main(["eval", "--weights", str(ours), "eval.batch_size=2"]) == 0
    stats = _stats(capsys.readouterr().out)
    assert len(stats) == 12
    assert stats[0] == pytest.approx(metrics["AP"], abs=5e-4)  # printed with 3 decimals
    assert stats[1] == pytest.approx(metrics["AP50"], abs=5e-4)


def test_eval_official_layout_gives_the_same_numbers(trained, capsys):
    cfg, metrics, ours, official = trained
    assert main(["eval", "--weights", str(ours)]) == 0
    ours_out = _stats(capsys.readouterr().out)
    args = ["eval", "--weights", str(official), "--model", "yolox_nano", "model.width=0.125", "model.num_classes=8",
            "data.synthetic_train=8", "data.synthetic_val=4", "data.synthetic_size=128",
            f"data.cache_dir={cfg.data.cache_dir}", "data.test_size=[128,128]", "data.workers=0"]
    assert main(args) == 0
    assert _stats(capsys.readouterr().out) == ours_out


def test_eval_bad_inputs_are_clear(trained, tmp_path, capsys):
    cfg, metrics, ours, official = trained
    assert main(["eval", "--weights", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # official weights with the wrong architecture: the loader's mismatch report, as a config error
    assert main(["eval", "--weights", str(official), "--model", "yolox_s", "model.num_classes=8"]) == 2
    assert "does not fit this model" in capsys.readouterr().err


def test_weights_file_holds_only_the_ema_weights_and_evaluates_like_the_checkpoint(trained, capsys):
    _, _, ours, official = trained
    state = torch.load(ours, weights_only=True)
    small = torch.load(official.with_name("weights.pth"), weights_only=True)
    assert small["format"] == WEIGHTS_FORMAT and small["from_ema"] is True and small["epoch"] == state["epoch"]
    assert "optimizer" not in small and "rng" not in small and small["config"] == state["config"]
    assert list(small["model"]) == list(state["ema"]["module"])
    assert all(torch.equal(small["model"][k], v) for k, v in state["ema"]["module"].items())
    assert any(not torch.equal(state["model"][k], v) for k, v in state["ema"]["module"].items())  # EMA, not raw
    assert official.with_name("weights.pth").stat().st_size < 0.5 * ours.stat().st_size
    assert main(["eval", "--weights", str(ours)]) == 0
    ours_out = _stats(capsys.readouterr().out)
    assert main(["eval", "--weights", str(official.with_name("weights.pth"))]) == 0  # config from the file
    assert _stats(capsys.readouterr().out) == ours_out
