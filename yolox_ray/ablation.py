"""The paper's ablation roadmap (Table 2, reference §13) as named experiment presets, and its table.

Six rows, each adding one change to the row above it:

    yolov3_baseline      Darknet53 (+SPP) / coupled YOLOv3 head, 3 anchors, YOLOv3 assignment,
                         weak augmentation (flip + HSV + multi-scale; no Mosaic/MixUp)
    decoupled_head       the YOLOX decoupled head, still 3 anchors
    strong_augmentation  Mosaic + MixUp, closed for the last `no_aug_epochs`
    anchor_free          1 prediction per cell, the single centre cell as positive (FCOS level ranges)
    multi_positives      the 3x3 centre area on the assigned level as positives
    simota               SimOTA (dynamic-k, loss-aware assignment)

Two scales build the same switches:

- ``paper``: Darknet53 at 640, 300 epochs, the official recipe (COCO on a cluster);
- ``quick``: a small proxy on the built-in synthetic set: CSPDarknet (depth 0.33, width 0.125, no
  depthwise convs) + PAFPN carrying the same head/anchor/assigner switches, a small input and a
  short schedule whose warm-up and no-aug tail are moved proportionally. Anchor shapes and the
  FCOS level ranges are scaled by input/640 so that they cover the same fraction of the image.

Everything here is plain data and pure functions (no Ray, no MLflow): the study scripts run the
rows and hand the per-trial results back to :func:`build_table`.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, replace
from typing import Literal, Mapping, Sequence

from yolox_ray.config import (
    YOLOV3_ANCHORS,
    AssignConfig,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
    model_preset,
)
from yolox_ray.paper import ABLATION_ROADMAP, PaperAblationRow

Scale = Literal["quick", "paper"]
SCALES: tuple[str, ...] = ("quick", "paper")


# The paper's Table 2 rows we train (the optional NMS-free row is not part of the roadmap we run).
PaperRow = PaperAblationRow
PAPER_TABLE2: tuple[PaperRow, ...] = tuple(r for r in ABLATION_ROADMAP if r.key != "nms_free")
ROW_KEYS: tuple[str, ...] = tuple(r.key for r in PAPER_TABLE2)


@dataclass(frozen=True)
class AblationRow:
    """One roadmap row: its paper reference and the config that trains it."""

    paper: PaperRow
    config: ExperimentConfig

    @property
    def key(self) -> str:
        return self.paper.key

    @property
    def label(self) -> str:
        return self.paper.label


# ---------------------------------------------------------------------------------------------
# Scales


@dataclass(frozen=True)
class ScaleSpec:
    """What differs between the paper run and the quick proxy (everything else is the row switch)."""

    backbone: ModelConfig  # anchor-free decoupled base; the rows set head and n_anchors
    input_size: int
    multiscale_range: int
    train: TrainConfig
    data: DataConfig


def _quick_spec() -> ScaleSpec:
    """Sized for the whole table (6 rows, 1 seed, 2 trials at a time) in about 15 min on 2 CPU cores.

    Measured on the 2-core development box (SimOTA row, in-process, 1 thread, easy synthetic set):
    at 192 px a step costs about half of one at 256 px and the SimOTA row learns faster per minute
    (AP50 0.20 after 640 steps in 105 s vs AP 0 at 256 px in the same steps); a step lr of 0.02
    (0.0025 per image at batch 8) beat the 0.01 we used before. Width 0.25 learns more per epoch
    than 0.125 but costs about 3x more per step, so within the budget the narrower model gets
    further. 18 epochs took 12.5-15 min for the table (machine noise), so 15 leave a margin. The no-aug
    tail (5/15) is longer than the paper's 15/300 because on a short schedule
    the AP gain of switching Mosaic/MixUp off dominates (it still closes the strong augmentation).
    """
    side = 192
    # num_classes: the synthetic set's 8 shape classes (yolox_ray.data.synthetic.SYNTHETIC_CLASSES).
    backbone = ModelConfig(backbone="cspdarknet", neck="pafpn", depth=0.33, width=0.125, depthwise=False, act="silu",
                           num_classes=8)
    train = TrainConfig(
        epochs=15, warmup_epochs=1, no_aug_epochs=5, batch_size=8, lr_per_image=0.02 / 8,
        eval_interval=10, multiscale_interval=10, ema=True, ema_ramp=200.0, print_interval=10,
    )
    data = DataConfig(root="synthetic", workers=0)
    return ScaleSpec(backbone=backbone, input_size=side, multiscale_range=2, train=train, data=data)


def _paper_spec() -> ScaleSpec:
    backbone = model_preset("yolox_darknet53")
    return ScaleSpec(backbone=backbone, input_size=640, multiscale_range=5, train=TrainConfig(),
                     data=DataConfig(root="synthetic"))


def scale_spec(scale: str) -> ScaleSpec:
    if scale == "quick":
        return _quick_spec()
    if scale == "paper":
        return _paper_spec()
    raise ConfigError(f"preset: unknown ablation scale {scale!r}; known: {', '.join(SCALES)}")


def rescale_schedule(train: TrainConfig, epochs: int) -> TrainConfig:
    """The same recipe over `epochs`: warm-up and the no-aug tail move proportionally.

    The tail keeps at least one epoch (when there are two or more) because closing the strong
    augmentation before the end is what the paper says matters.
    """
    if epochs < 1:
        raise ConfigError(f"train.epochs: must be >= 1, got {epochs}")
    if epochs == train.epochs:
        return train
    ratio = epochs / train.epochs
    no_aug = 0
    if train.no_aug_epochs > 0 and epochs > 1:
        no_aug = min(max(1, round(train.no_aug_epochs * ratio)), epochs - 1)
    # Warm-up shrinks with the schedule and must leave room for at least part of an epoch after it.
    warmup = min(round(train.warmup_epochs * ratio, 3), epochs - no_aug)
    if warmup >= epochs:
        warmup = epochs / 2
    eval_interval = max(1, min(train.eval_interval, epochs))
    return replace(train, epochs=epochs, warmup_epochs=warmup, no_aug_epochs=no_aug, eval_interval=eval_interval)


# ---------------------------------------------------------------------------------------------
# Rows


def _scaled_anchors(side: int) -> tuple[tuple[float, float], ...]:
    """YOLOv3's COCO anchors (defined for 640 input) scaled to an input side."""
    f = side / 640.0
    return tuple((round(w * f, 2), round(h * f, 2)) for w, h in YOLOV3_ANCHORS)


