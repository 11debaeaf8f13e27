"""The full training state, as plain containers of tensors so it loads with `weights_only=True`.

A checkpoint is taken at an epoch boundary and holds everything an exact continuation needs:
model, EMA (+ update count), optimizer, grad scaler, counters, the RNG states of *every* worker
(python, numpy, torch, CUDA), best AP and the tracking run id. The sampler position is the epoch
boundary itself: the loader's order is a function of (seed, epoch).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolox_ray.metrics import AP

FORMAT = "yolox_ray.checkpoint/1"
WEIGHTS_FORMAT = "yolox_ray.weights/1"
FILENAME = "checkpoint.pt"


# --------------------------------------------------------------------------------------------
# RNG states as tensors / plain containers


def get_rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) RNG states, weights_only-safe."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": npst["key"].numpy().astype(np.uint32), "pos": npst["pos"]},
        "has_gauss": npst["has_gauss"],
        "gauss": npst["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------
# Files


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write atomically (tmp + rename) so a crash never leaves a truncated checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file (or a directory holding `checkpoint.pt`) with weights_only=True."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location=map_location, weights_only=True)


def is_training_checkpoint(state: Any) -> bool:
    return isinstance(state, dict) and state.get("format") == FORMAT


def is_weights_file(state: Any) -> bool:
    return isinstance(state, dict) and state.get("format") == WEIGHTS_FORMAT


def eval_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to evaluate/deploy: the EMA copy when present, else the raw model."""
    if state.get("ema") is not None:
        return state["ema"]["module"]
    return state["model"]


def weights_file(state: dict[str, Any]) -> dict[str, Any]:
    """The deployable part of a training state: its eval (EMA) weights, config, epoch and AP.

    This is what MLflow stores as the best model: about a third of the full state (no raw model,
    no optimizer momenta, no RNG), since Ray's checkpoint already is the one full copy to resume
    from. The weights sit under ``"model"`` as in an official model-zoo file, so both
    `yolox-ray eval --weights` (which reads the config from it) and official tools load it.
    """
    last = state.get("last_eval") or {}
    return {
        "format": WEIGHTS_FORMAT,
        "config": state.get("config"),
        "model": eval_weights(state),
        "from_ema": state.get("ema") is not None,
        "epoch": state.get("epoch"),
        AP: last.get(AP),
        "best_ap": state.get("best_ap"),
    }
