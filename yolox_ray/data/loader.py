"""Train and validation loaders: deterministic sharded order, per-sample seeds, torch DataLoader.

Every sample's randomness comes from a generator seeded by (seed, epoch, position in the epoch's
global order), carried with its index through the batch sampler.  So an epoch's batches are the
same bits whatever the number of worker processes and after any restart, and `set_epoch` on the
(main-process) batch sampler is all it takes to switch order and phase, even with persistent
workers.  Batches become float32 inside the worker processes, so the main process copies nothing.
"""

from __future__ import annotations

import math
from typing import Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from yolox_ray.config import DataConfig, ExperimentConfig, TrainConfig
from yolox_ray.data.coco import COCODataset
from yolox_ray.data.legacy import mixup_2021, random_perspective
from yolox_ray.data.mosaic import load_resized, mixup, mosaic, random_affine
from yolox_ray.data.schedule import phase
from yolox_ray.data.transforms import letterbox, to_chw, train_transform

SampleKey = tuple[int, bool, tuple[int, int, int]]  # (image index, strong aug allowed, seed words)


class TrainSamples(Dataset):
    """Map-style dataset over SampleKeys: Mosaic(+affine, MixUp) with mosaic_prob, then TrainTransform."""

    def __init__(self, source: COCODataset, cfg: DataConfig) -> None:
        self.source = source
        self.cfg = cfg
        self.size_hw = (int(cfg.input_size[0]), int(cfg.input_size[1]))
        self.labelled = np.array([i for i in range(len(source)) if len(source.targets(i)[0])], np.int64)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor]:
        index, strong, seed_words = key
        img, labels = self.sample(index, strong, np.random.default_rng(list(seed_words)))
        return torch.from_numpy(img), torch.from_numpy(labels)

    def sample(self, index: int, strong: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(CHW uint8 image, labels [max_labels, 5]) for one sample."""
        cfg = self.cfg
        use_mosaic = strong and rng.random() < cfg.mosaic_prob
        if use_mosaic and cfg.pipeline == "legacy_2021":
            img, boxes, classes = mosaic(self.source, index, self.size_hw, rng)
            img, boxes, classes = random_perspective(img, boxes, classes, self.size_hw, cfg, rng)
            if cfg.enable_mixup and len(boxes) and rng.random() < cfg.mixup_prob:
                img, boxes, classes = mixup_2021(img, boxes, classes, self.source, self.labelled, self.size_hw, cfg,
                                                 rng)
        elif use_mosaic:
            img, boxes, classes = mosaic(self.source, index, self.size_hw, rng)
            if cfg.mosaic_prefilter:
                keep = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) > cfg.min_box_size
                boxes, classes = boxes[keep], classes[keep]
            img, boxes = random_affine(img, boxes, self.size_hw, cfg, rng)
            if cfg.enable_mixup and len(boxes) and rng.random() < cfg.mixup_prob:
                img, boxes, classes = mixup(img, boxes, classes, self.source, self.labelled, self.size_hw, cfg, rng)
        else:
            img, boxes, classes = load_resized(self.source, index, self.size_hw)
        return train_transform(img, boxes, classes, self.size_hw, cfg, rng)


class EpochBatchSampler(Sampler):
    """Batches of SampleKeys for one rank: a seeded permutation per epoch, padded to a multiple of
    world_size like DistributedSampler, this rank's every world_size-th entry, in batches
    (last one partial)."""

    def __init__(self, num_samples: int, batch_size: int, seed: int, rank: int, world_size: int,
                 train_cfg: TrainConfig) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if batch_size < 1:
            raise ValueError(f"per-rank batch size must be >= 1, got {batch_size}")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.train_cfg = train_cfg
        self.per_rank = math.ceil(num_samples / world_size)
        self.epoch, self.start_iter = 0, 0

    def set_epoch(self, epoch: int, start_iter: int = 0) -> None:
        if epoch < 0 or start_iter < 0:
            raise ValueError(f"epoch and start_iter must be >= 0, got {epoch}, {start_iter}")
        self.epoch, self.start_iter = epoch, start_iter

    def __len__(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's global order (padded to per_rank·world_size by repeating its head)."""
        perm = np.random.default_rng([self.seed, epoch, 0x5A3]).permutation(self.num_samples)
        total = self.per_rank * self.world_size
        return np.resize(perm, total)  # repeats from the start when total > num_samples

    def __iter__(self) -> Iterator[list[SampleKey]]:
        epoch = self.epoch
        strong = phase(epoch, self.train_cfg).strong_aug
        order = self.order(epoch)
        positions = np.arange(self.rank, len(order), self.world_size)
        for b in range(self.start_iter, len(self)):
            chunk = positions[b * self.batch_size:(b + 1) * self.batch_size]
            yield [(int(order[p]), strong, (self.seed, epoch, int(p))) for p in chunk]


def _collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    # float32 here, i.e. in the worker process: the main process then receives it without a copy.
    return torch.stack([b[0] for b in batch]).float(), torch.stack([b[1] for b in batch])


def _fork_safe_cv2(workers: int) -> None:
    """With worker processes, make OpenCV single-threaded *before* they fork (as the official code
    does globally): a forked child that touches OpenCV's copied thread pool can hang forever, and the
    processes are the parallelism anyway.  (torch already uses one thread per worker.)"""
    if workers > 0:
        cv2.setNumThreads(0)


class TrainLoader:
    """Iterate `(images float32 [b, 3, H, W] BGR 0-255, labels float32 [b, max_labels, 5])`.

    Call `set_epoch(epoch)` before each epoch (order, and strong aug per `phase`);
    `set_epoch(epoch, start_iter)` resumes mid-epoch by skipping the first batches unseen.
    """

    def __init__(self, samples: TrainSamples, sampler: EpochBatchSampler, workers: int) -> None:
        self.samples, self.sampler = samples, sampler
        _fork_safe_cv2(workers)
        self.loader = DataLoader(samples, batch_sampler=sampler, num_workers=workers, collate_fn=_collate,
                                 persistent_workers=workers > 0, prefetch_factor=2 if workers else None)

    def set_epoch(self, epoch: int, start_iter: int = 0) -> None:
        self.sampler.set_epoch(epoch, start_iter)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.loader)


