"""The paper's ablation roadmap (Table 2, reference §13) as data, and its table.

`ROADMAP_STEPS` is an ordered list; each step is the overrides it adds to the row above:

    yolov3_baseline      coupled YOLOv3 head, 3 anchors, YOLOv3 assignment, decode and ignore rule,
                         weak augmentation (flip + HSV + multi-scale; no Mosaic/MixUp)
    decoupled_head       the YOLOX decoupled head, still 3 anchors
    strong_augmentation  Mosaic + MixUp, closed for the last `no_aug_epochs`; from scratch from here
    anchor_free          1 prediction per cell, the single centre cell as positive (FCOS levels)
    multi_positives      the 3x3 centre area on the assigned level as positives
    simota               SimOTA (dynamic-k, loss-aware assignment), 2021 geometry, YOLOX's targets
    simota_2023          (paper preset only) the current code's centre-only geometry

Two scales build the same switches:

- ``paper``: Darknet53 at 640, 300 epochs, the official recipe (COCO on a cluster);
- ``quick``: a small proxy on the built-in synthetic set (dense style): CSPDarknet (depth 0.33, width
  0.125, no depthwise convs) + PAFPN carrying the same head/anchor/assigner switches, a small input
  and a short schedule whose warm-up and no-aug tail are moved proportionally. FCOS level bounds are
  scaled by input/640; anchors are fitted to the training boxes (`data/anchors.py`).

Everything here is plain data and pure functions (no Ray, no MLflow): the study scripts run the
rows and hand the per-trial results back to :func:`build_table`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
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
# The quick preset's schedule length: its 72-epoch recipe rescaled (warm-up 2.667, no-aug 3, EMA
# horizon 67 updates), 17.7 min for the 1-seed table on 2 cores against 25 min at 72 (README, Studies).
QUICK_EPOCHS = 48


PaperRow = PaperAblationRow


# ---------------------------------------------------------------------------------------------
# The roadmap as data: an ordered list of steps, each the overrides it adds to the row above.


@dataclass(frozen=True)
class RoadmapStep:
    """One row of the climb: `overrides` (dotted config keys) are applied on top of the row above.

    scales: the presets that train this row (an extra row may exist at one scale only).
    paper_key: the Table 2 row it reproduces (None: not a paper row, e.g. a geometry variant).
    """

    key: str
    label: str
    overrides: Mapping[str, object]
    why: str
    scales: tuple[str, ...] = ("quick", "paper")
    paper_key: str | None = None


# Row fidelity (issue 15): the anchor-based rows follow YOLOv3's own recipe where YOLOX has no
# equivalent: the sigmoid centre decode, the ignore rule (IoU 0.5) on the obj loss, and a hard one-hot
# class target. The fixed-geometry rows (1-5) train their boxes with GIoU, which still has a gradient
# when a positive's box misses its GT (1 - IoU^2 has none, and YOLOX's IoU-weighted class target would
# push such a positive's class to 0 while its obj is pushed to 1). SimOTA never picks such positives,
# so its row goes back to YOLOX's exact targets.
ROADMAP_STEPS: tuple[RoadmapStep, ...] = (
    RoadmapStep(
        "yolov3_baseline", "YOLOv3 baseline",
        {"model.head": "coupled", "model.n_anchors": 3, "model.box_decode": "yolov3",
         "assign.assigner": "yolov3", "loss.ignore_iou": 0.5, "loss.cls_target": "one_hot", "loss.iou_type": "giou",
         "data.mosaic_prob": 0.0, "data.enable_mixup": False},
        "coupled YOLOv3 head, 3 anchors, YOLOv3 assignment/decode/ignore rule, weak augmentation",
        paper_key="yolov3_baseline"),
    RoadmapStep("decoupled_head", "+decoupled head", {"model.head": "decoupled"},
                "the YOLOX decoupled head, still 3 anchors", paper_key="decoupled_head"),
    RoadmapStep("strong_augmentation", "+strong augmentation",
                {"data.mosaic_prob": 1.0, "data.enable_mixup": True, "model.backbone_weights": ""},
                "Mosaic + MixUp (closed for the no-aug tail); from here on trained from scratch",
                paper_key="strong_augmentation"),
    RoadmapStep("anchor_free", "+anchor-free",
                {"model.n_anchors": 1, "model.box_decode": "linear", "assign.assigner": "center",
                 "loss.ignore_iou": None},
                "one prediction per cell; the centre cell on the FCOS-style level is the positive",
                paper_key="anchor_free"),
    RoadmapStep("multi_positives", "+multi positives", {"assign.assigner": "multi_positive"},
                "the 3x3 centre area on that level are positives", paper_key="multi_positives"),
    RoadmapStep("simota", "+SimOTA",
                {"assign.assigner": "simota", "assign.geometry": "box_and_center", "assign.center_radius": 2.5,
                 "loss.cls_target": "iou", "loss.iou_type": "iou"},
                "SimOTA dynamic-k in its 2021 geometry (box or centre prior, r 2.5), YOLOX's own targets",
                paper_key="simota"),
    RoadmapStep("simota_2023", "+SimOTA, 2023 geometry (not in the paper)",
                {"assign.geometry": "center", "assign.center_radius": 1.5},
                "the current official code's centre-only prior (r 1.5): Table 2 was made with the 2021 one",
                scales=("paper",)),
)


def _paper_row(step: RoadmapStep) -> PaperRow:
    if step.paper_key is not None:
        return next(r for r in ABLATION_ROADMAP if r.key == step.paper_key)
    return PaperRow(step.key, step.label, math.nan, math.nan, math.nan, math.nan)


def steps_for(scale: str) -> tuple[RoadmapStep, ...]:
    return tuple(step for step in ROADMAP_STEPS if scale in step.scales)


# Every key any scale can train, in roadmap order (the paper rows first appear in Table 2's order).
ROW_KEYS: tuple[str, ...] = tuple(step.key for step in ROADMAP_STEPS)
PAPER_TABLE2: tuple[PaperRow, ...] = tuple(_paper_row(step) for step in ROADMAP_STEPS if step.paper_key)


@dataclass(frozen=True)
class AblationRow:
    """One roadmap row: its paper reference (NaN numbers for a row the paper lacks) and its config."""

    paper: PaperRow
    config: ExperimentConfig
    step: RoadmapStep | None = None

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
    """What differs between the paper run and the quick proxy (everything else is the row switch).

    step_overrides: per row key, scale-specific overrides applied with that step (e.g. the small-model
    strong augmentation of the quick proxy); row_overrides: per row key, applied to that row only (the
    per-row recipe of the quick preset, from `ablation_recipes.json`).
    """

    backbone: ModelConfig  # anchor-free decoupled base; the steps set head and n_anchors
    input_size: int
    data: DataConfig
    train: TrainConfig
    anchors: Literal["kmeans", "yolov3"]
    step_overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    row_overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


def _quick_spec() -> ScaleSpec:
    """The quick proxy, sized for the whole table on 2 CPU cores (measurements: README, Studies).

    CSPDarknet d0.33 w0.125 + PAFPN at 128 px (multi-scale 64-192), batch 8 on the dense synthetic set,
    a 72-epoch recipe (4 warm-up, 4 no-aug: the fixed-assigner rows learn while the lr is high) run
    over 48 epochs, images decoded once and kept in memory (the 512 small images take about 160 MB).
    EMA decay 0.99 at 72 epochs (a horizon of 100 updates, 2 % of the 4608; 67 of 3072 at 48): the
    official 0.9998 averages over 5000 updates, under 1 % of a 300-epoch COCO run but longer than
    this whole run, so the evaluated EMA model would be an average of weights from most of training
    (measured: README, Studies). Strong augmentation
    follows the official small-model recipe (nano/tiny: Mosaic scale 0.5-1.5, no MixUp). Anchors are
    fitted by k-means to the training boxes at 192 px. The per-row lr comes from `ablation_recipes.json`.
    """
    side = 128
    # num_classes: the synthetic set's 8 shape classes (yolox_ray.data.synthetic.SYNTHETIC_CLASSES).
    backbone = ModelConfig(backbone="cspdarknet", neck="pafpn", depth=0.33, width=0.125, depthwise=False, act="silu",
                           num_classes=8)
    # The recipe was sized at 72 epochs; the preset runs it rescaled to QUICK_EPOCHS, the shortest
    # schedule measured at which every row learns within the table's time budget (README, Studies).
    sized_at_72 = TrainConfig(
        epochs=72, warmup_epochs=4, no_aug_epochs=4, batch_size=8, lr_per_image=0.02 / 8,
        eval_interval=12, multiscale_interval=10, ema=True, ema_decay=0.99, ema_ramp=200.0, print_interval=10,
    )
    train = rescale_schedule(sized_at_72, QUICK_EPOCHS)
    # The dense style (6-12 objects per image): the rows with one positive per object learn from three
    # times as many positives per step as on the easy style (measured: README, Studies).
    data = DataConfig(root="synthetic", synthetic_style="dense", workers=0, input_size=(side, side),
                      test_size=(side, side), multiscale_range=2, cache_images=True)
    small_model_aug = {"data.mosaic_scale": (0.5, 1.5), "data.enable_mixup": False}
    return ScaleSpec(backbone=backbone, input_size=side, data=data, train=train, anchors="kmeans",
                     step_overrides={"strong_augmentation": small_model_aug},
                     row_overrides=quick_recipes())


def _paper_spec() -> ScaleSpec:
    """Darknet53 at 640 for 300 epochs with the official recipe; multi-scale 448-832 as the paper."""
    data = DataConfig(root="synthetic", input_size=(640, 640), test_size=(640, 640), random_size=(14, 26))
    return ScaleSpec(backbone=model_preset("yolox_darknet53"), input_size=640, data=data, train=TrainConfig(),
                     anchors="yolov3")


def quick_recipes(path: Path | None = None) -> dict[str, dict[str, object]]:
    """Per-row overrides of the quick preset, recorded by the recipe search (`ablation_recipes.json`):
    the reduced-budget pick per row, unless the file's `full_budget` part re-chose that row at the
    preset's full schedule (a pick that fails there, e.g. diverges late, is replaced, and says so)."""
    path = path or Path(__file__).with_name("ablation_recipes.json")
    if not path.is_file():
        return {}
    recorded = json.loads(path.read_text())
    rows = {key: dict(entry["overrides"]) for key, entry in recorded["rows"].items()}
    rows.update({key: dict(entry["overrides"]) for key, entry in recorded.get("full_budget", {}).get("rows", {}).items()})
    return rows


