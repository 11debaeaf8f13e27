"""Studies on Ray Tune: the Tune adapter of a `yolox_ray.study.StudySpec` (Optuna/grid, ASHA, MLflow runs, resume).

The spec itself, its one validation pass (every config the study can produce, before any cluster
work) and its YAML load/dump live in the Ray-free `yolox_ray.study` (re-exported here). This module
turns a spec into Tune domains, a searcher (an Optuna study's first trial is `spec.warm_start()`, the
official defaults of the searched keys), a scheduler and trials.

A **study** (`StudySpec`, loadable from YAML, see ``configs/``) is a base config plus either a
search space sampled by Optuna (TPE, seeded; its study persisted in ``optuna.db`` next to the
study) or a grid (ablation rows x seeds x grid values). Each **trial** is one Ray Train run
launched from a Tune function trainable (the Train V2 pattern, ray_stack.md §3b): a deterministic
Train run name per trial id (so a restarted trial resumes from its Train checkpoint),
`TuneReportCallback` forwarding every per-epoch report, a ``trial_slot`` custom resource so the
trial driver does not take a CPU from its own workers, and ``ASHAScheduler(time_attr="epoch")``.

Layout of a study directory ``<storage_root>/<name>/`` (a local folder or a storage URI such as
``s3://bucket/studies/<name>``, all through one pyarrow filesystem, `yolox_ray.storage`)::

    study.yaml       the resolved StudySpec (what ``--resume`` reloads; a rerun must match it,
                     except that num_samples may grow)
    mlflow.json      the study's MLflow parent run (re-used on resume)
    optuna.db        Optuna RDB storage (optuna searcher, local study folder, no --optuna-storage)
    optuna.json      which Optuna storage the study uses (password masked)
    tune/            the Tune experiment (Tuner.restore reads it); tune_2/, ... one more per resume
                     that grew num_samples (`TuneSegment`), listed in tune_segments.json
    train_runs/      one Ray Train run per trial: trial_<trial_id>/epoch_NNN checkpoints
    logs/            trial_<trial_id>.log: the Train workers' output and traceback, the error Tune got
                     (a study on remote storage: <temp>/yolox_ray_logs/<name>/ of the writing node)
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
studies and for small sample counts). A multi-objective study (`objectives: [AP, latency_ms]`) never
early-stops (see `yolox_ray.study`): OptunaSearch gets `metric=[...]`, `mode=[...]` and Tune's own
metric/mode stay unset (Ray 2.60: a list there is not supported, and OptunaSearch then keeps its own);
OptunaSearch reports no intermediate values to a multi-objective Optuna study and tells it each
trial's last result, whose costs `ModelCostProbe` put in every epoch's metrics. Note that Ray's OptunaSearch tells Optuna an early-stopped
trial as COMPLETE with its rung value (ray_stack.md §3a), so TPE sees those partial values; the
parameter importances (`yolox_ray.report.optuna_importances`) leave them out.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from ray import tune

from yolox_ray.cluster import tracking
from yolox_ray.cluster.progress import StudyCallback  # noqa: F401  (pickled in old experiments under this name)
from yolox_ray.cluster.ray_setup import (
    STATE_API_WARNING,
    TRIAL_SLOT,
    init_ray,
    set_ray_env_defaults,
    state_api_reachable,
)
from yolox_ray.config import ExperimentConfig
from yolox_ray.engine.model_cost import ModelCostProbe
from yolox_ray.study import (  # noqa: F401  (re-exported)
    ROW_KEY,
    SEED_KEY,
    SearchParam,
    StudyError,
    StudyRow,
    StudySpec,
    _tune_value,
    check_resume,
    default_samples,
    dump_study,
    load_study,
    pareto_front,
    validate_spec,
    with_changes,
    with_cli_args,
)
from yolox_ray.storage import StorageError, StoragePath, as_storage, ray_storage
from yolox_ray.study_paths import (
    DEFAULT_REPORTS_ROOT,
    DEFAULT_STUDIES_ROOT,
    SEGMENTS_FILE,
    STUDY_FILE,
    TUNE_DIR,
    check_optuna_storage,
    mask_password,
    open_optuna_storage,
    optuna_storage_url,
    record_optuna_storage,
    recorded_optuna_storage,
    segment_dir_name,
    trial_log_path,
)

# The spec, its validation and YAML live in the Ray-free yolox_ray.study (re-exported here).
__all__ = ["ROW_KEY", "SEED_KEY", "SearchParam", "StudyError", "StudyResult", "StudyRow", "StudySpec", "TrialRecord",
           "TuneSegment", "dump_study", "load_study", "param_space", "run_study", "study_segments", "tune_domain",
           "validate_spec"]


def tune_domain(p: SearchParam) -> Any:
    """The Ray Tune domain of a search dimension (inclusive int bounds become randint(low, high + 1))."""
    if p.kind == "int":
        low, high = int(p.low), int(p.high)
        return tune.lograndint(low, high + 1) if p.log else tune.randint(low, high + 1)
    if p.kind == "float":
        return tune.uniform(float(p.low), float(p.high))
    if p.kind == "loguniform":
        return tune.loguniform(float(p.low), float(p.high))
    values = [_tune_value(v) for v in p.values]
    return tune.choice(values) if p.kind == "choice" else tune.grid_search(values)


def param_space(spec: StudySpec, seeds: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The Tuner's param_space: one domain per dimension, plus grid searches over rows and seeds
    (`seeds`: a segment's own seeds, default the study's)."""
    space: dict[str, Any] = {p.key: tune_domain(p) for p in spec.space}
    if spec.rows:
        space[ROW_KEY] = tune.grid_search([r.name for r in spec.rows])
    seeds = spec.seeds if seeds is None else seeds
    if seeds:
        space[SEED_KEY] = tune.grid_search(list(seeds))
    return space


