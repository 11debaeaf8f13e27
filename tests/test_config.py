"""Config: official defaults, validation messages, overrides, YAML and flat round trips."""

import pytest

from yolox_ray.config import (
    AssignConfig,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    TrainConfig,
    apply_overrides,
    dump_yaml,
    experiment_preset,
    from_flat_dict,
    known_keys,
    load_yaml,
    model_preset,
    to_flat_dict,
)


def test_defaults_are_the_official_recipe():
    cfg = ExperimentConfig()
    assert (cfg.assign.candidate_k, cfg.assign.center_radius, cfg.assign.geometry) == (10, 1.5, "center")
    assert (cfg.assign.iou_cost_weight, cfg.loss.reg_weight) == (3.0, 5.0)
    assert (cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.no_aug_epochs) == (300, 5, 15)
    assert cfg.train.lr_per_image == pytest.approx(0.01 / 64)
    assert (cfg.train.min_lr_ratio, cfg.train.weight_decay, cfg.train.momentum) == (0.05, 5e-4, 0.9)
    assert (cfg.model.bn_eps, cfg.model.bn_momentum) == (1e-3, 0.03)
    assert (cfg.data.mosaic_scale, cfg.data.mixup_scale, cfg.data.degrees, cfg.data.shear) == ((0.1, 2.0), (0.5, 1.5), 10.0, 2.0)
    assert (cfg.eval.conf_thresh, cfg.eval.nms_thresh) == (0.01, 0.65)


def test_penalty_follows_geometry():
    assert AssignConfig().penalty == 1e6
    assert AssignConfig(geometry="box_and_center", center_radius=2.5).penalty == 1e5


def test_presets_carry_their_data_settings():
    nano = experiment_preset("yolox_nano")
    assert nano.model.depthwise and nano.model.width == 0.25
    assert nano.data.input_size == (416, 416) and nano.data.mosaic_prob == 0.5 and not nano.data.enable_mixup
    assert nano.data.multiscale_sides() == (10, 20)
    s = experiment_preset("yolox_s")
    assert s.data.multiscale_sides() == (15, 25)  # 480..800
    assert experiment_preset("yolov3_coupled").assign.assigner == "yolov3"
    with pytest.raises(ConfigError, match="unknown preset 'yolox_q'"):
        model_preset("yolox_q")


@pytest.mark.parametrize(
    "override, message",
    [
        ("assign.candidate_k=0", "assign.candidate_k: must be an integer >= 1"),
        ("assign.center_radius=0", "assign.center_radius: must be > 0"),
        ("assign.geometry=box", "assign.geometry: must be one of"),
        ("data.mosaic_prob=1.5", "data.mosaic_prob: must be a probability"),
        ("train.no_aug_epochs=300", "train.no_aug_epochs"),
        ("data.input_size=[100,100]", "data.input_size: must be two positive multiples of 32"),
        ("assign.candidate_k=abc", "assign.candidate_k: expected an integer"),
        ("assign.nope=1", "unknown config key 'assign.nope'"),
        ("nosection.x=1", "unknown config section"),
        ("train.epochs", "expected key=value"),
    ],
)
def test_invalid_values_are_rejected_with_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        apply_overrides(ExperimentConfig(), [override])


def test_assigner_must_match_the_head():
    with pytest.raises(ConfigError, match="needs an anchor-based head"):
        apply_overrides(ExperimentConfig(), {"assign.assigner": "yolov3"})
    with pytest.raises(ConfigError, match="needs an anchor-free head"):
        apply_overrides(experiment_preset("yolov3_coupled"), {"assign.assigner": "simota"})


def test_overrides_coerce_types():
    cfg = apply_overrides(
        ExperimentConfig(),
        ["assign.candidate_k=12", "data.mosaic_scale=[0.5, 1.5]", "train.grad_clip=none", "train.lr_per_image=0.01/64",
         "train.amp=true", "name=run1"],
    )
    assert cfg.assign.candidate_k == 12 and cfg.data.mosaic_scale == (0.5, 1.5)
    assert cfg.train.grad_clip is None and cfg.train.amp is True and cfg.name == "run1"
    assert cfg.train.lr_per_image == pytest.approx(0.00015625)
    # Tune hands numbers, not strings.
    assert apply_overrides(cfg, {"assign.center_radius": 2, "train.grad_clip": 10.0}).assign.center_radius == 2.0


def test_flat_and_yaml_round_trips(tmp_path):
    cfg = apply_overrides(experiment_preset("yolox_tiny"), ["assign.geometry=box_and_center", "assign.center_radius=2.5"])
    flat = to_flat_dict(cfg)
    assert set(flat) == set(known_keys())
    assert from_flat_dict(flat) == cfg
    path = tmp_path / "c.yaml"
    dump_yaml(cfg, path)
    assert load_yaml(path) == cfg


def test_yaml_with_preset_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: yolox_nano\nassign:\n  candidate_k: 7\ntrain.epochs: 20\n")
    cfg = load_yaml(path)
    assert cfg.model.depthwise and cfg.assign.candidate_k == 7 and cfg.train.epochs == 20
    path.write_text("assign: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")


def test_frozen():
    with pytest.raises(Exception):
        TrainConfig().epochs = 3  # type: ignore[misc]
    assert DataConfig().is_synthetic
