"""Augmentation keeps boxes on the right pixels (draw-and-check) and matches §7's arithmetic."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from yolox_ray.config import DataConfig
from yolox_ray.data.loader import TrainSamples
from yolox_ray.data.mosaic import affine_boxes, mixup, mosaic, random_affine
from yolox_ray.data.transforms import apply_hsv, hflip, hsv_gains, letterbox, train_transform

COLOURS = np.array([(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0)], np.int16)


class Rects:
    """In-memory image source: solid rectangles in their class colour on black, never overlapping."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for _ in range(n):
            h, w = int(rng.integers(120, 200)), int(rng.integers(120, 220))
            img = np.zeros((h, w, 3), np.uint8)
            boxes, classes = [], []
            for _ in range(30):
                if len(boxes) == 4:
                    break
                bw, bh = int(rng.integers(15, 60)), int(rng.integers(15, 60))
                x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                box = (x, y, x + bw, y + bh)
                if any(x < b[2] + 3 and b[0] < box[2] + 3 and y < b[3] + 3 and b[1] < box[3] + 3 for b in boxes):
                    continue
                c = int(rng.integers(len(COLOURS)))
                img[y:y + bh, x:x + bw] = COLOURS[c]
                boxes.append(box)
                classes.append(c)
            self.items.append((img, np.array(boxes, np.float32), np.array(classes, np.int64)))

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i):
        img, b, c = self.items[i]
        return img.copy(), b.copy(), c.copy()

    def targets(self, i):
        return self.items[i][1], self.items[i][2]


def _colour_mask(img_hwc: np.ndarray, colour: np.ndarray, tol: int = 40) -> np.ndarray:
    return (np.abs(img_hwc.astype(np.int16) - colour) <= tol).all(axis=-1)


def check_boxes_on_pixels(img_hwc: np.ndarray, rows: np.ndarray, colours: np.ndarray, min_fill: float,
                          check_strays: bool = True) -> int:
    """Every box (>= 8 px) is at least `min_fill` its class colour and, unless it touches the image
    border (the enclosing box of a rotated object cut by the border is not tight), its colour reaches
    each of its four sides; and every pixel of a colour, except slivers under 5 px thick left by
    boxes too small to keep, lies in a box of that class. Returns the number of boxes checked."""
    import cv2
    height, width = img_hwc.shape[:2]
    real = rows[(rows[:, 3] > 0) & (rows[:, 4] > 0)]
    checked = 0
    for c in range(len(colours)):
        mask = _colour_mask(img_hwc, colours[c])
        covered = np.zeros_like(mask)
        for cls, cx, cy, w, h in real[real[:, 0] == c]:
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            covered[max(0, math.floor(y1) - 2):math.ceil(y2) + 2, max(0, math.floor(x1) - 2):math.ceil(x2) + 2] = True
            if min(w, h) >= 8:
                where = f"class {c} box {(float(x1), float(y1), float(x2), float(y2))}"
                inner = mask[math.ceil(y1) + 1:math.floor(y2) - 1, math.ceil(x1) + 1:math.floor(x2) - 1]
                assert inner.mean() >= min_fill, f"{where}: only {inner.mean():.2f} of its colour"
                checked += 1
                if x1 <= 1 or y1 <= 1 or x2 >= width - 1 or y2 >= height - 1:
                    continue
                box = mask[max(0, math.floor(y1) - 1):math.ceil(y2) + 1, max(0, math.floor(x1) - 1):math.ceil(x2) + 1]
                ys, xs = np.nonzero(box)
                lo_x, lo_y = x1 - max(0, math.floor(x1) - 1), y1 - max(0, math.floor(y1) - 1)
                assert abs(xs.min() - lo_x) <= 3 and abs(xs.max() + 1 - (lo_x + w)) <= 3, f"{where}: not tight in x"
                assert abs(ys.min() - lo_y) <= 3 and abs(ys.max() + 1 - (lo_y + h)) <= 3, f"{where}: not tight in y"
        solid = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        stray = int((solid & ~covered).sum())
        assert not check_strays or stray <= 0.01 * mask.sum() + 12, f"{stray} pixels of class {c} lie outside its boxes"
    return checked


