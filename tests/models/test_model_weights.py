"""load_official_weights: official-layout files load exactly; unfit or unreadable files fail clearly."""

from __future__ import annotations

import pytest
import torch

from official_listing import fake_official_state_dict
from yolox_ray.models import WeightsError, build_model, load_official_weights


def _save(path, obj):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("name", ["yolox_nano", "yolox_darknet53"])
def test_round_trip_official_checkpoint(tmp_path, name):
    sd = fake_official_state_dict(name, seed=3)
    # Official model-zoo files: {"model": state_dict, "optimizer": ..., "start_epoch": ...}.
    path = _save(tmp_path / f"{name}.pth", {"model": sd, "start_epoch": 300, "optimizer": {"state": {}}})
    model = build_model(name)
    assert load_official_weights(model, path) is model
    loaded = model.state_dict()
    assert set(loaded) == set(sd)
    for key, tensor in sd.items():
        assert torch.equal(loaded[key], tensor), key


def test_bare_state_dict_is_accepted(tmp_path):
    sd = fake_official_state_dict("yolox_nano", seed=4)
    model = load_official_weights(build_model("yolox_nano"), _save(tmp_path / "bare.pth", sd))
    assert torch.equal(model.head.cls_preds[2].bias, sd["head.cls_preds.2.bias"])


def test_file_of_another_preset_fails_with_a_hint(tmp_path):
    path = _save(tmp_path / "s.pth", {"model": fake_official_state_dict("yolox_s")})
    model = build_model("yolox_nano")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as err:
        load_official_weights(model, path)
    msg = str(err.value)
    assert "does not fit this model" in msg
    assert "shape mismatch" in msg and "backbone.backbone.stem.conv.conv.weight: file (32, 12, 3, 3) vs model (16, 12, 3, 3)" in msg
    assert "missing from file" in msg and "dconv" in msg  # nano's depthwise convs are absent in S
    assert "build_model('yolox_s', num_classes=80)" in msg
    # Nothing was half-loaded.
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_class_count_mismatch_names_the_file_classes(tmp_path):
    path = _save(tmp_path / "s80.pth", {"model": fake_official_state_dict("yolox_s")})
    with pytest.raises(WeightsError, match=r"head.cls_preds.0.weight: file \(80, 128, 1, 1\) vs model \(20, 128, 1, 1\)") as err:
        load_official_weights(build_model("yolox_s", num_classes=20), path)
    assert "num_classes=80" in str(err.value)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    sd = fake_official_state_dict("yolox_nano")
    del sd["head.obj_preds.1.bias"]
    sd["head.extra.weight"] = torch.zeros(3)
    with pytest.raises(WeightsError) as err:
        load_official_weights(build_model("yolox_nano"), _save(tmp_path / "x.pth", {"model": sd}))
    msg = str(err.value)
    assert "1 missing from file: head.obj_preds.1.bias" in msg
    assert "1 unexpected in file: head.extra.weight" in msg
    assert "closest preset: 'yolox_nano'" in msg


def test_unreadable_and_non_checkpoint_files(tmp_path):
    model = build_model("yolox_nano")
    with pytest.raises(WeightsError, match="does not exist"):
        load_official_weights(model, tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_official_weights(model, junk)
    with pytest.raises(WeightsError, match="holds no state dict"):
        load_official_weights(model, _save(tmp_path / "meta.pth", {"epoch": 3, "lr": 0.01}))
    with pytest.raises(WeightsError, match="holds no state dict"):
        load_official_weights(model, _save(tmp_path / "list.pth", [torch.zeros(1)]))
