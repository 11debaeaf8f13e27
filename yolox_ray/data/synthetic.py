"""The embedded synthetic COCO-format dataset: real JPEG files plus COCO JSON, made from a seed.

Why synthetic: a newcomer (and CI) needs a dataset that exercises the same code path as COCO
(files on disk, pycocotools, COCOeval) and that a nano model learns on a CPU in minutes. Eight
shape classes are told apart by *shape only* (colour and texture are random) on textured
backgrounds with distractor lines. Two styles (`data.synthetic_style`):

- `easy` (default): 1-5 medium/large objects with little occlusion and light clutter, so a
  from-scratch nano model reaches a useful AP in minutes of CPU (the README's learning run and the
  quick ablation use it).
- `dense`: the easy look with 6-12 smaller objects per image (medium, some large), so every image
  carries about three times as many positives: the quick ablation uses it, because the roadmap's
  rows with one positive per object learn from few samples per step otherwise.
- `coco_like`: the hard variant: 2-7 objects, heavy clutter (lines, soft blobs), partial occlusion
  and a COCO-like size spread (about 45 % small objects, area < 32² px; smallest side 10 px at 320);
  the images of version 3. It learns several times slower (README, "Does it learn?").

Every image is generated from its own generator seeded by (seed, split, index), so a split is
the same whatever its length and any image can be regenerated alone.  The layout mirrors COCO 2017
(`annotations/instances_{train,val}2017.json`, `train2017/`, `val2017/`), so a folder written by
`yolox-ray data synth --out DIR` can be passed as `--data DIR`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# Bump when the generator's output changes: it is part of the cache key.
SYNTHETIC_VERSION = 4

SYNTHETIC_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "ellipse", "cross", "star", "ring", "diamond")

TRAIN_ANN = "annotations/instances_train2017.json"
VAL_ANN = "annotations/instances_val2017.json"
TRAIN_IMAGES = "train2017"
VAL_IMAGES = "val2017"

_SPLIT_CODE = {"train": 1, "val": 2}
_JPEG_QUALITY = 92


@dataclass(frozen=True)
class SyntheticStyle:
    """How hard the generated images are. Sizes are fractions of the image's long side."""

    objects: tuple[int, int]  # objects per image, inclusive (before placement failures)
    min_side: float  # smallest box side (log-uniform object sizes between min_side and max_side)
    max_side: float
    max_occlusion: float  # a later object may cover at most this share of an earlier object's box
    lines: tuple[int, int]  # distractor lines/arcs per image, inclusive
    blobs: tuple[int, int]  # soft irregular blobs per image, inclusive


SYNTHETIC_STYLES: dict[str, SyntheticStyle] = {
    "easy": SyntheticStyle(objects=(1, 5), min_side=1 / 10, max_side=0.45, max_occlusion=0.15, lines=(0, 2),
                           blobs=(0, 1)),
    "coco_like": SyntheticStyle(objects=(2, 7), min_side=1 / 32, max_side=0.5, max_occlusion=0.45, lines=(1, 5),
                                blobs=(0, 3)),
    "dense": SyntheticStyle(objects=(6, 12), min_side=1 / 10, max_side=0.3, max_occlusion=0.15, lines=(0, 2),
                            blobs=(0, 1)),
}


# ---------------------------------------------------------------------------------------------
# Shapes: each returns an anti-aliased alpha mask (uint8, 0..255) of about `size` pixels.


def _polygon_mask(points: np.ndarray) -> np.ndarray:
    """Rasterise a polygon (float [k, 2], any position) into a tight mask; 4-bit subpixel precision."""
    points = points - points.min(axis=0) + 1.0
    w = int(math.ceil(points[:, 0].max())) + 2
    h = int(math.ceil(points[:, 1].max())) + 2
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return mask


def _regular(n: int, radius: float, angle: float) -> np.ndarray:
    t = angle + np.arange(n) * (2 * math.pi / n)
    return np.stack((radius * np.cos(t), radius * np.sin(t)), axis=1)


def _ellipse_mask(a: float, b: float, angle_deg: float) -> np.ndarray:
    r = int(math.ceil(max(a, b))) + 2
    mask = np.zeros((2 * r + 1, 2 * r + 1), np.uint8)
    cv2.ellipse(mask, ((r + 0.5, r + 0.5), (2 * a, 2 * b), angle_deg), 255, -1, cv2.LINE_AA)
    return mask