NO_COLOUR_AUG = DataConfig(input_size=(256, 256), hsv_prob=0.0, enable_mixup=False)


@pytest.mark.parametrize("degrees,shear,min_fill", [(0.0, 0.0, 0.9), (10.0, 2.0, 0.3)])
def test_mosaic_affine_flip_letterbox_keep_boxes_on_pixels(degrees, shear, min_fill):
    cfg = replace(NO_COLOUR_AUG, degrees=degrees, shear=shear, mosaic_scale=(0.5, 1.5), mosaic_prefilter=True,
                  min_box_size=2.0)
    samples = TrainSamples(Rects(12), cfg)
    checked = 0
    for s in range(16):
        img, labels = samples.sample(s % 12, True, np.random.default_rng(s))
        assert img.shape == (3, 256, 256) and labels.shape == (120, 5)
        checked += check_boxes_on_pixels(img.transpose(1, 2, 0), labels, COLOURS, min_fill)
    assert checked >= 40


def test_official_mosaic_keeps_phantom_boxes_that_prefilter_drops():
    """Official behaviour: a box cut away by the mosaic canvas is rotated into a label with no object."""
    def empty_boxes(prefilter: bool) -> int:
        cfg = replace(NO_COLOUR_AUG, mosaic_scale=(0.5, 1.5), mosaic_prefilter=prefilter)
        samples = TrainSamples(Rects(12), cfg)
        count = 0
        for s in range(16):
            img, labels = samples.sample(s % 12, True, np.random.default_rng(s))
            hwc = img.transpose(1, 2, 0)
            for c, cx, cy, w, h in labels[labels[:, 3] > 0]:
                region = hwc[int(cy - h / 2):int(cy + h / 2) + 1, int(cx - w / 2):int(cx + w / 2) + 1]
                count += int(min(w, h) > 4 and not _colour_mask(region, COLOURS[int(c)]).any())
        return count

    assert empty_boxes(False) >= 1
    assert empty_boxes(True) == 0


def test_plain_pipeline_keeps_boxes_on_pixels():
    samples = TrainSamples(Rects(6), replace(NO_COLOUR_AUG, flip_prob=0.5))
    for s in range(6):
        img, labels = samples.sample(s, False, np.random.default_rng(s))
        assert check_boxes_on_pixels(img.transpose(1, 2, 0), labels, COLOURS, 0.97) == len(Rects(6).items[s][1])


def test_mixup_pastes_boxes_on_pixels():
    src = Rects(8, seed=1)
    cfg = DataConfig(input_size=(256, 256))
    checked = 0
    for s in range(12):
        base = np.zeros((256, 256, 3), np.uint8)  # blending with black halves the pasted colours
        img, boxes, classes = mixup(base, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), src,
                                    np.arange(len(src)), (256, 256), cfg, np.random.default_rng(s))
        cxcywh = np.concatenate(((boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]), axis=1)
        rows = np.concatenate((classes[:, None], cxcywh), axis=1)
        checked += check_boxes_on_pixels(img, rows, COLOURS // 2, 0.9)
    assert checked >= 20


def test_mosaic_places_quadrants_around_centre():
    src = Rects(4, seed=2)
    canvas, boxes, classes = mosaic(src, 0, (256, 256), np.random.default_rng(0))
    assert canvas.shape == (512, 512, 3)
    assert (boxes[:, [0, 2]] <= 512).all() and (boxes[:, [1, 3]] >= 0).all()
    rows = np.concatenate((classes[:, None], (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]), axis=1)
    check_boxes_on_pixels(canvas, rows, COLOURS, 0.97)


def test_neutral_affine_is_the_canvas_corner():
    cfg = DataConfig(degrees=0.0, shear=0.0, translate=0.0, mosaic_scale=(1.0, 1.0))
    canvas = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    out, boxes = random_affine(canvas, np.array([[10, 20, 30, 60]], np.float32), (100, 150), cfg,
                               np.random.default_rng(1))
    np.testing.assert_array_equal(out, canvas[:100, :150])
    np.testing.assert_allclose(boxes, [[10, 20, 30, 60]])
    half = replace(cfg, mosaic_scale=(0.5, 0.5))
    _, boxes = random_affine(canvas, np.array([[100, 100, 200, 180]], np.float32), (100, 150), half,
                             np.random.default_rng(1))
    np.testing.assert_allclose(boxes, [[50, 50, 100, 90]])


def test_affine_boxes_enclose_transformed_corners():
    # Rotation by 90° about the origin then a shift of +100 in y: (x, y) -> (y, 100 - x).
    m = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 100.0]])
    out = affine_boxes(np.array([[10, 20, 30, 60], [0, 0, 500, 500]], np.float32), m, (90, 80))
    np.testing.assert_allclose(out, [[20, 70, 60, 90], [0, 0, 80, 90]])  # second one clipped to 80x90


