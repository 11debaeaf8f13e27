"""Per-image transforms of the current official pipeline (§7): letterbox, HSV, flip, TrainTransform.

Images are BGR uint8 HWC until the very end; boxes are xyxy float arrays [n, 4] and all box
arithmetic is vectorised numpy.  Randomness comes from one `numpy.random.Generator` per sample,
so a sample is a pure function of its seed.
"""

from __future__ import annotations

import cv2
import numpy as np

from yolox_ray.config import DataConfig

PAD_VALUE = 114


def letterbox(img: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Scale by r = min(H/h, W/w) (INTER_LINEAR) into the top-left of an H×W canvas of 114."""
    h, w = img.shape[:2]
    r = min(size_hw[0] / h, size_hw[1] / w)
    out = np.full((size_hw[0], size_hw[1], 3), PAD_VALUE, np.uint8)
    nh, nw = int(h * r), int(w * r)
    out[:nh, :nw] = img if (nh, nw) == (h, w) else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out, r


def resize_to_fit(img: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Scale by r = min(H/h, W/w) without padding (the dataset's `pull_item` resize)."""
    h, w = img.shape[:2]
    r = min(size_hw[0] / h, size_hw[1] / w)
    nh, nw = int(h * r), int(w * r)
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return img, r


def hsv_gains(rng: np.random.Generator, gains: tuple[float, float, float]) -> np.ndarray:
    """Integer (H, S, V) offsets: U(-1, 1)·gain, each zeroed with probability 1/2, truncated."""
    g = rng.uniform(-1, 1, 3) * np.asarray(gains, np.float64)
    g *= rng.integers(0, 2, 3)
    return g.astype(np.int16)


def apply_hsv(img: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """H ← (H + g_h) mod 180, S, V ← clip(· + g, 0, 255) in OpenCV HSV; in place, via one LUT."""
    values = np.arange(256, dtype=np.int16)
    lut = np.stack(((values + offsets[0]) % 180, np.clip(values + offsets[1], 0, 255),
                    np.clip(values + offsets[2], 0, 255)), axis=-1).astype(np.uint8)[None]
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    cv2.cvtColor(cv2.LUT(hsv, lut), cv2.COLOR_HSV2BGR, dst=img)
    return img


def hflip(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the image; x1' = W − x2, x2' = W − x1."""
    w = img.shape[1]
    boxes = boxes.copy()
    boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    return np.ascontiguousarray(img[:, ::-1]), boxes


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    out = np.empty_like(boxes)
    out[:, 0:2] = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    out[:, 2:4] = boxes[:, 2:4] - boxes[:, 0:2]
    return out


def pad_labels(classes: np.ndarray, cxcywh: np.ndarray, max_labels: int) -> np.ndarray:
    """[max_labels, 5] float32 rows (class, cx, cy, w, h), real rows first, zero padding, truncated."""
    out = np.zeros((max_labels, 5), np.float32)
    n = min(len(classes), max_labels)
    out[:n, 0] = classes[:n]
    out[:n, 1:] = cxcywh[:n]
    return out


def to_chw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def train_transform(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, size_hw: tuple[int, int],
                    cfg: DataConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """HSV → flip → letterbox → labels; returns (CHW uint8 image, labels [max_labels, 5] float32).

    Boxes keep min(w, h) > min_box_size; if none survive, the un-augmented image and its original
    boxes are used instead (the official fallback).  With `pipeline="legacy_2021"` the colour step is
    the 2021 "distort" (brightness/contrast/hue/saturation) instead of HSV.
    """
    if len(boxes) == 0:
        out, _ = letterbox(img, size_hw)
        return to_chw(out), np.zeros((cfg.max_labels, 5), np.float32)
    original = img.copy()
    if rng.random() < cfg.hsv_prob:
        if cfg.pipeline == "legacy_2021":
            from yolox_ray.data.legacy import distort
            img = distort(img, rng)
        else:
            img = apply_hsv(img, hsv_gains(rng, cfg.hsv_gains))
    aug_boxes = boxes
    if rng.random() < cfg.flip_prob:
        img, aug_boxes = hflip(img, boxes)
    out, r = letterbox(img, size_hw)
    cxcywh = xyxy_to_cxcywh(aug_boxes.astype(np.float32)) * np.float32(r)
    keep = np.minimum(cxcywh[:, 2], cxcywh[:, 3]) > cfg.min_box_size
    if not keep.any():
        out, r = letterbox(original, size_hw)
        return to_chw(out), pad_labels(classes, xyxy_to_cxcywh(boxes.astype(np.float32)) * np.float32(r), cfg.max_labels)
    return to_chw(out), pad_labels(classes[keep], cxcywh[keep], cfg.max_labels)
