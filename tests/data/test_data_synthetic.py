"""The synthetic generator: determinism, COCO validity, size spread, cache resolution, CLI."""

from __future__ import annotations

import json
import multiprocessing as mp
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from yolox_ray.cli import main as cli_main
from yolox_ray.config import DataConfig
from yolox_ray.data import COCODataset, DataWarning, generate_synthetic, resolve_dataset, synthetic_path
from yolox_ray.data.synthetic import SYNTHETIC_CLASSES, TRAIN_ANN, VAL_ANN


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = _files(generate_synthetic(tmp_path / "a", 6, 3, 128, seed=5))
    b = _files(generate_synthetic(tmp_path / "b", 6, 3, 128, seed=5))
    c = _files(generate_synthetic(tmp_path / "c", 6, 3, 128, seed=6))
    assert len(a) == 6 + 3 + 2 and a == b
    assert a[TRAIN_ANN] != c[TRAIN_ANN]
    # An image depends only on (seed, split, index): a longer split starts with the same images.
    d = _files(generate_synthetic(tmp_path / "d", 8, 3, 128, seed=5))
    assert all(d[k] == v for k, v in a.items() if k.endswith(".jpg"))


def test_valid_coco_with_coco_like_sizes(tmp_path):
    root = generate_synthetic(tmp_path / "s", 60, 2, 320, seed=0, style="coco_like")
    data = json.loads((root / TRAIN_ANN).read_text())
    assert [c["name"] for c in data["categories"]] == list(SYNTHETIC_CLASSES)
    boxes = np.array([a["bbox"] for a in data["annotations"]])
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    wh = np.array([sizes[a["image_id"]] for a in data["annotations"]])
    assert len(boxes) >= 60 * 3  # several objects per image
    assert (boxes[:, :2] >= 0).all() and (boxes[:, :2] + boxes[:, 2:] <= wh).all()
    assert boxes[:, 2:].min() >= 8  # not vanishingly small at 320 px
    area = boxes[:, 2] * boxes[:, 3]
    assert 0.3 <= (area < 32 ** 2).mean() <= 0.65  # a large share of small objects
    assert (area > 96 ** 2).mean() >= 0.05  # and some large ones
    assert len({a["category_id"] for a in data["annotations"]}) == len(SYNTHETIC_CLASSES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ds = COCODataset(root / TRAIN_ANN, root / "train2017")
    img, b, _ = ds.load(0)
    assert img.shape[:2] == (data["images"][0]["height"], data["images"][0]["width"])
    assert max(img.shape[:2]) == 320


def test_easy_style_has_fewer_larger_objects(tmp_path):
    root = generate_synthetic(tmp_path / "s", 60, 2, 320, seed=0)  # the default style
    data = json.loads((root / TRAIN_ANN).read_text())
    assert data["info"]["style"] == "easy"
    per_image = np.bincount([a["image_id"] for a in data["annotations"]], minlength=61)[1:]
    assert per_image.max() <= 5 and per_image.mean() >= 2
    boxes = np.array([a["bbox"] for a in data["annotations"]])
    assert boxes[:, 2:].min() >= 320 / 10 - 1  # smallest side about a tenth of the image
    assert len({a["category_id"] for a in data["annotations"]}) == len(SYNTHETIC_CLASSES)
    hard = json.loads((generate_synthetic(tmp_path / "h", 60, 2, 320, seed=0, style="coco_like") / TRAIN_ANN).read_text())
    easy_area = np.median(boxes[:, 2] * boxes[:, 3])
    hard_area = np.median([a["bbox"][2] * a["bbox"][3] for a in hard["annotations"]])
    assert easy_area > 2 * hard_area


def test_unknown_style_is_refused(tmp_path):
    import pytest

    from yolox_ray.config import ConfigError
    with pytest.raises(ValueError, match="unknown synthetic style 'hard'"):
        generate_synthetic(tmp_path / "s", 2, 1, 128, seed=0, style="hard")
    with pytest.raises(ConfigError, match="data.synthetic_style"):
        DataConfig(synthetic_style="hard")
    assert synthetic_path(DataConfig(synthetic_style="coco_like")) != synthetic_path(DataConfig())


def _resolve(cfg: DataConfig) -> str:
    return str(resolve_dataset(cfg).train_ann)


def test_resolve_generates_once_and_concurrently(tmp_path):
    cfg = DataConfig(cache_dir=str(tmp_path), synthetic_train=6, synthetic_val=2, synthetic_size=96, synthetic_seed=1)
    with mp.get_context("fork").Pool(2) as pool:  # two "workers" racing to generate the same set
        results = pool.map(_resolve, [cfg, cfg])
    paths = resolve_dataset(cfg)
    assert results == [str(paths.train_ann)] * 2
    assert paths.train_ann.parent.parent == synthetic_path(cfg)
    leftovers = [p.name for p in tmp_path.iterdir() if p.is_dir()]
    assert leftovers == [synthetic_path(cfg).name]  # no temp folders left behind
    assert len(list(paths.train_images.iterdir())) == 6 and len(list(paths.val_images.iterdir())) == 2
    mtime = paths.train_ann.stat().st_mtime_ns
    assert resolve_dataset(cfg).train_ann.stat().st_mtime_ns == mtime  # cached, not regenerated
    assert synthetic_path(replace(cfg, synthetic_seed=2)) != synthetic_path(cfg)


def test_resolve_real_root_errors(tmp_path):
    import pytest

    from yolox_ray.data import DatasetError
    with pytest.raises(DatasetError, match="is not a folder"):
        resolve_dataset(DataConfig(root=str(tmp_path / "missing")))
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2017.json").write_text("{}")
    with pytest.raises(DatasetError, match=r"data.train_images: expected the folder .*train2017"):
        resolve_dataset(DataConfig(root=str(tmp_path)))


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["data", "synth", "--out", str(out), "--train", "3", "--val", "2", "--size", "96", "--seed", "4"]) == 0
    assert "train: 3 images" in capsys.readouterr().out
    assert (out / VAL_ANN).is_file() and len(list((out / "val2017").iterdir())) == 2
    assert cli_main(["data", "synth", "--out", str(out)]) == 2  # refuses to overwrite
    # The folder is a COCO root usable as --data.
    paths = resolve_dataset(DataConfig(root=str(out)))
    assert paths.val_images == out / "val2017"
    hard = tmp_path / "hard"
    assert cli_main(["data", "synth", "--out", str(hard), "--train", "2", "--val", "1", "--size", "96",
                     "--style", "coco_like"]) == 0
    assert json.loads((hard / VAL_ANN).read_text())["info"]["style"] == "coco_like"