def test_letterbox_hand_worked():
    img = np.zeros((200, 100, 3), np.uint8)
    out, r = letterbox(img, (320, 320))
    assert r == 1.6 and out.shape == (320, 320, 3)
    assert (out[:, :160] == 0).all() and (out[:, 160:] == 114).all()
    cfg = DataConfig(hsv_prob=0.0, flip_prob=0.0)
    chw, labels = train_transform(img, np.array([[10, 20, 30, 60]], np.float32), np.array([4]), (320, 320), cfg,
                                  np.random.default_rng(0))
    assert chw.shape == (3, 320, 320) and chw.dtype == np.uint8
    np.testing.assert_allclose(labels[0], [4, 32, 64, 32, 64], rtol=1e-6)
    assert (labels[1:] == 0).all()


def test_flip_and_fallback():
    img = np.zeros((50, 100, 3), np.uint8)
    img[:, :10] = 200
    flipped, boxes = hflip(img, np.array([[10, 5, 30, 25]], np.float32))
    np.testing.assert_allclose(boxes, [[70, 5, 90, 25]])
    assert (flipped[:, 90:] == 200).all() and (flipped[:, :90] == 0).all()
    # Every box too small after augmentation: the un-augmented image and boxes are used (not flipped).
    cfg = DataConfig(hsv_prob=0.0, flip_prob=1.0, min_box_size=5.0)
    chw, labels = train_transform(img, np.array([[10, 5, 13, 25]], np.float32), np.array([1]), (100, 100), cfg,
                                  np.random.default_rng(0))
    np.testing.assert_allclose(labels[0], [1, 11.5, 15, 3, 20])
    assert (chw[:, :50, :10] == 200).all()


def test_labels_padded_and_truncated():
    boxes = np.array([[i, i, i + 10, i + 10] for i in range(150)], np.float32)
    cfg = DataConfig(hsv_prob=0.0, flip_prob=0.0, max_labels=120)
    _, labels = train_transform(np.zeros((200, 200, 3), np.uint8), boxes, np.zeros(150, np.int64), (200, 200), cfg,
                                np.random.default_rng(0))
    assert labels.shape == (120, 5) and (labels[:, 3] == 10).all()
    _, labels = train_transform(np.zeros((200, 200, 3), np.uint8), boxes[:3], np.zeros(3, np.int64), (200, 200), cfg,
                                np.random.default_rng(0))
    assert (labels[3:] == 0).all() and (labels[:3, 3] == 10).all()


