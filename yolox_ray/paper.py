"""The YOLOX paper's published numbers that the package compares against at run time.

Shipped as typed constants because users do not have the project's reference folder.

Source: Ge, Liu, Wang, Li, Sun, "YOLOX: Exceeding YOLO Series in 2021" (arXiv 2107.08430),
Table 2 (the Darknet53 ablation roadmap) and the official YOLOX model-zoo table, as transcribed in
the project's `reference/paper_tables.json`; `tests/test_paper.py` checks these constants against a
verbatim copy of that file. AP is COCO val2017 AP[0.5:0.95] in percent unless noted; latency is a
V100 at batch 1, FP16; params and GFLOPs are for 80 classes at the row's square input size.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperModel:
    """One model-zoo row; `name` is also our preset name."""

    name: str
    size: int
    ap_val: float  # current official weights
    params_m: float
    gflops: float
    ap_val_legacy: float | None = None  # paper-time weights, val2017 (nano, tiny)
    ap_test_legacy: float | None = None  # paper-time weights, test-dev (S … X, Darknet53)
    latency_ms: float | None = None


@dataclass(frozen=True)
class PaperAblationRow:
    """One row of Table 2 (YOLOX-DarkNet53, 640×640, 300 epochs); each row adds one change."""

    key: str
    label: str
    ap: float
    params_m: float
    gflops: float
    latency_ms: float


ABLATION_SIZE = 640

PAPER_MODELS: tuple[PaperModel, ...] = (
    PaperModel("yolox_nano", 416, 25.8, 0.91, 1.08, ap_val_legacy=25.3),
    PaperModel("yolox_tiny", 416, 32.8, 5.06, 6.45, ap_val_legacy=32.8),
    PaperModel("yolox_s", 640, 40.5, 9.0, 26.8, ap_test_legacy=39.6, latency_ms=9.8),
    PaperModel("yolox_m", 640, 46.9, 25.3, 73.8, ap_test_legacy=46.4, latency_ms=12.3),
    PaperModel("yolox_l", 640, 49.7, 54.2, 155.6, ap_test_legacy=50.0, latency_ms=14.5),
    PaperModel("yolox_x", 640, 51.1, 99.1, 281.9, ap_test_legacy=51.2, latency_ms=17.3),
    PaperModel("yolox_darknet53", 640, 47.7, 63.7, 185.3, ap_test_legacy=47.4, latency_ms=11.1),
)

ABLATION_ROADMAP: tuple[PaperAblationRow, ...] = (
    PaperAblationRow("yolov3_baseline", "YOLOv3 baseline", 38.5, 63.0, 157.3, 10.5),
    PaperAblationRow("decoupled_head", "+decoupled head", 39.6, 63.86, 186.0, 11.6),
    PaperAblationRow("strong_augmentation", "+strong augmentation", 42.0, 63.86, 186.0, 11.6),
    PaperAblationRow("anchor_free", "+anchor-free", 42.9, 63.72, 185.3, 11.1),
    PaperAblationRow("multi_positives", "+multi positives", 45.0, 63.72, 185.3, 11.1),
    PaperAblationRow("simota", "+SimOTA", 47.3, 63.72, 185.3, 11.1),
    PaperAblationRow("nms_free", "+NMS free (optional)", 46.5, 67.27, 205.1, 13.5),
)

# Same network as the baseline row, trained with ultralytics' recipe (the paper's reference point).
ABLATION_REFERENCE_POINT = PaperAblationRow("yolov3_ultralytics", "YOLOv3-ultralytics", 44.3, 63.0, 157.3, 10.5)


def paper_model(name: str) -> PaperModel:
    """The model-zoo row of preset `name`; KeyError naming the known rows otherwise."""
    for row in PAPER_MODELS:
        if row.name == name:
            return row
    raise KeyError(f"no paper model row {name!r}; known: {', '.join(r.name for r in PAPER_MODELS)}")


def ablation_row(key: str) -> PaperAblationRow:
    """The Table 2 row `key`; KeyError naming the known keys otherwise."""
    for row in ABLATION_ROADMAP:
        if row.key == key:
            return row
    raise KeyError(f"no ablation row {key!r}; known: {', '.join(r.key for r in ABLATION_ROADMAP)}")


@dataclass(frozen=True)
class PaperSize:
    """The published size of a model preset and the row it comes from."""

    params_m: float
    gflops: float
    size: int
    source: str


# Table 2 rows whose network is one of our non-zoo presets (reference §3.1).
_PRESET_ABLATION_ROW = {"yolov3_coupled": "yolov3_baseline", "yolov3_decoupled_anchor": "decoupled_head"}


def paper_size(preset: str) -> PaperSize | None:
    """Published params/GFLOPs for a model preset, or None when the paper gives none.

    Zoo presets use the model-zoo row, except YOLOX-Darknet53, whose Table 2 "+anchor-free" row
    prints the parameters to two decimals (63.72 M) where the zoo table has one (63.7 M).
    """
    if preset == "yolox_darknet53":
        row = ablation_row("anchor_free")
        return PaperSize(row.params_m, row.gflops, ABLATION_SIZE, f"Table 2 {row.label!r}")
    if preset in _PRESET_ABLATION_ROW:
        row = ablation_row(_PRESET_ABLATION_ROW[preset])
        return PaperSize(row.params_m, row.gflops, ABLATION_SIZE, f"Table 2 {row.label!r}")
    for zoo in PAPER_MODELS:
        if zoo.name == preset:
            return PaperSize(zoo.params_m, zoo.gflops, zoo.size, "model zoo")
    return None
