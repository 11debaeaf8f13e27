"""Postprocessing (decode, class-aware NMS) and COCO evaluation (no Ray, no MLflow here)."""

from yolox_ray.evaluation.coco_eval import EvalResult, evaluate_predictions, to_coco_results
from yolox_ray.evaluation.evaluator import evaluate, predict
from yolox_ray.evaluation.nms import batched_nms
from yolox_ray.evaluation.postprocess import legacy_normalize, postprocess

__all__ = ["EvalResult", "batched_nms", "evaluate", "evaluate_predictions", "legacy_normalize",
           "postprocess", "predict", "to_coco_results"]
