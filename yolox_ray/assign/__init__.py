"""Label assignment: batched pure tensor functions sharing one calling convention (see `common`).

    from yolox_ray.assign import build_assigner, split_labels
    gt_boxes, gt_classes, gt_valid = split_labels(labels)
    result = build_assigner(cfg.assign)(pred_boxes, obj_logits, cls_logits, gt_boxes, gt_classes, gt_valid, grid)
"""

from yolox_ray.assign.build import Assigner, build_assigner
from yolox_ray.assign.fixed_centre import center, fcos_level, multi_positive
from yolox_ray.assign.common import Assignment, geometry_prior, split_labels
from yolox_ray.assign.ota_sinkhorn import ota, sinkhorn
from yolox_ray.assign.sim_ota import candidate_costs, dynamic_k_matching, dynamic_ks, simota
from yolox_ray.assign.yolov3_anchors import fit_anchors_kmeans, shape_iou, yolov3

__all__ = [
    "Assigner", "Assignment", "build_assigner", "candidate_costs", "center", "dynamic_k_matching",
    "dynamic_ks", "fcos_level", "fit_anchors_kmeans", "geometry_prior", "multi_positive", "ota",
    "shape_iou", "simota", "sinkhorn", "split_labels", "yolov3",
]
