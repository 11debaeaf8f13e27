"""The augmentation phase is a pure function of the epoch with no off-by-one."""

from yolox_ray.config import TrainConfig
from yolox_ray.data.schedule import phase, should_evaluate


def test_exactly_the_last_no_aug_epochs_run_without_strong_aug():
    train = TrainConfig(epochs=300, no_aug_epochs=15)
    no_aug = [e for e in range(300) if not phase(e, train).strong_aug]
    assert no_aug == list(range(285, 300))
    assert all(phase(e, train).use_l1 for e in no_aug)
    assert not phase(284, train).use_l1


def test_zero_no_aug_epochs_never_switches():
    train = TrainConfig(epochs=10, warmup_epochs=1, no_aug_epochs=0)
    assert all(phase(e, train).strong_aug and not phase(e, train).use_l1 for e in range(10))


def test_eval_schedule():
    train = TrainConfig(epochs=30, warmup_epochs=1, no_aug_epochs=5, eval_interval=10)
    evaluated = [e for e in range(30) if should_evaluate(e, train)]
    assert evaluated == [9, 19, 25, 26, 27, 28, 29]
