"""Where a config's dataset lives: the synthetic cache (generated on first use) or a COCO root."""

from __future__ import annotations

import contextlib
import fcntl
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from yolox_ray.config import DataConfig
from yolox_ray.data import synthetic
from yolox_ray.data.coco import DatasetError


@dataclass(frozen=True)
class DatasetPaths:
    train_ann: Path
    train_images: Path
    val_ann: Path
    val_images: Path


def cache_root(data_cfg: DataConfig) -> Path:
    return Path(data_cfg.cache_dir).expanduser() if data_cfg.cache_dir else Path.home() / ".cache" / "yolox_ray"


def synthetic_path(data_cfg: DataConfig) -> Path:
    """The cache folder of the synthetic set these settings describe (named by all its parameters)."""
    name = synthetic.synthetic_dir_name(data_cfg.synthetic_train, data_cfg.synthetic_val, data_cfg.synthetic_size,
                                        data_cfg.synthetic_seed, data_cfg.synthetic_style)
    return cache_root(data_cfg) / name


@contextlib.contextmanager
def _generation_lock(root: Path) -> Iterator[None]:
    """An advisory lock next to `root`; where the filesystem has no flock, the atomic rename alone
    keeps concurrent generation safe (just wasteful)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass
        yield


def resolve_dataset(data_cfg: DataConfig) -> DatasetPaths:
    """Paths of the train/val splits; generates the synthetic set once (atomically) when needed.

    Concurrent callers (Ray workers, trials) may all generate; the first rename wins and the others
    discard their copy, so nobody ever sees a half-written dataset.
    """
    if data_cfg.is_synthetic:
        root = synthetic_path(data_cfg)
        if not (root / synthetic.TRAIN_ANN).is_file():
            with _generation_lock(root):  # others wait instead of generating the same set again
                if not (root / synthetic.TRAIN_ANN).is_file():
                    synthetic.generate_synthetic(root, data_cfg.synthetic_train, data_cfg.synthetic_val,
                                                 data_cfg.synthetic_size, data_cfg.synthetic_seed,
                                                 data_cfg.synthetic_style)
        return DatasetPaths(root / synthetic.TRAIN_ANN, root / synthetic.TRAIN_IMAGES,
                            root / synthetic.VAL_ANN, root / synthetic.VAL_IMAGES)
    root = Path(data_cfg.root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"data.root {root} is not a folder (use 'synthetic' for the built-in dataset)")
    paths = DatasetPaths(root / data_cfg.train_ann, root / data_cfg.train_images,
                         root / data_cfg.val_ann, root / data_cfg.val_images)
    for label, path, want_dir in (("data.train_ann", paths.train_ann, False), ("data.train_images", paths.train_images, True),
                                  ("data.val_ann", paths.val_ann, False), ("data.val_images", paths.val_images, True)):
        ok = path.is_dir() if want_dir else path.is_file()
        if not ok:
            kind = "folder" if want_dir else "file"
            raise DatasetError(f"{label}: expected the {kind} {path} under data.root {root} "
                               "(COCO layout: annotations/instances_train2017.json, train2017/, ...)")
    return paths
