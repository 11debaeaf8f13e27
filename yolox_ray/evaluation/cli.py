"""`yolox-ray eval --weights CKPT [--data ...]`: COCO evaluation of one of our training checkpoints
(its EMA weights and its own config), of our weights-only file (MLflow's `checkpoints/best_ckpt.pth`:
EMA weights and config) or of an official model-zoo `.pth` (config from `--model`).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from yolox_ray.config import ConfigError, ExperimentConfig, apply_overrides, experiment_preset, from_flat_dict, load_yaml
from yolox_ray.metrics import COCO_STAT_KEYS

# COCOeval's summary lines, in the order of COCO_STAT_KEYS (the metric names are the contract's).
STAT_LINES = tuple(zip(COCO_STAT_KEYS, (
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
)))


def _resolve_data_root(data: str) -> str:
    return data if data == "synthetic" else str(Path(data).expanduser().resolve())


def load_for_eval(weights: str | Path, *, model: str = "yolox_nano", data: str | None = None,
                  config_file: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                  conf: float | None = None):
    """(config, model with the weights loaded) for a checkpoint of ours or an official `.pth`."""
    import torch

    from yolox_ray.engine.checkpoint import eval_weights, is_training_checkpoint, is_weights_file
    from yolox_ray.models import build_model, load_official_weights
    from yolox_ray.models.weights import WeightsError

    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"--weights: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for unreadable files
        raise ConfigError(f"--weights: {path} is not a readable PyTorch checkpoint ({type(exc).__name__})") from None

    ours = is_training_checkpoint(state) or is_weights_file(state)
    if ours:
        cfg: ExperimentConfig = from_flat_dict(state["config"])
    else:
        cfg = experiment_preset(model)
    if config_file:
        cfg = load_yaml(config_file, base=cfg)
    if data is not None:
        cfg = replace(cfg, data=replace(cfg.data, root=_resolve_data_root(data)))
    items = list(overrides)
    if conf is not None:
        items.append(f"eval.conf_thresh={conf}")
    cfg = apply_overrides(cfg, items)

    net = build_model(cfg.model)
    if ours:
        net.load_state_dict(eval_weights(state))
    else:
        try:
            load_official_weights(net, path)
        except WeightsError as exc:
            raise ConfigError(f"--weights: {exc}") from None
    return cfg, net


def print_result(result: Any, out=None) -> None:
    out = out or sys.stdout
    for key, line in STAT_LINES:
        print(f" {line} = {float(result.stats[key]):.3f}", file=out)
    per_class = result.per_class_ap
    items = per_class.items() if isinstance(per_class, dict) else enumerate(per_class)
    print("per-class AP: " + ", ".join(f"{name} {float(ap):.3f}" for name, ap in items), file=out)
    print(f"forward {float(result.forward_ms):.2f} ms/img, NMS {float(result.nms_ms):.2f} ms/img", file=out)


def run_eval_cli(args) -> int:
    import torch

    from yolox_ray.data import COCODataset, resolve_dataset
    from yolox_ray.evaluation import evaluate

    data = args.data if getattr(args, "data", None) else None
    cfg, model = load_for_eval(args.weights, model=args.model, data=data, config_file=args.config,
                               overrides=args.overrides, conf=args.conf)
    paths = resolve_dataset(cfg.data)
    val = COCODataset(paths.val_ann, paths.val_images)
    if val.num_classes != cfg.model.num_classes:
        raise ConfigError(f"--data: the weights have {cfg.model.num_classes} classes but {paths.val_ann} "
                          f"has {val.num_classes} (official COCO weights need --data /path/to/coco)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    print(f"evaluating {args.weights} ({cfg.name}) on {paths.val_ann} at {cfg.data.test_size[0]}x"
          f"{cfg.data.test_size[1]}, conf {cfg.eval.conf_thresh}, NMS {cfg.eval.nms_thresh}", flush=True)
    with torch.no_grad():
        result = evaluate(model, val, cfg, device, legacy=args.legacy)
    print_result(result)
    return 0
