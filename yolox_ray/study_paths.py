"""Where a study lives on disk, defined once and import-light (no torch, no Ray).

`yolox-ray tune` and the study scripts write a study into `<studies root>/<name>/` (`--out`, default `studies_out`),
with its Optuna RDB storage `optuna.db` inside (the Optuna study's name is the study's name) and each trial's
log file under `logs/`.
The report and `yolox-ray dashboard` read it from here.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_STUDIES_ROOT = "studies_out"
OPTUNA_DB = "optuna.db"
STUDY_FILE = "study.yaml"  # the resolved StudySpec (what a resume reloads)
TUNE_DIR = "tune"  # the study's first Tune experiment; a resume that grows `samples` adds tune_2/, tune_3/, ...
SEGMENTS_FILE = "tune_segments.json"  # the Tune experiments of the study, in order, with their samples


def optuna_storage_url(study_dir: str | Path) -> str:
    """The SQLite URL of a study directory's Optuna storage (whether or not the file exists yet)."""
    return f"sqlite:///{Path(study_dir).expanduser().resolve() / OPTUNA_DB}"


def segment_dir_name(index: int) -> str:
    """The directory of the study's `index`-th Tune experiment (0: ``tune``, 1: ``tune_2``, ...)."""
    return TUNE_DIR if index == 0 else f"{TUNE_DIR}_{index + 1}"
LOGS_DIR = "logs"


def trial_log_path(study_dir: str | Path, trial_id: str) -> Path:
    """A trial's log file `<study>/logs/trial_<id>.log`: its rank-0 Train worker's output and traceback
    (other ranks: `train.rank_log_path`), and the error the study driver got when the trial failed."""
    return Path(study_dir) / LOGS_DIR / f"trial_{trial_id}.log"
