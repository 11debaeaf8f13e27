"""`yolox-ray report --study NAME`: a self-contained HTML report of one study, read from MLflow.

The report holds (each only where the study has the data for it):

- ablation bars: our AP per roadmap row (mean ± std over seeds) beside the paper's Table 2;
- the SimOTA k-vs-AP curve (`assign.candidate_k`) with seed/trial error bars;
- Optuna parameter importances, when the study has an Optuna RDB study;
- learning curves (AP per epoch) of the best trials;
- a table of every trial run with a link into the MLflow UI.

Plots are PNGs drawn with matplotlib (Agg) and embedded as base64 data URIs, so the one HTML file
can be mailed or archived; the PNGs are also written beside it.

Layout read from MLflow (written by `yolox_ray.cluster.tracking`): one parent run per study and a
child run per trial (tag `mlflow.parentRunId`), tags `study`, `row`, `seed`, params = the flat
config, metrics `AP`, `AP50`, ... (COCO fractions) with the epoch as step.
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

K_PARAM = "assign.candidate_k"
STUDY_TAG = "study"
PARENT_TAG = "mlflow.parentRunId"
OPTUNA_STORAGE_TAG = "optuna_storage"
OPTUNA_STUDY_TAG = "optuna_study"
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
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ap(self) -> float | None:
        value = self.metrics.get("AP")
        return value if value is not None and math.isfinite(value) else None

    @property
    def ap50(self) -> float | None:
        value = self.metrics.get("AP50")
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
        history = tuple(sorted((int(m.step), float(m.value)) for m in client.get_metric_history(r.info.run_id, "AP")))
        tags = dict(r.data.tags)
        trials.append(TrialRun(
            run_id=r.info.run_id, experiment_id=r.info.experiment_id,
            name=r.info.run_name or tags.get("mlflow.runName", r.info.run_id[:8]), status=r.info.status,
            row=tags.get("row"), seed=_int_or_none(tags.get("seed")), params=dict(r.data.params),
            metrics=dict(r.data.metrics), ap_history=history, tags=tags,
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


def full_length_trials(study: Any) -> tuple[list[Any], list[Any]]:
    """(full-length, early-stopped) COMPLETE trials of an Optuna study.

    Ray's OptunaSearch tells Optuna an ASHA-stopped trial as COMPLETE with its rung value, and
    reports one intermediate value per epoch (step = Tune's training iteration), so a trial is
    early-stopped when it reported fewer steps than the longest trial of the study.
    """
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    steps = {t.number: max(t.intermediate_values, default=0) for t in complete}
    longest = max(steps.values(), default=0)
    full = [t for t in complete if steps[t.number] >= longest]
    return full, [t for t in complete if steps[t.number] < longest]


def optuna_importances(storage: str, study_name: str | None) -> tuple[str, dict[str, float]]:
    """(study name, importances) of a persisted Optuna study (PED-ANOVA, Optuna's default), over
    its full-length trials only: an early-stopped trial's value is from an earlier epoch."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if study_name is None:
        names = optuna.get_all_study_names(storage=storage)
        if len(names) != 1:
            raise ReportError(f"Optuna storage {storage} holds {len(names)} studies {names}; name one")
        study_name = names[0]
    study = optuna.load_study(study_name=study_name, storage=storage)
    full, early = full_length_trials(study)
    if len(full) < 2:
        raise ReportError(f"Optuna study {study_name!r} has {len(full)} full-length complete trials "
                          f"({len(early)} early-stopped ones left out); importances need >= 2")
    subset = optuna.create_study(directions=study.directions)
    subset.add_trials(full)
    return study_name, dict(optuna.importance.get_param_importances(subset))


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
    plt, fig, ax = _figure(8.0, 4.2)
    xs = list(range(len(stats)))
    width = 0.38
    ours = ax.bar([x - width / 2 for x in xs], [s.ap_mean for s in stats], width,
                  yerr=[s.ap_std for s in stats], capsize=3, label="ours (mean ± std over seeds)", color="#1f77b4")
    paper_x = [x + width / 2 for x, s in zip(xs, stats) if s.paper_ap is not None]
    paper_y = [s.paper_ap for s in stats if s.paper_ap is not None]
    ax.bar(paper_x, paper_y, width, label="paper (Darknet53, COCO, 300 ep)", color="#ff7f0e")
    ax.bar_label(ours, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(xs, [s.label for s in stats], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("AP [0.5:0.95] (%)")
    ax.set_title("Ablation roadmap: ours vs paper Table 2")
    ax.legend(fontsize=8)
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


def plot_learning_curves(trials: Sequence[TrialRun], path: Path) -> Path:
    plt, fig, ax = _figure()
    for t in trials:
        steps = [s for s, _ in t.ap_history]
        values = [100.0 * v for _, v in t.ap_history]
        label = t.name + (f" ({t.row}, seed {t.seed})" if t.row else "")
        ax.plot(steps, values, marker="o", markersize=3, label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (MLflow step)")
    ax.set_ylabel("AP [0.5:0.95] (%)")
    ax.set_title(f"Learning curves of the best {len(trials)} trials")
    ax.legend(fontsize=7)
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


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; display: block; overflow-x: auto; } td, th { border: 1px solid #ccc; padding: 3px 6px; }
th { background: #f3f3f3; } figure { margin: 1em 0; } img.plot { max-width: 100%; border: 1px solid #eee; }
.note { color: #666; font-size: 0.9em; } code { background: #f6f6f6; padding: 0 3px; }
"""

# Marks every plot with whether the browser decoded it (naturalWidth > 0): visible in the DOM for
# headless checks, harmless for people.
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.plot'), ok = 0;
  imgs.forEach(function (im) { var r = im.complete && im.naturalWidth > 0; im.dataset.rendered = r ? 'yes' : 'no'; if (r) ok++; });
  document.body.dataset.plotsRendered = String(ok);
});
"""


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
    notes: list[str] = []

    stats = ablation_stats(runs.trials)
    if stats and any(s.key in _PAPER_AP for s in stats):
        sections.append("<h2>Ablation roadmap</h2>" + _img(plot_ablation(stats, out / "ablation.png"), "plot-ablation",
                                                            "Our AP per roadmap row beside the paper's Table 2"))
    points = k_curve(runs.trials)
    if points:
        sections.append("<h2>SimOTA candidate k</h2>" + _img(plot_k_curve(points, out / "k_curve.png"), "plot-k-curve",
                                                              "AP vs candidate_k with error bars over seeds/trials"))
    storage = optuna_storage or runs.parent_tags.get(OPTUNA_STORAGE_TAG)
    if storage:
        try:
            name, importances = optuna_importances(storage, optuna_study or runs.parent_tags.get(OPTUNA_STUDY_TAG))
            table = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td>{v:.3f}</td></tr>"
                            for k, v in sorted(importances.items(), key=lambda kv: -kv[1]))
            sections.append(
                f"<h2>Optuna parameter importances</h2><p class='note'>Optuna study <code>{html.escape(name)}</code> "
                f"in <code>{html.escape(storage)}</code>.</p>"
                + _img(plot_importances(importances, out / "importances.png"), "plot-importances", "Parameter importances")
                + f"<table><tr><th>parameter</th><th>importance</th></tr>{table}</table>")
        except Exception as exc:  # the report still renders; say why the section is missing
            notes.append(f"Optuna importances unavailable: {exc}")
    best = sorted((t for t in runs.trials if t.ap is not None and t.ap_history), key=lambda t: -t.ap)[:top_curves]
    if best:
        sections.append("<h2>Learning curves</h2>" + _img(plot_learning_curves(best, out / "learning_curves.png"),
                                                           "plot-learning-curves", "AP per epoch of the best trials"))

    varying = varying_params(runs.trials)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["run", "row", "seed", "status", "AP", "AP50", *varying])
    body = []
    for t in sorted(runs.trials, key=lambda t: (-(t.ap if t.ap is not None else -1.0), t.name)):
        link = f"{base}/#/experiments/{t.experiment_id}/runs/{t.run_id}"
        cells = [f'<a class="run-link" href="{html.escape(link)}">{html.escape(t.name)}</a>', html.escape(t.row or "–"),
                 "–" if t.seed is None else str(t.seed), html.escape(t.status), _pct(t.ap), _pct(t.ap50),
                 *(html.escape(t.params.get(k, "–")) for k in varying)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    sections.append(f"<h2>Runs ({len(runs.trials)})</h2><table id='runs'><tr>{head}</tr>{''.join(body)}</table>"
                    "<p class='note'>AP values are COCO AP in percent on the validation set (last evaluation).</p>")

    parent_link = (f'<a href="{html.escape(base)}/#/experiments/{runs.experiment_id}/runs/{runs.parent_id}">parent run</a>'
                   if runs.parent_id else "no parent run")
    labels = {k: v for k, v in runs.parent_tags.items() if not k.startswith("mlflow.")}
    label_html = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in sorted(labels.items()))
    note_html = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>yolox-ray study {html.escape(study)}</title>
<style>{_CSS}</style><script>{_SCRIPT}</script></head>
<body><h1>Study <code>{html.escape(study)}</code></h1>
<p>{len(runs.trials)} trial runs; {parent_link} in the MLflow UI at <a href="{html.escape(base)}">{html.escape(base)}</a>
(start it with <code>yolox-ray ui</code>). Tracking: <code>{html.escape(tracking_uri)}</code>.
Generated {_dt.datetime.now().isoformat(timespec="seconds")}.</p>
<ul>{label_html}</ul>{note_html}
{''.join(sections)}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def run_report_cli(args: Any) -> int:
    """`yolox-ray report --study NAME [--out DIR] [--tracking-uri URI]`."""
    out = Path(args.out) if args.out else Path("reports") / args.study
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

    out = Path(result.study_dir)
    found: dict[str, float] = {}
    if importances:
        try:
            _, found = optuna_importances(f"sqlite:///{out / 'optuna.db'}", study_name)
        except ReportError as exc:
            print(f"no parameter importances: {exc}")
    if found:
        (out / "importances.json").write_text(json.dumps(found, indent=1))
        plot_importances(found, out / "importances.png")
        import optuna

        full, early = full_length_trials(optuna.load_study(study_name=study_name, storage=f"sqlite:///{out / 'optuna.db'}"))
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