# =============================================================================================
# The trial (runs in the Tune trial actor = the Train driver)


@dataclass(frozen=True)
class _TrialContext:
    """What every trial gets, pickled once into the object store (never into Tune's config, results or
    experiment files): `auth` is the driver's tracking credential, handed on without being printed."""

    spec: StudySpec
    study_run: tracking.StudyRun
    train_storage: StoragePath | str
    study_dir: StoragePath | str = ""  # for the trial's log file (pickled before it existed: no log file)
    auth: tracking.TrackingAuth | None = None


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
    tracking.apply_auth(ctx.auth)  # this process exists for this trial only
    # An unreachable server fails the trial here, naming URI and node, not as empty runs later.
    tracking.check_reachable(ctx.study_run.tracking_uri, f"trial {trial_id}")
    cfg = spec.trial_config(config)
    tags = trial_tags(spec, config, cfg)
    tags["tracking_user"] = ctx.auth.username if ctx.auth else None  # the user name only, never the password
    label = "-".join(str(x) for x in (tags["row"], f"s{cfg.train.seed}" if spec.seeds else None) if x) or "trial"
    run_id = tracking.ensure_trial_run(ctx.study_run, trial_id, run_name=f"{label}-{trial_id}", tags=tags)
    start = time.perf_counter()
    # The costs among the objectives are measured on rank 0 and reported with every epoch's metrics.
    probes = [ModelCostProbe(spec.costs)] if spec.costs else []
    try:
        trainer = make_trainer(
            cfg, run_name=f"trial_{trial_id}", storage_path=ctx.train_storage, num_workers=spec.workers,
            use_gpu=spec.gpus_per_worker > 0, cpus_per_worker=spec.cpus_per_worker,
            gpus_per_worker=spec.gpus_per_worker, max_failures=spec.max_failures, callbacks=[TuneReportCallback()],
            tracking={"tracking_uri": ctx.study_run.tracking_uri, "run_id": run_id},
            log_path=str(trial_log_path(ctx.study_dir, trial_id)) if ctx.study_dir else None,
            worker_callbacks=probes)
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
# Running a study


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    status: Literal["finished", "early_stopped", "failed"]
    params: dict[str, Any]  # the trial's Tune config: sampled/grid values, "row", "seed"
    metrics: dict[str, Any]  # the last reported metrics
    run_id: str | None
    error: str | None = None

    def values(self, objectives: tuple[str, ...]) -> tuple[float, ...] | None:
        """The trial's last value of each objective (None when one is missing or not finite)."""
        values = [self.metrics.get(k) for k in objectives]
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) for v in values):
            return None
        return tuple(float(v) for v in values)

    @property
    def row(self) -> str | None:
        return self.params.get(ROW_KEY)

    @property
    def seed(self) -> int | None:
        return self.params.get(SEED_KEY)


