"""Shared fixtures of the data tests (helper functions live in data_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from yolox_ray.data import generate_synthetic


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """24 train / 8 val images at 160 px (real JPEGs + COCO JSON)."""
    return generate_synthetic(tmp_path_factory.mktemp("synth") / "ds", 24, 8, 160, seed=3)
