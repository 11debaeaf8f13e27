"""Loading official YOLOX model-zoo checkpoints (`yolox_s.pth`, ...) into our models.

Our module tree reproduces the official state-dict keys and shapes, so loading is a strict
key-by-key, shape-by-shape copy. A file that does not fit fails with the full list of differences
and a guess of which preset (and class count) the file was saved from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

_SHOW = 8  # keys listed per category in error messages


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit the model."""


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state dict in an official checkpoint (`{"model": state_dict, ...}`) or a bare state dict."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        keys = list(obj)[:_SHOW] if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsError(f"{path} holds no state dict: expected a dict of tensors or a dict with a 'model' "
                           f"entry holding one, found {keys}")
    return dict(obj)


def _diff(expected: Mapping[str, torch.Size], found: Mapping[str, Tensor]) -> tuple[list[str], list[str], list[str]]:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k])}"
                  for k in expected if k in found and tuple(found[k].shape) != tuple(expected[k])]
    return missing, unexpected, mismatched


def _classes_in_file(state: Mapping[str, Tensor]) -> int | None:
    """Class count implied by the prediction convs of an (anchor-free or 3-anchor) head, if recognisable."""
    if "head.cls_preds.0.weight" in state and "head.obj_preds.0.weight" in state:
        n_anchors = state["head.obj_preds.0.weight"].shape[0]
        return state["head.cls_preds.0.weight"].shape[0] // max(n_anchors, 1)
    if "head.preds.0.weight" in state:
        return state["head.preds.0.weight"].shape[0] // 3 - 5
    return None


def guess_preset(state: Mapping[str, Tensor]) -> str:
    """A human hint naming the preset whose keys and shapes best match `state`."""
    from yolox_ray.config import MODEL_PRESETS
    from yolox_ray.models.yolox import build_model

    num_classes = _classes_in_file(state)
    if num_classes is None or num_classes < 1:
        return "it does not look like any YOLOX preset"
    best = ("", -1, 0)
    for name in MODEL_PRESETS:
        with torch.device("meta"):  # shapes only: no memory, no init cost
            shapes = {k: v.shape for k, v in build_model(name, num_classes).state_dict().items()}
        missing, unexpected, mismatched = _diff(shapes, state)
        if not (missing or unexpected or mismatched):
            return f"it matches build_model({name!r}, num_classes={num_classes}) exactly"
        matched = len(shapes) - len(missing) - len(mismatched)
        if matched > best[1]:
            best = (name, matched, len(shapes))
    return f"closest preset: {best[0]!r} with num_classes={num_classes} ({best[1]} of {best[2]} tensors match)"


def _misfit_lines(path: str | Path, what: str, expected: Mapping[str, torch.Size],
                  state: Mapping[str, Tensor]) -> list[str]:
    """The differences between a file and a module, one category a line; [] when they fit exactly."""
    missing, unexpected, mismatched = _diff(expected, state)
    if not (missing or unexpected or mismatched):
        return []
    lines = [f"{path} does not fit {what} ({len(expected)} tensors; file has {len(state)}):"]
    for label, items in (("missing from file", missing), ("unexpected in file", unexpected),
                         ("shape mismatch", mismatched)):
        if items:
            shown = ", ".join(items[:_SHOW]) + (f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else "")
            lines.append(f"  {len(items)} {label}: {shown}")
    return lines


def load_official_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an official YOLOX checkpoint into `model` in place (strict keys and shapes); returns model."""
    state = read_state_dict(path)
    lines = _misfit_lines(path, "this model", {k: v.shape for k, v in model.state_dict().items()}, state)
    if lines:
        raise WeightsError("\n".join(lines + [f"  hint: {guess_preset(state)}"]))
    model.load_state_dict(state, strict=True)
    return model


BACKBONE_PREFIX = "backbone.backbone."  # where the real backbone sits in a YOLOX state dict


def load_backbone_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load pretrained weights into the model's backbone only (`model.backbone.backbone`), strictly.

    The file (read with weights_only=True) holds the backbone's own keys (e.g. `stem.0.conv.weight`
    for Darknet-53), or a whole YOLOX state dict whose `backbone.backbone.` entries are taken.
    Heads and necks keep their fresh init, as the paper's ImageNet-pretrained YOLOv3 rows.
    """
    state = read_state_dict(path)
    if any(k.startswith(BACKBONE_PREFIX) for k in state):
        state = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
    backbone = model.backbone.backbone
    lines = _misfit_lines(path, f"the {type(backbone).__name__} backbone",
                          {k: v.shape for k, v in backbone.state_dict().items()}, state)
    if lines:
        raise WeightsError("\n".join(lines))
    backbone.load_state_dict(state, strict=True)
    return model
