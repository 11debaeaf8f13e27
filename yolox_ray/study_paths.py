"""Where a study lives, defined once and import-light (no torch, no Ray).

`yolox-ray tune` and the study scripts write a study into `<studies root>/<name>/` (`--out`, default
`studies_out`; a local folder or a storage URI, see `yolox_ray.storage`). Its Optuna storage is, by
default, the SQLite file `optuna.db` inside a local study folder; `--optuna-storage` names another one:

- an RDB URL SQLAlchemy understands: `sqlite:////abs/optuna.db`, `postgresql://user@host/db`, `mysql://...`
  (keep passwords out of the URL: libpq reads `PGPASSWORD` / `~/.pgpass`; the URL is recorded);
- `journal:PATH`: Optuna's JournalStorage over a local (or NFS) log file.

Only the Tune driver opens it (Ray runs OptunaSearch in the driver process), so a path on the driver's
machine is enough, but it must outlive the driver for a resume. A study on remote storage (s3://...) has
no local folder to hold `optuna.db`, so an Optuna study there needs `--optuna-storage`. The choice is
recorded in `<study>/optuna.json`; the Optuna study's name is the study's name. The report and
`yolox-ray dashboard` read it from here. Each trial's log file is under `logs/` in a local study folder
(under the temp folder of the node that writes it for a study on remote storage).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from yolox_ray.storage import StorageError, StoragePath, as_storage

DEFAULT_STUDIES_ROOT = "studies_out"
DEFAULT_REPORTS_ROOT = "reports"  # local outputs (reports, plots, tables) of a study whose storage is not local
OPTUNA_DB = "optuna.db"
STUDY_FILE = "study.yaml"  # the resolved StudySpec (what a resume reloads)
TUNE_DIR = "tune"  # the study's first Tune experiment; a resume that grows `samples` adds tune_2/, tune_3/, ...
SEGMENTS_FILE = "tune_segments.json"  # the Tune experiments of the study, in order, with their samples

OPTUNA_STORAGE_FILE = "optuna.json"
JOURNAL_PREFIX = "journal:"


def optuna_storage_url(study_dir: str | Path | StoragePath) -> str:
    """The SQLite URL of a local study folder's default Optuna storage (whether or not the file exists yet)."""
    if isinstance(study_dir, StoragePath):
        study_dir = study_dir.local_path
    return f"sqlite:///{Path(study_dir).expanduser().resolve() / OPTUNA_DB}"


def segment_dir_name(index: int) -> str:
    """The directory of the study's `index`-th Tune experiment (0: ``tune``, 1: ``tune_2``, ...)."""
    return TUNE_DIR if index == 0 else f"{TUNE_DIR}_{index + 1}"


LOGS_DIR = "logs"


def trial_log_path(study_dir: str | Path | StoragePath, trial_id: str) -> Path:
    """A trial's log file `<study>/logs/trial_<id>.log`: its rank-0 Train worker's output and traceback
    (other ranks: `train.rank_log_path`), and the error the study driver got when the trial failed.

    Log files are appended line by line, which object stores cannot do, so a study on remote storage keeps
    them in `<temp>/yolox_ray_logs/<study>/` of the node that writes them (the failure line names it)."""
    if isinstance(study_dir, StoragePath):
        if not study_dir.local:
            import tempfile

            return Path(tempfile.gettempdir()) / "yolox_ray_logs" / study_dir.name / f"trial_{trial_id}.log"
        study_dir = study_dir.local_path
    return Path(study_dir) / LOGS_DIR / f"trial_{trial_id}.log"


def check_optuna_storage(text: str, *, what: str = "--optuna-storage") -> str:
    """`text` validated and normalised (file paths made absolute), without connecting: `journal:PATH`
    or an RDB URL whose SQLAlchemy dialect and driver are installed. StorageError names the problem."""
    text = text.strip()
    if text.startswith(JOURNAL_PREFIX):
        raw = text[len(JOURNAL_PREFIX):]
        if not raw or "://" in raw:
            raise StorageError(f"{what} {text!r}: expected journal:PATH, a log file on this machine or a shared "
                               "mount (e.g. journal:/shared/optuna.log)")
        path = Path(raw).expanduser().resolve()
        if not path.parent.is_dir():
            raise StorageError(f"{what} {text!r}: folder {path.parent} does not exist")
        return f"{JOURNAL_PREFIX}{path}"
    if "://" not in text:
        raise StorageError(f"{what} {text!r}: expected an RDB URL (sqlite:////abs/optuna.db, "
                           "postgresql://user@host/db, mysql://...) or journal:PATH")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(text)
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise StorageError(f"{what} {mask_password(text)!r}: not a database URL SQLAlchemy knows: {exc}") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise StorageError(f"{what} {mask_password(text)!r}: the database driver for {url.drivername} is not "
                           f"installed ({exc})") from None
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise StorageError(f"{what} {text!r}: an in-memory SQLite database does not survive the driver "
                               "(resume needs a file: sqlite:////abs/optuna.db)")
        path = Path(url.database).expanduser().resolve()
        if not path.parent.is_dir():
            raise StorageError(f"{what} {text!r}: folder {path.parent} does not exist")
        return url.set(database=str(path)).render_as_string(hide_password=False)
    return text


def mask_password(url: str) -> str:
    """The URL with any password replaced by ***, for logs, tags and the recorded choice."""
    if url.startswith(JOURNAL_PREFIX) or "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL: nothing to hide
        return url


def open_optuna_storage(url: str) -> Any:
    """The Optuna storage object of a checked URL (connects; creates the tables of a new RDB)."""
    import optuna

    try:
        if url.startswith(JOURNAL_PREFIX):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url[len(JOURNAL_PREFIX):]))
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - a refused connection, a locked file, a bad schema
        raise StorageError(f"cannot open the Optuna storage {mask_password(url)}: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def recorded_optuna_storage(study_dir: str | os.PathLike | StoragePath) -> str | None:
    """The Optuna storage a study was started with (`optuna.json`, password masked), else None."""
    path = as_storage(study_dir) / OPTUNA_STORAGE_FILE
    if not path.exists():
        return None
    return str(json.loads(path.read_text())["storage"])


def record_optuna_storage(study_dir: StoragePath, url: str, study_name: str) -> None:
    (study_dir / OPTUNA_STORAGE_FILE).write_text(json.dumps({"storage": mask_password(url), "study": study_name},
                                                            indent=1))


def study_optuna_storage(study_dir: str | os.PathLike | StoragePath) -> str | None:
    """Where a study's Optuna study is: the recorded choice, else `optuna.db` in a local folder, else None."""
    study_dir = as_storage(study_dir)
    recorded = recorded_optuna_storage(study_dir)
    if recorded is not None:
        return recorded
    return optuna_storage_url(study_dir) if study_dir.local else None
