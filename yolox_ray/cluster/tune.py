"""Studies on Ray Tune: search spaces, Optuna/grid search, ASHA, MLflow runs, resume.

A **study** (`StudySpec`, loadable from YAML, see ``configs/``) is a base config plus either a
search space sampled by Optuna (TPE, seeded; its study persisted in ``optuna.db`` next to the
study) or a grid (ablation rows x seeds x grid values). Each **trial** is one Ray Train run
launched from a Tune function trainable (the Train V2 pattern, ray_stack.md §3b): a deterministic
Train run name per trial id (so a restarted trial resumes from its Train checkpoint),
`TuneReportCallback` forwarding every per-epoch report, a ``trial_slot`` custom resource so the
trial driver does not take a CPU from its own workers, and ``ASHAScheduler(time_attr="epoch")``.

Layout of a study directory ``<storage_root>/<name>/``::

    study.yaml       the resolved StudySpec (what ``--resume`` reloads; a rerun must match it)
    mlflow.json      the study's MLflow parent run (re-used on resume)
    optuna.db        Optuna RDB storage (optuna searcher only)
    tune/            the Tune experiment (Tuner.restore reads it)
    train_runs/      one Ray Train run per trial: trial_<trial_id>/epoch_NNN checkpoints
    trials.json      every trial's status, sampled values and last metrics (written at the end)

Early stopping and the no-aug phase: ASHA compares trials at rungs (``grace_period``,
``grace_period * reduction_factor``, ...). YOLOX changes regime in its last ``no_aug_epochs``
(Mosaic/MixUp off, L1 loss on) and AP typically jumps there, by different amounts for different
configs: a config whose assignment or loss weights suit clean images can trail during the mosaic
phase and overtake after the switch, and configs that differ in ``no_aug_epochs`` or augmentation
strength are compared at different points of their schedules. Stopping a trial at a rung before
its no-aug phase therefore ranks trials on the wrong regime and can discard the eventual best.
The default grace period is past the warm-up and at the first evaluated epoch (AP is the latest
evaluation, so rungs between evaluations compare stale values); ``early_stop: false`` /
``--no-early-stop`` runs every trial to the end (the right choice for augmentation-schedule
studies and for small sample counts). Note that Ray's OptunaSearch tells Optuna an early-stopped
trial as COMPLETE with its rung value (ray_stack.md §3a), so TPE sees those partial values.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml
from ray import tune

from yolox_ray.cluster import tracking
from yolox_ray.cluster.ray_setup import TRIAL_SLOT, init_ray, set_ray_env_defaults
from yolox_ray.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    experiment_preset,
    from_flat_dict,
    known_keys,
    to_flat_dict,
)
from yolox_ray.data.schedule import should_evaluate

ParamKind = Literal["int", "float", "loguniform", "choice", "grid"]
PARAM_KINDS: tuple[str, ...] = ("int", "float", "loguniform", "choice", "grid")
SearcherName = Literal["optuna", "grid"]
ROW_KEY = "row"  # reserved (non-dotted) keys of a trial's Tune config
SEED_KEY = "seed"


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

    def domain(self) -> Any:
        """The Ray Tune domain (inclusive int bounds become randint(low, high + 1))."""
        if self.kind == "int":
            low, high = int(self.low), int(self.high)
            return tune.lograndint(low, high + 1) if self.log else tune.randint(low, high + 1)
        if self.kind == "float":
            return tune.uniform(float(self.low), float(self.high))
        if self.kind == "loguniform":
            return tune.loguniform(float(self.low), float(self.high))
        values = [_tune_value(v) for v in self.values]
        return tune.choice(values) if self.kind == "choice" else tune.grid_search(values)

    def probe_values(self) -> list[Any]:
        """Values checked through `apply_overrides` before the study starts."""
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        if self.kind in ("float", "loguniform"):
            inner = self.low + 0.377 * (self.high - self.low)  # a non-integral interior point
            return [float(self.low), float(self.high), inner]
        return [_tune_value(v) for v in self.values]


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
    `early_stop`: ASHA on `metric` (default on for optuna, off for grid) with `grace_period`
    epochs (default: past the warm-up and at the first evaluation) and `reduction_factor`.
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
    metric: str = "AP"
    mode: Literal["max", "min"] = "max"
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
        object.__setattr__(self, "overrides", dict(self.overrides))
        validate_spec(self)

    # -- derived ---------------------------------------------------------------------------

    @property
    def samples(self) -> int:
        if self.num_samples is not None:
            return self.num_samples
        return 8 if self.searcher == "optuna" else 1

    @property
    def early_stopping(self) -> bool:
        return self.early_stop if self.early_stop is not None else self.searcher == "optuna"

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
        return apply_overrides(cfg, changes) if changes else cfg

    def trial_config(self, params: Mapping[str, Any]) -> ExperimentConfig:
        """The full config of the trial whose Tune config is `params`."""
        cfg = self.base_config(self.row(params.get(ROW_KEY)))
        values = {k: v for k, v in params.items() if "." in k}
        if SEED_KEY in params and params[SEED_KEY] is not None:
            values["train.seed"] = int(params[SEED_KEY])
        return apply_overrides(cfg, values) if values else cfg

    def param_space(self) -> dict[str, Any]:
        space: dict[str, Any] = {p.key: p.domain() for p in self.space}
        if self.rows:
            space[ROW_KEY] = tune.grid_search([r.name for r in self.rows])
        if self.seeds:
            space[SEED_KEY] = tune.grid_search(list(self.seeds))
        return space

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
        kwargs["overrides"] = _flatten_sections(kwargs.pop("overrides", None) or {}, f"{where}: overrides")
        if kwargs.get("base") is not None:
            kwargs["base"] = from_flat_dict(_flatten_sections(kwargs["base"], f"{where}: base"))
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise StudyError(f"{where}: {exc}") from None


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

    # Every base config (and every row's) must build, and every probe value of every dimension
    # must be a valid value of its key on each of them; plus the all-low and all-high corners.
    for row in list(spec.rows) or [None]:
        where = f"rows.{row.name}" if row is not None else "base config"
        base = _wrap(lambda: spec.base_config(row), where)
        for p in spec.space:
            for value in p.probe_values():
                _wrap(lambda: apply_overrides(base, {p.key: value}),
                      f"space.{p.key}: value {value!r} is invalid ({where})")
        ranged = [p for p in spec.space if p.kind in ("int", "float", "loguniform")]
        if len(ranged) > 1:
            for corner in ("low", "high"):
                values = {p.key: p.probe_values()[0 if corner == "low" else 1] for p in ranged}
                _wrap(lambda: apply_overrides(base, values), f"space: all {corner} bounds together are invalid ({where})")
    if spec.early_stopping:
        grace = spec.grace_period if spec.grace_period is not None else spec.default_grace_period()
        train = spec.base_config(spec.rows[0] if spec.rows else None).train
        if not isinstance(grace, int) or grace < 1:
            raise StudyError(f"grace_period: must be an integer >= 1, got {grace!r}")
        if spec.grace_period is not None and grace <= train.warmup_epochs:
            raise StudyError(f"grace_period: {grace} stops trials during the warm-up ({train.warmup_epochs} epochs); "
                             "use a grace period past it")


def _wrap(fn, where: str) -> Any:
    try:
        return fn()
    except StudyError:
        raise
    except ConfigError as exc:
        raise StudyError(f"{where}: {exc}") from None


def load_study(path: str | Path) -> StudySpec:
    """A StudySpec from a YAML file (see ``configs/tune_simota.yaml``)."""
    path = Path(path)
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


# =============================================================================================
# The trial (runs in the Tune trial actor = the Train driver)


@dataclass(frozen=True)
class _TrialContext:
    spec: StudySpec
    study_run: tracking.StudyRun
    train_storage: str


def trial_tags(spec: StudySpec, params: Mapping[str, Any], cfg: ExperimentConfig) -> dict[str, Any]:
    row = spec.row(params.get(ROW_KEY))
    return {
        "study": spec.name,
        "row": row.name if row else None,
        "seed": cfg.train.seed,
        "preset": spec.preset_name(row),
        "assigner": cfg.assign.assigner,
        "geometry": cfg.assign.geometry,
        "paper_ap": row.paper_ap if row else None,
        "paper_reference": spec.paper_reference,
        "search": json.dumps({k: v for k, v in params.items() if "." in k}, sort_keys=True),
    }


def yolox_trial(config: dict, ctx: _TrialContext) -> None:
    """One trial: create/re-attach its MLflow child run, then run (or resume) its Train run."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from yolox_ray.cluster.train import make_trainer

    trial_id = tune.get_context().get_trial_id()
    spec = ctx.spec
    cfg = spec.trial_config(config)
    tags = trial_tags(spec, config, cfg)
    label = "-".join(str(x) for x in (tags["row"], f"s{cfg.train.seed}" if spec.seeds else None) if x) or "trial"
    run_id = tracking.ensure_trial_run(ctx.study_run, trial_id, run_name=f"{label}-{trial_id}", tags=tags)
    start = time.perf_counter()
    try:
        trainer = make_trainer(
            cfg, run_name=f"trial_{trial_id}", storage_path=ctx.train_storage, num_workers=spec.workers,
            use_gpu=spec.gpus_per_worker > 0, cpus_per_worker=spec.cpus_per_worker,
            gpus_per_worker=spec.gpus_per_worker, max_failures=spec.max_failures, callbacks=[TuneReportCallback()],
            tracking={"tracking_uri": ctx.study_run.tracking_uri, "run_id": run_id})
        trainer.fit()
    except Exception as exc:
        tracking.finish_run(ctx.study_run.tracking_uri, run_id, "FAILED",
                            tags={"error": f"{type(exc).__name__}: {exc}"[:4000]})
        raise
    seconds = time.perf_counter() - start
    client = tracking.client_for(ctx.study_run.tracking_uri)
    client.log_metric(run_id, "trial/fit_seconds", seconds)
    tracking.finish_run(ctx.study_run.tracking_uri, run_id, "FINISHED")


