"""RNG states survive a weights_only save/load and reproduce the same draws."""

import random

import numpy as np
import pytest
import torch

from yolox_ray.engine.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state


def _draw():
    return random.random(), random.gauss(0, 1), float(np.random.rand()), float(np.random.randn()), torch.rand(3)


def test_rng_roundtrip_through_weights_only_file(tmp_path):
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    random.gauss(0, 1)  # leave a cached gaussian in python's state
    np.random.randn()
    path = save_checkpoint({"rng": [get_rng_state()], "epoch": 2}, tmp_path / "c" / "checkpoint.pt")
    first = _draw()
    state = load_checkpoint(tmp_path / "c")  # directory form
    assert state["epoch"] == 2
    set_rng_state(state["rng"][0])
    second = _draw()
    assert first[:4] == second[:4]
    assert torch.equal(first[4], second[4])
    assert not path.with_name("checkpoint.pt.tmp").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
