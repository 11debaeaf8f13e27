"""The CPU plan of a training process (engine/resources.py) and that the trainer follows it."""

from __future__ import annotations

import pytest
import torch

from yolox_ray.engine import Trainer
from yolox_ray.engine.resources import CpuPlan, plan_cpus
from tiny_config import tiny_cfg


@pytest.mark.parametrize("cpus, data_workers, gpu, expected", [
    (1, 2, False, CpuPlan(1, 0, 1)),   # data in-process on <= 2 CPUs
    (2, 4, False, CpuPlan(2, 0, 2)),
    (2.5, 4, False, CpuPlan(2, 0, 2)),  # whole CPUs only
    (0.5, 2, False, CpuPlan(1, 0, 1)),  # a fractional share still runs one thread
    (3, 2, False, CpuPlan(3, 1, 2)),   # one loader keeps up with a CPU step; the rest are threads
    (8, 4, False, CpuPlan(8, 1, 7)),
    (8, 0, False, CpuPlan(8, 0, 8)),   # data.workers is an upper bound
    (1, 2, True, CpuPlan(1, 0, 1)),    # GPU: the CPUs are for data, one thread stays
    (4, 2, True, CpuPlan(4, 2, 2)),
    (4, 8, True, CpuPlan(4, 3, 1)),
])
def test_plan_follows_the_rule(cpus, data_workers, gpu, expected):
    plan = plan_cpus(cpus, data_workers, gpu)
    assert plan == expected
    assert plan.threads >= 1 and plan.data_workers <= data_workers
    assert plan.data_workers + plan.threads == plan.cpus  # never more than the worker was given


@pytest.mark.parametrize("cpus, workers", [(0, 1), (-1, 1), (2, -1)])
def test_plan_refuses_nonsense(cpus, workers):
    with pytest.raises(ValueError):
        plan_cpus(cpus, workers)


@pytest.fixture
def restore_threads():
    import cv2

    before = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(before[0])
    cv2.setNumThreads(before[1])


# cv2_threads: OpenCV's pool in the training process (it starts at 7 here): the torch threads when the data
# is in-process; sequential (setNumThreads(0), which reads back as 1) before loader processes fork.
@pytest.mark.parametrize("cpus, loaders, threads, cv2_threads", [(2, 0, 2, 2), (1, 0, 1, 1), (3, 1, 2, 1),
                                                                 (None, 2, None, 1)])
def test_trainer_applies_the_plan_to_threads_and_both_loaders(tmp_path, monkeypatch, restore_threads,
                                                              cpus, loaders, threads, cv2_threads):
    import cv2

    from yolox_ray import evaluation

    torch.set_num_threads(1)
    cv2.setNumThreads(7)
    cfg = tiny_cfg(str(tmp_path / "cache"), **{"data.workers": 2})
    trainer = Trainer(cfg, cpus=cpus)
    assert trainer.train_loader.loader.num_workers == loaders
    assert torch.get_num_threads() == (1 if threads is None else threads)  # None: left as it was
    assert cv2.getNumThreads() == cv2_threads
    seen = {}
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **kw: seen.update(kw))
    trainer._evaluate()
    assert seen["workers"] == loaders
