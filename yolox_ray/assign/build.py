"""`build_assigner`: the assigner function for an AssignConfig (plain if/elif, no registry)."""

from __future__ import annotations

import functools
from typing import Callable

from torch import Tensor

from yolox_ray.assign.fixed_centre import center, multi_positive
from yolox_ray.assign.common import Assignment
from yolox_ray.assign.ota_sinkhorn import ota
from yolox_ray.assign.sim_ota import simota
from yolox_ray.assign.yolov3_anchors import yolov3
from yolox_ray.boxes import AnchorGrid
from yolox_ray.config import AssignConfig, ConfigError

# (pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid) -> Assignment
Assigner = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, AnchorGrid], Assignment]


def build_assigner(cfg: AssignConfig) -> Assigner:
    """The assigner named by cfg.assigner with cfg bound (see `assign.common` for the arguments)."""
    if cfg.assigner == "simota":
        fn = simota
    elif cfg.assigner == "ota":
        fn = ota
    elif cfg.assigner == "yolov3":
        fn = yolov3
    elif cfg.assigner == "center":
        fn = center
    elif cfg.assigner == "multi_positive":
        fn = multi_positive
    else:
        raise ConfigError(f"assign.assigner: unknown assigner {cfg.assigner!r}")
    return functools.partial(fn, cfg=cfg)
