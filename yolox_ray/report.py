"""`yolox-ray report --study NAME`: a self-contained HTML report of one study, read from MLflow.

The page opens with the result and ends with the raw metadata:

1. Result. An ablation study: its table (our AP per roadmap row, mean ± std over seeds, each
   row's gain over the row above beside the paper's gain for the same step) and a chart of those
   gains, with absolute APs on separate axes (ours is far below the paper's 38-47). A search: the
   best trial beside the first one (the official defaults for Optuna), and the k-vs-AP curve when
   `assign.candidate_k` varied. A multi-objective search (parent tag `objectives`, e.g.
   ``AP,latency_ms``): also the table of its Pareto-optimal trials (`pareto_runs`), and Optuna's
   Pareto-front plot opens the Optuna section.
2. Learning curves over the whole schedule: AP at every evaluated epoch and the training loss at
   every epoch, with the warm-up and the no-aug tail shaded.
3. Optuna (search studies with an Optuna storage): importances, and `optuna.visualization`'s
   optimisation history (early-stopped trials marked), parallel coordinates, slices and the
   k × centre-radius contour; all but the history over full-length trials only.
4. Every trial run, linked into the MLflow UI; then the run metadata in a collapsed <details>.

matplotlib plots are PNG data URIs (also written beside the HTML); Optuna's plotly figures are
<div>s with plotly.js inlined once, so the one HTML file works offline and can be archived.

Layout read from MLflow (written by `yolox_ray.cluster.tracking`): one parent run per study and a
child run per trial (tag `mlflow.parentRunId`), tags `study`, `row`, `seed`, params = the flat
config, metrics `AP`, `AP50`, ... (COCO fractions) and `loss` with the epoch (1-based) as step.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import statistics
from dataclasses import dataclass, field
import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from yolox_ray.ablation import PAPER_TABLE2
from yolox_ray.metrics import AP, AP50, GFLOPS, LATENCY_MS, LOSS, PARAMS
from yolox_ray.optuna_analysis import (
    OptunaAnalysisError,
    figure_html,
    full_length_trials,
    load_optuna_study,
    optuna_figures,
    plotly_js,
)
from yolox_ray.optuna_analysis import importances as _optuna_importances
from yolox_ray.study import pareto_front
from yolox_ray.study_paths import DEFAULT_REPORTS_ROOT

K_PARAM = "assign.candidate_k"
STUDY_TAG = "study"
PARENT_TAG = "mlflow.parentRunId"
OPTUNA_STORAGE_TAG = "optuna_storage"
OPTUNA_STUDY_TAG = "optuna_study"
OBJECTIVES_TAG = "objectives"  # "AP,latency_ms" on a multi-objective study's parent run
OBJECTIVE_MODES_TAG = "objective_modes"  # "max,min"
_PAPER_AP = {r.key: r.ap for r in PAPER_TABLE2}
_PAPER_LABEL = {r.key: r.label for r in PAPER_TABLE2}


class ReportError(RuntimeError):
    """The study cannot be reported (unknown study, no runs, unreachable tracking server)."""


@dataclass(frozen=True)
class TrialRun:
    run_id: str
    experiment_id: str
    name: str
    status: str
    row: str | None
    seed: int | None
    params: dict[str, str]
    metrics: dict[str, float]  # latest value of each metric
    ap_history: tuple[tuple[int, float], ...] = ()  # (step, AP) in step order
    loss_history: tuple[tuple[int, float], ...] = ()  # (step, training loss) in step order
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ap(self) -> float | None:
        value = self.metrics.get(AP)
        return value if value is not None and math.isfinite(value) else None

    @property
    def ap50(self) -> float | None:
        value = self.metrics.get(AP50)
        return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class StudyRuns:
    study: str
    parent_id: str | None
    experiment_id: str
    parent_tags: dict[str, str]
    trials: tuple[TrialRun, ...]


# ---------------------------------------------------------------------------------------------
# Reading MLflow


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(float(text)) if text is not None else None
    except ValueError:
        return None


def load_study(tracking_uri: str, study: str) -> StudyRuns:
    """The parent run and child runs of `study` from the tracking server/store at `tracking_uri`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = client.search_experiments()
    if not experiments:
        raise ReportError(f"no MLflow experiments at {tracking_uri}")
    ids = [e.experiment_id for e in experiments]
    runs = client.search_runs(ids, filter_string=f"tags.{STUDY_TAG} = '{_quote(study)}'", max_results=50000)
    if not runs:
        known = sorted({r.data.tags.get(STUDY_TAG) for r in client.search_runs(ids, max_results=2000)} - {None})
        raise ReportError(f"no MLflow runs tagged study={study!r} at {tracking_uri}; studies found: {known or 'none'}")
    parents = [r for r in runs if PARENT_TAG not in r.data.tags]
    parent = max(parents, key=lambda r: r.info.start_time or 0) if parents else None
    children = [r for r in runs if PARENT_TAG in r.data.tags]
    if parent is not None:
        # Children are the parent's, even if a child lacks the study tag.
        by_parent = client.search_runs([parent.info.experiment_id],
                                       filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'", max_results=50000)
        seen = {r.info.run_id for r in children}
        children += [r for r in by_parent if r.info.run_id not in seen]
    trials = []
    for r in sorted(children, key=lambda r: r.info.start_time or 0):
        history = tuple(sorted((int(m.step), float(m.value)) for m in client.get_metric_history(r.info.run_id, AP)))
        losses = tuple(sorted((int(m.step), float(m.value))
                              for m in client.get_metric_history(r.info.run_id, LOSS)))
        tags = dict(r.data.tags)
        trials.append(TrialRun(
            run_id=r.info.run_id, experiment_id=r.info.experiment_id,
            name=r.info.run_name or tags.get("mlflow.runName", r.info.run_id[:8]), status=r.info.status,
            row=tags.get("row"), seed=_int_or_none(tags.get("seed")), params=dict(r.data.params),
            metrics=dict(r.data.metrics), ap_history=history, loss_history=losses, tags=tags,
        ))
    exp_id = parent.info.experiment_id if parent is not None else children[0].info.experiment_id
    return StudyRuns(study=study, parent_id=None if parent is None else parent.info.run_id, experiment_id=exp_id,
                     parent_tags={} if parent is None else dict(parent.data.tags), trials=tuple(trials))


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


# ---------------------------------------------------------------------------------------------
# Aggregation


@dataclass(frozen=True)
class RowStat:
    key: str
    label: str
    ap_mean: float  # percent
    ap_std: float
    n: int
    paper_ap: float | None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def ablation_stats(trials: Sequence[TrialRun]) -> list[RowStat]:
    """Per row (in roadmap order, then first-seen order): AP mean ± std over seeds, in percent."""
    order = [r.key for r in PAPER_TABLE2]
    rows = [t.row for t in trials if t.row]
    keys = sorted(set(rows), key=lambda k: (order.index(k) if k in order else len(order), rows.index(k)))
    stats = []
    for key in keys:
        aps = [100.0 * t.ap for t in trials if t.row == key and t.ap is not None]
        if not aps:
            continue
        mean, std = _mean_std(aps)
        paper = _PAPER_AP.get(key)
        if paper is None:
            tagged = next((t.tags.get("paper_ap") for t in trials if t.row == key and t.tags.get("paper_ap")), None)
            paper = float(tagged) if tagged else None
        stats.append(RowStat(key, _PAPER_LABEL.get(key, key), mean, std, len(aps), paper))
    return stats


@dataclass(frozen=True)
class RowDelta:
    """A row's gain over the row above it in the study (AP points), ours beside the paper's."""

    key: str
    label: str
    above: str  # the label of the row compared against
    ours: float
    ours_std: float  # of the difference of two independent means: sqrt(s1²/n1 + s2²/n2)
    paper: float | None


def row_deltas(stats: Sequence[RowStat]) -> list[RowDelta]:
    """Each row's AP minus the row above it in `stats` (roadmap order), ours and the paper's for the
    same pair of rows, so a study that skips a row still compares like with like."""
    out = []
    for above, row in zip(stats, stats[1:]):
        paper = (row.paper_ap - above.paper_ap
                 if row.paper_ap is not None and above.paper_ap is not None
                 and math.isfinite(row.paper_ap) and math.isfinite(above.paper_ap) else None)
        spread = math.sqrt(row.ap_std ** 2 / row.n + above.ap_std ** 2 / above.n)
        out.append(RowDelta(row.key, row.label, above.label, row.ap_mean - above.ap_mean, spread, paper))
    return out


@dataclass(frozen=True)
class Curve:
    """One learning curve: AP (percent) per evaluated epoch and the training loss per epoch."""

    label: str
    ap: tuple[tuple[int, float], ...]
    loss: tuple[tuple[int, float], ...]


def _mean_by_step(histories: Iterable[Sequence[tuple[int, float]]], scale: float = 1.0) -> tuple[tuple[int, float], ...]:
    by_step: dict[int, list[float]] = {}
    for history in histories:
        for step, value in history:
            if math.isfinite(value):
                by_step.setdefault(step, []).append(scale * value)
    return tuple((step, statistics.fmean(v)) for step, v in sorted(by_step.items()))


def learning_curves(trials: Sequence[TrialRun], top: int = 5) -> list[Curve]:
    """An ablation study: one curve per row (the mean over its seeds at each epoch), in roadmap
    order. Otherwise the `top` trials by final AP."""
    stats = ablation_stats(trials)
    if stats:
        curves = []
        for s in stats:
            runs = [t for t in trials if t.row == s.key]
            label = f"{s.label} ({len(runs)} seed{'s' if len(runs) != 1 else ''})"
            curves.append(Curve(label, _mean_by_step((t.ap_history for t in runs), 100.0),
                                _mean_by_step(t.loss_history for t in runs)))
        return [c for c in curves if c.ap or c.loss]
    best = sorted((t for t in trials if t.ap is not None and t.ap_history), key=lambda t: -t.ap)[:top]
    return [Curve(t.name, tuple((step, 100.0 * v) for step, v in t.ap_history), t.loss_history) for t in best]


@dataclass(frozen=True)
class Schedule:
    epochs: int
    warmup_epochs: float
    no_aug_epochs: int


def study_schedule(trials: Sequence[TrialRun]) -> Schedule | None:
    """The (longest) training schedule of the study's runs, from their logged config params."""
    found = []
    for t in trials:
        try:
            found.append(Schedule(int(float(t.params["train.epochs"])), float(t.params.get("train.warmup_epochs", 0)),
                                  int(float(t.params.get("train.no_aug_epochs", 0)))))
        except (KeyError, ValueError):
            continue
    return max(found, key=lambda s: s.epochs, default=None)


@dataclass(frozen=True)
class KPoint:
    k: int
    ap_mean: float  # percent
    ap_std: float
    n: int


def k_points(pairs: Iterable[tuple[int, float]]) -> list[KPoint]:
    """(k, AP fraction) pairs -> AP in percent, mean ± sample std per k; empty if k does not vary."""
    by_k: dict[int, list[float]] = {}
    for k, ap in pairs:
        if ap is not None and math.isfinite(ap):
            by_k.setdefault(int(k), []).append(100.0 * ap)
    if len(by_k) < 2:
        return []
    return [KPoint(k, *_mean_std(v), len(v)) for k, v in sorted(by_k.items())]


def k_curve(trials: Sequence[TrialRun]) -> list[KPoint]:
    """AP (mean ± std over the trials at that k) per `assign.candidate_k` of MLflow trial runs."""
    pairs = []
    for t in trials:
        k = _int_or_none(t.params.get(K_PARAM))
        if k is not None and t.ap is not None:
            pairs.append((k, t.ap))
    return k_points(pairs)


def varying_params(trials: Sequence[TrialRun]) -> list[str]:
    keys = sorted({k for t in trials for k in t.params})
    return [k for k in keys if k != "name" and len({t.params.get(k) for t in trials}) > 1]


def study_objectives(runs: StudyRuns) -> tuple[list[str], list[str]]:
    """(objective names, modes) of a multi-objective study from its parent tags; ([], []) otherwise."""
    names = [n for n in runs.parent_tags.get(OBJECTIVES_TAG, "").split(",") if n]
    modes = [m for m in runs.parent_tags.get(OBJECTIVE_MODES_TAG, "").split(",") if m]
    return (names, modes) if len(names) > 1 and len(modes) == len(names) else ([], [])


def pareto_runs(runs: StudyRuns) -> list[TrialRun]:
    """The finished, full-length trial runs of a multi-objective study that no other such run dominates
    (by the runs' last value of each objective), sorted by the first cost; [] for other studies."""
    names, modes = study_objectives(runs)
    if not names:
        return []
    valued = [t for t in runs.trials if t.status == "FINISHED" and t.tags.get("early_stopped") != "true"
              and all(isinstance(t.metrics.get(n), float) and math.isfinite(t.metrics[n]) for n in names)]
    front = [valued[i] for i in pareto_front([[t.metrics[n] for n in names] for t in valued], modes)]
    return sorted(front, key=lambda t: (t.metrics[names[1]], -t.metrics[names[0]]))


def objective_text(name: str, value: float | None) -> str:
    """A cell for an objective's value: AP-like fractions in percent, the model costs in their units."""
    if value is None or not math.isfinite(value):
        return "–"
    if name == PARAMS:
        return f"{value / 1e6:.3f} M"
    if name == GFLOPS:
        return f"{value:.3f}"
    if name == LATENCY_MS:
        return f"{value:.2f} ms"
    return _pct(value)


def optuna_importances(storage: str, study_name: str | None) -> tuple[str, dict[str, float]]:
    """(study name, importances) of a persisted Optuna study (PED-ANOVA, Optuna's default), over
    its full-length trials only: an early-stopped trial's value is from an earlier epoch."""
    try:
        study = load_optuna_study(storage, study_name)
        return study.study_name, _optuna_importances(study)
    except OptunaAnalysisError as exc:
        raise ReportError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg)