def _row_config(key: str, spec: ScaleSpec, name: str) -> ExperimentConfig:
    side = spec.input_size
    index = ROW_KEYS.index(key)
    # Row 1 has the coupled head; rows 2+ the decoupled one. Rows 1-3 are anchor-based (3 anchors).
    head = "coupled" if index == 0 else "decoupled"
    n_anchors = 3 if index <= 2 else 1
    model = replace(spec.backbone, head=head, n_anchors=n_anchors, anchors=_scaled_anchors(side))
    if spec.backbone.backbone == "darknet53":
        # The paper's exact heads (reference §3.1) are the named Darknet53 presets.
        paper_model = {0: "yolov3_coupled", 1: "yolov3_decoupled_anchor", 2: "yolov3_decoupled_anchor"}
        model = model_preset(paper_model.get(index, "yolox_darknet53"))
        model = replace(model, num_classes=spec.backbone.num_classes, anchors=_scaled_anchors(side))
    assigner = {0: "yolov3", 1: "yolov3", 2: "yolov3", 3: "center", 4: "multi_positive", 5: "simota"}[index]
    f = side / 640.0
    assign = AssignConfig(assigner=assigner, level_ranges=(64.0 * f, 128.0 * f))
    strong = index >= 2
    data = replace(
        spec.data,
        input_size=(side, side),
        test_size=(side, side),
        multiscale_range=spec.multiscale_range,
        mosaic_prob=1.0 if strong else 0.0,
        enable_mixup=strong,
    )
    return ExperimentConfig(name=name, model=model, assign=assign, data=data, train=spec.train)


