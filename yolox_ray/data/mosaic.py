"""Strong augmentation of the current official code (§7): Mosaic, random affine, copy-paste MixUp.

The affine is anchored at the canvas origin (not centred) and no boxes are filtered here: boxes
that end up outside become zero-sized and are removed by `train_transform`'s minimum size.  (As in
the official code, a box cut away by the mosaic canvas is clipped to zero width at the edge, and a
rotation then gives it a width again: a phantom label.  `data.mosaic_prefilter` drops those.)
"""

from __future__ import annotations

import math
from typing import Protocol

import cv2
import numpy as np

from yolox_ray.config import DataConfig
from yolox_ray.data.transforms import PAD_VALUE, resize_to_fit


class ImageSource(Protocol):
    def __len__(self) -> int: ...

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def load_resized(source: ImageSource, i: int, size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image scaled by min(H/h, W/w) (no padding) and its boxes scaled alike."""
    img, boxes, classes = source.load(i)
    img, r = resize_to_fit(img, size_hw)
    return img, boxes * np.float32(r), classes


def mosaic(source: ImageSource, index: int, size_hw: tuple[int, int],
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four images around a random centre of a 2H×2W canvas of 114; boxes clipped to the canvas."""
    H, W = size_hw
    yc = int(rng.uniform(0.5 * H, 1.5 * H))
    xc = int(rng.uniform(0.5 * W, 1.5 * W))
    indices = [index, *(int(j) for j in rng.integers(0, len(source), 3))]
    canvas = np.full((2 * H, 2 * W, 3), PAD_VALUE, np.uint8)
    all_boxes, all_classes = [], []
    for k, i in enumerate(indices):
        img, boxes, classes = load_resized(source, i, size_hw)
        h, w = img.shape[:2]
        if k == 0:  # above-left: its bottom-right corner on the centre
            x1, y1, x2, y2 = max(xc - w, 0), max(yc - h, 0), xc, yc
            sx1, sy1, sx2, sy2 = w - (x2 - x1), h - (y2 - y1), w, h
        elif k == 1:  # above-right
            x1, y1, x2, y2 = xc, max(yc - h, 0), min(xc + w, 2 * W), yc
            sx1, sy1, sx2, sy2 = 0, h - (y2 - y1), min(w, x2 - x1), h
        elif k == 2:  # below-left
            x1, y1, x2, y2 = max(xc - w, 0), yc, xc, min(2 * H, yc + h)
            sx1, sy1, sx2, sy2 = w - (x2 - x1), 0, w, min(y2 - y1, h)
        else:  # below-right
            x1, y1, x2, y2 = xc, yc, min(xc + w, 2 * W), min(2 * H, yc + h)
            sx1, sy1, sx2, sy2 = 0, 0, min(w, x2 - x1), min(y2 - y1, h)
        canvas[y1:y2, x1:x2] = img[sy1:sy2, sx1:sx2]
        all_boxes.append(boxes + np.array([x1 - sx1, y1 - sy1] * 2, np.float32))
        all_classes.append(classes)
    boxes = np.concatenate(all_boxes).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, 2 * W)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, 2 * H)
    return canvas, boxes, np.concatenate(all_classes)


def affine_matrix(size_hw: tuple[int, int], cfg: DataConfig, rng: np.random.Generator) -> np.ndarray:
    """2×3 matrix: rotation + scale about the origin, shear, translation (current official code)."""
    H, W = size_hw
    angle = rng.uniform(-cfg.degrees, cfg.degrees)
    scale = rng.uniform(*cfg.mosaic_scale)
    rot = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=scale)
    shear_x = math.tan(math.radians(rng.uniform(-cfg.shear, cfg.shear)))
    shear_y = math.tan(math.radians(rng.uniform(-cfg.shear, cfg.shear)))
    m = np.empty((2, 3))
    m[0] = rot[0] + shear_y * rot[1]
    m[1] = rot[1] + shear_x * rot[0]
    m[0, 2] = rng.uniform(-cfg.translate, cfg.translate) * W
    m[1, 2] = rng.uniform(-cfg.translate, cfg.translate) * H
    return m


