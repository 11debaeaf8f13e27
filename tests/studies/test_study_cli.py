"""The flags and checks the study scripts share (yolox_ray.study_cli)."""

from __future__ import annotations

import argparse

import pytest

from yolox_ray.config import ConfigError
from yolox_ray.study_cli import add_study_args, run_script, study_data, study_overrides


def _parse(argv: list[str], **kwargs) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="quick")
    add_study_args(p, name_help="study name", **kwargs)
    return p.parse_args(argv)


def test_defaults_and_overrides():
    args = _parse(["train.epochs=3", "assign.candidate_k=12"])
    assert (args.data, args.address, args.workers, args.max_concurrent, args.out) == \
        ("synthetic", None, 1, 2, "studies_out")
    assert _parse([], max_concurrent=None).max_concurrent is None
    assert study_overrides(args.overrides) == {"train.epochs": "3", "assign.candidate_k": "12"}
    with pytest.raises(ConfigError, match=r"expected key=value, got \['oops'\]"):
        study_overrides(["train.epochs=3", "oops"])


def test_data_paths(tmp_path, monkeypatch):
    assert study_data(_parse([])) == "synthetic"
    monkeypatch.chdir(tmp_path)
    assert study_data(_parse(["--data", "coco"])) == str(tmp_path / "coco")  # absolute: workers run elsewhere
    with pytest.raises(ConfigError, match="--preset paper trains on COCO"):
        study_data(_parse(["--preset", "paper"]))


def test_run_script_turns_config_errors_into_exit_code_2(capsys):
    def bad() -> int:
        raise ConfigError("train.epochs: must be >= 1")

    with pytest.raises(SystemExit) as exc:
        run_script(bad, "demo")
    assert exc.value.code == 2
    assert "demo: invalid configuration: train.epochs: must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        run_script(lambda: 0, "demo")
    assert exc.value.code == 0
