"""Dataset rules in one place: what is fatal, what is skipped, and the cheap per-image check.

Used by `COCODataset` (in every Ray worker) and by the driver before any cluster starts
(`check_split`, `check_dataset`), so both apply the same rules and the driver can print what
the workers would only warn about.

- Fatal (`DatasetError`, one line naming the file and the problem): annotation file missing,
  unreadable or not valid JSON, no images, malformed or duplicate image/category ids, image
  folder missing, no usable box at all (a background-only dataset is refused: there is nothing
  to learn classes or boxes from), more than `MAX_UNREADABLE_FRACTION` of the images unreadable.
- Skipped and counted: annotations on unknown image or category ids, boxes with non-finite
  coordinates, non-positive width/height or entirely outside their image; unreadable images
  (missing, empty, no decodable header, truncated, size disagreeing with the JSON) are dropped
  from the index together with their annotations.  Counted only: boxes clipped to their image,
  background images, images with more boxes than `data.max_labels` (truncated per sample).
- The per-image check reads a few bytes of each file (JPEG: SOI, the segment headers up to the SOF
  dimensions, EOI in the last 1 KiB; PNG: signature, IHDR dimensions, IEND at the end; other formats:
  a full `cv2.imread`).  Results are cached per image folder in a small JSON keyed on each
  file's (size, mtime), so a rerun only stats the folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO

from yolox_ray.config import ConfigError

# Above this fraction of unreadable images in a split, a run refuses to start.
MAX_UNREADABLE_FRACTION = 0.05
CHECK_CACHE_VERSION = 1
_HEAD_BYTES = 64
_TAIL_BYTES = 1024


class DatasetError(ConfigError):
    """A dataset that cannot be used; the message names the file and the problem.

    A `ConfigError` (hence a `ValueError`): the run's data settings point at unusable data, which
    no retry can fix; `yolox-ray` prints it in one line and exits with code 2."""

    kind = "dataset error"


class DataWarning(UserWarning):
    """Something in a dataset was skipped or is unusual; the message says what and how many."""


# ---------------------------------------------------------------------------------------------
# Annotation rules


def load_annotations(path: str | Path) -> dict:
    """The parsed annotation JSON with list-valued 'images', 'annotations', 'categories'."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotation file {path} does not exist")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"annotation file {path} is not valid JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"annotation file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"annotation file {path}: expected a JSON object with 'images', 'annotations', "
                           f"'categories', got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"annotation file {path}: missing or non-list '{key}'")
    return data


@dataclass
class ParsedSplit:
    """The result of the annotation rules (no image file looked at yet)."""

    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    image_info: dict[int, dict]
    kept: list[dict]  # cleaned annotations, each with "_clean" = (x1, y1, x2, y2)
    skipped: Counter  # what was skipped or clipped -> count


