"""The training loop end to end on a tiny model: exact resume, lr per step, phase, budgets, NaN stop.

Tiny = yolox_nano at width 0.125, 128 px synthetic images, batch 4, 2 iterations per epoch,
data.workers=0; real model, loss, loader and COCO evaluation.
"""

from __future__ import annotations

import pytest
import torch

from yolox_ray.config import ConfigError
from yolox_ray.engine import NonFiniteLossError, Trainer
from yolox_ray.engine.checkpoint import load_checkpoint, save_checkpoint
from tiny_config import tiny_cfg


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core box OpenMP spinning makes 2 threads ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synthetic_cache"))


class Record:
    def __init__(self):
        self.iters: list[tuple[int, dict]] = []
        self.epochs: list[dict] = []

    def on_iter_end(self, trainer, step, metrics):
        self.iters.append((step, dict(metrics)))

    def on_epoch_end(self, trainer, epoch, metrics, checkpoint):
        assert metrics["epoch"] == epoch
        assert checkpoint is not None and checkpoint["epoch"] == epoch
        self.epochs.append(dict(metrics))


class _Stop(Exception):
    pass


class StopAfter:
    """Save the checkpoint of epoch `n` to `path`, then abort the run (a crash at the boundary)."""

    def __init__(self, n, path):
        self.n, self.path = n, path

    def on_epoch_end(self, trainer, epoch, metrics, checkpoint):
        if epoch == self.n:
            save_checkpoint(checkpoint, self.path)
            raise _Stop


def assert_same_state(a: dict, b: dict) -> None:
    for key in ("model",):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs"
    for k in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]), f"ema.{k} differs"
    assert a["ema"]["updates"] == b["ema"]["updates"]
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"])
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == [g["lr"] for g in b["optimizer"]["param_groups"]]
    assert (a["epoch"], a["iteration"], a["best_ap"]) == (b["epoch"], b["iteration"], b["best_ap"])


@pytest.fixture(scope="module")
def full_run(cache_dir):
    cfg = tiny_cfg(cache_dir)
    rec = Record()
    trainer = Trainer(cfg, callbacks=[rec])
    summary = trainer.fit()
    return cfg, rec, summary, trainer.state_dict()


def test_lr_per_step_and_phase(full_run):
    cfg, rec, summary, state = full_run
    # base = 0.01/64 * 4 = 0.000625, min = 3.125e-5; I = 2: T_w = 2, T = 8, T_na = 4, cosine over [2, 4].
    # The lr reported after step s is the one written for step s + 1 (= schedule at t = s).
    want = {1: 0.00015625, 2: 0.000625, 3: 0.000328125, 4: 3.125e-5, 5: 3.125e-5, 8: 3.125e-5}
    got = {step: m["lr"] for step, m in rec.iters}
    assert sorted(got) == list(range(1, 9))
    for step, lr in want.items():
        assert got[step] == pytest.approx(lr, rel=1e-9), step
    # L1 only in the no-aug epochs (0-based 2, 3), i.e. steps 5..8.
    assert all(m["l1_loss"] == 0.0 for s, m in rec.iters if s <= 4)
    assert all(m["l1_loss"] > 0.0 for s, m in rec.iters if s > 4)
    assert [e["no_aug"] for e in rec.epochs] == [False, False, True, True]
    # Multi-scale: the first interval (3 steps) at input_size, later sides from 32*[3, 5].
    sides = [m["input_side"] for _, m in rec.iters]
    assert sides[:3] == [128.0] * 3
    assert set(sides) <= {96.0, 128.0, 160.0}


def test_epoch_metrics_and_summary(full_run):
    cfg, rec, summary, state = full_run
    assert [e["epoch"] for e in rec.epochs] == [1, 2, 3, 4]
    # eval_interval 2, then every no-aug epoch: evaluated after epochs 2, 3, 4.
    assert [e["evaluated"] for e in rec.epochs] == [False, True, True, True]
    assert rec.epochs[0]["AP"] == 0.0 and rec.epochs[0]["AP50"] == 0.0 and "AP75" not in rec.epochs[0]
    for e in rec.epochs[1:]:
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"} <= e.keys()
        assert 0.0 <= e["AP"] <= e["AP50"] <= 1.0
    assert rec.epochs[-1]["best_AP"] == max(e["AP"] for e in rec.epochs)
    assert summary["epochs"] == 4 and summary["iterations"] == 8
    assert summary["AP"] == rec.epochs[-1]["AP"] and summary["stopped_early"] is None
    assert state["ema"]["updates"] == 8
    assert len(state["rng"]) == 1