def build_train_loader(cfg: ExperimentConfig, dataset: COCODataset, rank: int = 0, world_size: int = 1,
                       seed: int | None = None, batch_size: int | None = None,
                       workers: int | None = None) -> TrainLoader:
    """The training loader for one rank; per-rank batch = train.batch_size // world_size and
    `workers` = data.workers by default (the trainer passes its `engine.resources` plan)."""
    if batch_size is None:
        if cfg.train.batch_size < world_size:
            raise ValueError(f"train.batch_size {cfg.train.batch_size} is smaller than world_size {world_size}")
        batch_size = cfg.train.batch_size // world_size
    seed = cfg.train.seed if seed is None else seed
    samples = TrainSamples(dataset, cfg.data)
    if len(samples.labelled) == 0:
        raise ValueError(f"{dataset.ann_file}: no image has a box; nothing to train on")
    sampler = EpochBatchSampler(len(dataset), batch_size, seed, rank, world_size, cfg.train)
    return TrainLoader(samples, sampler, cfg.data.workers if workers is None else workers)


# ---------------------------------------------------------------------------------------------
# Validation


class ValSamples(Dataset):
    """Letterboxed validation images at test_size with (image id, original h, w, ratio)."""

    def __init__(self, source: COCODataset, size_hw: tuple[int, int]) -> None:
        self.source, self.size_hw = source, (int(size_hw[0]), int(size_hw[1]))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        img, _, _ = self.source.load(i)
        out, r = letterbox(img, self.size_hw)
        return torch.from_numpy(to_chw(out)), self.source.image_ids[i], img.shape[0], img.shape[1], r


def _val_collate(batch):
    images = torch.stack([b[0] for b in batch]).float()
    metas = {
        "image_id": torch.tensor([b[1] for b in batch], dtype=torch.int64),
        "hw": torch.tensor([(b[2], b[3]) for b in batch], dtype=torch.int64),
        "ratio": torch.tensor([b[4] for b in batch], dtype=torch.float64),
    }
    return images, metas


class ValLoader:
    """Iterate `(images float32 [b, 3, H, W], metas)`; metas = {"image_id" [b], "hw" [b, 2], "ratio" [b]}."""

    def __init__(self, samples: ValSamples, batch_size: int, workers: int) -> None:
        self.samples = samples
        _fork_safe_cv2(workers)
        self.loader = DataLoader(samples, batch_size=batch_size, shuffle=False, num_workers=workers,
                                 collate_fn=_val_collate)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


def build_val_loader(cfg: ExperimentConfig, dataset: COCODataset, batch_size: int | None = None,
                     workers: int | None = None) -> ValLoader:
    batch_size = cfg.eval.batch_size if batch_size is None else batch_size
    workers = cfg.data.workers if workers is None else workers
    return ValLoader(ValSamples(dataset, cfg.data.test_size), batch_size, workers)