def parse_split(ann_file: Path, data: dict) -> ParsedSplit:
    """Validate ids and clean the boxes (official §7 rule); skipped annotations are counted."""
    images, categories = data["images"], data["categories"]
    if not images:
        raise DatasetError(f"annotation file {ann_file} lists no images: the dataset is empty")
    if not categories:
        raise DatasetError(f"annotation file {ann_file} lists no categories")
    try:
        cat_ids = sorted(int(c["id"]) for c in categories)
        names = {int(c["id"]): str(c.get("name", c["id"])) for c in categories}
        image_info = {int(im["id"]): im for im in images}
        for im in images:
            im["width"], im["height"], im["file_name"] = int(im["width"]), int(im["height"]), str(im["file_name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"annotation file {ann_file}: malformed image or category entry ({exc!r})") from None
    if len(cat_ids) != len(set(cat_ids)):
        dup = sorted(c for c, n in Counter(cat_ids).items() if n > 1)
        raise DatasetError(f"annotation file {ann_file}: duplicate category ids {dup[:5]}")
    if len(image_info) != len(images):
        dup = sorted(i for i, n in Counter(int(im["id"]) for im in images).items() if n > 1)
        raise DatasetError(f"annotation file {ann_file}: duplicate image ids {dup[:5]}"
                           f"{' …' if len(dup) > 5 else ''}")
    bad = [i for i, im in image_info.items() if im["width"] <= 0 or im["height"] <= 0]
    if bad:
        raise DatasetError(f"annotation file {ann_file}: image id {min(bad)} has a non-positive width/height")
    cat_index = {c: i for i, c in enumerate(cat_ids)}
    kept, skipped = clean_annotations(ann_file, data["annotations"], image_info, cat_index)
    return ParsedSplit(tuple(cat_ids), tuple(names[c] for c in cat_ids), image_info, kept, skipped)


def clean_annotations(ann_file: Path, annotations: list, image_info: dict, cat_index: dict) -> tuple[list, Counter]:
    """Drop annotations on unknown images/categories and unusable boxes (counted); clip the rest."""
    skipped: Counter = Counter()
    kept = []
    for ann in annotations:
        try:
            image_id, cat_id = int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"annotation file {ann_file}: malformed annotation "
                               f"{ann.get('id', '?') if isinstance(ann, dict) else ann!r} (needs image_id, "
                               "category_id and bbox [x, y, w, h])") from None
        im = image_info.get(image_id)
        if im is None:
            skipped["annotations on unknown image ids"] += 1
            continue
        if cat_id not in cat_index:
            skipped["annotations with unknown category ids"] += 1
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            skipped["boxes with non-finite (NaN/inf) coordinates"] += 1
            continue
        # §7 cleaning: clip to the image; keep only boxes with a positive clipped extent.
        x1, y1 = max(0.0, x), max(0.0, y)
        x2, y2 = min(float(im["width"]), x1 + max(0.0, w)), min(float(im["height"]), y1 + max(0.0, h))
        if not (w > 0 and h > 0):
            skipped["boxes with non-positive width/height"] += 1
            continue
        if not (x2 > x1 and y2 > y1):
            skipped["boxes outside their image"] += 1
            continue
        if x < 0 or y < 0 or x + w > im["width"] + 1e-3 or y + h > im["height"] + 1e-3:
            skipped["boxes clipped to their image (kept)"] += 1
        ann = dict(ann)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = w * h
        ann["_clean"] = (x1, y1, x2, y2)
        kept.append(ann)
    return kept, skipped


# ---------------------------------------------------------------------------------------------
# The cheap per-image check


def _jpeg_size(f) -> tuple[int, int] | None:
    """(h, w) from the first SOFn marker of a JPEG, seeking over the segments before it, or None."""
    f.seek(2)
    for _ in range(10_000):
        if f.read(1) != b"\xff":
            return None
        m = f.read(1)
        while m == b"\xff":  # fill bytes
            m = f.read(1)
        if not m:
            return None
        marker = m[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        seg = f.read(2)
        if len(seg) != 2:
            return None
        (length,) = struct.unpack(">H", seg)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            body = f.read(5)
            if len(body) != 5:
                return None
            h, w = struct.unpack(">HH", body[1:5])
            return int(h), int(w)
        f.seek(length - 2, os.SEEK_CUR)
    return None


def probe_image(path: str | Path, size: int | None = None) -> tuple[str, int, int]:
    """("ok", h, w) or (reason, 0, 0) for one image file, without decoding it (JPEG, PNG)."""
    path = Path(path)
    try:
        if size is None:
            size = path.stat().st_size
        if size == 0:
            return "empty file", 0, 0
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read(_TAIL_BYTES)
            hw = _jpeg_size(f) if head[:2] == b"\xff\xd8" else None
    except FileNotFoundError:
        return "missing", 0, 0
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})", 0, 0
    if head[:2] == b"\xff\xd8":
        if hw is None:
            return "JPEG without a readable frame header", 0, 0
        if b"\xff\xd9" not in tail:
            return "truncated JPEG (no end-of-image marker)", 0, 0
        return "ok", hw[0], hw[1]
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        if len(head) < 24 or head[12:16] != b"IHDR":
            return "PNG without an IHDR header", 0, 0
        w, h = struct.unpack(">II", head[16:24])
        if b"IEND" not in tail:
            return "truncated PNG (no IEND chunk)", 0, 0
        return "ok", int(h), int(w)
    import cv2  # another format: decode it once (slow, but rare in detection datasets)

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return "not a decodable image", 0, 0
    return "ok", int(img.shape[0]), int(img.shape[1])