@pytest.mark.parametrize("stop_after", [2, 3], ids=["before_no_aug_switch", "after_no_aug_switch"])
def test_resume_is_bitwise_exact(full_run, cache_dir, tmp_path, stop_after):
    cfg, rec, summary, reference = full_run
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(_Stop):
        Trainer(cfg, callbacks=[StopAfter(stop_after, path)]).fit()
    state = load_checkpoint(path)  # weights_only=True
    assert state["epoch"] == stop_after and state["iteration"] == 2 * stop_after

    rec2 = Record()
    resumed = Trainer(cfg, callbacks=[rec2], resume=path)
    summary2 = resumed.fit()
    assert_same_state(resumed.state_dict(), reference)
    assert [e["epoch"] for e in rec2.epochs] == list(range(stop_after + 1, 5))
    for a, b in zip(rec2.epochs, rec.epochs[stop_after:]):
        for key in ("loss", "AP", "AP50", "best_AP", "lr", "l1_loss"):
            assert a[key] == b[key], key
    assert summary2["AP"] == summary["AP"]


def test_nonfinite_loss_stops_with_terms_and_iteration(cache_dir):
    class Poison:
        def on_train_start(self, trainer):
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    trainer = Trainer(tiny_cfg(cache_dir), callbacks=[Poison()])
    before = {k: v.detach().clone() for k, v in trainer.model.head.named_parameters()}
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at iteration 0 .*iou=.*obj=.*cls="):
        trainer.fit()
    assert trainer.iteration == 0  # no optimizer step was taken on the bad loss
    after = dict(trainer.model.head.named_parameters())
    assert all(torch.equal(before[k], after[k]) for k in before)  # no step on the bad loss


def test_time_budget_stops_early_and_evaluates(cache_dir):
    rec = Record()
    summary = Trainer(tiny_cfg(cache_dir, **{"train.max_train_seconds": 1e-3}), callbacks=[rec]).fit()
    assert summary["stopped_early"] == "max_train_seconds"
    assert summary["iterations"] == 1 and summary["epochs"] == 1
    assert rec.epochs[-1]["evaluated"]


def test_max_iters_caps_epoch_length(cache_dir):
    rec = Record()
    cfg = tiny_cfg(cache_dir, **{"train.epochs": 2, "train.no_aug_epochs": 0, "train.warmup_epochs": 0,
                                 "train.max_iters": 1, "train.ema": False})
    summary = Trainer(cfg, callbacks=[rec]).fit()
    assert summary["iterations"] == 2
    assert [s for s, _ in rec.iters] == [1, 2]


def test_bad_settings_fail_before_training(cache_dir):
    with pytest.raises(ConfigError, match="not divisible"):
        Trainer(tiny_cfg(cache_dir, **{"train.batch_size": 5}), world_size=2)
    with pytest.raises(ConfigError, match="model.num_classes"):
        Trainer(tiny_cfg(cache_dir, **{"model.num_classes": 80}))


