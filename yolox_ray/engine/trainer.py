"""The YOLOX training loop (§6), framework-free: plain torch + torch.distributed.

One `Trainer` per process. Under DDP (a process group already initialised, e.g. by Ray Train) every
rank runs the same loop on its shard; rank 0 alone keeps the EMA, evaluates and builds checkpoints.
Everything that varies with time is a pure function of (config, seed, epoch, iteration): the lr,
the augmentation phase, the multi-scale side, the loader order. Together with the RNG states saved
at each epoch boundary this makes a resumed run bitwise identical to an uninterrupted one (CPU).

The trainer reports through optional callback methods (see `Callback`); Ray and MLflow live in
`yolox_ray/cluster/`, which implements them.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from yolox_ray.config import ConfigError, ExperimentConfig, to_flat_dict
from yolox_ray.data import COCODataset, build_train_loader, draw_multiscale_side, resize_batch, resolve_dataset
from yolox_ray.data.schedule import phase, should_evaluate
from yolox_ray.engine.checkpoint import FORMAT, get_rng_state, load_checkpoint, set_rng_state
from yolox_ray.engine.ema import ModelEMA
from yolox_ray.engine.optim import LRSchedule, build_optimizer, set_lr
from yolox_ray.engine.resources import apply_cv2_threads, cpu_has_bf16, plan_cpus
from yolox_ray.losses import DIAGNOSTIC_SUMS, diagnostics_means
from yolox_ray.metrics import AP, AP50, AP50_LOW_CONF, AP_LOW_CONF, BEST_AP, COCO_STAT_KEYS, LOSS, TRAIN_SECONDS

# Below this final AP (a fraction) the trainer also reports AP at eval.low_conf_thresh.
LOW_AP = 0.01


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; training stops instead of going on silently."""


class Callback(Protocol):
    """Any subset of these methods; all run on every rank (check `trainer.rank` where it matters).

    on_train_start(trainer)
    on_iter_end(trainer, step, metrics)           every `print_interval` iterations; step = global
                                                  iterations done; metrics averaged over the interval
    on_epoch_end(trainer, epoch, metrics, checkpoint)   epoch = epochs completed (1-based);
                                                  checkpoint = full state dict on rank 0, else None
    on_train_end(trainer, summary)
    """


