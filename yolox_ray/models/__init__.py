"""The YOLOX model family: CSPDarknet/PAFPN and Darknet-53/YOLOv3-FPN, decoupled or coupled heads.

Public entry points: `build_model`, `YOLOX`, `load_official_weights`, `count_params`, `count_gflops`,
`measure_latency_ms`.
"""

from yolox_ray.models.complexity import count_gflops, count_params, measure_latency_ms
from yolox_ray.models.weights import WeightsError, load_backbone_weights, load_official_weights
from yolox_ray.models.yolox import YOLOX, build_model

__all__ = ["YOLOX", "WeightsError", "build_model", "count_gflops", "count_params", "load_backbone_weights",
           "load_official_weights", "measure_latency_ms"]
