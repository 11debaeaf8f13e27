"""`yolox-ray info`: parameters, GFLOPs (paper convention) and anchor points of a model preset."""

from __future__ import annotations

import argparse
import json
from typing import Any

from yolox_ray.config import ConfigError, experiment_preset
from yolox_ray.models.complexity import count_gflops, count_params
from yolox_ray.models.yolox import build_model
from yolox_ray.paper import paper_size


def model_info(name: str, size: int | None = None, num_classes: int = 80) -> dict[str, Any]:
    """Size facts of preset `name` at a square input `size` (default: the preset's test size)."""
    if num_classes < 1:
        raise ConfigError(f"--num-classes must be >= 1, got {num_classes}")
    hw = tuple(experiment_preset(name).data.test_size) if size is None else (size, size)
    if hw[0] <= 0 or hw[0] % 32 or hw[1] % 32:
        raise ConfigError(f"--size must be a positive multiple of 32, got {size}")
    model = build_model(name, num_classes)
    grid = model.anchor_grid(hw)
    cells = sum(h * w for h, w in grid.sizes)
    paper = paper_size(name)
    return {
        "model": name,
        "num_classes": num_classes,
        "size": list(hw),
        "params": count_params(model),
        "gflops": round(count_gflops(model, hw), 3),
        "anchor_points": cells,
        "predictions": grid.num,
        "n_anchors": model.n_anchors,
        "paper": None if paper is None else {"params_m": paper.params_m, "gflops": paper.gflops,
                                              "size": [paper.size, paper.size], "num_classes": 80,
                                              "source": paper.source},
    }


def format_info(info: dict[str, Any]) -> str:
    h, w = info["size"]
    lines = [f"{info['model']}  ({info['num_classes']} classes, input {h}x{w})",
             f"  parameters     {info['params']:,}  ({info['params'] / 1e6:.2f} M)",
             f"  GFLOPs         {info['gflops']:.3f}  (paper convention: 2 x (conv MACs + bias adds"
             " + 2/BN element + 1/LeakyReLU element))",
             f"  anchor points  {info['anchor_points']}  ({info['predictions']} predictions,"
             f" {info['n_anchors']} per point)"]
    paper = info["paper"]
    if paper is not None:
        lines.append(f"  paper          {paper['params_m']} M params, {paper['gflops']} GFLOPs"
                     f" (80 classes, {paper['size'][0]}x{paper['size'][1]}; {paper['source']})")
    return "\n".join(lines)


def run_info(args: argparse.Namespace) -> int:
    info = model_info(args.model, args.size, args.num_classes)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
