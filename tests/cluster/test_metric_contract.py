"""The metric names are one contract (`yolox_ray/metrics.py`): renaming one there renames it in the
MLflow runs, the Tune results, trials.json and the report alike.

The package is copied with `AP` and `AP50` renamed in metrics.py only, and a one-trial study runs on
that copy in a fresh process with its own local Ray cluster and MLflow server (the copy reaches the
Tune trial and its Train worker through PYTHONPATH, which the raylet passes on). Any module that
spelled a name itself would log, forward or read the old one, and the checks below would see it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import yolox_ray

pytestmark = pytest.mark.slow

RENAMED = {"AP": "boxAP", "AP50": "boxAP_at50"}

STUDY = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import yolox_ray
    from yolox_ray.cluster import tracking
    from yolox_ray.cluster.tune import StudyRow, StudySpec, run_study
    from yolox_ray.report import build_report, load_study

    work = Path(sys.argv[1])
    tiny = {"model.width": 0.125, "model.num_classes": 8, "data.input_size": [128, 128],
            "data.test_size": [128, 128], "data.random_size": [4, 4], "data.synthetic_train": 16,
            "data.synthetic_val": 8, "data.synthetic_size": 128, "data.workers": 0,
            "data.cache_dir": str(work / "cache"), "train.epochs": 2, "train.warmup_epochs": 1,
            "train.no_aug_epochs": 1, "train.max_iters": 2, "train.batch_size": 4}
    spec = StudySpec(name="renamed", searcher="grid", preset="yolox_nano", overrides=tiny, seeds=(0,),
                     rows=(StudyRow("simota"),), max_concurrent=1, max_failures=0)
    with tracking.tracking_session(None, work / "mlruns") as uri:
        result = run_study(spec, storage_root=work / "studies", tracking_uri=uri, num_cpus=2,
                           ray_temp_dir=sys.argv[2])
        (trial,) = result.trials
        run = tracking.client_for(uri).get_run(trial.run_id)
        runs = load_study(uri, "renamed")
        report = build_report("renamed", work / "report", uri)
        facts = {
            "package": yolox_ray.__file__, "study_metric": result.metric, "status": trial.status,
            "error": trial.error, "tune": sorted(trial.metrics), "mlflow": sorted(run.data.metrics),
            "trials_json": sorted(json.loads((work / "studies" / "renamed" / "trials.json").read_text())
                                  ["trials"][0]["metrics"]),
            "report_ap": [t.ap for t in runs.trials], "report_ap50": [t.ap50 for t in runs.trials],
            "report_history": [len(t.ap_history) for t in runs.trials], "report_exists": report.exists(),
        }
    (work / "facts.json").write_text(json.dumps(facts))
""")


def renamed_package(dest: Path) -> Path:
    src = Path(yolox_ray.__file__).parent
    shutil.copytree(src, dest / "yolox_ray", ignore=shutil.ignore_patterns("__pycache__"))
    metrics = dest / "yolox_ray" / "metrics.py"
    text = metrics.read_text()
    for old, new in RENAMED.items():
        line = f'{old} = "{old}"\n'
        assert line in text, f"metrics.py no longer defines {line!r}"
        text = text.replace(line, f'{old} = "{new}"\n')
    metrics.write_text(text)
    return dest


def test_renaming_a_metric_in_the_contract_renames_it_everywhere(tmp_path):
    pkg = renamed_package(tmp_path / "pkg")
    (tmp_path / "study.py").write_text(STUDY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "MLFLOW_TRACKING"))}
    env["PYTHONPATH"] = os.pathsep.join([str(pkg), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray_temp = tempfile.mkdtemp(prefix="ray_", dir="/tmp")  # Ray's socket paths must stay short
    try:
        proc = subprocess.run([sys.executable, str(tmp_path / "study.py"), str(tmp_path), ray_temp], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=1200)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    facts = json.loads((tmp_path / "facts.json").read_text())
    assert facts["package"].startswith(str(pkg)), facts["package"]
    assert facts["status"] == "finished", facts["error"]
    ap, ap50 = RENAMED["AP"], RENAMED["AP50"]
    assert facts["study_metric"] == ap  # a study's default metric
    for where in ("tune", "mlflow", "trials_json"):
        names = set(facts[where])
        assert {ap, ap50, f"best_{ap}"} <= names, (where, sorted(names))
        assert not {"AP", "AP50", "best_AP"} & names, (where, sorted(names))
    # The report reads the renamed metric: every trial has its AP, AP50 and AP curve.
    assert facts["report_ap"][0] is not None and facts["report_ap50"][0] is not None
    assert facts["report_history"][0] >= 1 and facts["report_exists"]
