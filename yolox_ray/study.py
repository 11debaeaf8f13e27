"""Studies as data: `StudySpec` (search space, rows, seeds, resources), its validation, YAML load/dump.

Ray-free (and MLflow-free): `yolox-ray config --study`, the study scripts and the tests build,
check and print a study without a cluster; `yolox_ray.cluster.tune` only adapts a spec to Ray Tune
(domains, searcher, scheduler, trials).

**One validation pass** (`validate_spec`, run on construction, so before any cluster work) covers
the spec's own fields, and then every config the study can produce: each row (or the base config),
with each search dimension at its low and high bound (and an interior point), each categorical
choice, and all bounds low / all high together. Each such config goes through the same checks a
trial's Train run does (`validate_run`: the class count against the data, the data paths, the batch
divisible over the workers, the resources per worker), and a failure names the row and parameter.

**Class count.** `model.num_classes` comes from the data (`yolox_ray.data.classes`) unless the study
sets it in `overrides` (or a row's `overrides`); a set value that disagrees with the data is an error
naming both numbers.

**Several objectives.** `objectives: [AP, latency_ms]` (or `params`, `gflops`; at most 3 in all, the
first being `metric`) searches AP against the model's cost: Optuna gets one direction per objective
(`metric` by `mode`, every cost minimised) and the report draws the Pareto front. ASHA ranks trials on
one metric, and stopping a small, fast model early for its lower AP would cut exactly the trials the
front is made of, so such a study runs every trial to the end (`early_stop: true` is refused). A cost
that no searched key can change (`COST_INPUTS`) is refused too: its front would be one point.

**Warm start.** `spec.warm_start()` is the base config's value of every searched key (for the shipped
studies the official defaults: candidate_k 10, center_radius 1.5, the official cost and loss weights);
an Optuna study evaluates it as its first trial.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from yolox_ray.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    experiment_preset,
    from_flat_dict,
    known_keys,
    to_flat_dict,
)
from yolox_ray.data.classes import NUM_CLASSES_KEY, check_num_classes, with_data_classes
from yolox_ray.data.schedule import should_evaluate
from yolox_ray.metrics import AP, GFLOPS, LATENCY_MS, MODEL_COST_KEYS, PARAMS

ParamKind = Literal["int", "float", "loguniform", "choice", "grid"]
PARAM_KINDS: tuple[str, ...] = ("int", "float", "loguniform", "choice", "grid")
SearcherName = Literal["optuna", "grid"]
ROW_KEY = "row"  # reserved (non-dotted) keys of a trial's Tune config
SEED_KEY = "seed"
MAX_OBJECTIVES = 3  # optuna.visualization.plot_pareto_front draws 2 or 3 objectives

# The config keys that can change each model cost (a key ending in "." means every key under it).
COST_INPUTS: dict[str, tuple[str, ...]] = {
    PARAMS: ("model.",),
    GFLOPS: ("model.", "data.test_size"),
    LATENCY_MS: ("model.", "data.test_size"),
}


def changes_cost(cost: str, key: str) -> bool:
    """Whether searching config `key` can change the model cost `cost`."""
    return any(key.startswith(k) if k.endswith(".") else key == k for k in COST_INPUTS[cost])


def pareto_front(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indexes of the non-dominated points, in input order. A point dominates another when it is at
    least as good in every objective (by `modes`, "max"/"min") and better in one; equal points both stay."""
    signs = [1.0 if m == "max" else -1.0 for m in modes]
    scored = [[s * float(v) for s, v in zip(signs, p)] for p in points]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [i for i, p in enumerate(scored) if not any(dominates(q, p) for j, q in enumerate(scored) if j != i)]


class StudyError(ConfigError):
    """An invalid study (search space, rows, resources, resume); raised before any trial starts."""


# =============================================================================================
# Spec


