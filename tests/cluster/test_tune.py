"""Study specs: search spaces, validation before anything runs, YAML, trial configs (no Ray cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from yolox_ray.cli import main as cli_main
from yolox_ray.cluster.tune import (
    SearchParam,
    StudyError,
    StudyRow,
    StudySpec,
    dump_study,
    load_study,
    param_space,
    run_study,
    tune_domain,
)
from yolox_ray.config import experiment_preset

REPO = Path(__file__).resolve().parents[2]
SHORT = {"train.epochs": 4, "train.warmup_epochs": 1, "train.no_aug_epochs": 1}


def spec_dict(**changes):
    data = {"name": "t", "preset": "yolox_nano", "overrides": dict(SHORT),
            "space": {"assign.candidate_k": {"type": "int", "low": 5, "high": 15}}, "num_samples": 3}
    data.update(changes)
    return data


def test_int_range_is_inclusive_on_both_ends():
    domain = tune_domain(SearchParam("assign.candidate_k", "int", low=5, high=15))
    seen = {int(v) for v in domain.sample(size=3000)}
    assert seen == set(range(5, 16))


@pytest.mark.parametrize("space, needle", [
    ({"assign.candidate_k": {"type": "int", "low": 0, "high": 15}}, "assign.candidate_k"),  # k range outside 1..
    ({"assign.candidate_k": {"type": "int", "low": -3, "high": 4}}, ">= 1"),
    ({"assign.candidate_kk": {"type": "int", "low": 5, "high": 15}}, "did you mean assign.candidate_k"),
    ({"candidate_k": {"type": "int", "low": 5, "high": 15}}, "unknown config key 'candidate_k'"),
    ({"assign.candidate_k": {"type": "int", "low": 15, "high": 5}}, "low <= high"),
    ({"assign.candidate_k": {"type": "float", "low": 5, "high": 15}}, "expected an integer"),
    ({"assign.candidate_k": {"type": "int", "low": 5.5, "high": 15}}, "must be integers"),
    ({"assign.center_radius": {"type": "loguniform", "low": 0.0, "high": 2.0}}, "0 < low"),
    ({"assign.center_radius": {"type": "float", "low": 0.0, "high": 2.0}}, "assign.center_radius: must be > 0"),
    ({"assign.geometry": {"type": "choice", "values": ["center", "box"]}}, "'box'"),
    ({"assign.geometry": {"type": "choice", "values": []}}, "non-empty"),
    ({"assign.geometry": {"type": "uniform", "low": 1, "high": 2}}, "unknown type 'uniform'"),
    ({"train.no_aug_epochs": {"type": "int", "low": 1, "high": 9}}, "no_aug_epochs"),  # past train.epochs=4
    ({"assign.candidate_k": {"type": "grid", "values": [5, 10]}}, "searcher: grid"),
    ({"assign.candidate_k": {"type": "int", "lo": 5, "high": 15}}, "unknown fields ['lo']"),
])
def test_invalid_search_space_is_rejected(space, needle):
    with pytest.raises(StudyError) as info:
        StudySpec.from_dict(spec_dict(space=space))
    assert needle in str(info.value)


def test_other_invalid_studies_are_rejected():
    bad = [
        (spec_dict(searcher="random"), "unknown 'random'"),
        (spec_dict(num_samples=0), "num_samples"),
        (spec_dict(space={}), "at least one search dimension"),
        (spec_dict(seeds=[0, 1]), "needs searcher: grid"),
        (spec_dict(rows=[{"name": "a"}]), "need searcher: grid"),
        (spec_dict(overrides={"train.epochz": 3}), "did you mean train.epochs"),
        (spec_dict(preset="yolox_q"), "unknown preset"),
        (spec_dict(samples=3), "did you mean 'num_samples'"),
        (spec_dict(early_stop=True, grace_period=1), "warm-up"),
        (spec_dict(name="a/b"), "name"),
        (spec_dict(workers=0), "workers"),
        (spec_dict(searcher="grid", space={"assign.candidate_k": [5, 10]}, seeds=[0, 0]), "duplicates"),
        (spec_dict(searcher="grid", space={"assign.candidate_k": [5, 10]},
                   rows=[{"name": "a", "overrides": {"model.head": "tripled"}}]), "rows.a"),
    ]
    for data, needle in bad:
        with pytest.raises(StudyError) as info:
            StudySpec.from_dict(data)
        assert needle in str(info.value), (data, str(info.value))


def test_invalid_space_fails_before_any_cluster_or_directory(tmp_path):
    import ray

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec_dict(space={"assign.candidate_k": {"type": "int", "low": 0, "high": 15}})))
    out = tmp_path / "out"
    rc = cli_main(["tune", "--study", str(path), "--out", str(out)])
    assert rc == 2
    assert not ray.is_initialized()
    assert not out.exists()
    with pytest.raises(StudyError):
        run_study(StudySpec.from_dict(spec_dict()), storage_root=out, resume=True)  # nothing to resume
    assert not ray.is_initialized()


def test_shipped_study_files_load():
    simota = load_study(REPO / "configs" / "tune_simota.yaml")
    keys = {p.key: p for p in simota.space}
    k = keys["assign.candidate_k"]
    assert (k.kind, k.low, k.high) == ("int", 5, 15)
    assert simota.searcher == "optuna" and simota.total_trials() == simota.num_samples
    sweep = load_study(REPO / "configs" / "tune_k_sweep.yaml")
    assert sweep.total_trials() == 11 * len(sweep.seeds)
    aug = load_study(REPO / "configs" / "tune_aug_schedule.yaml")
    assert not aug.early_stopping


def test_yaml_round_trip_and_list_choices(tmp_path):
    spec = StudySpec.from_dict(spec_dict(space={
        "data.mosaic_scale": {"type": "choice", "values": [[0.1, 2.0], [0.5, 1.5]]},
        "assign.candidate_k": {"type": "int", "low": 5, "high": 15},
    }))
    dump_study(spec, tmp_path / "s.yaml")
    assert load_study(tmp_path / "s.yaml") == spec
    # Optuna categoricals must be scalars: list values travel as YAML text and become the tuple.
    sampled = param_space(spec)["data.mosaic_scale"].sample()
    assert isinstance(sampled, str)
    cfg = spec.trial_config({"data.mosaic_scale": sampled, "assign.candidate_k": 7})
    assert cfg.data.mosaic_scale in ((0.1, 2.0), (0.5, 1.5))
    assert cfg.assign.candidate_k == 7 and cfg.train.epochs == 4


def test_grid_rows_seeds_and_trial_config():
    base = experiment_preset("yolox_s")
    spec = StudySpec(
        name="abl", searcher="grid", base=base, overrides=dict(SHORT), seeds=(0, 1, 2),
        rows=(StudyRow("a", overrides={"assign.geometry": "box_and_center", "assign.center_radius": 2.5}, paper_ap=47.3),
              StudyRow("b", preset="yolox_tiny")),
        space=(SearchParam("assign.candidate_k", "grid", values=(5, 10)),))
    assert spec.total_trials() == 2 * 3 * 2
    space = param_space(spec)
    assert space["row"] == {"grid_search": ["a", "b"]} and space["seed"] == {"grid_search": [0, 1, 2]}
    a = spec.trial_config({"row": "a", "seed": 2, "assign.candidate_k": 5})
    assert (a.model.width, a.assign.geometry, a.assign.center_radius) == (0.5, "box_and_center", 2.5)
    assert (a.train.seed, a.assign.candidate_k, a.train.epochs) == (2, 5, 4)
    b = spec.trial_config({"row": "b", "seed": 0, "assign.candidate_k": 10})
    assert b.model.width == 0.375 and b.assign.geometry == "center" and b.train.no_aug_epochs == 1
    with pytest.raises(StudyError):
        spec.trial_config({"row": "zzz"})


def test_a_rerun_may_grow_samples_but_change_nothing_else(tmp_path):
    from yolox_ray.study import check_resume

    spec = StudySpec.from_dict(spec_dict())  # num_samples 3
    stored = yaml.safe_load(dump_study(spec))
    check_resume(spec, stored)  # identical: fine
    check_resume(StudySpec.from_dict(spec_dict(num_samples=5)), stored)  # more samples: fine
    with pytest.raises(StudyError, match="already has 3 samples.*got 2"):
        check_resume(StudySpec.from_dict(spec_dict(num_samples=2)), stored)
    with pytest.raises(StudyError, match=r"differs in: seed\)"):
        check_resume(StudySpec.from_dict(spec_dict(num_samples=5, seed=7)), stored)
    # A stored spec without num_samples has the searcher's default (8 Optuna trials).
    del stored["num_samples"]
    with pytest.raises(StudyError, match="already has 8 samples"):
        check_resume(StudySpec.from_dict(spec_dict(num_samples=5)), stored)


def test_a_rerun_of_a_grid_may_add_seeds_but_not_drop_them():
    from yolox_ray.study import check_resume

    def grid(**kw):
        return StudySpec.from_dict({"name": "g", "searcher": "grid", "preset": "yolox_nano", **kw})

    stored = yaml.safe_load(dump_study(grid(seeds=[0])))
    assert check_resume(grid(seeds=[0]), stored) == ()
    assert check_resume(grid(seeds=[0, 1, 2]), stored) == (1, 2)
    with pytest.raises(StudyError, match=r"already ran seeds \[0\].*not drop \[0\]"):
        check_resume(grid(seeds=[1, 2]), stored)
    with pytest.raises(StudyError, match="not both in one rerun"):
        check_resume(grid(seeds=[0, 1], num_samples=2), stored)
    # A study without a seed list ran at its config's seed: a list cannot be added to it afterwards.
    with pytest.raises(StudyError, match="no seed list.*not start one"):
        check_resume(grid(seeds=[0, 1]), yaml.safe_load(dump_study(grid())))


def test_default_grace_period_is_past_warmup_and_at_first_eval():
    spec = StudySpec.from_dict(spec_dict(overrides={"train.epochs": 20, "train.warmup_epochs": 2,
                                                    "train.no_aug_epochs": 4, "train.eval_interval": 5}))
    # warm-up ends after epoch 2; the first evaluation is after epoch 5.
    assert spec.default_grace_period() == 5
    spec = StudySpec.from_dict(spec_dict(overrides={"train.epochs": 20, "train.warmup_epochs": 6,
                                                    "train.no_aug_epochs": 4, "train.eval_interval": 2}))
    assert spec.default_grace_period() == 7


def test_asha_is_used_only_with_early_stopping_and_a_grace_period_before_the_end():
    from yolox_ray.cluster.tune import uses_asha

    long = {"train.epochs": 20, "train.warmup_epochs": 2, "train.no_aug_epochs": 4, "train.eval_interval": 5}
    assert uses_asha(StudySpec.from_dict(spec_dict(overrides=long)))  # grace 5 < 20 epochs
    assert not uses_asha(StudySpec.from_dict(spec_dict(overrides=long, early_stop=False)))
    assert not uses_asha(StudySpec.from_dict(spec_dict(overrides=long, grace_period=20)))
