"""Optuna's own analysis of a search study: importances and `optuna.visualization` figures.

Ray's OptunaSearch tells Optuna an ASHA-stopped trial as COMPLETE with the value of its last rung
(an earlier epoch), so everything that compares trial values (importances, slices, parallel
coordinates, the k x radius contour) uses the full-length trials only; the optimisation history
shows every trial and marks the early-stopped ones. Figures are plotly objects; the report embeds
them with plotly.js inlined once, so the HTML works offline.

A multi-objective study (one Optuna direction per objective, e.g. AP and latency_ms) adds Optuna's
Pareto-front plot first; the other plots and the importances are of the first objective (AP).
Such a study is never early-stopped (and OptunaSearch reports it no intermediate values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

K_PARAM = "assign.candidate_k"
RADIUS_PARAM = "assign.center_radius"


class OptunaAnalysisError(RuntimeError):
    """The Optuna study cannot be analysed (missing, ambiguous, too few full-length trials)."""


def load_optuna_study(storage: str, study_name: str | None) -> Any:
    """The Optuna study `study_name` in `storage` (an RDB URL or `journal:PATH`, `study_paths`); the only
    study there when no name is given."""
    import optuna

    from yolox_ray.study_paths import JOURNAL_PREFIX, open_optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    label = storage
    if storage.startswith(JOURNAL_PREFIX):
        storage = open_optuna_storage(storage)
    if study_name is None:
        names = optuna.get_all_study_names(storage=storage)
        if len(names) != 1:
            raise OptunaAnalysisError(f"Optuna storage {label} holds {len(names)} studies {names}; name one")
        study_name = names[0]
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError as exc:  # optuna: "Record does not exist."
        raise OptunaAnalysisError(f"no Optuna study {study_name!r} in {label}") from exc


def full_length_trials(study: Any) -> tuple[list[Any], list[Any]]:
    """(full-length, early-stopped) COMPLETE trials of an Optuna study.

    OptunaSearch reports one intermediate value per epoch (step = Tune's training iteration), so a
    trial is early-stopped when it reported fewer steps than the longest trial of the study.
    """
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    steps = {t.number: max(t.intermediate_values, default=0) for t in complete}
    longest = max(steps.values(), default=0)
    full = [t for t in complete if steps[t.number] >= longest]
    return full, [t for t in complete if steps[t.number] < longest]


def subset_study(study: Any, trials: list[Any]) -> Any:
    """An in-memory study holding only `trials` (same directions), for Optuna's functions."""
    import optuna

    subset = optuna.create_study(directions=study.directions)
    subset.add_trials(trials)
    return subset


def is_multi_objective(study: Any) -> bool:
    return len(study.directions) > 1


def objective_names(study: Any, names: list[str] | None = None) -> list[str]:
    """A name per objective: `names` when it fits the study, else Optuna's metric names, else generic."""
    n = len(study.directions)
    if names and len(names) == n:
        return list(names)
    if getattr(study, "metric_names", None) and len(study.metric_names) == n:
        return list(study.metric_names)
    return ["Objective Value"] if n == 1 else [f"objective {i}" for i in range(n)]


def _first(trial: Any) -> float:
    """The first objective's value (the target of single-objective plots of a multi-objective study)."""
    return trial.values[0]


def _target(study: Any) -> dict[str, Any]:
    return {"target": _first} if is_multi_objective(study) else {}


def importances(study: Any) -> dict[str, float]:
    """Optuna's default importances (PED-ANOVA) over the full-length trials only (>= 2 needed); for the
    first objective of a multi-objective study."""
    import optuna

    full, early = full_length_trials(study)
    if len(full) < 2:
        raise OptunaAnalysisError(f"Optuna study {study.study_name!r} has {len(full)} full-length complete trials "
                                  f"({len(early)} early-stopped ones left out); importances need >= 2")
    return dict(optuna.importance.get_param_importances(subset_study(study, full), **_target(study)))


@dataclass(frozen=True)
class OptunaFigure:
    plot_id: str  # the HTML element id
    title: str
    caption: str
    figure: Any  # plotly.graph_objects.Figure


def _history(study: Any, early: list[Any], target_name: str) -> Any:
    import plotly.graph_objects as go
    from optuna.visualization import plot_optimization_history

    fig = plot_optimization_history(study, target_name=target_name, **_target(study))
    if early:
        fig.add_trace(go.Scatter(
            x=[t.number for t in early], y=[t.values[0] for t in early], mode="markers",
            name="early-stopped by ASHA (value at its last rung)",
            marker={"symbol": "x-thin-open", "size": 13, "line": {"width": 2}, "color": "crimson"}))
    return fig


def optuna_figures(study: Any, names: list[str] | None = None) -> tuple[list[OptunaFigure], list[str]]:
    """Optuna's plots of `study` and notes on the plots left out (and why).

    Several objectives (named `names`, see `objective_names`): the Pareto front first. History:
    every complete trial, early-stopped ones marked. Parallel coordinates, slices and the k x radius
    contour (when both were searched): the full-length trials only. All but the Pareto front show
    the first objective.
    """
    from optuna.visualization import plot_contour, plot_parallel_coordinate, plot_pareto_front, plot_slice

    full, early = full_length_trials(study)
    names = objective_names(study, names)
    target = {"target_name": names[0], **_target(study)}
    figures: list[OptunaFigure] = []
    notes: list[str] = []

    def add(plot_id: str, title: str, caption: str, fig: Any) -> None:
        fig.update_layout(height=460, margin={"l": 60, "r": 30, "t": 50, "b": 50})
        figures.append(OptunaFigure(plot_id, title, caption, fig))

    if not full:
        return figures, [f"Optuna study {study.study_name!r} has no complete trial: no Optuna plots"]
    if is_multi_objective(study):
        if len(names) <= 3:
            add("plot-optuna-pareto", "Pareto front: " + " vs ".join(names),
                "Every complete trial; the Pareto-optimal ones (no other trial is at least as good in "
                "every objective and better in one) highlighted. Directions: "
                + ", ".join(f"{n} {d.name.lower()}d" for n, d in zip(names, study.directions)) + ".",
                plot_pareto_front(study, target_names=names))
        else:
            notes.append(f"{len(names)} objectives: Optuna draws a Pareto front of 2 or 3 only")
    n_early = f"; {len(early)} early-stopped trials marked ×" if early else ""
    add("plot-optuna-history", f"Optimisation history ({names[0]})" if is_multi_objective(study) else
        "Optimisation history", f"Every complete Optuna trial in order{n_early}.",
        _history(study, early, names[0]))
    if len(full) < 2:
        notes.append(f"only {len(full)} full-length trial: no parallel-coordinate, slice or contour plot")
        return figures, notes
    sub = subset_study(study, full)
    scope = f"The {len(full)} full-length trials."
    add("plot-optuna-parallel", "Parallel coordinates", scope, plot_parallel_coordinate(sub, **target))
    add("plot-optuna-slice", "Slices", scope, plot_slice(sub, **target))
    if all(K_PARAM in t.params and RADIUS_PARAM in t.params for t in full):
        add("plot-optuna-contour", "SimOTA k × centre radius",
            scope + " Contour of the objective over the two searched SimOTA parameters.",
            plot_contour(sub, params=[K_PARAM, RADIUS_PARAM], **target))
    else:
        notes.append(f"{K_PARAM} and {RADIUS_PARAM} were not both searched: no k × radius contour")
    return figures, notes


def figure_html(fig: OptunaFigure) -> str:
    """The figure as a <div> (plotly.js is not included: the page inlines it once)."""
    return fig.figure.to_html(full_html=False, include_plotlyjs=False, div_id=fig.plot_id,
                              config={"displaylogo": False, "responsive": True})


def plotly_js() -> str:
    """plotly.js itself (the copy bundled with the plotly package), to inline once per page."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()