@dataclass(frozen=True)
class SearchParam:
    """One search dimension over a dotted config key.

    kinds: ``int`` (low..high inclusive; ``log`` for a log scale), ``float`` (uniform in
    [low, high]), ``loguniform`` (0 < low < high), ``choice`` (one of ``values``, sampled) and
    ``grid`` (every one of ``values``; grid searcher only).
    """

    key: str
    kind: ParamKind
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()
    log: bool = False

    def __post_init__(self) -> None:
        where = f"space.{self.key}"
        if self.kind not in PARAM_KINDS:
            raise StudyError(f"{where}: unknown type {self.kind!r}; one of {', '.join(PARAM_KINDS)}")
        if self.kind in ("int", "float", "loguniform"):
            if self.values:
                raise StudyError(f"{where}: type {self.kind} takes low/high, not values")
            for name in ("low", "high"):
                v = getattr(self, name)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise StudyError(f"{where}: {name} must be a finite number, got {v!r}")
            if self.kind == "int":
                if not (float(self.low).is_integer() and float(self.high).is_integer()):
                    raise StudyError(f"{where}: int bounds must be integers, got {self.low!r}..{self.high!r}")
                if self.low > self.high:
                    raise StudyError(f"{where}: needs low <= high, got {self.low}..{self.high}")
                if self.log and self.low < 1:
                    raise StudyError(f"{where}: a log-scale int range needs low >= 1, got {self.low}")
            elif not self.low < self.high:
                raise StudyError(f"{where}: needs low < high, got {self.low}..{self.high}")
            if self.kind == "loguniform" and self.low <= 0:
                raise StudyError(f"{where}: loguniform needs 0 < low, got {self.low}")
        else:
            if not self.values:
                raise StudyError(f"{where}: type {self.kind} needs a non-empty list of values")
            if len({json.dumps(v, sort_keys=True) for v in self.values}) != len(self.values):
                raise StudyError(f"{where}: values contain duplicates: {list(self.values)!r}")

    @classmethod
    def from_yaml(cls, key: str, data: Any) -> "SearchParam":
        """``{type: int, low: 5, high: 15}``, ``{type: choice, values: [...]}`` or a bare list (grid)."""
        if isinstance(data, list):
            return cls(key, "grid", values=tuple(data))
        if not isinstance(data, Mapping):
            raise StudyError(f"space.{key}: expected a mapping like {{type: int, low: 5, high: 15}}, got {data!r}")
        extra = set(data) - {"type", "low", "high", "values", "log"}
        if extra:
            raise StudyError(f"space.{key}: unknown fields {sorted(extra)} (type, low, high, values, log)")
        if "type" not in data:
            raise StudyError(f"space.{key}: missing 'type' ({', '.join(PARAM_KINDS)})")
        return cls(key, data["type"], low=data.get("low"), high=data.get("high"),
                   values=tuple(data.get("values") or ()), log=bool(data.get("log", False)))

    def to_yaml(self) -> dict[str, Any]:
        if self.kind in ("choice", "grid"):
            return {"type": self.kind, "values": list(self.values)}
        out: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        return out

    def probe_values(self) -> list[Any]:
        """Values checked through `apply_overrides` before the study starts."""
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        if self.kind in ("float", "loguniform"):
            inner = self.low + 0.377 * (self.high - self.low)  # a non-integral interior point
            return [float(self.low), float(self.high), inner]
        return [_tune_value(v) for v in self.values]


def _same_value(choice: Any, value: Any) -> bool:
    """A categorical choice equals a config value (lists and tuples compare alike)."""
    def plain(v: Any) -> Any:
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v
    return plain(choice) == plain(value)