# =============================================================================================
# Driver side: progress and final MLflow status of every trial


class StudyCallback(tune.Callback):
    """Prints progress (running/done/failed, best so far) and sets each trial's MLflow run to its
    final status from the driver, which also covers trials Tune stops (ASHA) or loses (actor died).

    Pickled with the experiment (Tuner.restore brings it back), so it keeps only plain data and
    reads the current tracking URI from ``<study_dir>/mlflow.json``.
    """

    def __init__(self, study: str, study_dir: str, total: int, metric: str, mode: str, max_epochs: int,
                 stream: Any = None):
        self.study = study
        self.study_dir = study_dir
        self.total = total
        self.metric = metric
        self.mode = mode
        self.max_epochs = max_epochs
        self._best: tuple[float, str, dict] | None = None
        self._last_line = ""
        self._stream = stream

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_stream"] = None
        return state

    def _print(self, text: str) -> None:
        print(text, file=self._stream or sys.stdout, flush=True)

    def _progress(self, trials: Sequence[Any], starting: Any = None) -> None:
        running = sum(t.status == "RUNNING" or t is starting for t in trials)
        failed = sum(t.status == "ERROR" for t in trials)
        done = sum(t.status == "TERMINATED" for t in trials)
        line = f"[{self.study}] trials: {running} running, {done} done, {failed} failed (of {self.total})"
        if self._best is not None:
            value, tid, params = self._best
            line += f" | best {self.metric}={value:.4f} ({tid}: {_short(params)})"
        if line != self._last_line:
            self._last_line = line
            self._print(line)

    def _better(self, value: float) -> bool:
        if self._best is None:
            return True
        return value > self._best[0] if self.mode == "max" else value < self._best[0]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._progress(trials, starting=trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        parts = [f"{k}={result[k]:.4f}" for k in dict.fromkeys((self.metric, "loss")) if isinstance(result.get(k), (int, float))]
        self._print(f"[{self.study}] trial {trial.trial_id} epoch {result.get('epoch', '?')}/{self.max_epochs}: "
                    + ", ".join(parts) + (" (evaluated)" if result.get("evaluated") else ""))
        if isinstance(value, (int, float)) and math.isfinite(value) and self._better(float(value)):
            self._best = (float(value), trial.trial_id, dict(trial.config))
        self._progress(trials)

    def _set_status(self, trial: Any, status: str, tags: dict[str, Any]) -> None:
        try:
            info = json.loads((Path(self.study_dir) / tracking.STUDY_RUN_FILE).read_text())
            client = tracking.client_for(info["tracking_uri"])
            run = tracking.find_trial_run(client, info["experiment_id"], info["run_id"], trial.trial_id)
            if run is not None:
                tracking.finish_run(info["tracking_uri"], run.info.run_id, status, tags=tags)
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not stop the sweep
            self._print(f"[{self.study}] warning: could not update the MLflow run of {trial.trial_id}: {exc!r}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epoch = (trial.last_result or {}).get("epoch")
        early = isinstance(epoch, (int, float)) and epoch < self.max_epochs
        self._set_status(trial, "FINISHED", {"early_stopped": str(bool(early)).lower()})
        self._progress(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._set_status(trial, "FAILED", {})
        self._progress(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._progress(trials)


def _short(params: Mapping[str, Any]) -> str:
    items = [f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
             for k, v in params.items()]
    return ", ".join(items) or "-"


# =============================================================================================
# Running a study


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    status: Literal["finished", "early_stopped", "failed"]
    params: dict[str, Any]  # the trial's Tune config: sampled/grid values, "row", "seed"
    metrics: dict[str, Any]  # the last reported metrics
    run_id: str | None
    error: str | None = None

    @property
    def row(self) -> str | None:
        return self.params.get(ROW_KEY)

    @property
    def seed(self) -> int | None:
        return self.params.get(SEED_KEY)


@dataclass(frozen=True)
class StudyResult:
    """A finished (or continued) study; `trials` in the order Tune created them."""

    name: str
    study_dir: Path
    metric: str
    mode: str
    trials: tuple[TrialRecord, ...]
    best: TrialRecord | None
    best_config: ExperimentConfig | None
    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    @property
    def num_failed(self) -> int:
        return sum(t.status == "failed" for t in self.trials)

    @property
    def num_finished(self) -> int:
        return sum(t.status != "failed" for t in self.trials)

    def run_url(self, run_id: str | None = None) -> str:
        return tracking.run_url(self.tracking_uri, self.experiment_id, run_id or self.parent_run_id)

    @property
    def best_run_url(self) -> str | None:
        return self.run_url(self.best.run_id) if self.best and self.best.run_id else None


def study_dir_for(spec: StudySpec, storage_root: str | Path) -> Path:
    return Path(storage_root).expanduser().resolve() / spec.name


def _check_same_spec(spec: StudySpec, study_dir: Path) -> None:
    stored_path = study_dir / "study.yaml"
    if not stored_path.exists():
        return
    stored = yaml.safe_load(stored_path.read_text())
    current = yaml.safe_load(dump_study(spec))
    if stored != current:
        diff = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        raise StudyError(f"study {spec.name!r} already exists in {study_dir} with a different spec "
                         f"(differs in: {', '.join(diff)}); resume it unchanged, or use another name/--out")


def _trial_resources(spec: StudySpec) -> tuple[dict[str, float], int]:
    """Resources of one trial driver and how many trials fit in the cluster at once."""
    import ray

    res = ray.cluster_resources()
    n = spec.max_concurrent
    need_cpu = spec.workers * spec.cpus_per_worker
    need_gpu = spec.workers * spec.gpus_per_worker
    if TRIAL_SLOT in res:
        driver = {TRIAL_SLOT: 1}
        n = min(n, int(res[TRIAL_SLOT]))
    else:  # an existing cluster without our custom resource: the driver takes one CPU
        driver = {"CPU": 1}
        need_cpu += 1
    if need_cpu > 0:
        n = min(n, int(res.get("CPU", 0) // need_cpu))
    if need_gpu > 0:
        n = min(n, int(res.get("GPU", 0) // need_gpu))
    if n < 1:
        raise StudyError(f"a trial needs {need_cpu:g} CPUs and {need_gpu:g} GPUs but the cluster has "
                         f"{res.get('CPU', 0):g} CPUs and {res.get('GPU', 0):g} GPUs")
    return driver, n


def _build_tuner_parts(spec: StudySpec, ctx: _TrialContext, study_dir: Path, concurrency: int, driver: dict):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    trainable = tune.with_resources(tune.with_parameters(yolox_trial, ctx=ctx), driver)
    if spec.searcher == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        sampler_kwargs: dict[str, Any] = {"seed": spec.seed}
        if spec.startup_trials is not None:
            sampler_kwargs["n_startup_trials"] = spec.startup_trials
        searcher = ConcurrencyLimiter(
            OptunaSearch(sampler=optuna.samplers.TPESampler(**sampler_kwargs), study_name=spec.name,
                         storage=optuna.storages.RDBStorage(f"sqlite:///{study_dir / 'optuna.db'}")),
            max_concurrent=concurrency)
    else:
        # The generator's own limit: Tune ignores max_concurrent_trials (with a warning) for a generator.
        searcher = BasicVariantGenerator(random_state=spec.seed, max_concurrent=concurrency)
    max_t = spec.max_epochs()
    grace = spec.grace_period if spec.grace_period is not None else spec.default_grace_period()
    if spec.early_stopping and grace < max_t:
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=grace,
                                  reduction_factor=spec.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    tune_config = tune.TuneConfig(metric=spec.metric, mode=spec.mode, num_samples=spec.samples,
                                  search_alg=searcher, scheduler=scheduler, reuse_actors=False)
    callback = StudyCallback(spec.name, str(study_dir), spec.total_trials(), spec.metric, spec.mode, max_t)
    run_config = tune.RunConfig(name="tune", storage_path=str(study_dir), verbose=0, callbacks=[callback],
                                failure_config=tune.FailureConfig(max_failures=spec.trial_retries))
    return trainable, tune_config, run_config


def run_study(spec: StudySpec, *, address: str | None = None, storage_root: str | Path = "studies_out",
              tracking_uri: str | None = None, mlruns: str | Path = "mlruns", resume: bool = False,
              num_cpus: int | None = None, ray_temp_dir: str | None = None) -> StudyResult:
    """Run (or continue) `spec` and return its trials and best result.

    Runs on the Ray cluster this process is already connected to, else on `address`, else on a
    new local cluster (shut down at the end). Tracking goes to `tracking_uri`, else to a local
    MLflow server over `mlruns` (started or reused). If the study directory already holds a
    restorable Tune experiment it is continued with ``Tuner.restore(..., resume_errored=True)``
    (finished trials kept, interrupted ones resumed from their Train checkpoints, the Optuna
    state restored, no MLflow run duplicated); its stored spec must equal `spec`.
    `resume=True` additionally requires that there is something to continue.
    """
    import logging

    import ray

    set_ray_env_defaults()
    # Tune's result.json/progress.csv loggers are off (ray_setup); its analysis would warn per trial.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    study_dir = study_dir_for(spec, storage_root)
    exp_path = study_dir / "tune"
    restoring = tune.Tuner.can_restore(str(exp_path))
    if restoring:
        _check_same_spec(spec, study_dir)
    elif resume:
        raise StudyError(f"nothing to resume in {study_dir} (no Tune experiment at {exp_path})")

    from yolox_ray.cluster.train import check_study_data

    # Bad data fails here, in one line, before any cluster starts (a row with bad data only: a warning and
    # its trials fail at once); each trial logs its checks to MLflow.
    rows = spec.rows or (None,)
    check_study_data(((r and r.name, spec.base_config(r)) for r in rows), prefix=f"[{spec.name}] ")
    started_ray = not ray.is_initialized()
    if started_ray:
        init_ray(address, num_cpus=num_cpus, trial_slots=spec.max_concurrent, temp_dir=ray_temp_dir)
    try:
        driver, concurrency = _trial_resources(spec)
        study_dir.mkdir(parents=True, exist_ok=True)
        if not restoring:
            dump_study(spec, study_dir / "study.yaml")
        with tracking.tracking_session(tracking_uri, mlruns) as uri:
            study_run = tracking.ensure_study_run(
                uri, study=spec.name, study_dir=study_dir, experiment_name=spec.experiment,
                tags={"searcher": spec.searcher, "metric": spec.metric,
                      "preset": spec.preset_name(spec.rows[0] if len(spec.rows) == 1 else None),
                      "num_trials": spec.total_trials(), "paper_reference": spec.paper_reference,
                      "early_stop": spec.early_stopping, "study_dir": str(study_dir),
                      "optuna_storage": f"sqlite:///{study_dir / 'optuna.db'}" if spec.searcher == "optuna" else None,
                      "optuna_study": spec.name if spec.searcher == "optuna" else None})
            if not restoring:
                client = tracking.client_for(uri)
                client.log_text(study_run.run_id, dump_study(spec), "study.yaml")
            ctx = _TrialContext(spec=spec, study_run=study_run, train_storage=str(study_dir / "train_runs"))
            trainable, tune_config, run_config = _build_tuner_parts(spec, ctx, study_dir, concurrency, driver)
            if restoring:
                print(f"[{spec.name}] resuming the study in {study_dir}", flush=True)
                tuner = tune.Tuner.restore(str(exp_path), trainable=trainable, resume_unfinished=True,
                                           resume_errored=True)
            else:
                tuner = tune.Tuner(trainable, param_space=spec.param_space(), tune_config=tune_config,
                                   run_config=run_config)
            try:
                grid = tuner.fit()
            except BaseException:
                tracking.finish_run(uri, study_run.run_id, "KILLED")
                raise
            result = _collect(spec, grid, study_dir, study_run)
            _finish_parent(result, study_run)
            return result
    finally:
        if started_ray:
            ray.shutdown()


def _collect(spec: StudySpec, grid: Any, study_dir: Path, study_run: tracking.StudyRun) -> StudyResult:
    children: dict[str, Any] = {}
    stale = []
    for run in sorted(tracking.child_runs(study_run.tracking_uri, study_run.experiment_id, study_run.run_id),
                      key=lambda r: r.info.start_time):
        tid = run.data.tags.get("trial_id")
        if tid in children:
            stale.append(run)
        else:
            children[tid] = run
    max_t = spec.max_epochs()
    records = []
    for res in grid:
        metrics = {k: v for k, v in (res.metrics or {}).items() if k != "config"}
        tid = str(metrics.get("trial_id"))
        params = {k: v for k, v in (res.config or {}).items()}
        run = children.get(tid)
        if res.error is not None:
            status, error = "failed", f"{type(res.error).__name__}: {res.error}"[:2000]
        else:
            epoch = metrics.get("epoch")
            status = "early_stopped" if isinstance(epoch, (int, float)) and epoch < max_t else "finished"
            error = None
        records.append(TrialRecord(trial_id=tid, status=status, params=params, metrics=metrics,
                                   run_id=run.info.run_id if run else None, error=error))
    known = {r.trial_id for r in records}
    for tid, run in children.items():  # runs of trials Tune lost before its last snapshot
        if tid not in known and run.info.status == "RUNNING":
            stale.append(run)
    for run in stale:
        tracking.finish_run(study_run.tracking_uri, run.info.run_id, "KILLED", tags={"orphaned": "true"})

    sign = 1 if spec.mode == "max" else -1
    scored = [r for r in records if r.status != "failed" and isinstance(r.metrics.get(spec.metric), (int, float))
              and math.isfinite(r.metrics[spec.metric])]
    # Early-stopped trials end on a rung value from an earlier epoch: rank full-length trials first.
    pool = [r for r in scored if r.status == "finished"] or scored
    best = max(pool, key=lambda r: sign * r.metrics[spec.metric]) if pool else None
    best_config = spec.trial_config(best.params) if best else None
    result = StudyResult(name=spec.name, study_dir=study_dir, metric=spec.metric, mode=spec.mode,
                         trials=tuple(records), best=best, best_config=best_config,
                         tracking_uri=study_run.tracking_uri, experiment_id=study_run.experiment_id,
                         parent_run_id=study_run.run_id)
    (study_dir / "trials.json").write_text(json.dumps(
        {"study": spec.name, "metric": spec.metric, "mode": spec.mode, "parent_run_id": study_run.run_id,
         "experiment_id": study_run.experiment_id,
         "best_trial": best.trial_id if best else None,
         "trials": [{"trial_id": r.trial_id, "status": r.status, "params": r.params, "run_id": r.run_id,
                     "error": r.error, "metrics": {k: v for k, v in r.metrics.items()
                                                  if isinstance(v, (int, float, str, bool)) or v is None}}
                    for r in result.trials]}, indent=1, default=str))
    return result


def _finish_parent(result: StudyResult, study_run: tracking.StudyRun) -> None:
    client = tracking.client_for(study_run.tracking_uri)
    tags = {"trials_total": len(result.trials), "trials_failed": result.num_failed,
            "trials_finished": result.num_finished}
    if result.best is not None:
        tags["best_trial_id"] = result.best.trial_id
        tags["best_run_id"] = result.best.run_id
        client.log_metric(study_run.run_id, f"best_{result.metric}", float(result.best.metrics[result.metric]))
    tracking.finish_run(study_run.tracking_uri, study_run.run_id, "FINISHED", tags=tags)


# =============================================================================================
# CLI


def run_tune_cli(args: Any) -> int:
    """`yolox-ray tune --study FILE [--samples N] [--no-early-stop] [--address A] [--out DIR]
    [--resume STUDY_DIR] [--tracking-uri URI] [key=value ...]`."""
    if args.resume:
        study_dir = Path(args.resume).expanduser().resolve()
        if not (study_dir / "study.yaml").exists():
            raise StudyError(f"--resume {args.resume}: no study.yaml in that directory")
        spec = load_study(study_dir / "study.yaml")
        if spec.name != study_dir.name:
            raise StudyError(f"--resume {args.resume}: the directory name does not match study {spec.name!r}")
        storage_root = study_dir.parent
    else:
        if not args.study:
            raise StudyError("tune: give --study FILE (or --resume STUDY_DIR)")
        spec = load_study(args.study)
        storage_root = Path(args.out or getattr(args, "storage", None) or "studies_out")
    changes: dict[str, Any] = {}
    if args.samples is not None:
        changes["num_samples"] = args.samples
    if args.no_early_stop:
        changes["early_stop"] = False
    if args.overrides:
        merged = dict(spec.overrides)
        merged.update(_wrap(lambda: _parse_overrides(args.overrides), "overrides"))
        changes["overrides"] = merged
    # Cluster flags change the study only when they differ from the parser defaults.
    for flag, name, default in (("workers", "workers", 1), ("cpus_per_worker", "cpus_per_worker", 1.0),
                                ("gpus_per_worker", "gpus_per_worker", 0.0)):
        value = getattr(args, flag, default)
        if value != default:
            changes[name] = value
    if changes:
        spec = replace(spec, **changes)
    result = run_study(spec, address=args.address, storage_root=storage_root, tracking_uri=args.tracking_uri,
                       resume=bool(args.resume))
    print_result(result)
    return 0 if result.num_finished > 0 else 1


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value.strip())
    return out


def print_result(result: StudyResult, stream: Any = None) -> None:
    out = stream or sys.stdout
    print(f"\nstudy {result.name}: {len(result.trials)} trials, {result.num_finished} finished, "
          f"{result.num_failed} failed  ({result.study_dir})", file=out)
    print(f"MLflow study run: {result.run_url()}", file=out)
    if result.best is None:
        print("no trial produced a result", file=out)
        return
    b = result.best
    print(f"best {result.metric} = {b.metrics[result.metric]:.4f}  (trial {b.trial_id}, epoch {b.metrics.get('epoch')})",
          file=out)
    print(f"best values: {json.dumps({k: v for k, v in b.params.items()}, sort_keys=True)}", file=out)
    print(f"best MLflow run: {result.best_run_url}", file=out)
    if result.best_config is not None:
        print("best config:", file=out)
        from yolox_ray.config import dump_yaml

        print("  " + dump_yaml(result.best_config).replace("\n", "\n  ").rstrip(), file=out)
