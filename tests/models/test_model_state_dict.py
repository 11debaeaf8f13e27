"""Our state dicts have exactly the official keys, order and shapes (listings in official_state_dicts/)."""

from __future__ import annotations

import pytest
import torch

from official_listing import OFFICIAL_MODELS, parse_listing
from yolox_ray.models import build_model, count_params


@pytest.mark.parametrize("name", OFFICIAL_MODELS)
def test_state_dict_equals_official_listing(name):
    official, official_params = parse_listing(name)
    with torch.device("meta"):  # shapes only
        model = build_model(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in official if k not in ours]
    extra = [k for k in ours if k not in official]
    assert not missing and not extra, (missing[:5], extra[:5])
    wrong = {k: (ours[k], official[k]) for k in official if ours[k] != official[k]}
    assert not wrong
    assert list(ours) == list(official)  # same registration order, too
    assert count_params(model) == official_params


def test_listings_are_complete():
    # Guard against a truncated copy: every listing ends with the head's stems and holds the
    # three levels' prediction convs.
    for name in OFFICIAL_MODELS:
        keys = list(parse_listing(name)[0])
        assert keys[-1].startswith("head.stems.2."), name
        for k in range(3):
            for pred in ("cls_preds", "reg_preds", "obj_preds"):
                assert f"head.{pred}.{k}.bias" in keys
