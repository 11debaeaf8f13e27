"""The 2021 release's augmentation (`data.pipeline="legacy_2021"`, §7 end), for paper reproduction.

Differences from the current pipeline: the mosaic affine is YOLOv5's `random_perspective`, centred on
the canvas (translation 0.5 ± translate of the output) and followed by a candidate filter (w, h > 2 px,
area after/before > 0.2, aspect < 20); MixUp keeps only pasted boxes passing the same filter with a
5 px threshold (and pastes nothing if none passes); colour jitter is the brightness/contrast/hue/
saturation "distort" instead of HSV.  Images stay BGR 0-255 like everywhere else in this package (the
2021 RGB/255/ImageNet normalisation is an input-format question: `evaluation.legacy_normalize`).
The 2021 minimum box side of 8 px and mosaic scale (0.5, 1.5) are config values:
`data.min_box_size=8 data.mosaic_scale=[0.5,1.5]`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from yolox_ray.config import DataConfig
from yolox_ray.data.transforms import PAD_VALUE
from yolox_ray.data.mosaic import ImageSource, mixup_source


def box_candidates(before: np.ndarray, after: np.ndarray, wh_thr: float = 2, ar_thr: float = 20,
                   area_thr: float = 0.2) -> np.ndarray:
    """Boolean keep mask for xyxy boxes [n, 4] before/after augmentation (YOLOv5's filter)."""
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    ar = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + 1e-16) > area_thr) & (ar < ar_thr)


def perspective_matrix(canvas_hw: tuple[int, int], out_hw: tuple[int, int], cfg: DataConfig,
                       rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """3×3 affine M = T·S·R·C: centre the canvas, rotate/scale, shear, translate to 0.5 ± t of the output."""
    c = np.eye(3)
    c[0, 2], c[1, 2] = -canvas_hw[1] / 2, -canvas_hw[0] / 2
    r = np.eye(3)
    angle = rng.uniform(-cfg.degrees, cfg.degrees)
    scale = rng.uniform(*cfg.mosaic_scale)
    r[:2] = cv2.getRotationMatrix2D(angle=angle, center=(0, 0), scale=scale)
    s = np.eye(3)
    s[0, 1] = math.tan(math.radians(rng.uniform(-cfg.shear, cfg.shear)))
    s[1, 0] = math.tan(math.radians(rng.uniform(-cfg.shear, cfg.shear)))
    t = np.eye(3)
    t[0, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * out_hw[1]
    t[1, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * out_hw[0]
    return t @ s @ r @ c, scale


def random_perspective(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, size_hw: tuple[int, int],
                       cfg: DataConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred affine of the 2H×2W mosaic canvas to H×W, then the candidate filter."""
    m, scale = perspective_matrix(img.shape[:2], size_hw, cfg, rng)
    out = cv2.warpAffine(img, m[:2], dsize=(size_hw[1], size_hw[0]), borderValue=(PAD_VALUE,) * 3)
    if len(boxes) == 0:
        return out, boxes, classes
    corners = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(-1, 4, 2).astype(np.float64)
    warped = corners @ m[:2, :2].T + m[:2, 2]
    new = np.concatenate((warped.min(axis=1), warped.max(axis=1)), axis=1)
    new[:, [0, 2]] = new[:, [0, 2]].clip(0, size_hw[1])
    new[:, [1, 3]] = new[:, [1, 3]].clip(0, size_hw[0])
    keep = box_candidates(boxes * scale, new)
    return out, new[keep].astype(np.float32), classes[keep]


def distort(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness ±32, contrast ×U(0.5, 1.5), hue ±18, saturation ×U(0.5, 1.5), each with probability 1/2."""
    out = img
    if rng.integers(2):  # each step truncates back to uint8, as the release's in-place assignment did
        out = np.clip(out.astype(np.float64) + rng.uniform(-32, 32), 0, 255).astype(np.uint8)
    if rng.integers(2):
        out = np.clip(out.astype(np.float64) * rng.uniform(0.5, 1.5), 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV)
    if rng.integers(2):
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + int(rng.integers(-18, 19))) % 180
    if rng.integers(2):
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def mixup_2021(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, source: ImageSource, labelled: np.ndarray,
               size_hw: tuple[int, int], cfg: DataConfig, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As the current MixUp, but pasted boxes must pass the candidate filter (5 px); none → no paste."""
    crop, origin, moved, cp_classes = mixup_source(source, labelled, size_hw, cfg, rng)
    keep = box_candidates(origin, moved, wh_thr=5)
    if not keep.any():
        return img, boxes, classes
    blended = (img >> 1) + (crop >> 1) + (img & crop & 1)
    return blended, np.concatenate((boxes, moved[keep])), np.concatenate((classes, cp_classes[keep]))