def _hsv_reference(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    import cv2
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.int32)
    hsv[..., 0] = (hsv[..., 0] + g[0]) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] + g[1], 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + g[2], 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def test_hsv_matches_reference_and_gain_distribution():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for g in ([3, -20, 25], [-5, 30, -30], [0, 0, 0]):
        np.testing.assert_array_equal(apply_hsv(img.copy(), np.array(g, np.int16)), _hsv_reference(img, g))
    draws = np.array([hsv_gains(rng, (5.0, 30.0, 30.0)) for _ in range(4000)])
    assert draws.dtype == np.int16 and (np.abs(draws) <= [5, 30, 30]).all()
    # zero when the channel is switched off (1/2) or |U(-1,1)·gain| < 1 (1/gain): 0.5 + 0.5/gain
    np.testing.assert_allclose((draws == 0).mean(axis=0), [0.6, 0.5 + 0.5 / 30, 0.5 + 0.5 / 30], atol=0.04)


# --- the 2021 release's pipeline (data.pipeline="legacy_2021") ---------------------------------

def test_box_candidates_hand_worked():
    from yolox_ray.data.legacy import box_candidates
    before = np.array([[0, 0, 10, 10]] * 5, np.float32)
    after = np.array([[0, 0, 10, 10],  # kept
                      [0, 0, 2, 10],  # w = 2 is not > 2
                      [0, 0, 4, 4],  # area ratio 0.16 <= 0.2
                      [0, 0, 5, 5],  # area ratio 0.25: kept
                      [0, 0, 3, 70]], np.float32)  # aspect 23 >= 20
    assert box_candidates(before, after).tolist() == [True, False, False, True, False]
    assert box_candidates(before[:1], np.array([[0, 0, 5, 5]], np.float32), wh_thr=5).tolist() == [False]


def test_legacy_perspective_is_centred():
    from yolox_ray.data.legacy import random_perspective
    cfg = DataConfig(degrees=0.0, shear=0.0, translate=0.0, mosaic_scale=(1.0, 1.0))
    canvas = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    boxes = np.array([[100, 60, 140, 90], [0, 0, 20, 20]], np.float32)
    out, kept, classes = random_perspective(canvas, boxes, np.array([1, 2]), (100, 150), cfg,
                                            np.random.default_rng(1))
    # Neutral parameters map the canvas centre onto the output centre: output = canvas[50:150, 75:225].
    np.testing.assert_array_equal(out, canvas[50:150, 75:225])
    np.testing.assert_allclose(kept, [[25, 10, 65, 40]])  # the corner box fell outside: filtered
    assert classes.tolist() == [1]


def test_legacy_pipeline_keeps_boxes_on_pixels():
    cfg = replace(NO_COLOUR_AUG, pipeline="legacy_2021", degrees=0.0, shear=0.0, mosaic_scale=(0.5, 1.5))
    samples = TrainSamples(Rects(12), cfg)
    checked = 0
    for s in range(12):
        img, labels = samples.sample(s, True, np.random.default_rng(s))
        # No stray check: the 2021 candidate filter drops mostly-cut-off objects by design.
        checked += check_boxes_on_pixels(img.transpose(1, 2, 0), labels, COLOURS, 0.9, check_strays=False)
    assert checked >= 30


def test_legacy_distort_changes_colours_only():
    from yolox_ray.data.legacy import distort
    img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    outs = [distort(img.copy(), np.random.default_rng(s)) for s in range(8)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert sum(not np.array_equal(o, img) for o in outs) >= 6


def test_legacy_mixup_pastes_nothing_when_no_box_passes():
    from yolox_ray.data.legacy import mixup_2021

    class Tiny:
        def __len__(self):
            return 1

        def load(self, i):  # one 3x3 box: at most 4.5 px after the <= 1.5 jitter, under the 5 px threshold
            return np.full((100, 100, 3), 200, np.uint8), np.array([[10, 10, 13, 13]], np.float32), np.array([0])

    base = np.zeros((100, 100, 3), np.uint8)
    boxes = np.array([[1, 1, 50, 50]], np.float32)
    for s in range(5):
        img, out_boxes, classes = mixup_2021(base, boxes, np.array([3]), Tiny(), np.array([0]), (100, 100),
                                             DataConfig(), np.random.default_rng(s))
        assert img is base and out_boxes.tolist() == boxes.tolist() and classes.tolist() == [3]