@dataclass(frozen=True)
class StudyResult:
    """A finished (or continued) study; `trials` in the order Tune created them. `study_dir` is where
    the study lives (any filesystem); `outputs_dir` a local folder for what scripts derive from it
    (reports, plots, tables): the study folder itself when local, else ``reports/<name>``."""

    name: str
    study_dir: StoragePath
    metric: str
    mode: str
    trials: tuple[TrialRecord, ...]
    best: TrialRecord | None
    best_config: ExperimentConfig | None
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    objectives: tuple[str, ...] = ()  # empty: single-objective on `metric`
    pareto: tuple[TrialRecord, ...] = ()  # the finished trials no other finished trial dominates
    optuna_storage: str | None = None  # the Optuna storage URL / journal:PATH (optuna searcher only)

    @property
    def outputs_dir(self) -> Path:
        return outputs_dir_for(self.study_dir)

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


def study_dir_for(spec: StudySpec, storage_root: str | Path | StoragePath) -> StoragePath:
    """`<storage_root>/<name>`: a local root is made absolute, a URI resolved by pyarrow (StorageError if it cannot)."""
    return as_storage(storage_root, what="--out") / spec.name


def outputs_dir_for(study_dir: StoragePath) -> Path:
    """The local folder for a study's derived outputs (see StudyResult)."""
    return study_dir.local_path if study_dir.local else Path(DEFAULT_REPORTS_ROOT).resolve() / study_dir.name


def _can_restore(exp_path: StoragePath) -> bool:
    where = ray_storage(exp_path)
    try:
        return tune.Tuner.can_restore(where["storage_path"], storage_filesystem=where["storage_filesystem"])
    except OSError as exc:  # an unreachable object store, missing credentials, ...
        raise StorageError(f"cannot read the study storage {exp_path}: {exc}") from None


@dataclass(frozen=True)
class TuneSegment:
    """One Tune experiment of a study (``<study_dir>/<name>/``) and the samples it runs.

    Tune cannot grow a restored experiment (``Tuner.restore`` keeps the pickled TuneConfig and the
    searcher's sample count), so a resume with more `samples` adds a segment for the extra samples
    on the same Optuna RDB study: Optuna sees every earlier trial and the warm start is not
    enqueued again. ASHA compares trials within one segment only. A grid that gains seeds gets a
    segment of its own that runs only the new seeds (`seeds`; None: the study's seeds, as every
    segment before the first seed growth).
    """

    name: str
    samples: int
    seeds: tuple[int, ...] | None = None


def study_segments(study_dir: StoragePath | str | Path) -> list[TuneSegment]:
    """The study's Tune experiments in order ([] for a new study). A study written before segments
    existed has its one experiment in ``tune/`` with the samples of its study.yaml."""
    study_dir = as_storage(study_dir)
    record = study_dir / SEGMENTS_FILE
    if record.exists():
        return [TuneSegment(str(s["name"]), int(s["samples"]),
                            tuple(int(x) for x in s["seeds"]) if s.get("seeds") is not None else None)
                for s in json.loads(record.read_text())["segments"]]
    stored = study_dir / STUDY_FILE
    if stored.exists() and _can_restore(study_dir / TUNE_DIR):
        data = yaml.safe_load(stored.read_text()) or {}
        samples = data.get("num_samples")
        return [TuneSegment(TUNE_DIR, int(samples if samples is not None else default_samples(str(data.get("searcher")))))]
    return []