def _tune_value(value: Any) -> Any:
    """Lists/dicts are passed as YAML strings (Optuna categoricals must be scalars);
    `apply_overrides` parses them back for tuple fields."""
    if isinstance(value, (list, tuple, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return value


@dataclass(frozen=True)
class StudyRow:
    """One configuration of a grid study (an ablation row): a full `config`, or a `preset` plus
    `overrides` (on top of the study's). `paper_ap` is the paper's reference value (a tag)."""

    name: str
    preset: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    config: ExperimentConfig | None = None
    paper_ap: float | None = None

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.preset is not None:
            out["preset"] = self.preset
        if self.overrides:
            out["overrides"] = dict(self.overrides)
        if self.config is not None:
            out["config"] = to_flat_dict(self.config)
        if self.paper_ap is not None:
            out["paper_ap"] = self.paper_ap
        return out

    @classmethod
    def from_yaml(cls, data: Any) -> "StudyRow":
        if not isinstance(data, Mapping) or "name" not in data:
            raise StudyError(f"rows: each row needs at least a name, got {data!r}")
        extra = set(data) - {"name", "preset", "overrides", "config", "paper_ap"}
        if extra:
            raise StudyError(f"rows.{data['name']}: unknown fields {sorted(extra)}")
        config = None
        if data.get("config") is not None:
            config = from_flat_dict(_flatten_sections(data["config"], f"rows.{data['name']}.config"))
        return cls(name=str(data["name"]), preset=data.get("preset"),
                   overrides=_flatten_sections(data.get("overrides") or {}, f"rows.{data['name']}.overrides"),
                   config=config, paper_ap=data.get("paper_ap"))


def _flatten_sections(data: Any, where: str) -> dict[str, Any]:
    """Accept ``{train: {epochs: 2}}`` or ``{"train.epochs": 2}``."""
    if not isinstance(data, Mapping):
        raise StudyError(f"{where}: expected a mapping of config keys, got {data!r}")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and "." not in str(key):
            for sub, sub_value in value.items():
                flat[f"{key}.{sub}"] = sub_value
        else:
            flat[str(key)] = value
    return flat


@dataclass(frozen=True)
class StudySpec:
    """Everything that defines a study; validated on construction (nothing runs before that).

    Base config: `base` (an ExperimentConfig) or the model `preset`, then `overrides`, then
    `epochs` (``train.epochs``). Grid rows start from their own config/preset instead.
    `num_samples`: Optuna trials (default 8); for the grid searcher, repeats of the grid (default 1).
    `objectives`: empty (one objective, `metric`), or `metric` followed by model costs
    (`yolox_ray.metrics.MODEL_COST_KEYS`, minimised) for a multi-objective Optuna search.
    `early_stop`: ASHA on `metric` (default on for a single-objective optuna study, else off) with
    `grace_period` epochs (default: past the warm-up and at the first evaluation) and `reduction_factor`.
    `workers`/`cpus_per_worker`/`gpus_per_worker`: the Train run of each trial;
    `max_failures`: Train worker-group restarts per trial; `trial_retries`: Tune retries per trial.
    """

    name: str
    preset: str | None = "yolox_nano"
    base: ExperimentConfig | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    space: tuple[SearchParam, ...] = ()
    rows: tuple[StudyRow, ...] = ()
    seeds: tuple[int, ...] = ()
    searcher: SearcherName = "optuna"
    metric: str = AP
    mode: Literal["max", "min"] = "max"
    objectives: tuple[str, ...] = ()
    num_samples: int | None = None
    seed: int = 0
    startup_trials: int | None = None
    max_concurrent: int = 1
    epochs: int | None = None
    early_stop: bool | None = None
    grace_period: int | None = None
    reduction_factor: int = 2
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_failures: int = 2
    trial_retries: int = 0
    experiment: str | None = None
    paper_reference: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "space", tuple(self.space))
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "overrides", dict(self.overrides))
        validate_spec(self)

    # -- derived ---------------------------------------------------------------------------

    @property
    def samples(self) -> int:
        return self.num_samples if self.num_samples is not None else default_samples(self.searcher)

    @property
    def early_stopping(self) -> bool:
        if self.early_stop is not None:
            return self.early_stop
        return self.searcher == "optuna" and not self.objectives

    @property
    def costs(self) -> tuple[str, ...]:
        """The model costs among the objectives (measured by every trial)."""
        return self.objectives[1:]

    def objective_modes(self) -> tuple[str, ...]:
        """The direction of each objective: `mode` for `metric`, "min" for every cost."""
        return (self.mode,) + ("min",) * len(self.costs) if self.objectives else (self.mode,)

    def total_trials(self) -> int:
        """The number of trials the study runs (Optuna samples, or grid size x repeats)."""
        if self.searcher == "optuna":
            return self.samples
        size = max(1, len(self.rows)) * max(1, len(self.seeds))
        for p in self.space:
            if p.kind == "grid":
                size *= len(p.values)
        return size * self.samples

    def row(self, name: str | None) -> StudyRow | None:
        if name is None:
            return None
        for r in self.rows:
            if r.name == name:
                return r
        raise StudyError(f"study {self.name!r} has no row {name!r}")

    def base_config(self, row: StudyRow | None = None) -> ExperimentConfig:
        """The config before sampled values: row/base/preset, overrides, row overrides, epochs."""
        if row is not None and row.config is not None:
            cfg = row.config
        elif row is not None and row.preset is not None:
            cfg = experiment_preset(row.preset)
        elif self.base is not None:
            cfg = self.base
        else:
            cfg = experiment_preset(self.preset)
        changes: dict[str, Any] = dict(self.overrides)
        if row is not None:
            changes.update(row.overrides)
        if self.epochs is not None:
            changes["train.epochs"] = self.epochs
        cfg = apply_overrides(cfg, changes) if changes else cfg
        # The class count comes from the data unless the study (or the row) sets it.
        return with_data_classes(cfg, explicit=NUM_CLASSES_KEY in changes)

    def trial_config(self, params: Mapping[str, Any]) -> ExperimentConfig:
        """The full config of the trial whose Tune config is `params`."""
        cfg = self.base_config(self.row(params.get(ROW_KEY)))
        values = {k: v for k, v in params.items() if "." in k}
        if SEED_KEY in params and params[SEED_KEY] is not None:
            values["train.seed"] = int(params[SEED_KEY])
        return apply_overrides(cfg, values) if values else cfg

    def warm_start(self) -> dict[str, Any]:
        """The first Optuna trial: every searched key at its base-config value (for the shipped
        studies the official defaults), as a Tune config value; a base value outside the searched
        range is clipped into it (a categorical not among the choices takes the first choice)."""
        base = self.base_config(self.rows[0] if self.rows else None)
        flat = to_flat_dict(base)
        point: dict[str, Any] = {}
        for p in self.space:
            value = flat[p.key]
            if p.kind == "int":
                point[p.key] = int(min(max(int(value), int(p.low)), int(p.high)))
            elif p.kind in ("float", "loguniform"):
                point[p.key] = float(min(max(float(value), float(p.low)), float(p.high)))
            else:
                matches = [v for v in p.values if _same_value(v, value)]
                point[p.key] = _tune_value(matches[0] if matches else p.values[0])
        return point

    def first_trial_params(self) -> dict[str, Any]:
        """The Tune config of the study's first trial: the warm start (optuna), or the first row,
        seed and grid value of each dimension (grid)."""
        if self.searcher == "optuna":
            return self.warm_start()
        params: dict[str, Any] = {p.key: _tune_value(p.values[0]) for p in self.space}
        if self.rows:
            params[ROW_KEY] = self.rows[0].name
        if self.seeds:
            params[SEED_KEY] = self.seeds[0]
        return params

    def probe_points(self) -> list[tuple[str, StudyRow | None, dict[str, Any]]]:
        """Every config the study can produce, as (where, row, Tune config): per row (or the base),
        each dimension at each probe value (low, high, an interior point; each choice), and all
        ranged dimensions at their low / high bounds together. Seeds do not change validity."""
        points: list[tuple[str, StudyRow | None, dict[str, Any]]] = []
        for row in list(self.rows) or [None]:
            where = f"rows.{row.name}" if row is not None else "base config"
            extra = {ROW_KEY: row.name} if row is not None else {}
            points.append((where, row, dict(extra)))
            for p in self.space:
                for value in p.probe_values():
                    points.append((f"space.{p.key}={value!r} ({where})", row, {**extra, p.key: value}))
            ranged = [p for p in self.space if p.kind in ("int", "float", "loguniform")]
            if len(ranged) > 1:
                for corner in (0, 1):
                    values = {p.key: p.probe_values()[corner] for p in ranged}
                    label = "low" if corner == 0 else "high"
                    points.append((f"space: all {label} bounds together ({where})", row, {**extra, **values}))
        return points

    def preset_name(self, row: StudyRow | None = None) -> str | None:
        """The named starting point of a trial (a preset, else the config's name) for tags."""
        if row is not None and row.preset is not None:
            return row.preset
        if row is not None and row.config is not None:
            return row.config.name
        if self.base is not None:
            return self.base.name
        return self.preset

    def max_epochs(self) -> int:
        rows = list(self.rows) or [None]
        return max(self.base_config(r).train.epochs for r in rows)

    def default_grace_period(self) -> int:
        train = self.base_config(self.rows[0] if self.rows else None).train
        first_eval = next(e + 1 for e in range(train.epochs) if should_evaluate(e, train))
        return max(math.ceil(train.warmup_epochs) + 1, first_eval)

    # -- YAML ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "space":
                value = {p.key: p.to_yaml() for p in value}
            elif f.name == "rows":
                value = [r.to_yaml() for r in value]
            elif f.name == "seeds":
                value = list(value)
            elif f.name == "objectives":
                if not value:  # left out: study.yaml files written before the field existed still match
                    continue
                value = list(value)
            elif f.name == "base":
                value = to_flat_dict(value) if value is not None else None
            elif f.name == "overrides":
                value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "study") -> "StudySpec":
        if not isinstance(data, Mapping):
            raise StudyError(f"{where}: a study must be a mapping, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            hints = [f"{k!r} (did you mean {difflib.get_close_matches(k, names, 1)[0]!r}?)"
                     if difflib.get_close_matches(k, names, 1) else repr(k) for k in sorted(unknown)]
            raise StudyError(f"{where}: unknown study fields {', '.join(hints)}; known: {', '.join(sorted(names))}")
        if "name" not in data:
            raise StudyError(f"{where}: a study needs a name")
        kwargs = dict(data)
        space = kwargs.pop("space", None) or {}
        if not isinstance(space, Mapping):
            raise StudyError(f"{where}: space must map config keys to {{type: ..., ...}}, got {space!r}")
        kwargs["space"] = tuple(SearchParam.from_yaml(str(k), v) for k, v in space.items())
        kwargs["rows"] = tuple(StudyRow.from_yaml(r) for r in (kwargs.pop("rows", None) or ()))
        kwargs["seeds"] = tuple(kwargs.pop("seeds", None) or ())
        objectives = kwargs.pop("objectives", None) or ()
        if isinstance(objectives, str) or not isinstance(objectives, (list, tuple)):
            raise StudyError(f"{where}: objectives must be a list like [AP, latency_ms], got {objectives!r}")
        kwargs["objectives"] = tuple(objectives)
        kwargs["overrides"] = _flatten_sections(kwargs.pop("overrides", None) or {}, f"{where}: overrides")
        if kwargs.get("base") is not None:
            kwargs["base"] = from_flat_dict(_flatten_sections(kwargs["base"], f"{where}: base"))
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise StudyError(f"{where}: {exc}") from None


