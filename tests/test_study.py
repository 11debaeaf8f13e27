"""yolox_ray.study without Ray: one validation pass over every config a study can produce (class
count, data paths, batch over workers, resources, the corners of the space), each failure naming the
row or parameter; the class count from the data; the warm start; the shipped files as the one
definition of each search."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from yolox_ray.cli import main as cli_main
from yolox_ray.study import SearchParam, StudyError, StudyRow, StudySpec, load_study

REPO = Path(__file__).resolve().parents[1]
SHORT = {"train.epochs": 4, "train.warmup_epochs": 1, "train.no_aug_epochs": 1, "train.batch_size": 8}


def coco_root(tmp_path: Path, categories: int, name: str = "coco") -> Path:
    """A COCO 2017 layout with `categories` classes and no images (enough for every check before Ray)."""
    root = tmp_path / name
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    (root / "val2017").mkdir()
    ann = {"images": [], "annotations": [],
           "categories": [{"id": i + 1, "name": f"c{i}", "supercategory": "x"} for i in range(categories)]}
    for split in ("train", "val"):
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(ann))
    return root


def optuna_spec(**changes) -> dict:
    data = {"name": "t", "preset": "yolox_nano", "overrides": dict(SHORT),
            "space": {"assign.candidate_k": {"type": "int", "low": 5, "high": 15}}, "num_samples": 3}
    data.update(changes)
    return data


def refused(data: dict) -> str:
    with pytest.raises(StudyError) as info:
        StudySpec.from_dict(data)
    return str(info.value)


def test_the_module_is_ray_free():
    import subprocess

    code = "import sys, yolox_ray.study, yolox_ray.data.classes; print('ray' in sys.modules, 'mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_class_count_comes_from_the_data(tmp_path):
    root = coco_root(tmp_path, 3)
    spec = StudySpec.from_dict(optuna_spec(overrides={**SHORT, "data.root": str(root)}))
    assert spec.base_config().model.num_classes == 3
    assert spec.trial_config({"assign.candidate_k": 7}).model.num_classes == 3
    # The synthetic set has 8 shape classes (count them in its generator's category list).
    from yolox_ray.data.synthetic import SYNTHETIC_CLASSES

    assert StudySpec.from_dict(optuna_spec()).base_config().model.num_classes == len(SYNTHETIC_CLASSES)
    # A value the user sets must agree with the data; the message names both numbers.
    msg = refused(optuna_spec(overrides={**SHORT, "data.root": str(root), "model.num_classes": 80}))
    assert "80" in msg and "has 3" in msg and "model.num_classes" in msg
    assert StudySpec.from_dict(optuna_spec(overrides={**SHORT, "data.root": str(root),
                                                      "model.num_classes": 3})).base_config().model.num_classes == 3


def test_every_invalid_case_names_its_row_or_parameter(tmp_path):
    root3 = coco_root(tmp_path, 3)
    grid = {"searcher": "grid", "space": {"assign.candidate_k": [5, 10]}}
    cases = [
        # class count in a row
        ({**optuna_spec(), **grid, "rows": [{"name": "ok"}, {"name": "wrong", "overrides": {"model.num_classes": 80}}]},
         ["rows.wrong", "80", "8"]),
        # data paths: a row's root that does not exist, and a root missing its val annotations
        ({**optuna_spec(), **grid, "rows": [{"name": "gone", "overrides": {"data.root": str(tmp_path / "nope")}}]},
         ["rows.gone", "nope", "not found"]),
        (optuna_spec(overrides={**SHORT, "data.root": str(root3), "data.val_ann": "annotations/missing.json"}),
         ["data.val_ann", "missing.json"]),
        # a data path as a search dimension: the bad choice is named
        (optuna_spec(space={"data.root": {"type": "choice", "values": ["synthetic", str(tmp_path / "gone")]}}),
         ["space.data.root", "gone"]),
        # batch over workers: the base batch, and a corner of the space
        (optuna_spec(workers=3), ["not divisible by 3 workers", "base config"]),
        (optuna_spec(workers=2, space={"train.batch_size": {"type": "int", "low": 4, "high": 9}}),
         ["space.train.batch_size=9", "not divisible by 2 workers"]),
        (optuna_spec(workers=4, space={"train.batch_size": {"type": "choice", "values": [8, 16, 6]}}),
         ["space.train.batch_size=6", "not divisible by 4 workers"]),
        # resources
        (optuna_spec(cpus_per_worker=0.0, gpus_per_worker=0.0), ["cpus_per_worker"]),
        (optuna_spec(max_failures=-2), ["max_failures"]),
        # corners: each bound alone is valid, both high together do not fit the schedule
        (optuna_spec(overrides={**SHORT, "train.epochs": 10},
                     space={"train.warmup_epochs": {"type": "float", "low": 1.0, "high": 6.0},
                            "train.no_aug_epochs": {"type": "int", "low": 1, "high": 5}}),
         ["all high bounds together", "warm-up plus no-aug"]),
    ]
    for data, needles in cases:
        msg = refused(data)
        assert all(n in msg for n in needles), (needles, msg)


def test_class_count_mismatch_is_refused_before_ray_starts(tmp_path, capsys):
    import ray

    out = tmp_path / "out"
    rc = cli_main(["tune", "--study", str(REPO / "configs" / "tune_simota.yaml"), "--out", str(out),
                   "--tracking-uri", "http://127.0.0.1:9", "model.num_classes=80"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "80" in err and "8" in err and "model.num_classes" in err
    root = coco_root(tmp_path, 5)
    rc = cli_main(["tune", "--study", str(REPO / "configs" / "tune_k_sweep.yaml"), "--out", str(out),
                   "--tracking-uri", "http://127.0.0.1:9", f"data.root={root}", "model.num_classes=8"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "the model has 8 classes" in err and "has 5" in err
    rc = cli_main(["tune", "--study", str(REPO / "configs" / "tune_aug_schedule.yaml"), "--out", str(out),
                   "--tracking-uri", "http://127.0.0.1:9", "--workers", "3"])
    assert rc == 2 and "not divisible by 3 workers" in capsys.readouterr().err
    assert not ray.is_initialized() and not out.exists()


def test_warm_start_is_the_official_defaults():
    spec = load_study(REPO / "configs" / "tune_simota.yaml")
    # The official SimOTA / YOLOX loss values (reference: k 10, r 1.5 in the current code, centre
    # geometry, cost = cls + 3 * IoU, loss = 5 * IoU + obj + cls).
    official = {"assign.candidate_k": 10, "assign.center_radius": 1.5, "assign.geometry": "center",
                "assign.iou_cost_weight": 3.0, "assign.cls_cost_weight": 1.0, "loss.reg_weight": 5.0,
                "loss.obj_weight": 1.0, "loss.cls_weight": 1.0}
    assert set(official) == {p.key for p in spec.space}
    assert spec.warm_start() == official
    assert spec.first_trial_params() == official
    # Outside the range it is clipped in; a list-valued choice travels as its YAML text.
    clipped = StudySpec.from_dict(optuna_spec(space={
        "assign.candidate_k": {"type": "int", "low": 12, "high": 15},
        "data.mosaic_scale": {"type": "choice", "values": [[0.1, 2.0], [0.5, 1.5]]}}))
    point = clipped.warm_start()
    assert point["assign.candidate_k"] == 12
    assert yaml.safe_load(point["data.mosaic_scale"]) == [0.5, 1.5]  # yolox_nano's official mosaic scale
    assert clipped.trial_config(point).data.mosaic_scale == (0.5, 1.5)


def test_probe_points_cover_each_bound_and_choice():
    spec = StudySpec.from_dict(optuna_spec(space={
        "assign.candidate_k": {"type": "int", "low": 5, "high": 15},
        "assign.geometry": {"type": "choice", "values": ["center", "box_and_center"]},
        "assign.center_radius": {"type": "float", "low": 1.0, "high": 3.0}}))
    seen = [params for _, _, params in spec.probe_points()]
    assert {"assign.candidate_k": 5} in seen and {"assign.candidate_k": 15} in seen
    assert {"assign.geometry": "center"} in seen and {"assign.geometry": "box_and_center"} in seen
    assert {"assign.candidate_k": 5, "assign.center_radius": 1.0} in seen
    assert {"assign.candidate_k": 15, "assign.center_radius": 3.0} in seen
    grid = StudySpec(name="g", searcher="grid", overrides=dict(SHORT), rows=(StudyRow("a"), StudyRow("b")),
                     space=(SearchParam("assign.candidate_k", "grid", values=(5, 10, 15)),))
    where = [w for w, _, _ in grid.probe_points()]
    assert any("rows.b" in w and "=15" in w for w in where) and any("rows.a" in w and "=5" in w for w in where)


def test_shipped_study_files_are_valid_and_are_the_scripts_searches():
    import importlib.util
    import argparse

    files = sorted((REPO / "configs").glob("*.yaml"))
    assert {f.name for f in files} == {"tune_simota.yaml", "tune_k_sweep.yaml", "tune_aug_schedule.yaml"}
    specs = {f.stem: load_study(f) for f in files}
    assert all(s.base_config().model.num_classes == 8 for s in specs.values())  # the synthetic data

    def script(name: str):
        mod_spec = importlib.util.spec_from_file_location(f"s_{name}", REPO / "studies" / f"{name}.py")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        return module

    from yolox_ray.study_cli import study_from_file

    simota = script("tune_simota")
    args = simota.parse_args([])
    from_script = study_from_file(simota.STUDY_FILE, args, name="x")
    assert from_script.space == specs["tune_simota"].space
    assert from_script.base_config() == specs["tune_simota"].base_config()
    aug = script("aug_schedule")
    args = aug.parse_args([])
    from_script = study_from_file(aug.STUDY_FILE, args, name="x", adapt_space=aug.fit_no_aug)
    assert from_script.space == specs["tune_aug_schedule"].space
    # Another schedule moves the no-aug range with it instead of keeping a second copy of the space.
    longer = study_from_file(aug.STUDY_FILE, argparse.Namespace(**{**vars(args), "epochs": 32}), name="x",
                             adapt_space=aug.fit_no_aug)
    no_aug = next(p for p in longer.space if p.key == "train.no_aug_epochs")
    assert (no_aug.low, no_aug.high) == (2, 10)
    assert [p.key for p in longer.space if p.key != "train.no_aug_epochs"] == \
        [p.key for p in specs["tune_aug_schedule"].space if p.key != "train.no_aug_epochs"]


# ---------------------------------------------------------------------------------------------
# Several objectives: AP against a model cost

WIDTH = {"model.width": {"type": "choice", "values": [0.125, 0.25]}}


def multi_spec(**changes) -> dict:
    data = {"space": {"assign.candidate_k": {"type": "int", "low": 5, "high": 15}, **WIDTH},
            "objectives": ["AP", "params"], **changes}
    return optuna_spec(**data)


def test_objectives_are_validated_before_anything_runs():
    cases = [
        (multi_spec(objectives=["AP", "latency"]), ["unknown objective 'latency'", "latency_ms"]),
        (multi_spec(objectives=["AP50", "params"]), ["first objective must be the study's metric 'AP'"]),
        (multi_spec(objectives=["AP"]), ["1 to 2 model costs"]),
        (multi_spec(objectives=["AP", "params", "gflops", "latency_ms"]), ["1 to 2 model costs"]),
        (multi_spec(objectives=["AP", "params", "params"]), ["duplicates"]),
        (multi_spec(objectives="AP,params"), ["must be a list"]),
        (multi_spec(early_stop=True), ["early_stop", "ASHA"]),
        # The SimOTA knobs alone leave the model (and so its cost) the same for every trial.
        (multi_spec(space={"assign.candidate_k": {"type": "int", "low": 5, "high": 15}}),
         ["params is the same for every trial", "model.*"]),
        (multi_spec(objectives=["AP", "latency_ms"], space={"loss.reg_weight": {"type": "float", "low": 1, "high": 5}}),
         ["latency_ms is the same for every trial", "data.test_size"]),
        ({**multi_spec(), "searcher": "grid", "space": {"model.width": [0.125, 0.25]}}, ["searcher: optuna"]),
    ]
    for data, needles in cases:
        msg = refused(data)
        assert all(n in msg for n in needles), (needles, msg)
    # The test size changes GFLOPs and latency but not the parameter count.
    size = {"data.test_size": {"type": "choice", "values": [[128, 128], [256, 256]]}}
    assert StudySpec.from_dict(multi_spec(objectives=["AP", "gflops"], space=size)).costs == ("gflops",)
    assert "params is the same" in refused(multi_spec(space=size))


def test_a_multi_objective_study_runs_every_trial_to_the_end_and_round_trips(tmp_path):
    from yolox_ray.study import dump_study, with_changes

    spec = StudySpec.from_dict(multi_spec(objectives=["AP", "latency_ms", "gflops"]))
    assert not spec.early_stopping  # optuna's default (ASHA) is off with several objectives
    assert spec.objective_modes() == ("max", "min", "min")
    dump_study(spec, tmp_path / "s.yaml")
    assert "objectives:\n- AP\n- latency_ms\n- gflops\n" in (tmp_path / "s.yaml").read_text()
    assert load_study(tmp_path / "s.yaml") == spec
    # A single-objective study's YAML has no objectives entry (study.yaml files of older studies match).
    single = StudySpec.from_dict(optuna_spec())
    assert "objectives" not in dump_study(single) and single.early_stopping and single.objective_modes() == ("max",)
    # The command line's --objective2 sets the objectives and turns ASHA off, even where the file turns it on.
    on = StudySpec.from_dict(optuna_spec(space=multi_spec()["space"], early_stop=True))
    both = with_changes(on, objective2="params")
    assert both.objectives == ("AP", "params") and not both.early_stopping


def test_objective2_on_a_search_that_cannot_change_the_model_fails_before_ray(tmp_path, capsys):
    import ray

    out = tmp_path / "out"
    rc = cli_main(["tune", "--study", str(REPO / "configs" / "tune_simota.yaml"), "--out", str(out),
                   "--tracking-uri", "http://127.0.0.1:9", "--objective2", "gflops"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gflops is the same for every trial" in err[0], err
    assert not ray.is_initialized() and not out.exists()
    with pytest.raises(SystemExit):  # argparse refuses a name outside the metrics contract
        cli_main(["tune", "--study", str(REPO / "configs" / "tune_simota.yaml"), "--objective2", "latency"])


def test_tune_simota_objective2_adds_the_width_and_is_validated():
    import importlib.util

    mod_spec = importlib.util.spec_from_file_location("s_tune_simota", REPO / "studies" / "tune_simota.py")
    simota = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(simota)
    spec = simota.build_spec(simota.parse_args(["--objective2", "latency_ms"]))
    width = next(p for p in spec.space if p.key == "model.width")
    nano = spec.base_config().model.width
    assert width.values == (nano / 2, 0.75 * nano, nano) and spec.objectives == ("AP", "latency_ms")
    assert spec.warm_start()["model.width"] == nano and not spec.early_stopping
    spec = simota.build_spec(simota.parse_args(["--objective2", "params", "--widths", "0.25,0.5"]))
    assert next(p for p in spec.space if p.key == "model.width").values == (0.25, 0.5)
    from yolox_ray.config import ConfigError

    with pytest.raises(ConfigError, match="--widths needs --objective2"):
        simota.build_spec(simota.parse_args(["--widths", "0.25"]))


def test_pareto_front_by_hand():
    from yolox_ray.study import pareto_front

    # (AP, latency) with AP maximised and latency minimised:
    points = [(0.30, 10.0),   # 0: front (the fastest)
              (0.35, 12.0),   # 1: front
              (0.34, 13.0),   # 2: dominated by 1 (lower AP, slower)
              (0.35, 12.0),   # 3: equal to 1: neither dominates the other, both stay
              (0.40, 20.0),   # 4: front (the most accurate)
              (0.30, 11.0),   # 5: dominated by 0 (same AP, slower)
              (0.20, 30.0)]   # 6: dominated by everything
    assert pareto_front(points, ("max", "min")) == [0, 1, 3, 4]
    assert pareto_front([(1.0, 5.0), (2.0, 4.0)], ("min", "min")) == [0, 1]
    assert pareto_front([(1.0, 5.0), (2.0, 6.0)], ("min", "min")) == [0]
    assert pareto_front([], ("max", "min")) == []