def scale_spec(scale: str) -> ScaleSpec:
    if scale == "quick":
        return _quick_spec()
    if scale == "paper":
        return _paper_spec()
    raise ConfigError(f"preset: unknown ablation scale {scale!r}; known: {', '.join(SCALES)}")


def rescale_schedule(train: TrainConfig, epochs: int) -> TrainConfig:
    """The same recipe over `epochs`: warm-up and the no-aug tail move proportionally.

    The tail keeps at least one epoch (when there are two or more) because closing the strong
    augmentation before the end is what the paper says matters. The evaluation interval moves with
    the schedule too, so a longer run still evaluates about as often relative to its length, and so
    does the EMA: its horizon 1 / (1 - decay) and its ramp, both counted in updates, keep their share
    of the run (a short run with a long-run EMA evaluates an average of its early weights).
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
    eval_interval = max(1, min(round(train.eval_interval * ratio), epochs))
    ema_decay = 1.0 - min(0.5, (1.0 - train.ema_decay) / ratio)  # horizon x ratio, at least 2 updates
    return replace(train, epochs=epochs, warmup_epochs=warmup, no_aug_epochs=no_aug, eval_interval=eval_interval,
                   ema_decay=ema_decay, ema_ramp=train.ema_ramp * ratio)


def row_anchors(spec: ScaleSpec) -> tuple[tuple[float, float], ...]:
    """The anchor shapes of the anchor-based rows at this scale: YOLOv3's COCO anchors at 640, or
    k-means on the training boxes at the training size, 3 shapes per level on the boxes that the
    anchor-free rows put on that level (quick; needs the dataset, generated if synthetic)."""
    if spec.anchors == "yolov3":
        f = spec.input_size / 640.0
        return tuple((round(w * f, 2), round(h * f, 2)) for w, h in YOLOV3_ANCHORS)
    from yolox_ray.data import resolve_dataset
    from yolox_ray.data.anchors import kmeans_anchors

    side = spec.data.input_size[0]
    bounds = tuple(b * side / 640.0 for b in AssignConfig().level_ranges)  # the anchor-free rows' levels
    return kmeans_anchors(resolve_dataset(spec.data).train_ann, side, level_bounds=bounds)


def _base_config(spec: ScaleSpec, anchors: tuple[tuple[float, float], ...], backbone_weights: str) -> ExperimentConfig:
    """The config every step builds on: the scale's backbone (anchor-free decoupled head), its data and
    schedule, FCOS level ranges scaled to the input size."""
    f = spec.input_size / 640.0
    model = replace(spec.backbone, anchors=anchors, backbone_weights=backbone_weights)
    ranges = AssignConfig().level_ranges
    return ExperimentConfig(model=model, assign=AssignConfig(level_ranges=(ranges[0] * f, ranges[1] * f)),
                            data=spec.data, train=spec.train)


def ablation_rows(
    scale: str = "quick",
    *,
    data_root: str | None = None,
    epochs: int | None = None,
    num_classes: int | None = None,
    rows: Sequence[str] | None = None,
    overrides: Mapping[str, object] | None = None,
    backbone_weights: str = "",
    anchors: Sequence[tuple[float, float]] | None = None,
    size: int | None = None,
) -> tuple[AblationRow, ...]:
    """The roadmap rows at `scale` ("quick" or "paper"), in roadmap order.

    data_root: "synthetic" or a COCO root (the paper scale defaults to "synthetic" only so that
    the config can be built anywhere; the study script requires --data for it).
    epochs: another schedule length; warm-up, the no-aug tail and the eval interval move proportionally.
    rows: a subset of this scale's row keys (kept in roadmap order).
    overrides: dotted `section.field` values applied to every row last (e.g. train.max_iters).
    backbone_weights: a pretrained backbone file for the rows before strong augmentation (the paper's
    ImageNet-pretrained YOLOv3 rows); "" = all rows from scratch.
    anchors: the anchor shapes of the anchor-based rows (default: the scale's, see `row_anchors`).
    size: another square input size (a multiple of 32): train and test size, FCOS level ranges and
    anchors follow it.
    """
    from yolox_ray.config import apply_overrides

    spec = scale_spec(scale)
    if data_root is not None:
        spec = replace(spec, data=replace(spec.data, root=data_root))
    if epochs is not None:
        spec = replace(spec, train=rescale_schedule(spec.train, epochs))
    if num_classes is not None:
        spec = replace(spec, backbone=replace(spec.backbone, num_classes=num_classes))
    if size is not None:
        spec = replace(spec, input_size=size, data=replace(spec.data, input_size=(size, size), test_size=(size, size)))
    steps = steps_for(scale)
    known = [step.key for step in steps]
    wanted = known if rows is None else list(rows)
    unknown = [r for r in wanted if r not in known]
    if unknown or not wanted:
        raise ConfigError(f"rows: unknown or empty {unknown or list(wanted)}; known at the {scale} preset: "
                          f"{', '.join(known)}")
    if overrides:  # fit anchors on the data the rows will train on (e.g. another synthetic size)
        data_keys = {k: v for k, v in overrides.items() if k.startswith("data.")}
        spec = replace(spec, data=apply_overrides(ExperimentConfig(data=spec.data), data_keys).data)
    chosen = tuple(anchors) if anchors is not None else row_anchors(spec)
    cfg = _base_config(spec, chosen, backbone_weights)
    out = []
    for step in steps:
        cfg = apply_overrides(cfg, {**step.overrides, **spec.step_overrides.get(step.key, {})})
        if step.key not in wanted:
            continue
        row_cfg = apply_overrides(cfg, {"name": f"ablation-{scale}-{step.key}", **spec.row_overrides.get(step.key, {})})
        if overrides:
            row_cfg = apply_overrides(row_cfg, dict(overrides))
        out.append(AblationRow(paper=_paper_row(step), config=row_cfg, step=step))
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
    seconds: float | None = None  # training wall time of the trial
    ap_low_conf: float | None = None  # AP at eval.low_conf_thresh (reported when AP < 1 %)
    ap50_low_conf: float | None = None


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
    ap50_std: float | None
    delta: float | None  # vs the previous row, percent points
    paper_ap: float
    paper_delta: float | None
    params_m: float | None
    gflops: float | None
    paper_params_m: float
    paper_gflops: float
    seconds: float | None = None  # mean training seconds per trial
    ap_low_conf: float | None = None  # mean over the seeds that report it, percent
    ap50_low_conf: float | None = None


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
        ap50_mean, ap50_std = _mean_std([100.0 * res.ap50 for res in ok if res.ap50 is not None])
        seconds, _ = _mean_std([res.seconds for res in ok if res.seconds is not None])
        low, _ = _mean_std([100.0 * res.ap_low_conf for res in ok if res.ap_low_conf is not None])
        low50, _ = _mean_std([100.0 * res.ap50_low_conf for res in ok if res.ap50_low_conf is not None])
        cost = costs.get(row.key)
        table.append(TableRow(
            key=row.key, label=row.label, n=len(ok), n_missing=len(mine) - len(ok),
            ap_mean=ap_mean, ap_std=ap_std, ap50_mean=ap50_mean, ap50_std=ap50_std,
            seconds=seconds, ap_low_conf=low, ap50_low_conf=low50,
            delta=None if ap_mean is None or prev_ap is None else ap_mean - prev_ap,
            paper_ap=row.paper.ap,
            paper_delta=None if prev_paper is None or math.isnan(row.paper.ap) else row.paper.ap - prev_paper,
            params_m=None if cost is None else cost.params / 1e6,
            gflops=None if cost is None else cost.gflops,
            paper_params_m=row.paper.params_m, paper_gflops=row.paper.gflops,
        ))
        prev_ap = ap_mean if ap_mean is not None else prev_ap
        prev_paper = row.paper.ap if not math.isnan(row.paper.ap) else prev_paper
    return table


COLUMNS = ("row", "AP (ours)", "AP50 (ours)", "Δ (ours)", "AP (paper)", "Δ (paper)",
           "params M (ours)", "GFLOPs (ours)", "params M (paper)", "GFLOPs (paper)", "seeds", "s / trial",
           "AP / AP50 at conf 0.001")


def _fmt(value: float | None, digits: int = 1, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _cells(r: TableRow) -> list[str]:
    def spread(mean: float | None, std: float | None) -> str:
        return "–" if mean is None else (f"{mean:.1f} ± {std:.1f}" if r.n > 1 else f"{mean:.1f}")

    seeds = f"{r.n}" + (f" ({r.n_missing} without result)" if r.n_missing else "")
    low = "–" if r.ap_low_conf is None else f"{r.ap_low_conf:.1f} / {_fmt(r.ap50_low_conf)}"
    return [r.label, spread(r.ap_mean, r.ap_std), spread(r.ap50_mean, r.ap50_std), _fmt(r.delta, signed=True),
            _fmt(r.paper_ap), _fmt(r.paper_delta, signed=True), _fmt(r.params_m, 2), _fmt(r.gflops, 2),
            _fmt(r.paper_params_m, 2), _fmt(r.paper_gflops), seeds, _fmt(r.seconds, 0), low]


def table_markdown(table: Sequence[TableRow], labels: Mapping[str, object]) -> str:
    """A Markdown table headed by `labels` (preset, model, input size, data, epochs, commit ...)."""
    lines = ["# YOLOX ablation roadmap (paper Table 2)", ""]
    lines += [f"- **{k}**: {v}" for k, v in labels.items()]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in table]
    lines += ["", "AP is COCO AP[0.5:0.95] in percent on the validation set (ours: mean ± sample std over seeds), "
              "at the official evaluation threshold (eval.conf_thresh 0.01). Rows whose AP is below 1 % are "
              "evaluated once more at conf 0.001 (last column), so a model whose scores are still low is not "
              "hidden. Paper: YOLOX-DarkNet53, 640x640, 300 epochs, COCO val2017. Ours: params/GFLOPs of the "
              "model actually trained, at its input size; s / trial: mean training seconds of a trial."]
    return "\n".join(lines) + "\n"


def table_csv(table: Sequence[TableRow], labels: Mapping[str, object]) -> str:
    """CSV with one line per row (machine-readable fields) and the labels repeated on each line."""
    buf = io.StringIO()
    label_keys = list(labels)
    fields = ["key", "label", "n_seeds", "n_missing", "ap_mean", "ap_std", "ap50_mean", "ap50_std", "delta",
              "paper_ap", "paper_delta", "params_m", "gflops", "paper_params_m", "paper_gflops", "seconds",
              "ap_low_conf", "ap50_low_conf", *label_keys]
    writer = csv.writer(buf)
    writer.writerow(fields)
    for r in table:
        writer.writerow([r.key, r.label, r.n, r.n_missing, r.ap_mean, r.ap_std, r.ap50_mean, r.ap50_std, r.delta,
                         r.paper_ap, r.paper_delta, r.params_m, r.gflops, r.paper_params_m, r.paper_gflops,
                         r.seconds, r.ap_low_conf, r.ap50_low_conf, *(labels[k] for k in label_keys)])
    return buf.getvalue()
