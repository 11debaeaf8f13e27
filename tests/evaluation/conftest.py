"""Fixtures of the evaluation tests (helper functions live in eval_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from yolox_ray.data import generate_synthetic


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("eval_synth") / "ds", 12, 10, 160, seed=11)
