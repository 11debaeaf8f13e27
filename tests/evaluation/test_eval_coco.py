"""COCO evaluation: GT as predictions gives AP 1, shifted boxes give a hand-computed AP, zero
detections work, and the full round trips (synthetic → loaders → model → postprocess → COCOeval)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from eval_helpers import coco_set, load_split
from torch import nn

from yolox_ray.config import DataConfig, EvalConfig, ExperimentConfig, TrainConfig
from yolox_ray.data import build_train_loader
from yolox_ray.evaluation import evaluate, evaluate_predictions
from yolox_ray.metrics import COCO_STAT_KEYS


def gt_detections(ds) -> dict[int, np.ndarray]:
    out = {}
    for i, image_id in enumerate(ds.image_ids):
        boxes, classes = ds.targets(i)
        det = np.concatenate((boxes, np.full((len(boxes), 1), 0.9), classes[:, None]), axis=1)
        out[image_id] = det
    return out


def test_ground_truth_as_predictions_is_perfect(synthetic_root):
    ds = load_split(synthetic_root, "val")
    result = evaluate_predictions(ds, gt_detections(ds))
    assert set(result.stats) == set(COCO_STAT_KEYS)
    for key in ("AP", "AP50", "AP75", "AR100"):
        assert result.stats[key] == pytest.approx(1.0)
    present = {ds.class_names[c] for i in range(len(ds)) for c in ds.targets(i)[1]}
    assert all(result.per_class_ap[name] == pytest.approx(1.0) for name in present)
    assert result.num_detections == ds.num_boxes


# Three 100x100 boxes; the third prediction is shifted 20 px: IoU = 80/120 = 0.667, which passes the
# IoU thresholds .50 .55 .60 .65 and fails .70 ... .95.  At a passing threshold AP = 1.  At a failing
# one the two exact boxes (score .9) come first: precision 1 up to recall 2/3, so 67 of COCO's 101
# recall points (0.00 ... 0.66) have precision 1 and the rest 0.
HAND_AP_FAILING = 67 / 101
HAND_AP = (4 * 1.0 + 6 * HAND_AP_FAILING) / 10


def test_shifted_boxes_give_hand_computed_ap(tmp_path):
    ds = coco_set(tmp_path, [[(5, [50, 60, 100, 100])], [(5, [150, 100, 100, 100])], [(5, [20, 30, 100, 100])]], [5])
    dets = {1: np.array([[50, 60, 150, 160, 0.9, 0]]), 2: np.array([[150, 100, 250, 200, 0.9, 0]]),
            3: np.array([[40, 30, 140, 130, 0.5, 0]])}
    result = evaluate_predictions(ds, dets, results_file=tmp_path / "res.json")
    assert result.stats["AP"] == pytest.approx(HAND_AP, abs=1e-9)
    assert result.stats["AP50"] == pytest.approx(1.0)
    assert result.stats["AP75"] == pytest.approx(HAND_AP_FAILING, abs=1e-9)
    assert result.stats["APl"] == pytest.approx(HAND_AP, abs=1e-9)
    assert result.stats["APs"] == -1  # no small ground truth
    assert result.per_class_ap == {"c5": pytest.approx(HAND_AP, abs=1e-9)}
    saved = json.loads((tmp_path / "res.json").read_text())
    assert saved[2] == {"image_id": 3, "category_id": 5, "bbox": [40.0, 30.0, 100.0, 100.0], "score": 0.5}


def test_per_class_ap_and_category_mapping(tmp_path):
    # Category ids 9 and 4 -> class indices 1 and 0.  Class "c4" is exact, "c9" shifted by 20 px (AP 0.4).
    ds = coco_set(tmp_path, [[(9, [10, 10, 100, 100]), (4, [200, 150, 100, 100])]], [9, 4])
    dets = {1: np.array([[30, 10, 130, 110, 0.8, 1], [200, 150, 300, 250, 0.9, 0]])}
    result = evaluate_predictions(ds, dets)
    assert result.per_class_ap == {"c4": pytest.approx(1.0), "c9": pytest.approx(0.4)}
    assert result.stats["AP"] == pytest.approx(0.7)


def test_zero_detections(synthetic_root):
    ds = load_split(synthetic_root, "val")
    for dets in ({}, {ds.image_ids[0]: np.zeros((0, 6))}):
        result = evaluate_predictions(ds, dets)
        assert result.stats == {k: 0.0 for k in COCO_STAT_KEYS} and result.num_detections == 0
    with pytest.raises(ValueError, match="not in"):
        evaluate_predictions(ds, {10_000: np.zeros((1, 6))})


class GroundTruthModel(nn.Module):
    """Stands in for YOLOX in eval mode: returns each val image's GT boxes (in letterboxed input
    pixels, decoded layout [B, A, 5 + C]) in the val loader's order, plus low-score clutter."""

    def __init__(self, ds, test_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.queue = []
        for i in range(len(ds)):
            boxes, classes = ds.targets(i)
            h, w = ds.image_hw(i)
            r = min(test_size / h, test_size / w)
            rows = torch.zeros(40, 5 + ds.num_classes)
            rows[:, 0:4] = torch.tensor([5.0, 5.0, 4.0, 4.0])
            rows[:, 4] = 0.05  # clutter: obj 0.05 x cls 0.1 = 0.005 < conf 0.01
            rows[:, 5:] = 0.1
            b = torch.from_numpy(boxes).double() * r
            rows[:len(b), 0:2] = ((b[:, :2] + b[:, 2:]) / 2).float()
            rows[:len(b), 2:4] = (b[:, 2:] - b[:, :2]).float()
            rows[:len(b), 4] = 0.95
            rows[torch.arange(len(b)), 5 + torch.from_numpy(classes)] = 0.9
            self.queue.append(rows)
        self.seen_training_flags = []

    def forward(self, images):
        self.seen_training_flags.append(self.training)
        batch, self.queue = self.queue[:images.shape[0]], self.queue[images.shape[0]:]
        return torch.stack(batch)


def _cfg(test: int = 192, input_size: int = 128) -> ExperimentConfig:
    return ExperimentConfig(data=DataConfig(input_size=(input_size, input_size), test_size=(test, test), workers=0,
                                            hsv_prob=0.0, flip_prob=0.0),
                            train=TrainConfig(epochs=3, no_aug_epochs=1, warmup_epochs=1, batch_size=4),
                            eval=EvalConfig(batch_size=3))


def test_evaluate_round_trip_through_val_loader_and_postprocess(synthetic_root):
    ds = load_split(synthetic_root, "val")
    model = GroundTruthModel(ds, 192)
    model.train()
    result = evaluate(model, ds, _cfg(), "cpu")
    assert result.stats["AP"] == pytest.approx(1.0) and result.stats["AP50"] == pytest.approx(1.0)
    assert result.num_images == len(ds) and result.num_detections == ds.num_boxes
    assert result.forward_ms >= 0 and result.nms_ms > 0
    assert model.seen_training_flags == [False] * math.ceil(len(ds) / 3) and model.training  # restored


def test_round_trip_through_train_loader(synthetic_root):
    """Labels of the no-aug train loader, mapped back by the letterbox ratio, evaluate to AP 1."""
    ds = load_split(synthetic_root, "train")
    loader = build_train_loader(_cfg(), ds, batch_size=5)
    loader.set_epoch(2)  # the no-aug epoch
    dets = {}
    for keys, (_, labels) in zip(loader.sampler, loader):
        for (index, strong, _), lab in zip(keys, labels):
            assert not strong
            h, w = ds.image_hw(index)
            r = min(128 / h, 128 / w)
            real = lab[lab[:, 3] > 0].double().numpy()
            xyxy = np.concatenate((real[:, 1:3] - real[:, 3:5] / 2, real[:, 1:3] + real[:, 3:5] / 2), axis=1) / r
            dets[ds.image_ids[index]] = np.concatenate((xyxy, np.full((len(real), 1), 0.9), real[:, :1]), axis=1)
    assert len(dets) == len(ds)
    assert evaluate_predictions(ds, dets).stats["AP"] == pytest.approx(1.0)
    # Shifting every box right by half its width drops every IoU to 1/3: nothing matches at 0.5.
    for det in dets.values():
        shift = (det[:, 2] - det[:, 0]) / 2
        det[:, 0] += shift
        det[:, 2] += shift
    assert evaluate_predictions(ds, dets).stats["AP50"] == pytest.approx(0.0)


def test_evaluate_leaves_a_real_model_trainable(synthetic_root):
    """A model evaluated mid-training (its anchor grids cached during evaluation) still trains."""
    from yolox_ray.models import build_model
    ds = load_split(synthetic_root, "val")
    model = build_model("yolox_nano", num_classes=ds.num_classes)
    result = evaluate(model, ds, _cfg(test=128), "cpu", batch_size=5)
    assert result.num_images == len(ds) and model.training
    model.train()
    out = model(torch.zeros(1, 3, 128, 128))
    grid = model.anchor_grid((128, 128), "cpu")
    from yolox_ray.boxes import decode_boxes
    decode_boxes(out[..., :4], grid).sum().backward()  # raises if the grid is an inference tensor