def default_samples(searcher: str) -> int:
    """`num_samples` when the study does not set it: 8 Optuna trials, or the grid once."""
    return 8 if searcher == "optuna" else 1


# What a rerun of an existing study may change: more samples, or more seeds of a grid; and how many
# trials run at once (the study scripts size it to the trial count, which grows with them).
GROWABLE_FIELDS = ("num_samples", "seeds", "max_concurrent")


def check_resume(spec: StudySpec, stored: Mapping[str, Any], where: str | Path = "the study directory") -> tuple[int, ...]:
    """A rerun of an existing study must be its stored spec (`stored`: study.yaml as loaded), except
    that `num_samples` may grow, or a grid's seed list may gain seeds (the study continues with the
    extra trials; a 1-seed table becomes a 3-seed one without running seed 0 again). Shrinking
    either, or growing both in one rerun, is refused. Returns the seeds the rerun adds."""
    current = yaml.safe_load(dump_study(spec))
    before = {k: v for k, v in stored.items() if k not in GROWABLE_FIELDS}
    now = {k: v for k, v in current.items() if k not in GROWABLE_FIELDS}
    if before != now:
        diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise StudyError(f"study {spec.name!r} already exists in {where} with a different spec "
                         f"(differs in: {', '.join(diff)}); resume it unchanged (only --samples, or a grid's "
                         "seeds, may grow), or use another name/--out")
    had = stored.get("num_samples")
    had = had if had is not None else default_samples(str(stored.get("searcher")))
    if spec.samples < had:
        raise StudyError(f"num_samples: study {spec.name!r} already has {had} samples; a resume may grow "
                         f"--samples, not shrink it (got {spec.samples})")
    old_seeds = [int(x) for x in stored.get("seeds") or ()]
    if list(spec.seeds) == old_seeds:
        return ()
    dropped = [x for x in old_seeds if x not in spec.seeds]
    if not old_seeds or dropped:
        raise StudyError(f"seeds: study {spec.name!r} already ran seeds {old_seeds or 'none (no seed list)'}; a "
                         f"resume may add seeds to its list, not {'drop ' + str(dropped) if dropped else 'start one'} "
                         f"(got {list(spec.seeds)})")
    if spec.samples > had:
        raise StudyError(f"study {spec.name!r}: grow --samples ({had} -> {spec.samples}) or the seeds, not both in "
                         "one rerun")
    return tuple(x for x in spec.seeds if x not in old_seeds)