def _shape_mask(cls: int, size: float, rng: np.random.Generator) -> np.ndarray:
    name = SYNTHETIC_CLASSES[cls]
    half = size / 2
    if name == "circle":
        return _ellipse_mask(half, half, 0.0)
    if name == "ellipse":
        return _ellipse_mask(half, half * rng.uniform(0.4, 0.6), rng.uniform(0, 180))
    if name == "ring":
        outer = _ellipse_mask(half, half, 0.0)
        inner_r = half * rng.uniform(0.45, 0.6)
        inner = np.zeros_like(outer)
        c = (outer.shape[0] - 1) / 2 + 0.5
        cv2.ellipse(inner, ((c, c), (2 * inner_r, 2 * inner_r), 0), 255, -1, cv2.LINE_AA)
        return cv2.subtract(outer, inner)
    if name == "square":
        return _polygon_mask(_regular(4, half * math.sqrt(2), math.radians(45 + rng.uniform(-12, 12))))
    if name == "diamond":
        pts = _regular(4, half, math.radians(rng.uniform(-8, 8)))
        pts[:, 0] *= rng.uniform(0.7, 1.0)
        return _polygon_mask(pts)
    if name == "triangle":
        return _polygon_mask(_regular(3, half * 1.1, rng.uniform(0, 2 * math.pi)))
    if name == "star":
        outer = _regular(5, half * 1.05, rng.uniform(0, 2 * math.pi))
        start = math.atan2(outer[0, 1], outer[0, 0]) + math.pi / 5
        inner = _regular(5, half * 1.05 * 0.42, start)
        pts = np.empty((10, 2))
        pts[0::2], pts[1::2] = outer, inner
        return _polygon_mask(pts)
    if name == "cross":
        t = rng.uniform(0.15, 0.2)  # half arm thickness / size
        arm = np.array([[-t, -0.5], [t, -0.5], [t, -t], [0.5, -t], [0.5, t], [t, t], [t, 0.5], [-t, 0.5],
                        [-t, t], [-0.5, t], [-0.5, -t], [-t, -t]]) * size
        theta = math.radians(rng.uniform(-15, 15))
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        return _polygon_mask(arm @ rot.T)
    raise ValueError(f"unknown synthetic class index {cls}")


def _tight(mask: np.ndarray) -> np.ndarray:
    """Crop a mask to the pixels with alpha >= 128 (those define the ground-truth box)."""
    ys, xs = np.nonzero(mask >= 128)
    return mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