def default_check_cache(image_dir: Path) -> Path:
    """Where the check results of an image folder are cached: next to the folder when it is
    writable (`.<folder>.yolox_checks.json`), else under ~/.cache/yolox_ray/checks/."""
    image_dir = Path(image_dir).resolve()
    beside = image_dir.parent / f".{image_dir.name}.yolox_checks.json"
    if os.access(image_dir.parent, os.W_OK):
        return beside
    digest = hashlib.sha1(str(image_dir).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "yolox_ray" / "checks" / f"{image_dir.name}-{digest}.json"


def _read_cache(path: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text())
        if data.get("version") == CHECK_CACHE_VERSION and isinstance(data.get("files"), dict):
            return data["files"]
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _write_cache(path: Path, files: dict[str, list]) -> None:
    try:  # atomic (temp file + rename): concurrent workers never read half a cache
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": CHECK_CACHE_VERSION, "files": files}, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache is an optimisation


def check_images(image_dir: Path, file_names: list[str], expected_hw: list[tuple[int, int]], *,
                 cache_file: Path | None = None, progress: TextIO | None = None,
                 label: str = "") -> dict[str, str]:
    """{file_name: reason} of the unreadable images among `file_names` (relative to image_dir).

    A file is readable when it exists, is not empty, has a decodable header whose size equals
    `expected_hw` and is not truncated.  Results are cached in `cache_file` by (size, mtime_ns).
    `progress`: a stream for a progress line every few seconds while uncached files are probed.
    """
    image_dir = Path(image_dir)
    cache_file = default_check_cache(image_dir) if cache_file is None else cache_file
    cached = _read_cache(cache_file)
    try:
        with os.scandir(image_dir) as entries:
            stats = {}
            for e in entries:
                try:
                    if e.is_file():
                        st = e.stat()
                        stats[e.name] = (st.st_size, st.st_mtime_ns)
                except OSError:
                    pass
    except OSError as exc:
        raise DatasetError(f"image folder {image_dir} cannot be listed: {exc}") from None
    bad: dict[str, str] = {}
    fresh: dict[str, list] = {}
    todo = []
    for name, hw in zip(file_names, expected_hw):
        st = stats.get(name)
        if st is None and ("/" in name or os.sep in name):  # a file in a sub-folder
            try:
                s = (image_dir / name).stat()
                st = (s.st_size, s.st_mtime_ns)
            except OSError:
                st = None
        if st is None:
            bad[name] = "missing"
            continue
        entry = cached.get(name)
        if entry is not None and entry[0] == st[0] and entry[1] == st[1]:
            fresh[name] = entry
        else:
            todo.append((name, st))
    last = start = time.monotonic()
    for n, (name, st) in enumerate(todo, 1):
        status, h, w = probe_image(image_dir / name, st[0])
        fresh[name] = [st[0], st[1], status, h, w]
        now = time.monotonic()
        if progress is not None and (now - last > 2.0 or (n == len(todo) and now - start > 2.0)):
            print(f"checking images{' of ' + label if label else ''}: {n}/{len(todo)} "
                  f"({n / max(now - start, 1e-9):.0f}/s)", file=progress, flush=True)
            last = now
    merged = {k: v for k, v in cached.items() if k in stats and k not in fresh}  # other splits' files
    merged.update(fresh)
    if todo or len(merged) != len(cached):
        _write_cache(cache_file, merged)
    for name, hw in zip(file_names, expected_hw):
        entry = fresh.get(name)
        if entry is None:
            continue
        _, _, status, h, w = entry
        if status != "ok":
            bad[name] = status
        elif (h, w) != tuple(hw):
            bad[name] = f"image is {h}x{w} (h x w) but the annotation file says {hw[0]}x{hw[1]}"
    return bad


def refuse_too_many_unreadable(ann_file: Path, image_dir: Path, unreadable: dict[str, str], total: int,
                               max_fraction: float = MAX_UNREADABLE_FRACTION) -> None:
    if unreadable and len(unreadable) > max_fraction * total:
        name, reason = next(iter(sorted(unreadable.items())))
        raise DatasetError(f"{len(unreadable)} of {total} images listed in {ann_file} are unreadable "
                           f"(more than {max_fraction:.0%}; e.g. {image_dir / name}: {reason})")


# ---------------------------------------------------------------------------------------------
# The whole split, as the driver sees it


@dataclass
class SplitReport:
    """What the rules found in one split (everything the workers would skip or truncate)."""

    split: str
    ann_file: str
    image_dir: str
    num_images: int  # usable images (after dropping unreadable ones)
    num_boxes: int
    unreadable: dict[str, str] = field(default_factory=dict)  # file name -> reason
    skipped: dict[str, int] = field(default_factory=dict)  # what -> count
    background_images: int = 0
    truncated_images: int = 0  # images with more than max_labels boxes
    max_labels: int = 120

    def lines(self) -> list[str]:
        """One self-contained line per finding, each starting with the split's name."""
        p = f"{self.split}:"
        out = [f"{p} {self.num_images} images, {self.num_boxes} boxes ({self.ann_file})"]
        if self.unreadable:
            out.append(f"{p} {len(self.unreadable)} unreadable images skipped: "
                       + ", ".join(f"{n} ({r})" for n, r in sorted(self.unreadable.items())[:5])
                       + (" …" if len(self.unreadable) > 5 else ""))
        for what, count in self.skipped.items():
            out.append(f"{p} {count} {what}")
        if self.truncated_images:
            out.append(f"{p} {self.truncated_images} images with more than data.max_labels={self.max_labels} boxes "
                       f"(each sample keeps the first {self.max_labels})")
        if self.background_images:
            out.append(f"{p} {self.background_images} images without boxes (kept as background)")
        return out

    def metrics(self) -> dict[str, float]:
        p = f"data/{self.split}"
        return {f"{p}/images": float(self.num_images), f"{p}/boxes": float(self.num_boxes),
                f"{p}/unreadable_images": float(len(self.unreadable)),
                f"{p}/skipped_annotations": float(sum(v for k, v in self.skipped.items() if "(kept)" not in k)),
                f"{p}/clipped_boxes": float(sum(v for k, v in self.skipped.items() if "(kept)" in k)),
                f"{p}/background_images": float(self.background_images),
                f"{p}/truncated_images": float(self.truncated_images)}

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_split(ann_file: str | Path, image_dir: str | Path, *, split: str = "train", max_labels: int = 120,
                cache_file: Path | None = None, progress: TextIO | None = None) -> SplitReport:
    """Apply every rule of `COCODataset` to one split without loading any image; raise
    DatasetError for a fatal problem, else return what would be skipped."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    data = load_annotations(ann_file)
    if not image_dir.is_dir():
        raise DatasetError(f"image folder {image_dir} does not exist (annotations: {ann_file})")
    parsed = parse_split(ann_file, data)
    ids = sorted(parsed.image_info)
    names = [parsed.image_info[i]["file_name"] for i in ids]
    hws = [(parsed.image_info[i]["height"], parsed.image_info[i]["width"]) for i in ids]
    unreadable = check_images(image_dir, names, hws, cache_file=cache_file, progress=progress,
                              label=str(image_dir))
    refuse_too_many_unreadable(ann_file, image_dir, unreadable, len(ids))
    dropped = {i for i, n in zip(ids, names) if n in unreadable}
    per_image: Counter = Counter()
    for ann in parsed.kept:
        if not ann.get("iscrowd") and int(ann["image_id"]) not in dropped:
            per_image[int(ann["image_id"])] += 1
    usable = [i for i in ids if i not in dropped]
    num_boxes = sum(per_image.values())
    if num_boxes == 0:
        raise DatasetError(background_only_message(ann_file))
    return SplitReport(split=split, ann_file=str(ann_file), image_dir=str(image_dir), num_images=len(usable),
                       num_boxes=num_boxes, unreadable=dict(sorted(unreadable.items())), skipped=dict(parsed.skipped),
                       background_images=sum(1 for i in usable if per_image[i] == 0),
                       truncated_images=sum(1 for n in per_image.values() if n > max_labels), max_labels=max_labels)


def background_only_message(ann_file: Path) -> str:
    return (f"annotation file {ann_file}: no usable (non-crowd, non-empty) boxes: every image is background, "
            "nothing to train or evaluate on")


def check_dataset(data_cfg: Any, *, progress: TextIO | None = None) -> list[SplitReport]:
    """Both splits of a config's dataset (the synthetic set is generated first if needed)."""
    from yolox_ray.data.paths import resolve_dataset

    paths = resolve_dataset(data_cfg)
    return [check_split(paths.train_ann, paths.train_images, split="train", max_labels=data_cfg.max_labels,
                        progress=progress),
            check_split(paths.val_ann, paths.val_images, split="val", max_labels=data_cfg.max_labels,
                        progress=progress)]


def print_reports(reports: Iterable[SplitReport], out: TextIO | None = None, prefix: str = "") -> None:
    out = out or sys.stdout
    for report in reports:
        for line in report.lines():
            print(f"{prefix}data {line}", file=out)
    out.flush()