def ablation_rows(
    scale: str = "quick",
    *,
    data_root: str | None = None,
    epochs: int | None = None,
    num_classes: int | None = None,
    rows: Sequence[str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> tuple[AblationRow, ...]:
    """The roadmap rows at `scale` ("quick" or "paper"), in the paper's order.

    data_root: "synthetic" or a COCO root (the paper scale defaults to "synthetic" only so that
    the config can be built anywhere; the study script requires --data for it).
    epochs: another schedule length; warm-up and the no-aug tail move proportionally.
    rows: a subset of ROW_KEYS (kept in roadmap order).
    overrides: dotted `section.field` values applied to every row last (e.g. train.max_iters).
    """
    from yolox_ray.config import apply_overrides

    spec = scale_spec(scale)
    if data_root is not None:
        spec = replace(spec, data=replace(spec.data, root=data_root))
    if epochs is not None:
        spec = replace(spec, train=rescale_schedule(spec.train, epochs))
    if num_classes is not None:
        spec = replace(spec, backbone=replace(spec.backbone, num_classes=num_classes))
    wanted = ROW_KEYS if rows is None else tuple(rows)
    unknown = [r for r in wanted if r not in ROW_KEYS]
    if unknown or not wanted:
        raise ConfigError(f"rows: unknown or empty {unknown or list(wanted)}; known: {', '.join(ROW_KEYS)}")
    out = []
    for paper in PAPER_TABLE2:
        if paper.key not in wanted:
            continue
        cfg = _row_config(paper.key, spec, name=f"ablation-{scale}-{paper.key}")
        if overrides:
            cfg = apply_overrides(cfg, dict(overrides))
        out.append(AblationRow(paper=paper, config=cfg))
    return tuple(out)


def ablation_config(key: str, scale: str = "quick") -> ExperimentConfig:
    """The config of one named row, e.g. ablation_config("simota", "paper")."""
    return ablation_rows(scale, rows=[key])[0].config


# Moved to the data layer (yolox_ray/data/classes.py); re-exported for existing imports.
from yolox_ray.data.classes import dataset_num_classes  # noqa: E402,F401


# ---------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class TrialResult:
    """What the table needs from one finished trial (AP values as COCO fractions in [0, 1])."""

    row: str
    seed: int
    ap: float | None  # None: the trial failed or never evaluated
    ap50: float | None


@dataclass(frozen=True)
class ModelCost:
    params: int
    gflops: float


@dataclass(frozen=True)
class TableRow:
    key: str
    label: str
    n: int  # seeds with a result
    n_missing: int  # trials of this row without an AP (failed, interrupted)
    ap_mean: float | None  # percent
    ap_std: float | None
    ap50_mean: float | None
    delta: float | None  # vs the previous row, percent points
    paper_ap: float
    paper_delta: float | None
    params_m: float | None
    gflops: float | None
    paper_params_m: float
    paper_gflops: float


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def build_table(
    rows: Sequence[AblationRow],
    results: Sequence[TrialResult],
    costs: Mapping[str, ModelCost] | None = None,
) -> list[TableRow]:
    """Aggregate trial results per row (mean ± sample std over seeds, in AP percent)."""
    costs = costs or {}
    known = {r.key for r in rows}
    stray = sorted({res.row for res in results} - known)
    if stray:
        raise ValueError(f"results for rows that are not in the table: {stray}")
    table: list[TableRow] = []
    prev_ap: float | None = None
    prev_paper: float | None = None
    for row in rows:
        mine = [res for res in results if res.row == row.key]
        ok = [res for res in mine if res.ap is not None and math.isfinite(res.ap)]
        ap_mean, ap_std = _mean_std([100.0 * res.ap for res in ok])
        ap50_mean, _ = _mean_std([100.0 * res.ap50 for res in ok if res.ap50 is not None])
        cost = costs.get(row.key)
        table.append(TableRow(
            key=row.key, label=row.label, n=len(ok), n_missing=len(mine) - len(ok),
            ap_mean=ap_mean, ap_std=ap_std, ap50_mean=ap50_mean,
            delta=None if ap_mean is None or prev_ap is None else ap_mean - prev_ap,
            paper_ap=row.paper.ap,
            paper_delta=None if prev_paper is None else row.paper.ap - prev_paper,
            params_m=None if cost is None else cost.params / 1e6,
            gflops=None if cost is None else cost.gflops,
            paper_params_m=row.paper.params_m, paper_gflops=row.paper.gflops,
        ))
        prev_ap = ap_mean if ap_mean is not None else prev_ap
        prev_paper = row.paper.ap
    return table


COLUMNS = ("row", "AP (ours)", "AP50 (ours)", "Δ (ours)", "AP (paper)", "Δ (paper)",
           "params M (ours)", "GFLOPs (ours)", "params M (paper)", "GFLOPs (paper)", "seeds")


def _fmt(value: float | None, digits: int = 1, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _cells(r: TableRow) -> list[str]:
    ap = "–" if r.ap_mean is None else (f"{r.ap_mean:.1f} ± {r.ap_std:.1f}" if r.n > 1 else f"{r.ap_mean:.1f}")
    seeds = f"{r.n}" + (f" ({r.n_missing} without result)" if r.n_missing else "")
    return [r.label, ap, _fmt(r.ap50_mean), _fmt(r.delta, signed=True), _fmt(r.paper_ap),
            _fmt(r.paper_delta, signed=True), _fmt(r.params_m, 2), _fmt(r.gflops, 2),
            _fmt(r.paper_params_m, 2), _fmt(r.paper_gflops), seeds]


def table_markdown(table: Sequence[TableRow], labels: Mapping[str, object]) -> str:
    """A Markdown table headed by `labels` (preset, model, input size, data, epochs, commit ...)."""
    lines = ["# YOLOX ablation roadmap (paper Table 2)", ""]
    lines += [f"- **{k}**: {v}" for k, v in labels.items()]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in table]
    lines += ["", "AP is COCO AP[0.5:0.95] in percent on the validation set (ours: mean ± sample std over seeds). "
              "Paper: YOLOX-DarkNet53, 640x640, 300 epochs, COCO val2017. Ours: params/GFLOPs of the model "
              "actually trained, at its input size."]
    return "\n".join(lines) + "\n"


def table_csv(table: Sequence[TableRow], labels: Mapping[str, object]) -> str:
    """CSV with one line per row (machine-readable fields) and the labels repeated on each line."""
    buf = io.StringIO()
    label_keys = list(labels)
    fields = ["key", "label", "n_seeds", "n_missing", "ap_mean", "ap_std", "ap50_mean", "delta", "paper_ap",
              "paper_delta", "params_m", "gflops", "paper_params_m", "paper_gflops", *label_keys]
    writer = csv.writer(buf)
    writer.writerow(fields)
    for r in table:
        writer.writerow([r.key, r.label, r.n, r.n_missing, r.ap_mean, r.ap_std, r.ap50_mean, r.delta, r.paper_ap,
                         r.paper_delta, r.params_m, r.gflops, r.paper_params_m, r.paper_gflops,
                         *(labels[k] for k in label_keys)])
    return buf.getvalue()
