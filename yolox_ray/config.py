"""Typed experiment configuration.

Config is data: frozen dataclasses whose defaults equal the official YOLOX code (see
``shared/reference/yolox.md``), validated on construction, loadable from YAML and ``key=value``
overrides, and flattenable to ``{"section.field": value}`` for MLflow params and Tune spaces.

Every section lives here so that one file answers "what can I change?".
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key and the problem."""


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def _check_prob(value: float, key: str) -> None:
    _check(0.0 <= value <= 1.0, key, f"must be a probability in [0, 1], got {value!r}")


def _check_range(pair: tuple[float, float], key: str, lowest: float = 0.0) -> None:
    _check(len(pair) == 2, key, f"must be a (low, high) pair, got {pair!r}")
    _check(lowest <= pair[0] <= pair[1], key, f"must satisfy {lowest} <= low <= high, got {pair!r}")


# YOLOv3's nine anchor shapes (w, h) in input pixels, three per level (strides 8, 16, 32).
YOLOV3_ANCHORS: tuple[tuple[float, float], ...] = (
    (10, 13), (16, 30), (33, 23),
    (30, 61), (62, 45), (59, 119),
    (116, 90), (156, 198), (373, 326),
)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture switches. Any backbone/neck works with any head (paper ablation rows)."""

    backbone: Literal["cspdarknet", "darknet53"] = "cspdarknet"
    neck: Literal["pafpn", "yolofpn"] = "pafpn"
    head: Literal["decoupled", "coupled"] = "decoupled"
    depth: float = 0.33
    width: float = 0.50
    depthwise: bool = False
    act: Literal["silu", "lrelu", "relu"] = "silu"
    num_classes: int = 80
    # 1 = anchor-free (one prediction per cell); 3 = anchor-based with `anchors` shapes.
    n_anchors: int = 1
    anchors: tuple[tuple[float, float], ...] = YOLOV3_ANCHORS
    strides: tuple[int, int, int] = (8, 16, 32)
    prior_prob: float = 0.01
    # Anchor-based centre decode: "linear" cx = (tx + gx)·s (YOLOX's, also used for its anchor-based
    # ablation heads) or "yolov3" cx = (sigmoid(tx) + gx)·s (YOLOv3's own recipe: an untrained box sits at
    # its cell's centre, not its corner). Sizes always decode as exp(tw)·anchor_w.
    box_decode: Literal["linear", "yolov3"] = "linear"
    # An ImageNet-pretrained backbone state dict (torch.save of the backbone's own keys) loaded before
    # training; "" = from scratch (the paper trains from scratch from the strong-augmentation row on).
    backbone_weights: str = ""
    bn_eps: float = 1e-3
    bn_momentum: float = 0.03

    def __post_init__(self) -> None:
        _check(self.backbone in ("cspdarknet", "darknet53"), "model.backbone",
               f"unknown backbone {self.backbone!r} (cspdarknet, darknet53)")
        _check(self.neck in ("pafpn", "yolofpn"), "model.neck", f"unknown neck {self.neck!r} (pafpn, yolofpn)")
        _check(self.head in ("decoupled", "coupled"), "model.head", f"unknown head {self.head!r} (decoupled, coupled)")
        _check(self.act in ("silu", "lrelu", "relu"), "model.act", f"unknown activation {self.act!r}")
        _check(self.depth > 0, "model.depth", f"must be > 0, got {self.depth}")
        _check(self.width > 0, "model.width", f"must be > 0, got {self.width}")
        _check(self.num_classes >= 1, "model.num_classes", f"must be >= 1, got {self.num_classes}")
        _check(self.n_anchors in (1, 3), "model.n_anchors", f"must be 1 (anchor-free) or 3, got {self.n_anchors}")
        _check(len(self.strides) == 3, "model.strides", "must have three levels")
        _check(len(self.anchors) == 3 * len(self.strides), "model.anchors",
               f"needs {3 * len(self.strides)} (w, h) shapes, got {len(self.anchors)}")
        _check(all(w > 0 and h > 0 for w, h in self.anchors), "model.anchors", "shapes must be positive")
        _check(0 < self.prior_prob < 1, "model.prior_prob", f"must be in (0, 1), got {self.prior_prob}")
        _check(self.box_decode in ("linear", "yolov3"), "model.box_decode",
               f"unknown box decode {self.box_decode!r} (linear, yolov3)")
        _check(self.box_decode == "linear" or self.n_anchors == 3, "model.box_decode",
               "the yolov3 decode is for anchor-based heads (model.n_anchors=3)")
        _check(not (self.backbone == "darknet53") or self.neck == "yolofpn", "model.neck",
               "darknet53 is built with the YOLOv3 FPN neck ('yolofpn')")
        _check(not (self.backbone == "cspdarknet") or self.neck == "pafpn", "model.neck",
               "cspdarknet is built with the PAFPN neck ('pafpn')")

    @property
    def anchor_free(self) -> bool:
        return self.n_anchors == 1


Geometry = Literal["center", "box_and_center"]
AssignerName = Literal["simota", "ota", "yolov3", "center", "multi_positive"]


@dataclass(frozen=True)
class AssignConfig:
    """Label assignment. Defaults are the current official SimOTA (centre prior r = 1.5)."""

    assigner: AssignerName = "simota"
    candidate_k: int = 10
    center_radius: float = 1.5
    geometry: Geometry = "center"
    iou_cost_weight: float = 3.0
    cls_cost_weight: float = 1.0
    # YOLOv3 assigner: extra anchors whose shape IoU exceeds this also become positives (None = best only).
    anchor_iou_threshold: float | None = None
    # Single-centre / multi-positive assigners: the longer GT side (px) splitting the levels. FCOS splits
    # on the largest centre-to-side distance, about half the side, at 64 / 128 px: so 128 / 256 here.
    level_ranges: tuple[float, float] = (128.0, 256.0)
    # OTA (Sinkhorn-Knopp).
    ota_iters: int = 50
    ota_epsilon: float = 0.1
    # Images per chunk in the batched assignment (None = whole batch at once).
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        _check(self.assigner in typing.get_args(AssignerName), "assign.assigner",
               f"unknown assigner {self.assigner!r} {typing.get_args(AssignerName)}")
        _check(isinstance(self.candidate_k, int) and self.candidate_k >= 1, "assign.candidate_k",
               f"must be an integer >= 1, got {self.candidate_k!r}")
        _check(self.center_radius > 0, "assign.center_radius", f"must be > 0, got {self.center_radius}")
        _check(self.geometry in ("center", "box_and_center"), "assign.geometry",
               f"unknown geometry {self.geometry!r} ('center' or 'box_and_center')")
        _check(self.iou_cost_weight >= 0, "assign.iou_cost_weight", "must be >= 0")
        _check(self.cls_cost_weight >= 0, "assign.cls_cost_weight", "must be >= 0")
        if self.anchor_iou_threshold is not None:
            _check(0 < self.anchor_iou_threshold <= 1, "assign.anchor_iou_threshold", "must be in (0, 1]")
        _check(0 < self.level_ranges[0] < self.level_ranges[1], "assign.level_ranges", "must be increasing and > 0")
        _check(self.ota_iters >= 1, "assign.ota_iters", "must be >= 1")
        _check(self.ota_epsilon > 0, "assign.ota_epsilon", "must be > 0")
        if self.chunk_size is not None:
            _check(self.chunk_size >= 1, "assign.chunk_size", "must be >= 1")

    @property
    def penalty(self) -> float:
        """Geometry penalty in the cost: 1e6 (current code) or 1e5 (2021 release)."""
        return 1e6 if self.geometry == "center" else 1e5


@dataclass(frozen=True)
class LossConfig:
    """YOLOX loss: total = reg·IoU + obj·BCE + cls·BCE + l1·L1 (L1 only in the no-aug phase)."""

    iou_type: Literal["iou", "giou"] = "iou"
    reg_weight: float = 5.0
    obj_weight: float = 1.0
    cls_weight: float = 1.0
    l1_weight: float = 1.0
    # Class target of a positive: "iou" = one-hot x IoU(pred, GT) (YOLOX), "one_hot" = hard one-hot
    # (YOLOv3; a fixed-geometry positive whose box misses its GT still learns its class).
    cls_target: Literal["iou", "one_hot"] = "iou"
    # YOLOv3's ignore rule: a negative whose predicted box overlaps any GT above this IoU gets no obj
    # loss. None = off (YOLOX).
    ignore_iou: float | None = None
    # L1 on every epoch instead of only in the no-aug phase (a box gradient even at IoU 0).
    l1_always: bool = False

    def __post_init__(self) -> None:
        _check(self.iou_type in ("iou", "giou"), "loss.iou_type", f"unknown IoU loss {self.iou_type!r} (iou, giou)")
        _check(self.cls_target in ("iou", "one_hot"), "loss.cls_target",
               f"unknown class target {self.cls_target!r} (iou, one_hot)")
        if self.ignore_iou is not None:
            _check(0 < self.ignore_iou <= 1, "loss.ignore_iou", f"must be in (0, 1] or None, got {self.ignore_iou}")
        for name in ("reg_weight", "obj_weight", "cls_weight", "l1_weight"):
            _check(getattr(self, name) >= 0, f"loss.{name}", f"must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class DataConfig:
    """Dataset and augmentation (§7). `root="synthetic"` uses the embedded generated dataset."""

    root: str = "synthetic"
    train_ann: str = "annotations/instances_train2017.json"
    val_ann: str = "annotations/instances_val2017.json"
    train_images: str = "train2017"
    val_images: str = "val2017"
    # Synthetic dataset knobs (used only when root == "synthetic").
    synthetic_train: int = 512
    synthetic_val: int = 128
    synthetic_size: int = 320
    synthetic_seed: int = 0
    # easy: 1-5 medium/large objects, light clutter (learns in CPU minutes); coco_like: the hard variant.
    synthetic_style: Literal["easy", "dense", "coco_like"] = "easy"
    cache_dir: str = ""  # "" = ~/.cache/yolox_ray
    input_size: tuple[int, int] = (640, 640)
    test_size: tuple[int, int] = (640, 640)
    # Multi-scale: sides 32·randint(lo, hi); (0, 0) means derive from input_size ± multiscale_range·32.
    multiscale_range: int = 5
    random_size: tuple[int, int] | None = None
    max_labels: int = 120
    min_box_size: float = 1.0
    pipeline: Literal["current", "legacy_2021"] = "current"
    mosaic_prob: float = 1.0
    mosaic_scale: tuple[float, float] = (0.1, 2.0)
    # Drop boxes already <= min_box_size after the mosaic crop, before the affine. Off = official: a box
    # cut away by the canvas edge is clipped to zero width there, and rotation turns it into a phantom label.
    mosaic_prefilter: bool = False
    enable_mixup: bool = True
    mixup_prob: float = 1.0
    mixup_scale: tuple[float, float] = (0.5, 1.5)
    degrees: float = 10.0
    translate: float = 0.1
    shear: float = 2.0
    hsv_prob: float = 1.0
    hsv_gains: tuple[float, float, float] = (5.0, 30.0, 30.0)
    flip_prob: float = 0.5
    cache_images: bool = False
    workers: int = 2

    def __post_init__(self) -> None:
        for name in ("mosaic_prob", "mixup_prob", "hsv_prob", "flip_prob"):
            _check_prob(getattr(self, name), f"data.{name}")
        _check_range(self.mosaic_scale, "data.mosaic_scale", lowest=1e-6)
        _check_range(self.mixup_scale, "data.mixup_scale", lowest=1e-6)
        for name in ("input_size", "test_size"):
            size = getattr(self, name)
            _check(len(size) == 2 and all(s > 0 and s % 32 == 0 for s in size), f"data.{name}",
                   f"must be two positive multiples of 32, got {size!r}")
        _check(self.multiscale_range >= 0, "data.multiscale_range", "must be >= 0")
        if self.random_size is not None:
            _check_range(self.random_size, "data.random_size", lowest=1)
        _check(1 <= self.max_labels, "data.max_labels", "must be >= 1")
        _check(self.min_box_size >= 0, "data.min_box_size", "must be >= 0")
        _check(self.pipeline in ("current", "legacy_2021"), "data.pipeline",
               f"unknown pipeline {self.pipeline!r} (current, legacy_2021)")
        _check(0 <= self.degrees <= 180, "data.degrees", "must be in [0, 180]")
        _check(0 <= self.translate <= 1, "data.translate", "must be in [0, 1]")
        _check(0 <= self.shear < 90, "data.shear", "must be in [0, 90)")
        _check(all(g >= 0 for g in self.hsv_gains), "data.hsv_gains", "must be >= 0")
        _check(self.synthetic_train >= 1 and self.synthetic_val >= 1, "data.synthetic_train",
               "synthetic split sizes must be >= 1")
        _check(self.synthetic_size >= 64, "data.synthetic_size", "must be >= 64")
        _check(self.synthetic_style in ("easy", "dense", "coco_like"), "data.synthetic_style",
               f"unknown style {self.synthetic_style!r} (easy, dense, coco_like)")
        _check(self.workers >= 0, "data.workers", "must be >= 0")

    @property
    def is_synthetic(self) -> bool:
        return self.root == "synthetic"

    def multiscale_sides(self) -> tuple[int, int]:
        """Inclusive (lo, hi) of the multi-scale factor: side = 32·randint(lo, hi)."""
        if self.random_size is not None:
            return int(self.random_size[0]), int(self.random_size[1])
        base = self.input_size[0] // 32
        return max(1, base - self.multiscale_range), base + self.multiscale_range


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe (§6): SGD + Nesterov, quadratic warm-up, cosine, flat no-aug tail, EMA."""

    epochs: int = 300
    warmup_epochs: float = 5
    no_aug_epochs: int = 15
    batch_size: int = 64  # total over all workers
    lr_per_image: float = 0.01 / 64
    warmup_lr: float = 0.0
    min_lr_ratio: float = 0.05
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = True
    ema: bool = True
    ema_decay: float = 0.9998
    ema_ramp: float = 2000.0
    eval_interval: int = 10
    multiscale_interval: int = 10
    multiscale: bool = True
    # Mixed precision, off by default: on CUDA float16 autocast with a loss scaler (the official
    # `--fp16`); on CPU bfloat16 autocast (no scaler needed), fast only where the CPU has bf16 units
    # (AVX-512 BF16 / AMX). The loss and SimOTA always run in float32.
    amp: bool = False
    # Model weights and batches in NHWC memory: the same arithmetic up to float32 rounding, and faster
    # convolutions (oneDNN, cuDNN); benchmarks/step_speed.py measures both formats.
    channels_last: bool = True
    grad_clip: float | None = None
    seed: int = 0
    deterministic: bool = False
    max_iters: int | None = None  # iterations per epoch cap (quick runs); None = full epoch
    max_train_seconds: float | None = None
    print_interval: int = 10

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", f"must be >= 1, got {self.epochs}")
        _check(0 <= self.warmup_epochs < self.epochs or self.warmup_epochs == 0, "train.warmup_epochs",
               f"must be in [0, epochs), got {self.warmup_epochs}")
        _check(0 <= self.no_aug_epochs < self.epochs or (self.no_aug_epochs == 0), "train.no_aug_epochs",
               f"must satisfy 0 <= no_aug_epochs < epochs ({self.epochs}), got {self.no_aug_epochs}")
        _check(self.warmup_epochs + self.no_aug_epochs <= self.epochs, "train.warmup_epochs",
               "warm-up plus no-aug epochs must fit in the schedule")
        _check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _check(self.lr_per_image > 0, "train.lr_per_image", "must be > 0")
        _check(0 < self.min_lr_ratio <= 1, "train.min_lr_ratio", "must be in (0, 1]")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(0 <= self.momentum < 1, "train.momentum", "must be in [0, 1)")
        _check(0 < self.ema_decay < 1, "train.ema_decay", "must be in (0, 1)")
        _check(self.ema_ramp > 0, "train.ema_ramp", "must be > 0")
        _check(self.eval_interval >= 1, "train.eval_interval", "must be >= 1")
        _check(self.multiscale_interval >= 1, "train.multiscale_interval", "must be >= 1")
        if self.grad_clip is not None:
            _check(self.grad_clip > 0, "train.grad_clip", "must be > 0")
        if self.max_iters is not None:
            _check(self.max_iters >= 1, "train.max_iters", "must be >= 1")
        if self.max_train_seconds is not None:
            _check(self.max_train_seconds > 0, "train.max_train_seconds", "must be > 0")
        _check(self.print_interval >= 1, "train.print_interval", "must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation thresholds (§8): training-time eval uses conf 0.01 and class-wise NMS 0.65."""

    conf_thresh: float = 0.01
    nms_thresh: float = 0.65
    batch_size: int = 8
    # A run whose final AP is below 1 % is evaluated once more at this threshold (AP_low_conf), so a
    # table never hides a model whose scores are still under conf_thresh. None = off.
    low_conf_thresh: float | None = 0.001

    def __post_init__(self) -> None:
        _check_prob(self.conf_thresh, "eval.conf_thresh")
        if self.low_conf_thresh is not None:
            _check_prob(self.low_conf_thresh, "eval.low_conf_thresh")
        _check(0 < self.nms_thresh <= 1, "eval.nms_thresh", "must be in (0, 1]")
        _check(self.batch_size >= 1, "eval.batch_size", "must be >= 1")


@dataclass(frozen=True)
class ExperimentConfig:
    """One trial: everything needed to rebuild it on any worker."""

    name: str = "yolox"
    model: ModelConfig = field(default_factory=ModelConfig)
    assign: AssignConfig = field(default_factory=AssignConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.assign.assigner == "yolov3":
            _check(self.model.n_anchors == 3, "assign.assigner", "the yolov3 assigner needs an anchor-based head (model.n_anchors=3)")
        else:
            _check(self.model.n_anchors == 1, "assign.assigner",
                   f"the {self.assign.assigner!r} assigner needs an anchor-free head (model.n_anchors=1)")


SECTIONS = ("model", "assign", "loss", "data", "train", "eval")

# ---------------------------------------------------------------------------------------------
# Presets (§1). Model presets carry their official data sizes and augmentation strengths.


def _cspdarknet(depth: float, width: float, depthwise: bool = False) -> ModelConfig:
    return ModelConfig(backbone="cspdarknet", neck="pafpn", depth=depth, width=width, depthwise=depthwise, act="silu")


def _darknet53(head: str = "decoupled", n_anchors: int = 1) -> ModelConfig:
    return ModelConfig(backbone="darknet53", neck="yolofpn", head=head, n_anchors=n_anchors, depth=1.0, width=1.0,
                       act="lrelu")


MODEL_PRESETS: dict[str, ModelConfig] = {
    "yolox_nano": _cspdarknet(0.33, 0.25, depthwise=True),
    "yolox_tiny": _cspdarknet(0.33, 0.375),
    "yolox_s": _cspdarknet(0.33, 0.50),
    "yolox_m": _cspdarknet(0.67, 0.75),
    "yolox_l": _cspdarknet(1.0, 1.0),
    "yolox_x": _cspdarknet(1.33, 1.25),
    "yolox_darknet53": _darknet53(),
    # Paper Table 2 heads on Darknet53 (§3.1, §13).
    "yolov3_coupled": _darknet53(head="coupled", n_anchors=3),
    "yolov3_decoupled_anchor": _darknet53(head="decoupled", n_anchors=3),
}

# Nano and tiny train at 416 with weaker augmentation (§1).
_SMALL_MODEL_DATA = dict(input_size=(416, 416), test_size=(416, 416), random_size=(10, 20),
                         mosaic_scale=(0.5, 1.5), enable_mixup=False)
DATA_PRESETS: dict[str, DataConfig] = {
    "yolox_nano": DataConfig(mosaic_prob=0.5, **_SMALL_MODEL_DATA),
    "yolox_tiny": DataConfig(**_SMALL_MODEL_DATA),
}


def model_preset(name: str, num_classes: int | None = None) -> ModelConfig:
    """The ModelConfig of a named model; raises ConfigError listing the known names."""
    if name not in MODEL_PRESETS:
        raise ConfigError(f"model: unknown preset {name!r}; known: {', '.join(MODEL_PRESETS)}")
    cfg = MODEL_PRESETS[name]
    return cfg if num_classes is None else replace(cfg, num_classes=num_classes)


def experiment_preset(model: str = "yolox_s", **sections: Any) -> ExperimentConfig:
    """An ExperimentConfig for a named model with its official data settings."""
    assign = AssignConfig(assigner="yolov3") if model_preset(model).n_anchors == 3 else AssignConfig()
    base = ExperimentConfig(name=model, model=model_preset(model), assign=assign,
                            data=DATA_PRESETS.get(model, DataConfig()))
    return replace(base, **sections) if sections else base


# ---------------------------------------------------------------------------------------------
# Flatten / overrides / YAML


def to_flat_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """{"name": ..., "model.depth": 0.33, ...}; tuples become lists (JSON/YAML/MLflow friendly)."""
    flat: dict[str, Any] = {"name": cfg.name}
    for section in SECTIONS:
        for f in fields(getattr(cfg, section)):
            value = getattr(getattr(cfg, section), f.name)
            flat[f"{section}.{f.name}"] = _to_plain(value)
    return flat


def _to_plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def to_nested_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    nested: dict[str, Any] = {"name": cfg.name}
    for key, value in to_flat_dict(cfg).items():
        if "." in key:
            section, name = key.split(".", 1)
            nested.setdefault(section, {})[name] = value
    return nested


def known_keys() -> list[str]:
    return list(to_flat_dict(ExperimentConfig()).keys())


def _field_types(section: str) -> dict[str, Any]:
    cls = typing.get_type_hints(ExperimentConfig)[section]
    return typing.get_type_hints(cls)


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Convert a YAML/CLI/Tune value to the field's declared type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # "X | None"
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(key, value, next(a for a in args if a is not type(None)))
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(key, v, args[0]) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(key, v, a) for v, a in zip(value, args))
    if annotation is bool:
        if isinstance(value, str):
            lowered = value.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return bool(value)
    if annotation is int:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if annotation is float:
        if isinstance(value, str):
            try:
                value = float(eval_number(value))
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{key}: must be finite, got {value!r}")
        return float(value)
    if annotation is str:
        return str(value)
    return value


def eval_number(text: str) -> float:
    """Parse '0.01', '1e-4' or a simple ratio like '0.01/64' (the official lr is written that way)."""
    text = text.strip()
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


def apply_overrides(cfg: ExperimentConfig, overrides: Mapping[str, Any] | list[str]) -> ExperimentConfig:
    """Return cfg with dotted overrides applied: {"assign.candidate_k": 12} or ["assign.candidate_k=12"].

    Unknown keys and invalid values raise ConfigError naming the key.
    """
    if isinstance(overrides, (list, tuple)):
        parsed: dict[str, Any] = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: expected key=value")
            key, value = item.split("=", 1)
            parsed[key.strip()] = value.strip()
        overrides = parsed
    per_section: dict[str, dict[str, Any]] = {}
    name = cfg.name
    for key, value in overrides.items():
        if key == "name":
            name = str(value)
            continue
        if "." not in key:
            raise ConfigError(f"unknown config key {key!r}; keys look like 'section.field' ({', '.join(SECTIONS)})")
        section, field_name = key.split(".", 1)
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section in {key!r}; sections: {', '.join(SECTIONS)}")
        types = _field_types(section)
        if field_name not in types:
            raise ConfigError(f"unknown config key {key!r}; {section} has: {', '.join(types)}")
        per_section.setdefault(section, {})[field_name] = _coerce(key, value, types[field_name])
    changes: dict[str, Any] = {"name": name}
    for section, values in per_section.items():
        changes[section] = replace(getattr(cfg, section), **values)
    return replace(cfg, **changes)


def from_flat_dict(flat: Mapping[str, Any], base: ExperimentConfig | None = None) -> ExperimentConfig:
    return apply_overrides(base or ExperimentConfig(), dict(flat))


def load_yaml(path: str | Path, base: ExperimentConfig | None = None) -> ExperimentConfig:
    """Load a nested YAML ({model: {...}, train: {...}}) or flat ({"model.depth": ...}) config.

    A top-level `preset: yolox_s` key starts from that model preset.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    if "preset" in data:
        base = experiment_preset(str(data.pop("preset")))
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for sub, sub_value in value.items():
                flat[f"{key}.{sub}"] = sub_value
        else:
            flat[key] = value
    return from_flat_dict(flat, base)


def dump_yaml(cfg: ExperimentConfig, path: str | Path | None = None) -> str:
    text = yaml.safe_dump(to_nested_dict(cfg), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text


def asdict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
