"""Training-data throughput: full Mosaic+MixUp pipeline vs the no-aug pipeline at 640 and 416.

Run by hand:  python benchmarks/data_speed.py [--images 64] [--seconds 5] [--workers 0] [--cache-images]

Uses synthetic JPEGs generated at 640 px (COCO-like image sizes), so every sample pays a real JPEG
decode and resize.  Prints images/s and ms/image per (pipeline, size), the ratio of each pipeline
to the no-aug pipeline at the same size, and JPEG decode alone as a floor measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from yolox_ray.config import DataConfig, ExperimentConfig, TrainConfig
from yolox_ray.data import COCODataset, DataWarning, build_train_loader, generate_synthetic
from yolox_ray.data.loader import TrainSamples
from yolox_ray.data.synthetic import TRAIN_ANN, TRAIN_IMAGES


def rate(fn, seconds: float) -> float:
    """Calls per second of fn() over about `seconds` (after one warm-up call)."""
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="synthetic training images (generated at 640 px)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per row")
    parser.add_argument("--workers", type=int, default=0, help="also measure the DataLoader with this many workers")
    parser.add_argument("--cache-images", action="store_true", help="decoded images in RAM (data.cache_images)")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # per-process numbers; DataLoader workers are the parallelism

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_synthetic(Path(tmp) / "ds", args.images, 1, 640, seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            ds = COCODataset(root / TRAIN_ANN, root / TRAIN_IMAGES, cache_images=args.cache_images)
        rng = np.random.default_rng(0)
        files = [str(ds.image_path(i)) for i in range(len(ds))]
        decode = rate(lambda: cv2.imread(files[int(rng.integers(len(files)))]), args.seconds)
        rows = []
        for size in (640, 416):
            for name, strong, mixup in (("no-aug", False, False), ("mosaic", True, False), ("mosaic+mixup", True, True)):
                cfg = DataConfig(input_size=(size, size), enable_mixup=mixup)
                samples = TrainSamples(ds, cfg)
                r = rate(lambda: samples.sample(int(rng.integers(len(ds))), strong, rng), args.seconds)
                rows.append((name, size, r))
        print(f"\nOne process, {len(ds)} synthetic 640-px JPEGs{' (cached in RAM)' if args.cache_images else ''}; "
              f"cv2 single-threaded.  JPEG decode alone: "
              f"{decode:.0f} img/s ({1000 / decode:.1f} ms)")
        print(f"{'pipeline':<14}{'size':>6}{'img/s':>9}{'ms/img':>9}{'vs no-aug':>11}{'vs decode':>11}")
        base = {size: r for name, size, r in rows if name == "no-aug"}
        for name, size, r in rows:
            print(f"{name:<14}{size:>6}{r:>9.1f}{1000 / r:>9.2f}{r / base[size]:>10.2f}x{r / decode:>10.2f}x")

        if args.workers > 0:
            print(f"\nDataLoader, workers={args.workers}, batch 16 (float32 batches made in the workers)")
            for size in (640, 416):
                cfg = ExperimentConfig(data=DataConfig(input_size=(size, size), workers=args.workers),
                                       train=TrainConfig(batch_size=16, epochs=2, no_aug_epochs=1, warmup_epochs=1))
                loader = build_train_loader(cfg, ds)
                for epoch, name in ((0, "mosaic+mixup"), (1, "no-aug")):
                    loader.set_epoch(epoch)
                    it = iter(loader)
                    next(it)  # start-up
                    start, n = time.perf_counter(), 0
                    for images, _ in it:
                        n += images.shape[0]
                    print(f"{name:<14}{size:>6}{n / (time.perf_counter() - start):>9.1f} img/s")


if __name__ == "__main__":
    main()