def multiscale_hw(cfg: ExperimentConfig, iteration: int) -> tuple[int, int]:
    """Input (H, W) for global `iteration`: `input_size` for the first interval, then a side
    32·randint(lo, hi) drawn per interval from (seed, interval index) alone, so every rank and a
    resumed run agree without communicating."""
    block = iteration // cfg.train.multiscale_interval
    if not cfg.train.multiscale or block == 0:
        return int(cfg.data.input_size[0]), int(cfg.data.input_size[1])
    return draw_multiscale_side(random.Random(cfg.train.seed * 1_000_003 + block), cfg.data)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class Trainer:
    """Train `cfg` on this rank. `resume`: a checkpoint dict or path (file or directory).

    `cpus`: the CPUs this process was given (Ray's `cpus_per_worker`); the loader processes and torch
    threads then follow `engine.resources.plan_cpus` (`self.cpu_plan`). None: `data.workers` loader
    processes and torch's thread count as they are (a bare engine run in a shell or test).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        callbacks: Iterable[Any] = (),
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
        resume: dict | str | Path | None = None,
        cpus: float | None = None,
    ):
        if cfg.train.batch_size % world_size:
            raise ConfigError(f"train.batch_size: {cfg.train.batch_size} is not divisible by {world_size} workers")
        self.cfg = cfg
        self.callbacks = list(callbacks)
        self.rank = rank
        self.world_size = world_size
        self.distributed = world_size > 1 and dist.is_available() and dist.is_initialized()
        if world_size > 1 and not self.distributed:
            raise RuntimeError("world_size > 1 needs an initialised torch.distributed process group")
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.amp = cfg.train.amp
        # float16 needs the loss scaler on CUDA; on CPU autocast runs in bfloat16, which keeps
        # float32's exponent range and needs no scaler.
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        if self.amp and self.device.type == "cpu" and not cpu_has_bf16():
            warnings.warn("train.amp: this CPU has no bfloat16 units (AVX-512 BF16 / AMX), so bfloat16 "
                          "autocast will be slower than float32 here", stacklevel=2)
        self.cpu_plan = plan_cpus(cpus, cfg.data.workers, self.device.type == "cuda") if cpus is not None else None
        if self.cpu_plan is not None:
            torch.set_num_threads(self.cpu_plan.threads)
            apply_cv2_threads(self.cpu_plan)
        self.data_workers = self.cpu_plan.data_workers if self.cpu_plan is not None else cfg.data.workers
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not cfg.train.deterministic
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        # Progress state (overwritten by a resume).
        self.epoch = 0  # next 0-based epoch to run == epochs completed
        self.iteration = 0  # global optimizer steps done
        self.best_ap = 0.0
        self.last_eval: dict[str, float] | None = None
        self.train_seconds = 0.0
        self.tracking_run_id: str | None = None
        self.stop_reason: str | None = None
        # Facts of this run that do not change per epoch (e.g. the model's measured cost, set by a
        # callback in on_train_start): merged into every epoch's metrics.
        self.run_metrics: dict[str, float] = {}

        self._build(resume)

    # ------------------------------------------------------------------------------------------
    # Construction

    def _build(self, resume: dict | str | Path | None) -> None:
        from yolox_ray.losses import YOLOXLoss
        from yolox_ray.models import build_model, load_backbone_weights

        cfg = self.cfg
        self.paths = resolve_dataset(cfg.data)
        self.train_set = COCODataset(self.paths.train_ann, self.paths.train_images, cfg.data.cache_images)
        if self.train_set.num_classes != cfg.model.num_classes:
            raise ConfigError(f"model.num_classes: the model has {cfg.model.num_classes} classes but "
                              f"{self.paths.train_ann} has {self.train_set.num_classes}")
        self._val_set = None  # built on first evaluation (rank 0 only)
        self.train_loader = build_train_loader(cfg, self.train_set, self.rank, self.world_size, cfg.train.seed,
                                               workers=self.data_workers)
        iters = len(self.train_loader)
        if cfg.train.max_iters is not None:
            iters = min(iters, cfg.train.max_iters)
        if self.distributed:  # every rank must run the same number of steps
            t = torch.tensor([iters], device=self._collective_device())
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
            iters = int(t.item())
        if iters < 1:
            raise ConfigError("data: the training split yields no batch for this rank")
        self.iters_per_epoch = iters
        self.schedule = LRSchedule.from_config(cfg.train, iters)

        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
        self.model = build_model(cfg.model)
        if cfg.model.backbone_weights:
            load_backbone_weights(self.model, cfg.model.backbone_weights)
        self.model = self.model.to(self.device)
        if cfg.train.channels_last:  # before the optimizer and EMA see the parameters
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = YOLOXLoss(cfg.loss, cfg.assign, cfg.model.num_classes)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp and self.amp_dtype == torch.float16)
        self.ema = ModelEMA(self.model, cfg.train.ema_decay, cfg.train.ema_ramp) if (
            cfg.train.ema and self.rank == 0) else None

        self._resume_rng: dict | None = None
        if resume is not None:
            state = resume if isinstance(resume, dict) else load_checkpoint(resume)
            self._load_state(state)

        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Buffers are not broadcast each step (as official); they are averaged at epoch ends.
            self.train_model: nn.Module = nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, broadcast_buffers=False)
        else:
            self.train_model = self.model

    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def _load_state(self, state: dict) -> None:
        if state.get("format") != FORMAT:
            raise ValueError("resume: not a yolox_ray training checkpoint (missing format tag)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise ValueError("resume: the checkpoint has no EMA state but train.ema is on")
            self.ema.load_state_dict(state["ema"])
        self.epoch = int(state["epoch"])
        self.iteration = int(state["iteration"])
        self.best_ap = float(state["best_ap"])
        self.last_eval = state.get("last_eval")
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.tracking_run_id = state.get("tracking_run_id")
        rngs = state.get("rng") or []
        self._resume_rng = rngs[self.rank] if self.rank < len(rngs) else None

    # ------------------------------------------------------------------------------------------
    # Loop

    def fit(self) -> dict[str, Any]:
        """Train to `train.epochs` (or a budget); returns the final summary."""
        self._emit("on_train_start", self)
        # Seed/restore after callbacks so nothing they do can shift the training RNG streams.
        if self._resume_rng is not None:
            set_rng_state(self._resume_rng)
        elif self.epoch == 0:
            seed_everything(self.cfg.train.seed + self.rank)
        else:  # resumed on more ranks than were saved
            seed_everything(self.cfg.train.seed + 1000 * self.epoch + self.rank)
        set_lr(self.optimizer, self.schedule.lr(self.iteration))

        self._attempt_start = time.perf_counter()
        self._seconds_before = self.train_seconds
        last_metrics: dict[str, Any] = {}
        while self.epoch < self.cfg.train.epochs and self.stop_reason is None:
            last_metrics = self._run_epoch(self.epoch)
        summary = self._summary(last_metrics)
        self._emit("on_train_end", self, summary)
        return summary

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        ph = phase(epoch, cfg.train)
        self.train_loader.set_epoch(epoch)
        self.train_model.train()
        epoch_start = time.perf_counter()
        sums: dict[str, float] = {}
        window: dict[str, float] = {}
        window_start = time.perf_counter()
        window_n = 0
        done = 0
        for images, labels in self.train_loader:
            step_metrics = self._train_step(images, labels, ph.use_l1, epoch, done)
            done += 1
            window_n += 1
            for k, v in step_metrics.items():
                sums[k] = sums.get(k, 0.0) + v
                window[k] = window.get(k, 0.0) + v
            if self.iteration % cfg.train.print_interval == 0:
                now = time.perf_counter()
                metrics = self._averaged(window, window_n)
                metrics.update(lr=self.optimizer.param_groups[0]["lr"], epoch=epoch + 1,
                               iter_in_epoch=done, iters_per_epoch=self.iters_per_epoch,
                               iter_time=(now - window_start) / window_n,
                               input_side=float(self._last_hw[0]))
                self._emit("on_iter_end", self, self.iteration, metrics)
                window, window_n, window_start = {}, 0, now
            if step_metrics["stop"] > 0:
                self.stop_reason = "max_train_seconds"
            if done >= self.iters_per_epoch or self.stop_reason is not None:
                break  # before fetching a batch that would not be used
        if done < self.iters_per_epoch and self.stop_reason is None:
            raise RuntimeError(f"the train loader ended after {done} of {self.iters_per_epoch} iterations")
        train_time = time.perf_counter() - epoch_start

        self._sync_norm_buffers()
        evaluated = should_evaluate(epoch, cfg.train) or self.stop_reason is not None
        eval_result = self._evaluate() if evaluated else None
        self.epoch = epoch + 1

        metrics = self._averaged(sums, max(done, 1))
        metrics.pop("stop", None)
        metrics.update(
            epoch=self.epoch,
            iteration=self.iteration,
            lr=self.optimizer.param_groups[0]["lr"],
            no_aug=not ph.strong_aug,
            epoch_seconds=time.perf_counter() - epoch_start,
            train_seconds_epoch=train_time,
            iter_time=train_time / max(done, 1),
            evaluated=eval_result is not None,
        )
        is_best = False
        if eval_result is not None and self.rank == 0:
            stats = {k: float(eval_result.stats[k]) for k in COCO_STAT_KEYS}
            is_best = self.last_eval is None or stats[AP] > self.best_ap
            self.best_ap = max(self.best_ap, stats[AP])
            self.last_eval = stats
            metrics.update(stats)
            metrics.update(forward_ms=float(eval_result.forward_ms), nms_ms=float(eval_result.nms_ms),
                           per_class_ap=eval_result.per_class_ap)
            low = self.cfg.eval.low_conf_thresh
            if (self.epoch == cfg.train.epochs and low is not None and stats[AP] < LOW_AP
                    and low < self.cfg.eval.conf_thresh):
                # A model whose scores are still below eval.conf_thresh shows AP 0 at that threshold; say
                # how much it has learned at the low threshold too (the final evaluation only).
                low_result = self._evaluate(conf_thresh=low)
                metrics[AP_LOW_CONF] = float(low_result.stats[AP])
                metrics[AP50_LOW_CONF] = float(low_result.stats[AP50])
        last = self.last_eval or {}
        metrics.update({AP: float(last.get(AP, 0.0)), AP50: float(last.get(AP50, 0.0)), BEST_AP: self.best_ap,
                        "is_best": is_best})
        self.train_seconds = self._seconds_before + (time.perf_counter() - self._attempt_start)
        metrics[TRAIN_SECONDS] = self.train_seconds  # the run so far, across resumes
        metrics.update(self.run_metrics)

        rngs = self._gather_rng()
        checkpoint = self.state_dict(rngs) if self.rank == 0 else None
        self._emit("on_epoch_end", self, self.epoch, metrics, checkpoint)
        return metrics

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor, use_l1: bool, epoch: int,
                    index: int) -> dict[str, float]:
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        hw = multiscale_hw(self.cfg, self.iteration)
        if tuple(images.shape[-2:]) != hw:
            images, labels = resize_batch(images, labels, hw)
        self._last_hw = hw
        if self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp else nullcontext()
        with autocast:
            raw = self.train_model(images)
            grid = self.model.anchor_grid(hw, self.device)
            out = self.loss_fn(raw, grid, labels, use_l1)

        # One small all-reduce per step: global means for logging, a shared non-finite check (so all
        # ranks stop together instead of hanging in the next collective) and the shared time budget.
        names = list(out.terms)  # same order on every rank (the loss builds it in code order)
        over_budget = (self.cfg.train.max_train_seconds is not None and
                       self._seconds_before + time.perf_counter() - self._attempt_start
                       >= self.cfg.train.max_train_seconds)
        diag = [out.diagnostics[k] for k in DIAGNOSTIC_SUMS]
        counts = torch.tensor(diag + [float(out.num_fg), float(out.num_gt), float(over_budget)], device=self.device)
        vec = torch.cat([torch.stack([out.total.detach().float()] + [out.terms[k].detach().float() for k in names]),
                         counts])
        if self.distributed:
            vec = vec.to(self._collective_device())
            dist.all_reduce(vec)
            vec[:-(3 + len(diag))] /= self.world_size
        values = vec.tolist()
        if not math.isfinite(values[0]):
            local = {"loss": float(out.total.detach())} | {k: float(out.terms[k].detach()) for k in names}
            terms = ", ".join(f"{k}={v:.6g}" for k, v in local.items())
            raise NonFiniteLossError(
                f"non-finite loss at iteration {self.iteration} (epoch {epoch + 1}, step {index + 1}/"
                f"{self.iters_per_epoch}, rank {self.rank}): {terms}; mean over ranks {values[0]}")

        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.total).backward()
        if self.cfg.train.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        self.iteration += 1
        set_lr(self.optimizer, self.schedule.lr(self.iteration))  # the lr of the next step (§6)

        metrics = {LOSS: values[0]}
        metrics.update({f"{k}_loss": v for k, v in zip(names, values[1:1 + len(names)])})
        metrics.update(zip(DIAGNOSTIC_SUMS, values[1 + len(names):1 + len(names) + len(diag)]))
        num_fg, num_gt, stop = values[-3:]
        metrics.update(num_fg=num_fg, num_gt=num_gt, stop=stop)
        return metrics

    @staticmethod
    def _averaged(sums: dict[str, float], n: int) -> dict[str, Any]:
        totals = ("num_fg", "num_gt", *DIAGNOSTIC_SUMS)
        out = {k: v / n for k, v in sums.items() if k not in totals}
        if "num_gt" in sums:
            out["fg_per_gt"] = sums["num_fg"] / max(sums["num_gt"], 1.0)
        if "num_fg" in sums:
            out.update(diagnostics_means(sums, sums["num_fg"]))
        return out

    # ------------------------------------------------------------------------------------------
    # Epoch-end pieces

    def _sync_norm_buffers(self) -> None:
        """Average BN running statistics over ranks so every replica (and the checkpoint) agrees."""
        if not self.distributed:
            return
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                for buf in (module.running_mean, module.running_var):
                    t = buf.to(self._collective_device())
                    dist.all_reduce(t)
                    buf.copy_(t / self.world_size)

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _evaluate(self, conf_thresh: float | None = None):
        """COCO evaluation of the EMA model on rank 0 (other ranks wait at the next collective);
        `conf_thresh` replaces eval.conf_thresh for this evaluation."""
        if self.rank != 0:
            return None
        from yolox_ray.evaluation import evaluate

        if self._val_set is None:
            self._val_set = COCODataset(self.paths.val_ann, self.paths.val_images, self.cfg.data.cache_images)
        model = self.eval_model()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                cfg = self.cfg if conf_thresh is None else replace(
                    self.cfg, eval=replace(self.cfg.eval, conf_thresh=conf_thresh))
                return evaluate(model, cfg=cfg, dataset=self._val_set, device=self.device, workers=self.data_workers)
        finally:
            model.train(was_training)

    def _gather_rng(self) -> list[dict]:
        mine = get_rng_state()
        if not self.distributed:
            return [mine]
        gathered: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(mine, gathered, dst=0)
        return gathered or []

    def state_dict(self, rngs: list[dict] | None = None) -> dict[str, Any]:
        """The full training state (see engine/checkpoint.py); tensors and plain containers only."""
        return {
            "format": FORMAT,
            "config": to_flat_dict(self.cfg),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "iters_per_epoch": self.iters_per_epoch,
            "sampler": {"epoch": self.epoch, "offset": 0},
            "rng": rngs if rngs is not None else [get_rng_state()],
            "world_size": self.world_size,
            "best_ap": self.best_ap,
            "last_eval": self.last_eval,
            "train_seconds": self.train_seconds,
            "tracking_run_id": self.tracking_run_id,
        }

    def _summary(self, last: dict[str, Any]) -> dict[str, Any]:
        ev = self.last_eval or {}
        return {
            "epochs": self.epoch,
            "iterations": self.iteration,
            AP: float(ev.get(AP, 0.0)),
            AP50: float(ev.get(AP50, 0.0)),
            BEST_AP: self.best_ap,
            LOSS: last.get(LOSS),
            TRAIN_SECONDS: self.train_seconds,
            "stopped_early": self.stop_reason,
            "stats": dict(ev),
        }

    def _emit(self, name: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, name, None)
            if fn is not None:
                fn(*args)
