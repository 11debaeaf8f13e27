"""`yolox-ray config` prints the exact resolved config (YAML) a `train` run or a study's first trial
uses; the class count comes from the data (synthetic or COCO categories) unless set, and a set value
that disagrees is refused naming both numbers."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from yolox_ray.cli import main
from yolox_ray.config import from_flat_dict, load_yaml

REPO = Path(__file__).resolve().parents[1]


def printed(capsys, argv: list[str]) -> dict:
    assert main(["config", *argv]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def coco_root(tmp_path: Path, categories: int) -> Path:
    root = tmp_path / "coco"
    for sub in ("annotations", "train2017", "val2017"):
        (root / sub).mkdir(parents=True)
    ann = {"images": [], "annotations": [], "categories": [{"id": 10 + i, "name": f"c{i}"} for i in range(categories)]}
    for split in ("train", "val"):
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(ann))
    return root


def test_train_config_is_printed_as_loadable_yaml(capsys, tmp_path):
    out = printed(capsys, ["--model", "yolox_s", "--epochs", "7", "assign.candidate_k=12", "train.no_aug_epochs=2"])
    assert out["name"] == "yolox_s" and out["model"]["width"] == 0.5 and out["model"]["depth"] == 0.33
    assert out["assign"]["candidate_k"] == 12 and out["train"]["epochs"] == 7
    assert out["data"]["root"] == "synthetic" and out["model"]["num_classes"] == 8  # the 8 synthetic shapes
    # The quick CPU defaults of `yolox-ray train` without a GPU are in it (small input); with a GPU they are not.
    assert out["data"]["input_size"] == [192, 192]
    assert printed(capsys, ["--model", "yolox_s", "--gpus-per-worker", "1"])["data"]["input_size"] == [640, 640]
    # The printed text is a config file: loading it gives the same config again.
    path = tmp_path / "printed.yaml"
    path.write_text(yaml.safe_dump(out))
    again = load_yaml(path)
    assert again.assign.candidate_k == 12 and again.model.num_classes == 8 and again.train.epochs == 7


def test_class_count_from_coco_categories(capsys, tmp_path):
    root = coco_root(tmp_path, 3)
    out = printed(capsys, ["--data", str(root)])
    assert out["model"]["num_classes"] == 3 and out["data"]["root"] == str(root)
    # An explicit value that agrees is kept; one that disagrees names both numbers (exit code 2).
    assert printed(capsys, ["--data", str(root), "model.num_classes=3"])["model"]["num_classes"] == 3
    assert main(["config", "--data", str(root), "model.num_classes=80"]) == 2
    err = capsys.readouterr().err
    assert "80" in err and "has 3" in err
    conf = tmp_path / "c.yaml"
    conf.write_text("model:\n  num_classes: 5\n")
    assert main(["config", "--data", str(root), "--config", str(conf)]) == 2
    assert "5" in capsys.readouterr().err
    assert main(["config", "--data", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_study_first_trial_config(capsys, tmp_path):
    simota = printed(capsys, ["--study", str(REPO / "configs" / "tune_simota.yaml")])
    # The warm start: SimOTA's official values, on the study file's base (yolox_nano at 256 px).
    assert (simota["assign"]["candidate_k"], simota["assign"]["center_radius"], simota["assign"]["geometry"]) == \
        (10, 1.5, "center")
    assert (simota["loss"]["reg_weight"], simota["assign"]["iou_cost_weight"]) == (5.0, 3.0)
    assert simota["data"]["input_size"] == [256, 256] and simota["model"]["depthwise"] is True
    assert simota["model"]["num_classes"] == 8
    from_flat_dict({f"{s}.{k}": v for s, sec in simota.items() if isinstance(sec, dict) for k, v in sec.items()})

    sweep = printed(capsys, ["--study", str(REPO / "configs" / "tune_k_sweep.yaml"), "--epochs", "6",
                             "train.batch_size=8"])
    assert sweep["assign"]["candidate_k"] == 5 and sweep["train"]["seed"] == 0  # first grid value, first seed
    assert sweep["train"]["epochs"] == 6 and sweep["train"]["batch_size"] == 8

    root = coco_root(tmp_path, 4)
    out = printed(capsys, ["--study", str(REPO / "configs" / "tune_aug_schedule.yaml"), "--data", str(root),
                           "--model", "yolox_s"])
    assert out["model"]["num_classes"] == 4 and out["model"]["width"] == 0.5 and out["data"]["root"] == str(root)
    assert main(["config", "--study", str(REPO / "configs" / "tune_aug_schedule.yaml"), "--workers", "3"]) == 2
    assert "not divisible by 3 workers" in capsys.readouterr().err