def _write_segments(study_dir: StoragePath, segments: list[TuneSegment]) -> None:
    # One write_text: atomic on object stores; `StoragePath.write_text` replaces a local file atomically too.
    (study_dir / SEGMENTS_FILE).write_text(
        json.dumps({"segments": [{"name": s.name, "samples": s.samples,
                                   **({"seeds": list(s.seeds)} if s.seeds is not None else {})}
                                  for s in segments]}, indent=1))


def _segment_seed(seed: int, index: int) -> int:
    """The TPE sampler seed of segment `index`: the study's seed first; a fresh sampler with that seed
    in a later segment would repeat the first segment's random start-up draws."""
    return seed if index == 0 else (seed * 1_000_003 + index) % (2**31)


def _trial_resources(spec: StudySpec, *, fixed_cluster: bool, out: Any = None) -> tuple[dict[str, float], int]:
    """Resources of one trial driver and how many trials may run at once.

    `fixed_cluster`: a local cluster this call started, whose resources never change: concurrency is
    what fits in it, and a trial that can never fit is a StudyError. An existing cluster (an address,
    or the one this process is connected to) may grow (an autoscaler, nodes joining), so a cluster too
    small right now is not an error: `max_concurrent` trials (at most one per `trial_slot`) are started
    and wait for resources (the progress lines count them). A driver that takes a CPU (no `trial_slot`
    resource) must leave room for one trial's workers when the cluster fits one now, else the drivers
    could hold the CPUs their workers wait for.
    """
    import ray

    res = ray.cluster_resources()
    n = spec.max_concurrent
    need_cpu = spec.workers * spec.cpus_per_worker
    need_gpu = spec.workers * spec.gpus_per_worker
    driver_cpu = 0
    if TRIAL_SLOT in res:  # a concurrency cap set on purpose (on the head: it does not grow with GPU nodes)
        driver: dict[str, float] = {TRIAL_SLOT: 1}
        n = min(n, int(res[TRIAL_SLOT]))
    else:  # an existing cluster without our custom resource: the driver takes one CPU
        driver = {"CPU": 1}
        driver_cpu = 1
    have_cpu, have_gpu = res.get("CPU", 0), res.get("GPU", 0)
    fits_now = have_cpu >= need_cpu + driver_cpu and have_gpu >= need_gpu
    if fixed_cluster:
        if need_cpu + driver_cpu > 0:
            n = min(n, int(have_cpu // (need_cpu + driver_cpu)))
        if need_gpu > 0:
            n = min(n, int(have_gpu // need_gpu))
        if n < 1:
            raise StudyError(f"a trial needs {need_cpu + driver_cpu:g} CPUs and {need_gpu:g} GPUs but the cluster has "
                             f"{have_cpu:g} CPUs and {have_gpu:g} GPUs")
        return driver, n
    if not fits_now:
        print(f"[{spec.name}] the cluster has {have_cpu:g} CPUs and {have_gpu:g} GPUs now; a trial needs "
              f"{need_cpu + driver_cpu:g} CPUs and {need_gpu:g} GPUs: trials wait for resources (nodes joining, "
              "e.g. by the autoscaler)", file=out or sys.stdout, flush=True)
    elif driver_cpu:
        n = min(n, max(1, int(have_cpu - need_cpu)))
    return driver, n


def _grace_period(spec: StudySpec) -> int:
    return spec.grace_period if spec.grace_period is not None else spec.default_grace_period()


def uses_asha(spec: StudySpec) -> bool:
    """Whether Tune stops trials early (ASHA): early stopping on, and a grace period before the last epoch."""
    return bool(spec.early_stopping) and _grace_period(spec) < spec.max_epochs()


def _optuna_storage_for(spec: StudySpec, study_dir: StoragePath, given: str | None, restoring: bool) -> str | None:
    """The Optuna storage of the study (None for a grid study), checked before any cluster work.

    Default: SQLite in a local study folder. A study on remote storage must name one (the searcher runs in
    the driver, so e.g. a driver-local sqlite:////... or journal:PATH works, as does a database server).
    A resumed study keeps the storage it started with (Tune restores its searcher, storage included)."""
    if spec.searcher != "optuna":
        if given:
            raise StudyError(f"--optuna-storage: study {spec.name!r} uses the {spec.searcher} searcher, "
                             "which has no Optuna study")
        return None
    url = check_optuna_storage(given) if given else None
    if restoring:
        recorded = recorded_optuna_storage(study_dir)
        if recorded is None and study_dir.local:  # a study from before optuna.json: the default
            recorded = optuna_storage_url(study_dir)
        if recorded is not None:
            if url is None:
                if "***" in recorded:
                    raise StudyError(f"study {spec.name!r} was started with --optuna-storage {recorded}; pass it "
                                     "again to resume (its password is not stored)")
                return recorded
            if mask_password(url) != recorded:
                raise StudyError(f"study {spec.name!r} was started with --optuna-storage {recorded}; resume it "
                                 f"with that storage, not {mask_password(url)}")
            return url
    if url is not None:
        return url
    if study_dir.local:
        return optuna_storage_url(study_dir)
    raise StudyError(f"study {spec.name!r} is stored in {study_dir}, which is not a local folder, so its Optuna "
                     "study cannot default to optuna.db there: pass --optuna-storage (the searcher runs on the "
                     "driver: sqlite:////path/on/this/machine/optuna.db, journal:/shared/optuna.log, or "
                     "postgresql://user@host/db)")


@contextlib.contextmanager
def _stable_cwd():
    """Run Tune from a folder that outlives it. Tune lists its experiment folder at the end with paths made
    absolute against the current folder, and the driver of a `ray job submit --working-dir` job runs in
    the job's unpacked package, which Ray can delete and unpack again while the job runs (found by the
    two-node test: every trial done, then FileNotFoundError from os.getcwd). Every path the study hands
    Tune is absolute, so the folder changes nothing else; the previous one is restored if it exists."""
    try:
        before: str | None = os.getcwd()
    except FileNotFoundError:
        before = None
    os.chdir(tempfile.gettempdir())
    try:
        yield
    finally:
        if before is not None and os.path.isdir(before):
            os.chdir(before)


def _trainable(ctx: _TrialContext, driver: dict) -> Any:
    return tune.with_resources(tune.with_parameters(yolox_trial, ctx=ctx), driver)


def _new_tuner(spec: StudySpec, trainable: Any, study_dir: StoragePath, segment: TuneSegment, index: int,
               concurrency: int, driver: dict, optuna_storage: Any = None) -> Any:
    """A Tuner for a segment that has no restorable experiment yet."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    if spec.searcher == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        sampler_kwargs: dict[str, Any] = {"seed": _segment_seed(spec.seed, index)}
        if spec.startup_trials is not None:
            sampler_kwargs["n_startup_trials"] = spec.startup_trials
        storage = optuna_storage
        # Warm start: the first trial is the base config's values (the official defaults), unless the
        # Optuna study already has trials (a grown or restarted study keeps its own first trial).
        existing = [s for s in optuna.get_all_study_summaries(storage) if s.study_name == spec.name]
        points = [spec.warm_start()] if not existing or existing[0].n_trials == 0 else None
        # Several objectives: the searcher holds the lists (one Optuna direction each; TPE samples
        # multi-objective studies too), Tune's own metric/mode stay unset.
        objectives = {"metric": list(spec.objectives), "mode": list(spec.objective_modes())} if spec.objectives else {}
        searcher = ConcurrencyLimiter(
            OptunaSearch(sampler=optuna.samplers.TPESampler(**sampler_kwargs), study_name=spec.name,
                         storage=storage, points_to_evaluate=points, **objectives),
            max_concurrent=concurrency)
    else:
        # The generator's own limit: Tune ignores max_concurrent_trials (with a warning) for a generator.
        searcher = BasicVariantGenerator(random_state=spec.seed, max_concurrent=concurrency)
    max_t = spec.max_epochs()
    if uses_asha(spec):
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=_grace_period(spec),
                                  reduction_factor=spec.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    single = not spec.objectives
    tune_config = tune.TuneConfig(metric=spec.metric if single else None, mode=spec.mode if single else None,
                                  num_samples=segment.samples, search_alg=searcher, scheduler=scheduler,
                                  reuse_actors=False)
    trials = spec.total_trials() // spec.samples * segment.samples
    if segment.seeds is not None and spec.seeds:
        trials = trials // len(spec.seeds) * len(segment.seeds)
    callback = StudyCallback(spec.name, study_dir, trials, spec.metric, spec.mode, max_t,
                             workers=spec.workers, cpus_per_worker=spec.cpus_per_worker,
                             gpus_per_worker=spec.gpus_per_worker, driver=driver, shown=spec.costs)
    run_config = tune.RunConfig(name=segment.name, **ray_storage(study_dir), verbose=0, callbacks=[callback],
                                failure_config=tune.FailureConfig(max_failures=spec.trial_retries))
    return tune.Tuner(trainable, param_space=param_space(spec, segment.seeds), tune_config=tune_config,
                      run_config=run_config)


def run_study(spec: StudySpec, *, address: str | None = None,
              storage_root: str | Path | StoragePath = DEFAULT_STUDIES_ROOT,
              tracking_uri: str | None = None, mlruns: str | Path = "mlruns", resume: bool = False,
              num_cpus: int | None = None, ray_temp_dir: str | None = None,
              optuna_storage: str | None = None) -> StudyResult:
    """Run (or continue, or grow) `spec` and return its trials and best result.

    Runs on the Ray cluster this process is already connected to, else on `address`, else on a
    new local cluster (shut down at the end). Tracking goes to `tracking_uri`, else to a local
    MLflow server over `mlruns` (started or reused). An existing study (its directory holds Tune
    experiments) is continued: each experiment with ``Tuner.restore(..., resume_errored=True)``
    (finished trials kept, interrupted ones resumed from their Train checkpoints, the Optuna state
    restored, no MLflow run duplicated). Its stored spec must equal `spec`, except that
    `num_samples` may grow: the extra samples run as a new Tune experiment (`TuneSegment`) on the
    same Optuna study and MLflow parent run, and study.yaml is updated.
    `resume=True` additionally requires that there is something to continue.
    On a multi-node cluster the local server listens on the driver's node IP, authenticated (see
    `tracking.tracking_session`); a loopback `tracking_uri` is refused. On an authenticated server the
    trials log as the study's own MLflow user (`tracking.study_credential`).
    `storage_root` may be a storage URI (s3://, gs://, ...); before any trial a Ray task on every other
    node reads a token the driver wrote there (`storage_check`). `optuna_storage`: see `study_paths`.
    """
    import logging

    import ray

    set_ray_env_defaults()
    # Tune's result.json/progress.csv loggers are off (ray_setup); its analysis would warn per trial.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    study_dir = study_dir_for(spec, storage_root)
    segments = study_segments(study_dir)
    existing = bool(segments)
    stored: dict[str, Any] = {}
    if existing:
        stored = yaml.safe_load((study_dir / STUDY_FILE).read_text()) or {}
        check_resume(spec, stored, study_dir)
    elif resume:
        raise StudyError(f"nothing to resume in {study_dir} (no Tune experiment at {study_dir / TUNE_DIR})")
    optuna_url = _optuna_storage_for(spec, study_dir, optuna_storage, existing)
    if optuna_url and study_dir.local:
        study_dir.mkdir()  # the default optuna.db lives in it
    optuna_store = open_optuna_storage(optuna_url) if optuna_url else None  # reachable before Ray starts
    # The seeds run so far are read from the segments (None: the stored spec's seeds), the samples from
    # the segments that ran the first of them (a seed segment repeats those samples for its seeds).
    stored_seeds = tuple(int(x) for x in stored.get("seeds") or ())
    ran_seeds = [x for seg in segments for x in (seg.seeds if seg.seeds is not None else stored_seeds)]
    covered = sum(seg.samples for seg in segments
                  if seg.seeds is None or not ran_seeds or ran_seeds[0] in seg.seeds)
    added_seeds = tuple(x for x in spec.seeds if x not in ran_seeds) if existing else ()
    if added_seeds:  # the earlier segments keep their seeds; the new ones run in a segment of their own
        segments = [seg if seg.seeds is not None else replace(seg, seeds=stored_seeds) for seg in segments]
        segments.append(TuneSegment(segment_dir_name(len(segments)), covered, added_seeds))
    elif spec.samples > covered:  # a new study, or more samples for an existing one
        segments.append(TuneSegment(segment_dir_name(len(segments)), spec.samples - covered))
    grown = existing and (bool(added_seeds) or spec.samples > covered or yaml.safe_load(dump_study(spec)) != stored)

    from yolox_ray.cluster.train import check_study_data

    # Bad data fails here, in one line, before any cluster starts (a row with bad data only: a warning and
    # its trials fail at once); each trial logs its checks to MLflow.
    rows = spec.rows or (None,)
    check_study_data(((r and r.name, spec.base_config(r)) for r in rows), prefix=f"[{spec.name}] ")
    started_ray = not ray.is_initialized()
    if started_ray:
        init_ray(address, num_cpus=num_cpus, trial_slots=spec.max_concurrent, temp_dir=ray_temp_dir)
    try:
        driver, concurrency = _trial_resources(spec, fixed_cluster=started_ray and address is None)
        if uses_asha(spec) and not state_api_reachable():
            print(f"[{spec.name}] {STATE_API_WARNING}", flush=True)
        study_dir.mkdir()
        from yolox_ray.cluster.storage_check import check_storage_visible

        check_storage_visible(study_dir)  # a driver-only folder stops here, naming the node
        if not existing:
            (study_dir / STUDY_FILE).write_text(dump_study(spec))
            _write_segments(study_dir, segments)
        elif grown:  # segments first: a rerun after a kill between the two writes neither repeats nor loses a segment
            _write_segments(study_dir, segments)
            (study_dir / STUDY_FILE).write_text(dump_study(spec))
        if optuna_url and recorded_optuna_storage(study_dir) is None:
            record_optuna_storage(study_dir, optuna_url, spec.name)
        with tracking.tracking_session(tracking_uri, mlruns) as uri:
            study_run = tracking.ensure_study_run(
                uri, study=spec.name, study_dir=study_dir, experiment_name=spec.experiment,
                tags={"searcher": spec.searcher, "metric": spec.metric,
                      "preset": spec.preset_name(spec.rows[0] if len(spec.rows) == 1 else None),
                      "num_trials": spec.total_trials(), "paper_reference": spec.paper_reference,
                      "early_stop": spec.early_stopping, "study_dir": str(study_dir),
                      "optuna_storage": mask_password(optuna_url) if optuna_url else None,
                      "optuna_study": spec.name if spec.searcher == "optuna" else None,
                      "objectives": ",".join(spec.objectives) or None,
                      "objective_modes": ",".join(spec.objective_modes()) if spec.objectives else None})
            if not existing or grown:
                client = tracking.client_for(uri)
                client.log_text(study_run.run_id, dump_study(spec), STUDY_FILE)
                client.set_tag(study_run.run_id, "num_trials", str(spec.total_trials()))
            # The trials log as the study's own MLflow user where the server is authenticated.
            trial_auth = tracking.study_credential(uri, spec.name, study_run.experiment_id)
            ctx = _TrialContext(spec=spec, study_run=study_run, train_storage=study_dir / "train_runs",
                                study_dir=study_dir, auth=trial_auth)
            trainable = _trainable(ctx, driver)
            results: list[Any] = []
            for index, segment in enumerate(segments):
                exp_path = study_dir / segment.name
                if _can_restore(exp_path):
                    print(f"[{spec.name}] resuming the study in {study_dir}"
                          + (f" ({segment.name}/)" if len(segments) > 1 else ""), flush=True)
                    where = ray_storage(exp_path)
                    tuner = tune.Tuner.restore(where["storage_path"], trainable=trainable, resume_unfinished=True,
                                               resume_errored=True, storage_filesystem=where["storage_filesystem"])
                else:
                    if index > 0 and segment.seeds is not None and segment.seeds != segments[0].seeds:
                        print(f"[{spec.name}] adding seeds {list(segment.seeds)} to the study in {exp_path} "
                              "(the finished seeds are kept)", flush=True)
                    elif index > 0:
                        print(f"[{spec.name}] growing the study to {spec.samples} samples: {segment.samples} "
                              f"more in {exp_path} (the Optuna study continues)", flush=True)
                    tuner = _new_tuner(spec, trainable, study_dir, segment, index, concurrency, driver, optuna_store)
                try:
                    with _stable_cwd():
                        results.extend(tuner.fit())
                except BaseException:
                    tracking.finish_run(uri, study_run.run_id, "KILLED")
                    raise
            result = _collect(spec, results, study_dir, study_run, optuna_url)
            _finish_parent(result, study_run)
            return result
    finally:
        if started_ray:
            ray.shutdown()


def _collect(spec: StudySpec, grid: list[Any], study_dir: StoragePath, study_run: tracking.StudyRun,
             optuna_url: str | None = None) -> StudyResult:
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
            # The worker's own exception (a RayTaskError wraps it in a traceback that buries the message).
            cause = getattr(res.error, "cause", None) or res.error
            status, error = "failed", f"{type(cause).__name__}: {cause}"[:2000]
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
    pareto: tuple[TrialRecord, ...] = ()
    if spec.objectives:
        # Full-length trials only (a multi-objective study does not early-stop; a failed trial has no value).
        valued = [r for r in records if r.status == "finished" and r.values(spec.objectives) is not None]
        front = pareto_front([r.values(spec.objectives) for r in valued], spec.objective_modes())
        pareto = tuple(valued[i] for i in front)
    result = StudyResult(name=spec.name, study_dir=study_dir, metric=spec.metric, mode=spec.mode,
                         trials=tuple(records), best=best, best_config=best_config,
                         tracking_uri=study_run.tracking_uri, experiment_id=study_run.experiment_id,
                         parent_run_id=study_run.run_id, objectives=spec.objectives, pareto=pareto,
                         optuna_storage=optuna_url)
    (study_dir / "trials.json").write_text(json.dumps(
        {"study": spec.name, "metric": spec.metric, "mode": spec.mode, "parent_run_id": study_run.run_id,
         "experiment_id": study_run.experiment_id,
         "best_trial": best.trial_id if best else None,
         **({"objectives": list(spec.objectives), "pareto_trials": [r.trial_id for r in pareto]}
            if spec.objectives else {}),
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
    if result.objectives:
        tags["pareto_trial_ids"] = ",".join(r.trial_id for r in result.pareto)
    tracking.finish_run(study_run.tracking_uri, study_run.run_id, "FINISHED", tags=tags)
