"""`yolox-ray dashboard --study NAME_OR_DIR`: optuna-dashboard on a study's Optuna storage, on 127.0.0.1.

A study named NAME lives in `<studies root>/NAME/` (`yolox-ray tune`'s `--out`, default
`studies_out`) with its Optuna storage `optuna.db` there, or the one it was started with
(`--optuna-storage`, recorded in `optuna.json`); `yolox_ray.study_paths` defines that layout.
Only Optuna-searched studies have one (a grid study does not).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from yolox_ray.storage import StorageError
from yolox_ray.study_paths import (
    DEFAULT_STUDIES_ROOT,
    JOURNAL_PREFIX,
    OPTUNA_DB,
    open_optuna_storage,
    optuna_storage_url,
    recorded_optuna_storage,
)


class DashboardError(RuntimeError):
    """The study, its Optuna storage or the Optuna study in it does not exist."""


HOST = "127.0.0.1"  # loopback only: the dashboard can edit the study (notes, trial states)


def study_storage(name_or_dir: str, root: str | Path = DEFAULT_STUDIES_ROOT) -> tuple[str, str]:
    """(Optuna study name, storage URL) of a study given by its directory or its name under `root`.

    DashboardError (one line) when the study, its storage or the Optuna study in it does not exist.
    """
    import optuna

    given = Path(name_or_dir).expanduser()
    study_dir = given if given.is_dir() else Path(root).expanduser() / name_or_dir
    if not study_dir.is_dir():
        raise DashboardError(f"no study {name_or_dir!r}: not a directory, and no {study_dir.resolve()}/ "
                             "(give the study's directory, or --out for another studies root)")
    db = study_dir / OPTUNA_DB
    storage = recorded_optuna_storage(study_dir)
    if storage is None:
        if not db.is_file():
            raise DashboardError(f"study {study_dir.name!r} has no Optuna storage {db.resolve()} "
                                 "(only Optuna-searched studies have one)")
        storage = optuna_storage_url(study_dir)
    elif "***" in storage:
        raise DashboardError(f"study {study_dir.name!r} uses {storage}; its password is not stored: "
                             "run optuna-dashboard on that URL yourself")
    names = optuna.get_all_study_names(storage=_open(storage))
    if study_dir.name not in names:
        raise DashboardError(f"{storage} holds no Optuna study {study_dir.name!r} (it holds: {names or 'none'})")
    return study_dir.name, storage


def _open(storage: str) -> Any:
    """What Optuna and optuna-dashboard take: the URL itself, or the JournalStorage of `journal:PATH`."""
    return open_optuna_storage(storage) if storage.startswith(JOURNAL_PREFIX) else storage


def run_dashboard_cli(args: Any) -> int:
    """Resolve the study, print the URL, serve until interrupted; a missing study exits 2."""
    try:
        name, storage = study_storage(args.study, args.out or DEFAULT_STUDIES_ROOT)
    except (DashboardError, StorageError) as exc:
        print(f"yolox-ray dashboard: {exc}", file=sys.stderr)
        return 2
    try:
        from optuna_dashboard import run_server
    except ImportError:
        print("yolox-ray dashboard: optuna-dashboard is not installed (pip install optuna-dashboard)", file=sys.stderr)
        return 2
    print(f"optuna-dashboard for study {name} ({storage}): http://{HOST}:{args.port}/dashboard/  (Ctrl-C stops it)",
          flush=True)
    try:
        run_server(_open(storage), host=HOST, port=args.port)
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # e.g. the port is taken
        print(f"yolox-ray dashboard: cannot serve on {HOST}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