# ---------------------------------------------------------------------------------------------
# Appearance


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(60, 256), rng.integers(50, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _background(h: int, w: int, rng: np.random.Generator, style: SyntheticStyle) -> np.ndarray:
    """Gradient + low-frequency clouds + pixel noise + distractor lines and soft blobs."""
    c0, c1 = _random_colour(rng) * 0.8, _random_colour(rng) * 0.8
    theta = rng.uniform(0, 2 * math.pi)
    t = np.arange(w, dtype=np.float32)[None, :] * math.cos(theta) + np.arange(h, dtype=np.float32)[:, None] * math.sin(theta)
    t -= t.min()
    t /= max(float(t.max()), 1.0)
    img = c0 + (c1 - c0) * t[..., None]
    cloud_cells = int(rng.integers(3, 9))
    clouds = rng.normal(0, rng.uniform(8, 22), (cloud_cells, cloud_cells, 3)).astype(np.float32)
    img += cv2.resize(clouds, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(rng.uniform(2, 7))
    img = np.clip(img, 0, 255, out=img).astype(np.uint8)
    scale = max(h, w) / 320
    for _ in range(int(rng.integers(style.lines[0], style.lines[1] + 1))):  # distractor lines and arcs
        p0 = rng.uniform((0, 0), (w, h))
        p1 = p0 + rng.normal(0, 0.3 * max(h, w), 2)
        thickness = max(1, int(round(rng.uniform(1, 3) * scale)))
        colour = tuple(float(c) for c in _random_colour(rng))
        if rng.random() < 0.7:
            cv2.line(img, tuple(int(v) for v in p0), tuple(int(v) for v in p1), colour, thickness, cv2.LINE_AA)
        else:
            axes = tuple(int(v) for v in rng.uniform(10, 80, 2) * scale)
            cv2.ellipse(img, tuple(int(v) for v in p0), axes, rng.uniform(0, 360), 0, rng.uniform(40, 160), colour,
                        thickness, cv2.LINE_AA)
    for _ in range(int(rng.integers(style.blobs[0], style.blobs[1] + 1))):  # soft irregular blobs: sharp-edged shapes are objects, these are not
        r = rng.uniform(12, 50) * scale
        k = int(rng.integers(6, 11))
        pts = _regular(k, 1.0, rng.uniform(0, math.pi)) * (r * rng.uniform(0.5, 1.3, (k, 1)))
        centre = rng.uniform((0, 0), (w, h))
        sigma = rng.uniform(4, 10) * scale
        reach = int(math.ceil(1.3 * r + 3 * sigma))  # the blob's support after blurring
        x0, y0 = max(0, int(centre[0]) - reach), max(0, int(centre[1]) - reach)
        x1, y1 = min(w, int(centre[0]) + reach + 1), min(h, int(centre[1]) + reach + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        blob = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(blob, [np.round(pts + centre - (x0, y0)).astype(np.int32)], 255, cv2.LINE_AA)
        alpha = cv2.GaussianBlur(blob, (0, 0), sigma).astype(np.float32)[..., None] * np.float32(rng.uniform(0.3, 0.7) / 255)
        region = img[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = (region * (1 - alpha) + _random_colour(rng) * alpha).astype(np.uint8)
    return img


def _texture(h: int, w: int, rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """An object fill (float32 [h, w, 3]) that contrasts with the mean background colour `avoid`."""
    colour = _random_colour(rng)
    for _ in range(8):
        if np.abs(colour - avoid).sum() >= 150:
            break
        colour = _random_colour(rng)
    else:
        colour = np.where(avoid > 127, 20.0, 235.0).astype(np.float32)
    kind = rng.random()
    tex = np.empty((h, w, 3), np.float32)
    tex[:] = colour
    if kind < 0.35:  # stripes in a second colour
        period = rng.uniform(3, 9)
        theta = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        phase = (xx * math.cos(theta) + yy * math.sin(theta)) / period
        other = colour * rng.uniform(0.35, 0.7)
        tex[(np.floor(phase).astype(np.int64) % 2) == 1] = other
    elif kind < 0.6:  # noisy
        tex += rng.normal(0, rng.uniform(12, 30), (h, w, 3)).astype(np.float32)
    elif kind < 0.8:  # shaded
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (xx / max(w - 1, 1) + yy / max(h - 1, 1)) / 2
        tex *= (0.6 + 0.6 * t)[..., None]
    return tex


# ---------------------------------------------------------------------------------------------
# Images


def _image_size(size: int, rng: np.random.Generator) -> tuple[int, int]:
    short = int(round(size * rng.uniform(0.75, 1.0) / 2)) * 2
    return (short, size) if rng.random() < 0.7 else (size, short)  # (h, w); mostly landscape


def render_image(size: int, rng: np.random.Generator,
                 style: SyntheticStyle = SYNTHETIC_STYLES["easy"]) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
    """One synthetic image (BGR uint8) and its objects [(class index, [x, y, w, h])]."""
    h, w = _image_size(size, rng)
    img = _background(h, w, rng, style)
    n = 0 if rng.random() < 0.02 else int(rng.integers(style.objects[0], style.objects[1] + 1))
    lo, hi = max(6.0, size * style.min_side), size * style.max_side  # >= 6 px even on tiny images
    sizes = np.sort(np.exp(rng.uniform(math.log(lo), math.log(hi), n)))[::-1]  # large first, at the back
    placed: list[np.ndarray] = []  # xyxy of earlier objects
    objects: list[tuple[int, list[float]]] = []
    for s in sizes:
        cls = int(rng.integers(len(SYNTHETIC_CLASSES)))
        mask = _tight(_shape_mask(cls, float(s), rng))
        for _ in range(4):  # thin shapes (ellipse, rotated triangle): grow to the minimum side
            if min(mask.shape) >= lo:
                break
            s = s * lo / min(mask.shape) * 1.05
            mask = _tight(_shape_mask(cls, float(s), rng))
        mh, mw = mask.shape
        if min(mh, mw) < lo:
            continue
        if mh >= h or mw >= w:
            continue
        for _ in range(20):
            x0, y0 = int(rng.integers(0, w - mw + 1)), int(rng.integers(0, h - mh + 1))
            box = np.array([x0, y0, x0 + mw, y0 + mh], np.float64)
            if all(_covered_share(prev, box) <= style.max_occlusion for prev in placed):
                break
        else:
            continue
        patch = img[y0:y0 + mh, x0:x0 + mw].astype(np.float32)
        tex = _texture(mh, mw, rng, patch.reshape(-1, 3).mean(axis=0))
        alpha = mask.astype(np.float32)[..., None] / 255
        img[y0:y0 + mh, x0:x0 + mw] = np.clip(patch * (1 - alpha) + tex * alpha, 0, 255).astype(np.uint8)
        placed.append(box)
        objects.append((cls, [float(x0), float(y0), float(mw), float(mh)]))
    img = cv2.GaussianBlur(img, (0, 0), 0.5) if rng.random() < 0.3 else img
    return img, objects


def _covered_share(prev: np.ndarray, new: np.ndarray) -> float:
    """Share of box `prev`'s area covered by box `new`."""
    iw = max(0.0, min(prev[2], new[2]) - max(prev[0], new[0]))
    ih = max(0.0, min(prev[3], new[3]) - max(prev[1], new[1]))
    return iw * ih / ((prev[2] - prev[0]) * (prev[3] - prev[1]))


def _write_split(root: Path, split: str, count: int, size: int, seed: int, style: str) -> None:
    image_dir = root / (TRAIN_IMAGES if split == "train" else VAL_IMAGES)
    image_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in range(count):
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
        img, objects = render_image(size, rng, SYNTHETIC_STYLES[style])
        image_id = index + 1
        file_name = f"{image_id:012d}.jpg"
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"could not encode synthetic image {file_name}")
        (image_dir / file_name).write_bytes(buf.tobytes())
        images.append({"id": image_id, "file_name": file_name, "height": int(img.shape[0]), "width": int(img.shape[1])})
        for cls, bbox in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
    coco = {
        "info": {"description": f"yolox-ray synthetic shapes v{SYNTHETIC_VERSION}", "style": style, "seed": seed, "split": split,
                 "size": size},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SYNTHETIC_CLASSES)],
    }
    ann_path = root / (TRAIN_ANN if split == "train" else VAL_ANN)
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    ann_path.write_text(json.dumps(coco, separators=(",", ":")))


def generate_synthetic(out: str | Path, num_train: int, num_val: int, size: int, seed: int,
                       style: str = "easy") -> Path:
    """Write the synthetic dataset to `out` atomically (temp folder, then rename) and return `out`.

    If `out` already exists (another process finished first) it is left as is.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f"synthetic split sizes must be >= 1, got train={num_train}, val={num_val}")
    if size < 64:
        raise ValueError(f"synthetic image size must be >= 64, got {size}")
    if style not in SYNTHETIC_STYLES:
        raise ValueError(f"unknown synthetic style {style!r}; known: {', '.join(SYNTHETIC_STYLES)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_split(tmp, "train", num_train, size, seed, style)
        _write_split(tmp, "val", num_val, size, seed, style)
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / TRAIN_ANN).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def synthetic_dir_name(num_train: int, num_val: int, size: int, seed: int, style: str = "easy") -> str:
    return f"synthetic-v{SYNTHETIC_VERSION}-{style}-s{seed}-n{num_train}-{num_val}-px{size}"


def run_synth_cli(args: Any) -> int:
    """`yolox-ray data synth --out DIR --train N --val M --size S --seed K --style easy|dense|coco_like`."""
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"yolox-ray: {out} already exists and is not empty; choose a new --out", flush=True)
        return 2
    if out.exists():
        out.rmdir()
    try:
        generate_synthetic(out, args.train, args.val, args.size, args.seed, args.style)
    except ValueError as exc:
        print(f"yolox-ray: {exc}", flush=True)
        return 2
    for split, ann in (("train", TRAIN_ANN), ("val", VAL_ANN)):
        data = json.loads((out / ann).read_text())
        areas = np.array([a["area"] for a in data["annotations"]], np.float64)
        small = float((areas < 32 ** 2).mean()) if areas.size else 0.0
        large = float((areas > 96 ** 2).mean()) if areas.size else 0.0
        print(f"{split}: {len(data['images'])} images, {areas.size} objects "
              f"(small {small:.0%}, medium {1 - small - large:.0%}, large {large:.0%})")
    print(f"wrote {out}  (use it with --data {out})")
    return 0