def validate_spec(spec: StudySpec) -> None:
    """Every check that can be done without Ray; raises StudyError naming the problem."""
    if not spec.name or not all(c.isalnum() or c in "-_." for c in spec.name) or spec.name.startswith("."):
        raise StudyError(f"name: {spec.name!r} must be non-empty letters, digits, '-', '_' or '.'")
    if spec.searcher not in ("optuna", "grid"):
        raise StudyError(f"searcher: unknown {spec.searcher!r} ('optuna' or 'grid')")
    if spec.mode not in ("max", "min"):
        raise StudyError(f"mode: must be 'max' or 'min', got {spec.mode!r}")
    for name, low in (("max_concurrent", 1), ("workers", 1), ("reduction_factor", 2), ("max_failures", -1),
                      ("trial_retries", -1)):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise StudyError(f"{name}: must be an integer >= {low}, got {value!r}")
    if spec.num_samples is not None and (not isinstance(spec.num_samples, int) or spec.num_samples < 1):
        raise StudyError(f"num_samples: must be an integer >= 1, got {spec.num_samples!r}")
    if spec.cpus_per_worker < 0 or spec.gpus_per_worker < 0 or spec.cpus_per_worker + spec.gpus_per_worker <= 0:
        raise StudyError("cpus_per_worker/gpus_per_worker: must be >= 0 and not both 0")
    if spec.epochs is not None and (not isinstance(spec.epochs, int) or spec.epochs < 1):
        raise StudyError(f"epochs: must be an integer >= 1, got {spec.epochs!r}")
    if not isinstance(spec.seed, int):
        raise StudyError(f"seed: must be an integer, got {spec.seed!r}")
    if spec.base is None and not (spec.rows and all(r.config is not None or r.preset for r in spec.rows)):
        if spec.preset is None:
            raise StudyError("preset: give a model preset or a base config (or rows that carry their own)")
        _wrap(lambda: experiment_preset(spec.preset), "preset")

    known = set(known_keys())
    seen: set[str] = set()
    for p in spec.space:
        if not isinstance(p, SearchParam):
            raise StudyError(f"space: expected SearchParam entries, got {p!r}")
        if p.key in seen:
            raise StudyError(f"space.{p.key}: listed twice")
        seen.add(p.key)
        if p.key not in known:
            close = difflib.get_close_matches(p.key, known, 3)
            raise StudyError(f"space: unknown config key {p.key!r}"
                             + (f"; did you mean {', '.join(close)}?" if close else "; see yolox_ray.config.known_keys()"))
        if p.kind == "grid" and spec.searcher != "grid":
            raise StudyError(f"space.{p.key}: type grid needs searcher: grid (Optuna cannot sample a grid)")
    if spec.searcher == "optuna":
        if spec.rows:
            raise StudyError("rows: ablation rows need searcher: grid")
        if spec.seeds:
            raise StudyError("seeds: a seed list needs searcher: grid (set train.seed in overrides for optuna)")
        if not spec.space:
            raise StudyError("space: the optuna searcher needs at least one search dimension")
    if spec.objectives:
        _validate_objectives(spec)
    names = [r.name for r in spec.rows]
    if len(set(names)) != len(names):
        raise StudyError(f"rows: duplicate row names in {names}")
    for s in spec.seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise StudyError(f"seeds: must be integers, got {s!r}")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise StudyError(f"seeds: duplicates in {list(spec.seeds)}")
    for key in spec.overrides:
        if key not in known:
            close = difflib.get_close_matches(key, known, 3)
            raise StudyError(f"overrides: unknown config key {key!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))

    # Every config the study can produce (rows x corners of the space) must build and pass the
    # checks its Train run makes: class count against the data, data paths, batch over workers.
    points = spec.probe_points()
    if spec.searcher == "optuna":
        points.append(("the warm-start trial (the base config's values of the searched keys)", None,
                       _wrap(spec.warm_start, "base config")))
    for where, row, params in points:
        cfg = _wrap(lambda: spec.trial_config(params), where)
        _wrap(lambda: validate_run(cfg, workers=spec.workers, cpus_per_worker=spec.cpus_per_worker,
                                   gpus_per_worker=spec.gpus_per_worker, max_failures=spec.max_failures),
              where)
    if spec.early_stopping:
        grace = spec.grace_period if spec.grace_period is not None else spec.default_grace_period()
        train = spec.base_config(spec.rows[0] if spec.rows else None).train
        if not isinstance(grace, int) or grace < 1:
            raise StudyError(f"grace_period: must be an integer >= 1, got {grace!r}")
        if spec.grace_period is not None and grace <= train.warmup_epochs:
            raise StudyError(f"grace_period: {grace} stops trials during the warm-up ({train.warmup_epochs} epochs); "
                             "use a grace period past it")


def _validate_objectives(spec: StudySpec) -> None:
    objectives = list(spec.objectives)
    if len(objectives) < 2 or len(objectives) > MAX_OBJECTIVES:
        raise StudyError(f"objectives: list {spec.metric!r} and 1 to {MAX_OBJECTIVES - 1} model costs "
                         f"({', '.join(MODEL_COST_KEYS)}), e.g. [{spec.metric}, latency_ms]; got {objectives}")
    if objectives[0] != spec.metric:
        raise StudyError(f"objectives: the first objective must be the study's metric {spec.metric!r}, "
                         f"got {objectives[0]!r}")
    for cost in objectives[1:]:
        if cost not in MODEL_COST_KEYS:
            raise StudyError(f"objectives: unknown objective {cost!r}; after {spec.metric!r} one of "
                             f"{', '.join(MODEL_COST_KEYS)}")
    if len(set(objectives)) != len(objectives):
        raise StudyError(f"objectives: duplicates in {objectives}")
    if spec.searcher != "optuna":
        raise StudyError("objectives: several objectives need searcher: optuna (a grid runs every point anyway)")
    if spec.early_stop:
        raise StudyError("early_stop: ASHA ranks trials on one metric and would stop the small, fast models a "
                         "multi-objective front is made of; set early_stop: false (or leave it out)")
    for cost in objectives[1:]:
        if not any(changes_cost(cost, p.key) for p in spec.space):
            inputs = ", ".join(k + "*" if k.endswith(".") else k for k in COST_INPUTS[cost])
            raise StudyError(f"objectives: {cost} is the same for every trial: no searched key changes it "
                             f"(search one of {inputs}, e.g. model.width)")


def validate_run(cfg: ExperimentConfig, *, workers: int, cpus_per_worker: float, gpus_per_worker: float,
                 max_failures: int, num_to_keep: int = 2) -> None:
    """The checks of one Train run that need no cluster (ConfigError): resources, the batch
    divisible over the workers, the data paths and the class count against the data."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"workers (--workers): must be an integer >= 1, got {workers!r}")
    if cpus_per_worker <= 0:
        raise ConfigError(f"cpus_per_worker (--cpus-per-worker): must be > 0, got {cpus_per_worker}")
    if gpus_per_worker < 0:
        raise ConfigError(f"gpus_per_worker (--gpus-per-worker): must be >= 0, got {gpus_per_worker}")
    if max_failures < -1:
        raise ConfigError(f"max_failures (--max-failures): must be >= -1 (-1 = retry forever), got {max_failures}")
    if num_to_keep < 1:
        raise ConfigError(f"num_to_keep: must be >= 1, got {num_to_keep}")
    if cfg.train.batch_size % workers:
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} (total) is not divisible by {workers} workers")
    check_num_classes(cfg)


def _wrap(fn, where: str) -> Any:
    try:
        return fn()
    except StudyError:
        raise
    except ConfigError as exc:
        raise StudyError(f"{where}: {exc}") from None


def load_study(path: str | Path | Any) -> StudySpec:
    """A StudySpec from a YAML file (see ``configs/tune_simota.yaml``); also a `yolox_ray.storage.StoragePath`."""
    path = path if hasattr(path, "read_text") else Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise StudyError(f"study file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise StudyError(f"study file {path} is not valid YAML: {exc}") from None
    return StudySpec.from_dict(data or {}, where=str(path))


def dump_study(spec: StudySpec, path: str | Path | None = None) -> str:
    text = yaml.safe_dump(spec.to_dict(), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text



def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`key=value` items (values parsed as YAML) as a dict; anything else is refused by name."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value.strip())
    return out


def with_changes(spec: StudySpec, *, samples: int | None = None, no_early_stop: bool = False,
                 overrides: Sequence[str] | Mapping[str, Any] = (), objective2: str | None = None,
                 **fields_: Any) -> StudySpec:
    """`spec` with command-line changes on top (validated again as a whole): `samples`,
    `no_early_stop`, `key=value` overrides merged over the study's, `objective2` (a model cost searched
    against `metric`: sets `objectives` and turns early stopping off), other StudySpec fields."""
    changes: dict[str, Any] = {k: v for k, v in fields_.items() if v is not None}
    if samples is not None:
        changes["num_samples"] = samples
    if no_early_stop:
        changes["early_stop"] = False
    if objective2 is not None:
        changes["objectives"] = (changes.get("metric", spec.metric), objective2)
        changes["early_stop"] = False
    if overrides:
        merged = dict(spec.overrides)
        merged.update(_wrap(lambda: parse_overrides(overrides), "overrides") if not isinstance(overrides, Mapping)
                      else overrides)
        changes["overrides"] = merged
    return replace(spec, **changes) if changes else spec


# The cluster flags of `yolox-ray tune` / `config`, and their parser defaults (which leave the study as it is).
CLUSTER_FLAG_DEFAULTS: dict[str, Any] = {"workers": 1, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0}


def with_cli_args(spec: StudySpec, args: Any) -> StudySpec:
    """`spec` with the command line on top: --samples, --no-early-stop, --objective2, key=value
    overrides, and the cluster flags that differ from their parser defaults."""
    cluster = {name: getattr(args, name, default) for name, default in CLUSTER_FLAG_DEFAULTS.items()}
    return with_changes(spec, samples=getattr(args, "samples", None),
                        no_early_stop=bool(getattr(args, "no_early_stop", False)),
                        objective2=getattr(args, "objective2", None),
                        overrides=getattr(args, "overrides", None) or (),
                        **{k: v for k, v in cluster.items() if v != CLUSTER_FLAG_DEFAULTS[k]})
