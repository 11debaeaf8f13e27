"""The tiny training config the engine and Ray Train tests share (seconds per run on a CPU)."""

from __future__ import annotations

from yolox_ray.config import ExperimentConfig, apply_overrides, experiment_preset


def tiny_cfg(cache_dir: str, *, epochs: int = 4, no_aug_epochs: int = 2, **overrides) -> ExperimentConfig:
    """yolox_nano at width 0.125 on 8 synthetic 128 px images, batch 4 (2 iterations per epoch);
    `overrides` are dotted keys passed as keyword arguments, e.g. **{"train.max_iters": 3}."""
    base = {
        "model.width": 0.125, "model.num_classes": 8,
        "data.synthetic_train": 8, "data.synthetic_val": 4, "data.synthetic_size": 128, "data.cache_dir": cache_dir,
        "data.input_size": (128, 128), "data.test_size": (128, 128), "data.random_size": (3, 5),
        "data.workers": 0, "eval.batch_size": 4,
        "train.epochs": epochs, "train.warmup_epochs": 1, "train.no_aug_epochs": no_aug_epochs, "train.batch_size": 4,
        "train.eval_interval": 2, "train.multiscale_interval": 3, "train.print_interval": 1, "train.ema_ramp": 5.0,
    }
    base.update(overrides)
    return apply_overrides(experiment_preset("yolox_nano"), base)