def test_model_cost_probe_reports_every_epoch_and_changes_nothing_else(full_run, cache_dir):
    """A multi-objective study's probe: the costs in every epoch's metrics, and the run's state
    bitwise equal to the run without it (the probe runs before seeding and uses its own generator)."""
    from yolox_ray.engine.model_cost import ModelCostProbe
    from yolox_ray.models import build_model, count_gflops

    cfg, rec, summary, reference = full_run
    rec2 = Record()
    threads = torch.get_num_threads()
    trainer = Trainer(cfg, callbacks=[ModelCostProbe(("params", "gflops", "latency_ms")), rec2])
    trainer.fit()
    assert_same_state(trainer.state_dict(), reference)
    assert [e["loss"] for e in rec2.epochs] == [e["loss"] for e in rec.epochs]
    assert torch.get_num_threads() == threads
    # Learnable tensors of the state dict (BN running statistics are buffers, not parameters).
    weights = sum(v.numel() for k, v in build_model(cfg.model).state_dict().items()
                  if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    first = rec2.epochs[0]
    assert first["params"] == weights
    assert first["gflops"] == count_gflops(build_model(cfg.model), cfg.data.test_size)
    assert first["latency_ms"] > 0
    for e in rec2.epochs:  # measured once, carried by every epoch (what Tune and Optuna see last)
        assert (e["params"], e["gflops"], e["latency_ms"]) == (first["params"], first["gflops"], first["latency_ms"])
    assert not any(k in e for e in rec.epochs for k in ("params", "gflops", "latency_ms"))
    with pytest.raises(ValueError, match="unknown model costs"):
        ModelCostProbe(("latency",))


def test_latency_is_a_median_of_timed_forwards_on_the_models_device():
    from yolox_ray.models import build_model, measure_latency_ms

    model = build_model("yolox_nano", 8)
    model.train()
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append((tuple(i[0].shape), m.training, torch.is_grad_enabled())))
    rng = torch.get_rng_state()
    ms = measure_latency_ms(model, (96, 128), warmup=2, iters=3)
    assert ms > 0 and len(calls) == 5
    assert all(c == ((1, 3, 96, 128), False, False) for c in calls)  # batch 1, eval mode, no autograd
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    with pytest.raises(ValueError, match="multiples of 32"):
        measure_latency_ms(model, 100)


class InputsSeen:
    """Forward hook on the model: the memory format of each batch and the dtype of each raw output."""

    def __init__(self, model):
        self.channels_last: list[bool] = []
        self.out_dtypes: list[torch.dtype] = []
        model.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        if module.training:
            self.channels_last.append(args[0].is_contiguous(memory_format=torch.channels_last))
            self.out_dtypes.append(output.dtype)


def _one_step(cache_dir, **overrides):
    """One optimizer step; returns the trainer, what its forward hook saw, the step's loss and each
    float tensor's change over the step (weights and BN running statistics)."""
    cfg = tiny_cfg(cache_dir, **{"train.epochs": 1, "train.no_aug_epochs": 0, "train.warmup_epochs": 0,
                                 "train.max_iters": 1, "train.ema": False, "train.eval_interval": 10, **overrides})
    rec = Record()
    trainer = Trainer(cfg, callbacks=[rec])
    seen = InputsSeen(trainer.model)
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items() if v.is_floating_point()}
    trainer.fit()
    after = trainer.model.state_dict()
    return trainer, seen, rec.iters[0][1]["loss"], {k: after[k] - v for k, v in before.items()}


def test_channels_last_takes_the_same_step_to_float32_rounding(cache_dir):
    """NHWC convolutions sum in another order (about 1e-6 relative per convolution, as NCHW's 3e-7);
    the loss agrees closely, and the step's updates agree up to what that does to gradients that are
    sums with cancellation (BN weights): measured median 3e-3, largest 3e-2 of each tensor's update."""
    nhwc, seen, loss, update = _one_step(cache_dir, **{"train.channels_last": True})
    _, seen_default, loss_default, update_default = _one_step(cache_dir, **{"train.channels_last": False})
    convs = [p for p in nhwc.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                         for p in convs if p.shape[1] > 1 and p.shape[-1] > 1)  # else both layouts coincide
    assert seen.channels_last == [True] and seen_default.channels_last == [False]
    assert loss == pytest.approx(loss_default, rel=1e-4)
    rel = sorted(float((update[k] - b).abs().max() / b.abs().max().clamp_min(1e-20)) for k, b in update_default.items())
    assert rel[len(rel) // 2] < 1e-2 and rel[-1] < 0.1


def test_amp_on_cpu_autocasts_the_model_to_bfloat16_without_a_loss_scaler(cache_dir):
    amp, seen, loss, _ = _one_step(cache_dir, **{"train.amp": True})
    _, seen_fp32, loss_fp32, _ = _one_step(cache_dir)
    assert seen.out_dtypes == [torch.bfloat16] and seen_fp32.out_dtypes == [torch.float32]
    assert not amp.scaler.is_enabled()
    assert all(p.dtype == torch.float32 for p in amp.model.parameters())  # master weights stay float32
    assert loss == pytest.approx(loss_fp32, rel=0.05)  # bf16 rounding of the same model and batch
