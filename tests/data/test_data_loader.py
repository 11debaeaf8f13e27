"""Loaders: deterministic sharded order, bitwise-reproducible batches across restarts and worker
counts, phase switching at the exact epochs, multi-scale helpers, validation metadata."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest
import torch

from yolox_ray.config import DataConfig, ExperimentConfig, TrainConfig
from yolox_ray.data import (COCODataset, DataWarning, EpochBatchSampler, build_train_loader, build_val_loader,
                            draw_multiscale_side, resize_batch)
from yolox_ray.data.transforms import letterbox
from yolox_ray.data.synthetic import TRAIN_ANN, VAL_ANN


@pytest.fixture(scope="module")
def train_set(small_synthetic):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return COCODataset(small_synthetic / TRAIN_ANN, small_synthetic / "train2017")


def _cfg(**data) -> ExperimentConfig:
    base = dict(input_size=(128, 128), test_size=(160, 160), workers=0)
    base.update(data)
    return ExperimentConfig(data=DataConfig(**base),
                            train=TrainConfig(epochs=4, no_aug_epochs=1, warmup_epochs=1, batch_size=4, seed=7))


def _batches(loader, epoch, start_iter=0):
    loader.set_epoch(epoch, start_iter)
    return [(im.clone(), lab.clone()) for im, lab in loader]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_sampler_shards_like_distributed_sampler():
    n, ws, bs = 10, 4, 2
    samplers = [EpochBatchSampler(n, bs, seed=3, rank=r, world_size=ws, train_cfg=TrainConfig()) for r in range(ws)]
    for s in samplers:
        s.set_epoch(5)
    per_rank = [[k[0] for batch in s for k in batch] for s in samplers]
    assert [len(p) for p in per_rank] == [3] * 4 and [len(s) for s in samplers] == [2] * 4
    order = samplers[0].order(5).tolist()
    assert sorted(order[:10]) == list(range(10)) and order[10:] == order[:2]  # padded with its head
    assert sorted(sum(per_rank, [])) == sorted(order)
    assert all(per_rank[r] == order[r::ws] for r in range(ws))
    # Deterministic in (seed, epoch); another epoch or seed gives another order.
    assert samplers[0].order(5).tolist() == EpochBatchSampler(n, bs, 3, 0, ws, TrainConfig()).order(5).tolist()
    assert samplers[0].order(6).tolist() != order[:10] + order[:2] or samplers[0].order(7).tolist() != order
    assert EpochBatchSampler(n, bs, 4, 0, ws, TrainConfig()).order(5).tolist() != order


def test_batches_and_lengths(train_set):
    cfg = _cfg()
    loader = build_train_loader(cfg, train_set, rank=1, world_size=2)
    assert len(loader) == math.ceil(math.ceil(24 / 2) / 2)  # per-rank batch = 4 // 2
    images, labels = next(iter(loader))
    assert images.shape == (2, 3, 128, 128) and images.dtype == torch.float32
    assert labels.shape == (2, 120, 5) and labels.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 255
    assert len(build_train_loader(cfg, train_set, batch_size=5)) == 5


def test_restart_and_worker_count_give_identical_batches(train_set):
    cfg = _cfg()
    first = build_train_loader(cfg, train_set)
    run = {e: _batches(first, e) for e in (0, 1, 2)}
    assert not _same(run[0], run[1])
    resumed = build_train_loader(cfg, train_set)  # a fresh process would build exactly this
    assert _same(_batches(resumed, 2), run[2])
    assert _same(_batches(resumed, 0), run[0])
    assert _same(_batches(resumed, 2, start_iter=3), run[2][3:])  # mid-epoch resume
    with_workers = build_train_loader(_cfg(workers=2), train_set)
    assert _same(_batches(with_workers, 1), run[1])
    assert _same(_batches(with_workers, 2), run[2])  # persistent workers follow set_epoch


def test_phase_switches_at_the_exact_epoch(train_set):
    cfg = _cfg(mosaic_prob=1.0, hsv_prob=0.0, flip_prob=0.0, enable_mixup=False)  # epochs=4, no_aug_epochs=1
    loader = build_train_loader(cfg, train_set)
    strong = []
    for epoch in range(4):
        loader.set_epoch(epoch)
        strong.append({k[1] for batch in loader.sampler for k in batch})
    assert strong == [{True}, {True}, {True}, {False}]

    sources = torch.stack([torch.from_numpy(letterbox(train_set.load(i)[0], (128, 128))[0]).permute(2, 0, 1).float()
                           for i in range(len(train_set))])

    def plain(batch) -> bool:  # no-aug images are exactly the letterboxed source images
        images, _ = batch
        return all(int((sources == img).flatten(1).all(1).sum()) == 1 for img in images)

    for resumed in (False, True):  # a loader built fresh at epoch 3 is in the same phase
        loader = build_train_loader(cfg, train_set) if resumed else loader
        assert plain(_batches(loader, 3)[0])
        assert not plain(_batches(loader, 2)[0])


def test_no_aug_labels_are_source_boxes_in_input_pixels(train_set):
    cfg = _cfg(hsv_prob=0.0, flip_prob=0.0)
    loader = build_train_loader(cfg, train_set, batch_size=24)
    loader.set_epoch(3)  # no-aug epoch
    keys = next(iter(loader.sampler))
    _, labels = next(iter(loader))
    for (index, _, _), lab in zip(keys, labels):
        img, boxes, classes = train_set.load(index)
        r = min(128 / img.shape[0], 128 / img.shape[1])
        keep = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * r > 1
        real = lab[lab[:, 3] > 0].numpy()
        np.testing.assert_allclose(real[:, 0], classes[keep])
        np.testing.assert_allclose(real[:, 1], (boxes[keep, 0] + boxes[keep, 2]) / 2 * r, rtol=1e-5)
        np.testing.assert_allclose(real[:, 4], (boxes[keep, 3] - boxes[keep, 1]) * r, rtol=1e-5)


def test_resize_batch_hand_worked():
    images = torch.full((2, 3, 64, 64), 50.0)
    labels = torch.zeros(2, 120, 5)
    labels[0, 0] = torch.tensor([3, 10, 20, 4, 8])
    out, lab = resize_batch(images, labels, (32, 96))
    assert out.shape == (2, 3, 32, 96) and torch.allclose(out, torch.tensor(50.0))
    assert lab[0, 0].tolist() == [3, 15, 10, 6, 4] and (lab[0, 1:] == 0).all() and (lab[1] == 0).all()
    assert labels[0, 0, 1] == 10  # input untouched
    img = torch.zeros(1, 1, 4, 4)
    img[..., :, 2:] = 8.0
    down, _ = resize_batch(img, torch.zeros(1, 1, 5), (2, 2))  # bilinear, align_corners=False: 2x2 averages
    assert down[0, 0].tolist() == [[0.0, 8.0], [0.0, 8.0]]


def test_draw_multiscale_side():
    cfg = DataConfig(input_size=(640, 640), multiscale_range=5)
    sides = {draw_multiscale_side(random.Random(s), cfg) for s in range(300)}
    assert sides == {(32 * k, 32 * k) for k in range(15, 26)}  # 480 ... 800 inclusive
    gen = torch.Generator().manual_seed(0)
    assert {draw_multiscale_side(gen, DataConfig(input_size=(416, 416), random_size=(10, 20)))[0]
            for _ in range(300)} == {32 * k for k in range(10, 21)}
    assert draw_multiscale_side(random.Random(0), DataConfig(input_size=(320, 640), random_size=(10, 10))) == (320, 640)
    with pytest.raises(TypeError, match="random.Random or torch.Generator"):
        draw_multiscale_side(np.random.default_rng(0), cfg)


def test_val_loader_metas(small_synthetic):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        val = COCODataset(small_synthetic / VAL_ANN, small_synthetic / "val2017")
    loader = build_val_loader(_cfg(), val, batch_size=3)
    seen = []
    for images, metas in loader:
        assert images.shape[1:] == (3, 160, 160) and images.dtype == torch.float32
        for image_id, (h, w), r in zip(metas["image_id"].tolist(), metas["hw"].tolist(), metas["ratio"].tolist()):
            i = val.image_ids.index(image_id)
            assert (h, w) == val.image_hw(i) and r == min(160 / h, 160 / w)
            seen.append(image_id)
    assert seen == val.image_ids and len(loader) == 3
