"""The augmentation phase as a pure function of the epoch.

Because it depends on nothing but (epoch, config), a resumed run is always in the same phase as an
uninterrupted one.  Exactly the last `no_aug_epochs` epochs run without Mosaic/MixUp and with the L1
loss.  (The official trainer switches one epoch early, so it runs no_aug_epochs + 1 epochs without
mosaic; we follow the paper's wording and the config name instead.)
"""

from __future__ import annotations

from dataclasses import dataclass

from yolox_ray.config import TrainConfig


@dataclass(frozen=True)
class Phase:
    strong_aug: bool  # Mosaic (and with it MixUp) may run, with their configured probabilities
    use_l1: bool  # the L1 loss term is on
    eval_every_epoch: bool  # evaluation runs after every epoch (the no-aug tail)


def phase(epoch: int, train: TrainConfig) -> Phase:
    """Phase of 0-based `epoch` for the schedule in `train`."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    no_aug = train.no_aug_epochs > 0 and epoch >= train.epochs - train.no_aug_epochs
    return Phase(strong_aug=not no_aug, use_l1=no_aug, eval_every_epoch=no_aug)


def should_evaluate(epoch: int, train: TrainConfig) -> bool:
    """Evaluate after 0-based `epoch`: every eval_interval epochs, every no-aug epoch, and the last."""
    return (
        (epoch + 1) % train.eval_interval == 0
        or phase(epoch, train).eval_every_epoch
        or epoch + 1 == train.epochs
    )