def _figure(width: float = 7.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def plot_ablation(stats: Sequence[RowStat], path: Path) -> Path:
    """Left: each step's gain, ours beside the paper's (same AP-point axis: gains are comparable).
    Right: absolute AP on separate axes, ours left, the paper's right (ours is far lower)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    deltas = row_deltas(stats)
    fig, (ax, ax_abs) = plt.subplots(1, 2, figsize=(11.0, 4.4), dpi=100, gridspec_kw={"width_ratios": [1.2, 1]})
    xs = list(range(len(deltas)))
    width = 0.38
    ours = ax.bar([x - width / 2 for x in xs], [d.ours for d in deltas], width, yerr=[d.ours_std for d in deltas],
                  capsize=3, label="ours (mean over seeds)", color="#1f77b4")
    paper_x = [x + width / 2 for x, d in zip(xs, deltas) if d.paper is not None]
    paper = ax.bar(paper_x, [d.paper for d in deltas if d.paper is not None], width,
                   label="paper Table 2", color="#ff7f0e")
    ax.bar_label(ours, fmt="%+.1f", fontsize=7, padding=2)
    ax.bar_label(paper, fmt="%+.1f", fontsize=7, padding=2)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(xs, [d.label for d in deltas], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("AP gain over the row above (points)")
    ax.set_title("Each step's gain: ours vs the paper")
    ax.legend(fontsize=8)

    rows = list(range(len(stats)))
    ax_abs.errorbar(rows, [s.ap_mean for s in stats], yerr=[s.ap_std for s in stats], marker="o", capsize=3,
                    color="#1f77b4", label="ours")
    ax_abs.set_ylabel("our AP (%)", color="#1f77b4")
    ax_abs.tick_params(axis="y", colors="#1f77b4")
    twin = ax_abs.twinx()
    with_paper = [(i, s.paper_ap) for i, s in enumerate(stats) if s.paper_ap is not None and math.isfinite(s.paper_ap)]
    twin.plot([i for i, _ in with_paper], [v for _, v in with_paper], marker="s", color="#ff7f0e", label="paper")
    twin.set_ylabel("paper AP (%), Darknet53 COCO 300 ep", color="#ff7f0e")
    twin.tick_params(axis="y", colors="#ff7f0e")
    ax_abs.set_xticks(rows, [s.label for s in stats], rotation=20, ha="right", fontsize=8)
    ax_abs.set_title("Absolute AP (separate axes)")
    return _save(plt, fig, path)


def plot_k_curve(points: Sequence[KPoint], path: Path) -> Path:
    plt, fig, ax = _figure()
    ax.errorbar([p.k for p in points], [p.ap_mean for p in points], yerr=[p.ap_std for p in points],
                marker="o", capsize=4)
    for p in points:
        ax.annotate(f"n={p.n}", (p.k, p.ap_mean), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    ax.axvline(10, color="grey", linestyle=":", label="paper k = 10")
    ax.set_xlabel("SimOTA candidate_k")
    ax.set_ylabel("AP [0.5:0.95] (%)")
    ax.set_title("SimOTA: AP vs candidate k (error bars: std over seeds/trials)")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_importances(importances: dict[str, float], path: Path) -> Path:
    items = sorted(importances.items(), key=lambda kv: kv[1])
    plt, fig, ax = _figure(7.0, max(2.5, 0.45 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#2ca02c")
    ax.set_xlabel("importance (Optuna PED-ANOVA)")
    ax.set_title("Optuna parameter importances")
    return _save(plt, fig, path)


def plot_learning_curves(curves: Sequence[Curve], schedule: Schedule | None, path: Path) -> Path:
    """AP at every evaluated epoch (top) and the training loss at every epoch (bottom) over the
    whole schedule, warm-up and no-aug tail shaded, so one sees where the evaluations fall."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    with_loss = any(c.loss for c in curves)
    fig, axes = plt.subplots(2 if with_loss else 1, 1, figsize=(8.0, 6.4 if with_loss else 4.0), dpi=100,
                             sharex=True, squeeze=False)
    ax_ap = axes[0][0]
    for i, c in enumerate(curves):
        color = f"C{i % 10}"
        ax_ap.plot([s for s, _ in c.ap], [v for _, v in c.ap], marker="o", markersize=4, color=color, label=c.label)
        if with_loss:
            axes[1][0].plot([s for s, _ in c.loss], [v for _, v in c.loss], color=color, linewidth=1.2)
    for ax in (row[0] for row in axes):
        if schedule is not None:
            ax.set_xlim(0, schedule.epochs + 0.5)
            if schedule.warmup_epochs > 0:
                ax.axvspan(0, schedule.warmup_epochs, color="#fff3c4", zorder=0)
            if schedule.no_aug_epochs > 0:
                ax.axvspan(schedule.epochs - schedule.no_aug_epochs, schedule.epochs, color="#e6e6e6", zorder=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax_ap.set_ylabel("AP [0.5:0.95] (%)")
    title = "AP at every evaluated epoch"
    if schedule is not None:
        title += (f" ({schedule.epochs} epochs; yellow: warm-up, grey: last {schedule.no_aug_epochs} "
                  "without Mosaic/MixUp, with L1)")
    ax_ap.set_title(title, fontsize=9)
    ax_ap.legend(fontsize=7)
    if with_loss:
        axes[1][0].set_ylabel("training loss")
        axes[1][0].set_title("training loss at every epoch", fontsize=9)
    axes[-1][0].set_xlabel("epoch")
    return _save(plt, fig, path)


# ---------------------------------------------------------------------------------------------
# HTML


def ui_base_url(tracking_uri: str, ui_url: str | None) -> str:
    """Where the MLflow UI lives: the tracking server itself, or `yolox-ray ui`'s default address."""
    if ui_url:
        return ui_url.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return "http://127.0.0.1:5000"


def _img(path: Path, plot_id: str, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img id="{plot_id}" class="plot" alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)} '
            f'(<a href="{html.escape(path.name)}">{html.escape(path.name)}</a>)</figcaption></figure>')


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100.0 * v:.2f}"


