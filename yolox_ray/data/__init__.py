"""Datasets, augmentation and loaders (no Ray, no MLflow here)."""

from yolox_ray.data.coco import COCODataset, DatasetError, DataWarning
from yolox_ray.data.loader import EpochBatchSampler, TrainLoader, ValLoader, build_train_loader, build_val_loader
from yolox_ray.data.multiscale import draw_multiscale_side, resize_batch
from yolox_ray.data.paths import DatasetPaths, resolve_dataset, synthetic_path
from yolox_ray.data.schedule import Phase, phase, should_evaluate
from yolox_ray.data.synthetic import SYNTHETIC_CLASSES, generate_synthetic

__all__ = [
    "COCODataset", "DatasetError", "DataWarning", "DatasetPaths", "EpochBatchSampler", "Phase", "SYNTHETIC_CLASSES",
    "TrainLoader", "ValLoader", "build_train_loader", "build_val_loader", "draw_multiscale_side",
    "generate_synthetic", "phase", "resize_batch", "resolve_dataset", "should_evaluate", "synthetic_path",
]
