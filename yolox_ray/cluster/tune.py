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
studies and for small sample counts). A multi-objective study (`objectives: [AP, latency_ms]`) never
early-stops (see `yolox_ray.study`): OptunaSearch gets `metric=[...]`, `mode=[...]` and Tune's own
metric/mode stay unset (Ray 2.60: a list there is not supported, and OptunaSearch then keeps its own);
OptunaSearch reports no intermediate values to a multi-objective Optuna study and tells it each
trial's last result, whose costs `ModelCostProbe` put in every epoch's metrics. Note that Ray's OptunaSearch tells Optuna an early-stopped
trial as COMPLETE with its rung value (ray_stack.md §3a), so TPE sees those partial values; the
parameter importances (`yolox_ray.report.optuna_importances`) leave them out.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from ray import tune

from yolox_ray.cluster import tracking
from yolox_ray.cluster.progress import StudyCallback  # noqa: F401  (pickled in old experiments under this name)
from yolox_ray.cluster.ray_setup import TRIAL_SLOT, init_ray, set_ray_env_defaults
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
    dump_study,
    load_study,
    pareto_front,
    validate_spec,
    with_changes,
    with_cli_args,
)
from yolox_ray.study_paths import DEFAULT_STUDIES_ROOT, optuna_storage_url

# The spec, its validation and YAML live in the Ray-free yolox_ray.study (re-exported here).
__all__ = ["ROW_KEY", "SEED_KEY", "SearchParam", "StudyError", "StudyResult", "StudyRow", "StudySpec", "TrialRecord",
           "dump_study", "load_study", "param_space", "print_result", "run_study", "run_tune_cli", "tune_domain",
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


def param_space(spec: StudySpec) -> dict[str, Any]:
    """The Tuner's param_space: one domain per dimension, plus grid searches over rows and seeds."""
    space: dict[str, Any] = {p.key: tune_domain(p) for p in spec.space}
    if spec.rows:
        space[ROW_KEY] = tune.grid_search([r.name for r in spec.rows])
    if spec.seeds:
        space[SEED_KEY] = tune.grid_search(list(spec.seeds))
    return space


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
    # An unreachable server fails the trial here, naming URI and node, not as empty runs later.
    tracking.check_reachable(ctx.study_run.tracking_uri, f"trial {trial_id}")
    cfg = spec.trial_config(config)
    tags = trial_tags(spec, config, cfg)
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
            tracking={"tracking_uri": ctx.study_run.tracking_uri, "run_id": run_id}, worker_callbacks=probes)
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
    objectives: tuple[str, ...] = ()  # empty: single-objective on `metric`
    pareto: tuple[TrialRecord, ...] = ()  # the finished trials no other finished trial dominates

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
        storage = optuna.storages.RDBStorage(optuna_storage_url(study_dir))
        # Warm start: the first trial is the base config's values (the official defaults), unless the
        # Optuna study already has trials (an appended or restored study keeps its own first trial).
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
    grace = spec.grace_period if spec.grace_period is not None else spec.default_grace_period()
    if spec.early_stopping and grace < max_t:
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=grace,
                                  reduction_factor=spec.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    single = not spec.objectives
    tune_config = tune.TuneConfig(metric=spec.metric if single else None, mode=spec.mode if single else None,
                                  num_samples=spec.samples, search_alg=searcher, scheduler=scheduler,
                                  reuse_actors=False)
    callback = StudyCallback(spec.name, str(study_dir), spec.total_trials(), spec.metric, spec.mode, max_t,
                             shown=spec.costs)
    run_config = tune.RunConfig(name="tune", storage_path=str(study_dir), verbose=0, callbacks=[callback],
                                failure_config=tune.FailureConfig(max_failures=spec.trial_retries))
    return trainable, tune_config, run_config


def run_study(spec: StudySpec, *, address: str | None = None, storage_root: str | Path = DEFAULT_STUDIES_ROOT,
              tracking_uri: str | None = None, mlruns: str | Path = "mlruns", resume: bool = False,
              num_cpus: int | None = None, ray_temp_dir: str | None = None,
              tracking_insecure: bool = False) -> StudyResult:
    """Run (or continue) `spec` and return its trials and best result.

    Runs on the Ray cluster this process is already connected to, else on `address`, else on a
    new local cluster (shut down at the end). Tracking goes to `tracking_uri`, else to a local
    MLflow server over `mlruns` (started or reused). If the study directory already holds a
    restorable Tune experiment it is continued with ``Tuner.restore(..., resume_errored=True)``
    (finished trials kept, interrupted ones resumed from their Train checkpoints, the Optuna
    state restored, no MLflow run duplicated); its stored spec must equal `spec`.
    `resume=True` additionally requires that there is something to continue.
    On a multi-node cluster the local server listens on the driver's node IP only with
    `tracking_insecure` (see `tracking.tracking_session`); a loopback `tracking_uri` is refused.
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
        with tracking.tracking_session(tracking_uri, mlruns, insecure_network=tracking_insecure) as uri:
            study_run = tracking.ensure_study_run(
                uri, study=spec.name, study_dir=study_dir, experiment_name=spec.experiment,
                tags={"searcher": spec.searcher, "metric": spec.metric,
                      "preset": spec.preset_name(spec.rows[0] if len(spec.rows) == 1 else None),
                      "num_trials": spec.total_trials(), "paper_reference": spec.paper_reference,
                      "early_stop": spec.early_stopping, "study_dir": str(study_dir),
                      "optuna_storage": optuna_storage_url(study_dir) if spec.searcher == "optuna" else None,
                      "optuna_study": spec.name if spec.searcher == "optuna" else None,
                      "objectives": ",".join(spec.objectives) or None,
                      "objective_modes": ",".join(spec.objective_modes()) if spec.objectives else None})
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
                tuner = tune.Tuner(trainable, param_space=param_space(spec), tune_config=tune_config,
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
                         parent_run_id=study_run.run_id, objectives=spec.objectives, pareto=pareto)
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


# =============================================================================================
# CLI


def run_tune_cli(args: Any) -> int:
    """`yolox-ray tune --study FILE [--samples N] [--no-early-stop] [--objective2 COST] [--address A] [--out DIR]
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
        storage_root = Path(args.out or getattr(args, "storage", None) or DEFAULT_STUDIES_ROOT)
    spec = with_cli_args(spec, args)
    result = run_study(spec, address=args.address, storage_root=storage_root, tracking_uri=args.tracking_uri,
                       resume=bool(args.resume), tracking_insecure=bool(getattr(args, "tracking_insecure", False)))
    print_result(result)
    return 0 if result.num_finished > 0 else 1


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
    if result.objectives:
        print(f"Pareto front ({', '.join(result.objectives)}): {len(result.pareto)} of "
              f"{sum(t.status == 'finished' for t in result.trials)} finished trials", file=out)
        for r in sorted(result.pareto, key=lambda r: r.values(result.objectives)[1]):
            values = ", ".join(f"{k}={r.metrics[k]:.4g}" for k in result.objectives)
            print(f"  trial {r.trial_id}: {values}  {json.dumps(r.params, sort_keys=True)}", file=out)
    if result.best_config is not None:
        print("best config:", file=out)
        from yolox_ray.config import dump_yaml

        print("  " + dump_yaml(result.best_config).replace("\n", "\n  ").rstrip(), file=out)