def affine_boxes(boxes: np.ndarray, m: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Transform the four corners, take the enclosing box, clip to the output; no filtering."""
    corners = boxes[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(-1, 4, 2).astype(np.float64)
    warped = corners @ m[:, :2].T + m[:, 2]
    out = np.concatenate((warped.min(axis=1), warped.max(axis=1)), axis=1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, size_hw[1])
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, size_hw[0])
    return out.astype(np.float32)


def random_affine(img: np.ndarray, boxes: np.ndarray, size_hw: tuple[int, int], cfg: DataConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    m = affine_matrix(size_hw, cfg, rng)
    out = cv2.warpAffine(img, m, dsize=(size_hw[1], size_hw[0]), borderValue=(PAD_VALUE,) * 3)
    return out, affine_boxes(boxes, m, size_hw) if len(boxes) else boxes


def mixup_source(source: ImageSource, labelled: np.ndarray, size_hw: tuple[int, int], cfg: DataConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The image MixUp pastes: a random labelled image letterboxed into H×W, scaled by a random
    jitter, maybe flipped, and cropped to H×W at a random offset.

    Returns (crop uint8 [H, W, 3], its boxes on the scaled canvas before the crop, the same boxes
    moved into the crop and clipped to it, their classes). Both MixUp versions draw from `rng` in
    this order, which the official code fixes.
    """
    H, W = size_hw
    jitter = rng.uniform(*cfg.mixup_scale)
    flip = rng.uniform(0, 1) > 0.5
    cp, cp_boxes, cp_classes = source.load(int(labelled[rng.integers(0, len(labelled))]))
    canvas = np.full((H, W, 3), PAD_VALUE, np.uint8)
    resized, r = resize_to_fit(cp, size_hw)
    canvas[:resized.shape[0], :resized.shape[1]] = resized
    canvas = cv2.resize(canvas, (int(W * jitter), int(H * jitter)))
    r *= jitter
    if flip:
        canvas = canvas[:, ::-1]
    ch, cw = canvas.shape[:2]
    # The official code pads the canvas with zeros to at least H×W and takes a random H×W crop.
    y_off = int(rng.integers(0, ch - H)) if ch > H else 0
    x_off = int(rng.integers(0, cw - W)) if cw > W else 0
    part = canvas[y_off:y_off + H, x_off:x_off + W]
    crop = np.zeros((H, W, 3), np.uint8)
    crop[:part.shape[0], :part.shape[1]] = part

    origin = cp_boxes.astype(np.float32) * np.float32(r)
    origin[:, [0, 2]] = origin[:, [0, 2]].clip(0, cw)
    origin[:, [1, 3]] = origin[:, [1, 3]].clip(0, ch)
    if flip:
        origin[:, [0, 2]] = cw - origin[:, [2, 0]]
    moved = origin.copy()
    moved[:, [0, 2]] = (moved[:, [0, 2]] - x_off).clip(0, W)
    moved[:, [1, 3]] = (moved[:, [1, 3]] - y_off).clip(0, H)
    return crop, origin, moved, cp_classes


def mixup(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, source: ImageSource, labelled: np.ndarray,
          size_hw: tuple[int, int], cfg: DataConfig, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copy-paste-like MixUp: a jittered, maybe flipped, randomly cropped labelled image blended 50/50.

    `labelled` lists the indices of images with at least one box (drawn uniformly).
    """
    crop, _, cp_boxes, cp_classes = mixup_source(source, labelled, size_hw, cfg, rng)
    blended = (img >> 1) + (crop >> 1) + (img & crop & 1)  # == floor((a + b) / 2) == uint8(0.5·a + 0.5·b)
    return blended, np.concatenate((boxes, cp_boxes)), np.concatenate((classes, cp_classes))
