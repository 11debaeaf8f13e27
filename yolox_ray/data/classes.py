"""The class count of a dataset, read from the data (no Ray, no MLflow, no dataset build).

`model.num_classes` comes from here unless the user set it: the synthetic set's shape classes, or
the ``categories`` of a COCO-format annotation file. A user value that disagrees is an error naming
both numbers (`check_num_classes`). Reading a COCO annotation file is cached per (path, mtime),
so validating every corner of a search space reads the file once.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path

from yolox_ray.config import ConfigError, DataConfig, ExperimentConfig

NUM_CLASSES_KEY = "model.num_classes"


@functools.lru_cache(maxsize=32)
def _coco_categories(path: str, mtime_ns: int) -> int:
    try:
        categories = json.loads(Path(path).read_text())["categories"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"data.val_ann: {path} is not a COCO annotation file ({exc!r})") from None
    if not isinstance(categories, list) or not categories:
        raise ConfigError(f"data.val_ann: {path} lists no categories")
    return len(categories)


def data_classes(data_cfg: DataConfig) -> tuple[int, str]:
    """(class count, where it came from) of the dataset `data_cfg` points at.

    Synthetic: its shape classes (no files needed). COCO layout: the categories of the val
    annotations (the smaller file; train and val share the category list); the root, both
    annotation files and both image folders must exist (ConfigError naming the missing path).
    """
    if data_cfg.is_synthetic:
        from yolox_ray.data.synthetic import SYNTHETIC_CLASSES

        return len(SYNTHETIC_CLASSES), "the synthetic dataset"
    root = Path(data_cfg.root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.root: {root} not found (use 'synthetic' for the built-in dataset)")
    for key in ("train_ann", "val_ann", "train_images", "val_images"):
        path = root / getattr(data_cfg, key)
        if not path.exists():
            raise ConfigError(f"data.{key}: {path} not found under data.root {root} "
                              "(COCO layout: annotations/instances_train2017.json, train2017/, ...)")
    ann = root / data_cfg.val_ann
    if not ann.is_file():
        raise ConfigError(f"data.val_ann: {ann} is not a file")
    return _coco_categories(str(ann.resolve()), ann.stat().st_mtime_ns), str(ann)


def dataset_num_classes(data_root: str, val_ann: str | None = None) -> int:
    """Classes of a dataset root: the synthetic set's shapes, else the categories of its COCO
    val annotations (`val_ann` relative to the root, default the COCO 2017 name)."""
    data = DataConfig(root=data_root) if val_ann is None else DataConfig(root=data_root, val_ann=val_ann)
    return data_classes(data)[0]


def check_num_classes(cfg: ExperimentConfig) -> None:
    """ConfigError when the model's class count differs from the data's (both numbers named)."""
    classes, source = data_classes(cfg.data)
    if classes != cfg.model.num_classes:
        raise ConfigError(f"model.num_classes: the model has {cfg.model.num_classes} classes but {source} has "
                          f"{classes}")


def with_data_classes(cfg: ExperimentConfig, *, explicit: bool) -> ExperimentConfig:
    """`cfg` with `model.num_classes` from its data, or (when the user set it: `explicit`) checked
    against the data."""
    if explicit:
        check_num_classes(cfg)
        return cfg
    classes, _ = data_classes(cfg.data)
    if classes == cfg.model.num_classes:
        return cfg
    return replace(cfg, model=replace(cfg.model, num_classes=classes))