def _num(v: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if v is None or not math.isfinite(v) else fmt.format(v)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; font-size: 0.85em; display: block; overflow-x: auto; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 3px 6px; } th { background: #f3f3f3; } td.num { text-align: right; }
figure { margin: 1em 0; } img.plot { max-width: 100%; border: 1px solid #eee; } .plotly-graph-div { border: 1px solid #eee; }
.note { color: #666; font-size: 0.9em; } code { background: #f6f6f6; padding: 0 3px; }
.lead { font-size: 1.05em; } details { margin: 1.5em 0; } summary { cursor: pointer; font-weight: bold; }
"""

# First in <head>: records page errors (script errors, failed resources, rejected promises,
# console.error) where a headless check can read them from the DOM; harmless for people.
_ERROR_SCRIPT = """
window.__reportErrors = [];
(function () {
  function note(text) { window.__reportErrors.push(String(text)); }
  window.addEventListener('error', function (e) {
    note(e.message || ('failed to load ' + ((e.target && (e.target.src || e.target.href)) || 'a resource')));
  }, true);
  window.addEventListener('unhandledrejection', function (e) { note('unhandled rejection: ' + e.reason); });
  var original = console.error;
  console.error = function () { note(Array.prototype.join.call(arguments, ' ')); original.apply(console, arguments); };
})();
"""

# Marks every plot with whether the browser drew it: an <img> decoded (naturalWidth > 0), a plotly
# <div> holding its SVG. Run at load and again a little later (plotly may finish asynchronously).
_MARK_SCRIPT = """
function markPlots() {
  var ok = 0, all = document.querySelectorAll('.plot');
  all.forEach(function (el) {
    var drawn = el.tagName === 'IMG' ? (el.complete && el.naturalWidth > 0)
                                     : (el.classList.contains('js-plotly-plot') && el.querySelector('svg.main-svg') !== null);
    el.dataset.rendered = drawn ? 'yes' : 'no';
    if (drawn) ok++;
  });
  document.body.dataset.plots = String(all.length);
  document.body.dataset.plotsRendered = String(ok);
  document.body.dataset.pageErrors = String(window.__reportErrors.length);
  document.getElementById('page-errors').textContent = window.__reportErrors.join('\\n');
}
window.addEventListener('load', function () { markPlots(); setTimeout(markPlots, 1500); });
"""


def _plotly_block(fig: Any) -> str:
    div = figure_html(fig).replace('class="plotly-graph-div"', 'class="plotly-graph-div plot"', 1)
    return (f"<figure><h3>{html.escape(fig.title)}</h3>{div}"
            f"<figcaption class='note'>{html.escape(fig.caption)}</figcaption></figure>")


def _ablation_section(stats: Sequence[RowStat], out: Path) -> str:
    deltas = {d.key: d for d in row_deltas(stats)}
    rows = []
    for s in stats:
        d = deltas.get(s.key)
        rows.append("<tr>" + "".join([
            f"<td>{html.escape(s.label)}</td>",
            f"<td class='num'>{s.ap_mean:.2f} ± {s.ap_std:.2f}</td><td class='num'>{s.n}</td>",
            f"<td class='num'>{_num(d.ours if d else None, '{:+.2f}')}</td>",
            f"<td class='num'>{_num(s.paper_ap, '{:.1f}')}</td>",
            f"<td class='num'>{_num(d.paper if d else None, '{:+.1f}')}</td>",
        ]) + "</tr>")
    table = ("<table id='ablation-table'><tr><th>row</th><th>our AP (%)</th><th>seeds</th>"
             "<th>our Δ vs row above</th><th>paper AP (%)</th><th>paper Δ</th></tr>" + "".join(rows) + "</table>")
    return ("<h2>Result: the ablation roadmap</h2>"
            "<p class='lead'>Each row adds one change to the row above. Compare the <b>gains</b> (Δ, AP points): "
            "our absolute AP comes from a small proxy (small model, synthetic data, short schedule) and is far "
            "below the paper's 38–47 (Darknet53, COCO, 300 epochs).</p>" + table
            + _img(plot_ablation(stats, out / "ablation.png"), "plot-ablation",
                   "Each step's AP gain, ours beside the paper's; absolute AP on separate axes"))


def _pareto_section(runs: StudyRuns, base: str) -> str:
    names, modes = study_objectives(runs)
    front = pareto_runs(runs)
    varying = varying_params(runs.trials)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["run", *(n + (" (%)" if n not in (PARAMS, GFLOPS, LATENCY_MS)
                                                                       else "") for n in names), *varying])
    body = []
    for t in front:
        link = f"{base}/#/experiments/{t.experiment_id}/runs/{t.run_id}"
        cells = [f'<a class="pareto-link" href="{html.escape(link)}">{html.escape(t.name)}</a>',
                 *(objective_text(n, t.metrics.get(n)) for n in names),
                 *(html.escape(t.params.get(k, "–")) for k in varying)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    goals = ", ".join(f"{n} {'higher' if m == 'max' else 'lower'} is better" for n, m in zip(names, modes))
    return (f"<h2>Pareto front: {html.escape(' vs '.join(names))}</h2>"
            f"<p class='lead'>{len(front)} Pareto-optimal trials ({html.escape(goals)}): no other finished trial is "
            "at least as good in every objective and better in one" + (": each is the best AP found at its cost or lower"
                                                             if len(names) == 2 else "") + ".</p>"
            f"<table id='pareto-table'><tr>{head}</tr>{''.join(body)}</table>"
            "<p class='note'>Values are each trial's last reported ones (AP: the last evaluation; the model cost "
            "is measured once per run, see <code>yolox_ray/engine/model_cost.py</code>).</p>")


def _search_section(runs: StudyRuns) -> str:
    done = [t for t in runs.trials if t.ap is not None]
    if not done:
        return f"<h2>Result</h2><p>No trial produced a value of {AP}.</p>"
    best = max(done, key=lambda t: t.ap)
    first = done[0]  # runs are in start order
    first_name = ("first trial (the official defaults)" if runs.parent_tags.get("searcher") == "optuna"
                  else "first trial")
    params = varying_params(runs.trials)
    cells = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(best.params.get(k, '–'))}</td>"
                    f"<td>{html.escape(first.params.get(k, '–'))}</td></tr>" for k in params)
    return (f"<h2>Result</h2><p class='lead'>Best {AP} <b>{_pct(best.ap)} %</b> (run <code>{html.escape(best.name)}</code>) "
            f"against {_pct(first.ap)} % for the {first_name} (<code>{html.escape(first.name)}</code>), over "
            f"{len(done)} trials with a value of {AP}.</p>"
            + (f"<table id='best-table'><tr><th>parameter</th><th>best</th><th>{html.escape(first_name)}</th></tr>"
               f"{cells}</table>" if params else ""))


def _optuna_section(storage: str, study_name: str | None, out: Path,
                    names: list[str] | None = None) -> tuple[str, bool]:
    """(HTML, whether it holds plotly figures) of the Optuna study; a note where it cannot be read."""
    try:
        study = load_optuna_study(storage, study_name)
    except Exception as exc:  # the report still renders; say why the section is missing
        return f"<h2>Optuna analysis</h2><p class='note'>Optuna study unavailable: {html.escape(str(exc))}</p>", False
    full, early = full_length_trials(study)
    parts = [f"<h2>Optuna analysis</h2><p class='note'>Optuna study <code>{html.escape(study.study_name)}</code> in "
             f"<code>{html.escape(storage)}</code>: {len(full)} full-length trials"
             + (f", {len(early)} early-stopped by ASHA (Optuna trials {', '.join(str(t.number) for t in early)}); "
                "an early-stopped trial's value is its AP at an earlier epoch, so it is left out of the "
                "importances and of every plot but the history" if early else "") + ". "
             "Browse it live with <code>yolox-ray dashboard --study NAME</code>.</p>"]
    try:
        found = _optuna_importances(study)
        table = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td class='num'>{v:.3f}</td></tr>"
                        for k, v in sorted(found.items(), key=lambda kv: -kv[1]))
        parts.append("<h3>Parameter importances" + (f" for {html.escape(names[0])}" if names else "") + "</h3>"
                     + _img(plot_importances(found, out / "importances.png"), "plot-importances",
                            "Parameter importances (PED-ANOVA) over the full-length trials")
                     + f"<table id='importances'><tr><th>parameter</th><th>importance</th></tr>{table}</table>")
    except OptunaAnalysisError as exc:
        parts.append(f"<p class='note'>No importances: {html.escape(str(exc))}</p>")
    figures, notes = optuna_figures(study, names or None)
    parts += [_plotly_block(f) for f in figures]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    return "".join(parts), bool(figures)


def _metadata_section(runs: StudyRuns, tracking_uri: str, base: str) -> str:
    parent_link = (f'<a href="{html.escape(base)}/#/experiments/{runs.experiment_id}/runs/{runs.parent_id}">'
                   f'{html.escape(runs.parent_id)}</a>' if runs.parent_id else "none")
    tags = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(v)}</td></tr>"
                   for k, v in sorted(runs.parent_tags.items()))
    params = sorted({k for t in runs.trials for k in t.params})
    metrics = sorted({k for t in runs.trials for k in t.metrics})
    return (f"<details id='metadata'><summary>Run metadata</summary>"
            f"<p>Tracking: <code>{html.escape(tracking_uri)}</code>; MLflow experiment {html.escape(runs.experiment_id)}; "
            f"parent run {parent_link}; MLflow UI at <a href='{html.escape(base)}'>{html.escape(base)}</a> "
            f"(start it with <code>yolox-ray ui</code>). Generated {_dt.datetime.now().isoformat(timespec='seconds')}.</p>"
            f"<h3>Parent run tags</h3><table>{tags}</table>"
            f"<h3>Trial params logged ({len(params)})</h3><p><code>{html.escape(' '.join(params))}</code></p>"
            f"<h3>Trial metrics logged ({len(metrics)})</h3><p><code>{html.escape(' '.join(metrics))}</code></p>"
            "</details>")


def build_report(
    study: str,
    out_dir: str | Path,
    tracking_uri: str,
    *,
    ui_url: str | None = None,
    optuna_storage: str | None = None,
    optuna_study: str | None = None,
    top_curves: int = 5,
) -> Path:
    """Write `out_dir/report.html` (and its PNGs) for `study`; returns the HTML path."""
    runs = load_study(tracking_uri, study)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = ui_base_url(tracking_uri, ui_url)
    sections: list[str] = []

    stats = ablation_stats(runs.trials)
    if stats and any(s.key in _PAPER_AP for s in stats):
        sections.append(_ablation_section(stats, out))
    else:
        sections.append(_search_section(runs))
    names, _ = study_objectives(runs)
    if names:
        sections.append(_pareto_section(runs, base))
    points = k_curve(runs.trials)
    if points:
        sections.append("<h2>SimOTA candidate k</h2>" + _img(plot_k_curve(points, out / "k_curve.png"), "plot-k-curve",
                                                              "AP vs candidate_k with error bars over seeds/trials"))
    curves = learning_curves(runs.trials, top_curves)
    if curves:
        schedule = study_schedule(runs.trials)
        sections.append("<h2>Learning curves</h2>" + _img(
            plot_learning_curves(curves, schedule, out / "learning_curves.png"), "plot-learning-curves",
            "AP at every evaluated epoch and the training loss at every epoch, over the whole schedule"
            + (" (one curve per row, mean over seeds)" if stats else f" (the best {len(curves)} trials)")))
    storage = optuna_storage or runs.parent_tags.get(OPTUNA_STORAGE_TAG)
    with_plotly = False
    if storage:
        section, with_plotly = _optuna_section(storage, optuna_study or runs.parent_tags.get(OPTUNA_STUDY_TAG), out,
                                               names)
        sections.append(section)

    varying = varying_params(runs.trials)
    costs = names[1:]  # a multi-objective study's model costs, with a Pareto mark
    on_front = {t.run_id for t in pareto_runs(runs)}
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["run", "row", "seed", "status", AP, AP50, *costs,
                                                           *(["Pareto"] if costs else []), *varying])
    body = []
    for t in sorted(runs.trials, key=lambda t: (-(t.ap if t.ap is not None else -1.0), t.name)):
        link = f"{base}/#/experiments/{t.experiment_id}/runs/{t.run_id}"
        status = t.status + (" (early-stopped)" if t.tags.get("early_stopped") == "true" else "")
        cells = [f'<a class="run-link" href="{html.escape(link)}">{html.escape(t.name)}</a>', html.escape(t.row or "–"),
                 "–" if t.seed is None else str(t.seed), html.escape(status), _pct(t.ap), _pct(t.ap50),
                 *(objective_text(n, t.metrics.get(n)) for n in costs),
                 *((["yes" if t.run_id in on_front else ""]) if costs else []),
                 *(html.escape(t.params.get(k, "–")) for k in varying)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    sections.append(f"<h2>Runs ({len(runs.trials)})</h2><table id='runs'><tr>{head}</tr>{''.join(body)}</table>"
                    "<p class='note'>AP values are COCO AP in percent on the validation set (last evaluation).</p>")
    sections.append(_metadata_section(runs, tracking_uri, base))

    finished = sum(t.status == "FINISHED" for t in runs.trials)
    preset = runs.parent_tags.get("preset")
    plotly_tag = f"<script>{plotly_js()}</script>" if with_plotly else ""
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>yolox-ray study {html.escape(study)}</title>
<script>{_ERROR_SCRIPT}</script><style>{_CSS}</style>{plotly_tag}<script>{_MARK_SCRIPT}</script></head>
<body><h1>Study <code>{html.escape(study)}</code></h1>
<p class="note">{len(runs.trials)} trial runs, {finished} finished{f"; preset {html.escape(preset)}" if preset else ""}.
Details of every run are in the MLflow UI (links below); run metadata at the end.</p>
{''.join(sections)}
<pre id="page-errors" hidden></pre>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def run_report_cli(args: Any) -> int:
    """`yolox-ray report --study NAME [--out DIR] [--tracking-uri URI]`."""
    out = Path(args.out) if args.out else Path(DEFAULT_REPORTS_ROOT) / args.study
    try:
        tracking_uri = args.tracking_uri or default_tracking_uri()
        path = build_report(args.study, out, tracking_uri, optuna_storage=getattr(args, "optuna_storage", None))
    except ReportError as exc:
        print(f"yolox-ray report: {exc}")
        return 1
    print(f"report: {path.resolve()}")
    return 0


def default_tracking_uri(root: str | Path = "mlruns") -> str:
    """The local store `yolox-ray` writes by default: its running server if there is one, else
    the SQLite file itself (reading needs no server)."""
    import json

    from yolox_ray.cluster.tracking import server_healthy

    root = Path(root)
    record = root / "server.json"
    if record.exists():
        try:
            uri = str(json.loads(record.read_text())["uri"])
        except (ValueError, KeyError):
            uri = ""
        if uri and server_healthy(uri):
            return uri
    db = root / "mlflow.db"
    if not db.exists():
        raise ReportError(f"no MLflow store at {db.resolve()}; run a study first or pass --tracking-uri")
    return f"sqlite:///{db.resolve()}"


def write_search_outputs(result: Any, study_name: str, tracking_uri: str, *, user_tracking_uri: str | None,
                         importances: bool = True) -> None:
    """What every search study writes at its end: importances, the best config and the HTML report.

    `result` is a `yolox_ray.cluster.tune.StudyResult`; files go into its study folder.
    """
    from yolox_ray.config import dump_yaml

    out = Path(result.outputs_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage = result.optuna_storage
    found: dict[str, float] = {}
    if importances and storage:
        try:
            study = load_optuna_study(storage, study_name)
            found = _optuna_importances(study)
        except OptunaAnalysisError as exc:
            print(f"no parameter importances: {exc}")
    if found:
        (out / "importances.json").write_text(json.dumps(found, indent=1))
        plot_importances(found, out / "importances.png")
        full, early = full_length_trials(study)
        print(f"\nparameter importances (Optuna PED-ANOVA) over {len(full)} full-length trials"
              + (f"; early-stopped, left out: Optuna trials {[t.number for t in early]}" if early else "") + ":")
        for key, value in sorted(found.items(), key=lambda kv: -kv[1]):
            print(f"  {key:28s} {value:.3f}")
        print(f"importances: {out / 'importances.png'}")
    if result.best_config is not None:
        dump_yaml(result.best_config, out / "best_config.yaml")
        print(f"best config: {out / 'best_config.yaml'}")
    # A local server lives only while the script runs: link the report to `yolox-ray ui` (port 5000).
    ui_url = None if user_tracking_uri else "http://127.0.0.1:5000"
    print(f"report: {build_report(study_name, out / 'report', tracking_uri, ui_url=ui_url)}")
