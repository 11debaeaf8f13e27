"""`evaluate(model, dataset, cfg, device)`: letterboxed val images → model → postprocess → COCOeval."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from yolox_ray.config import ExperimentConfig
from yolox_ray.data.coco import COCODataset
from yolox_ray.data.loader import build_val_loader
from yolox_ray.evaluation.coco_eval import EvalResult, evaluate_predictions
from yolox_ray.evaluation.postprocess import legacy_normalize, postprocess


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()  # not inference_mode: tensors the model caches here (anchor grids) must stay usable in training
def predict(model: nn.Module, dataset: COCODataset, cfg: ExperimentConfig, device: torch.device | str,
            batch_size: int | None = None, legacy: bool = False, workers: int | None = None
            ) -> tuple[dict[int, np.ndarray], float, float]:
    """Detections {image_id: [n, 6] (x1, y1, x2, y2, score, class_index)} in original pixels,
    plus total forward and postprocess seconds.  The model is put in eval mode and restored."""
    device = torch.device(device)
    loader = build_val_loader(cfg, dataset, batch_size, workers)
    was_training = model.training
    model.eval()
    detections: dict[int, np.ndarray] = {}
    forward_s = post_s = 0.0
    try:
        for images, metas in loader:
            images = images.to(device, non_blocking=True)
            if legacy:
                images = legacy_normalize(images)
            _sync(device)
            t0 = time.perf_counter()
            outputs = model(images)
            _sync(device)
            t1 = time.perf_counter()
            if outputs.shape[-1] - 5 != dataset.num_classes:
                raise ValueError(f"the model predicts {outputs.shape[-1] - 5} classes but {dataset.ann_file} has "
                                 f"{dataset.num_classes}")
            dets = postprocess(outputs.float(), dataset.num_classes, cfg.eval.conf_thresh, cfg.eval.nms_thresh)
            _sync(device)
            post_s += time.perf_counter() - t1
            forward_s += t1 - t0
            for det, image_id, ratio in zip(dets, metas["image_id"].tolist(), metas["ratio"].tolist()):
                det = det.cpu().double().numpy()
                rows = np.empty((len(det), 6))
                rows[:, :4] = det[:, :4] / ratio  # back to the original image; no clipping (official)
                rows[:, 4] = det[:, 4] * det[:, 5]
                rows[:, 5] = det[:, 6]
                detections[int(image_id)] = rows
    finally:
        model.train(was_training)
    return detections, forward_s, post_s


def evaluate(model: nn.Module, dataset: COCODataset, cfg: ExperimentConfig, device: torch.device | str,
             batch_size: int | None = None, legacy: bool = False, workers: int | None = None,
             results_file: str | Path | None = None) -> EvalResult:
    """COCO evaluation of `model` on `dataset` at cfg.data.test_size with cfg.eval thresholds.

    `legacy=True` feeds RGB/255 ImageNet-normalised input (2021 release weights).
    """
    detections, forward_s, post_s = predict(model, dataset, cfg, device, batch_size, legacy, workers)
    result = evaluate_predictions(dataset, detections, results_file)
    n = max(len(dataset), 1)
    return dataclasses.replace(result, forward_ms=1000 * forward_s / n, nms_ms=1000 * post_s / n)
