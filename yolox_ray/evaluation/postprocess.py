"""Decoded model outputs → per-image detections (§8): best class, obj×cls score, conf filter, NMS."""

from __future__ import annotations

import torch
from torch import Tensor

from yolox_ray.evaluation.nms import batched_nms

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def postprocess(outputs: Tensor, num_classes: int, conf_thresh: float = 0.01, nms_thresh: float = 0.65) -> list[Tensor]:
    """outputs [B, A, 5 + C] (cx, cy, w, h, obj, cls probs) → B tensors [n, 7]
    (x1, y1, x2, y2, obj, class_conf, class_idx), sorted by score within each image.

    Only the best class of each box is kept; keep obj·class_conf >= conf_thresh; class-wise NMS.
    """
    if outputs.ndim != 3 or outputs.shape[-1] != 5 + num_classes:
        raise ValueError(f"postprocess: expected outputs [B, A, {5 + num_classes}] for {num_classes} classes, "
                         f"got {tuple(outputs.shape)}")
    b, a = outputs.shape[:2]
    flat = outputs.reshape(b * a, -1)
    class_conf, class_idx = flat[:, 5:].max(dim=1)
    score = flat[:, 4] * class_conf
    sel = torch.nonzero(score >= conf_thresh).squeeze(1)
    image_idx = torch.div(sel, a, rounding_mode="floor")
    cx, cy, w, h = flat[sel, :4].unbind(1)
    boxes = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=1)
    groups = image_idx * num_classes + class_idx[sel]
    keep = batched_nms(boxes, score[sel], groups, nms_thresh)
    rows = torch.cat((boxes[keep], flat[sel[keep], 4:5], class_conf[sel[keep], None],
                      class_idx[sel[keep], None].to(boxes.dtype)), dim=1)
    per_image = image_idx[keep]
    order = torch.argsort(per_image, stable=True)  # keep the score order inside each image
    counts = torch.bincount(per_image, minlength=b).tolist()
    return list(torch.split(rows[order], counts))


def legacy_normalize(images: Tensor) -> Tensor:
    """BGR 0-255 → RGB/255, ImageNet mean/std: the input the 2021 release's weights expect."""
    mean = images.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
    return (images.flip(1) / 255.0 - mean) / std
