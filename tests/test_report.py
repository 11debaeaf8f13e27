"""The study report: real MLflow runs (SQLite store), a real Optuna study, rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
from argparse import Namespace
from pathlib import Path

import pytest

from yolox_ray.report import ablation_stats, build_report, k_curve, load_study, run_report_cli

ROWS = ["yolov3_baseline", "decoupled_head", "strong_augmentation", "anchor_free", "multi_positives", "simota"]


def _log_study(client, exp_id: str, study: str, trials: list[dict], parent_tags: dict | None = None) -> str:
    """One parent run and a child per trial, laid out like yolox_ray.cluster.tracking writes them."""
    parent = client.create_run(exp_id, run_name=study, tags={"study": study, **(parent_tags or {})}).info.run_id
    for i, t in enumerate(trials):
        tags = {"study": study, "mlflow.parentRunId": parent, "seed": str(t["seed"])}
        if "row" in t:
            tags["row"] = t["row"]
        run = client.create_run(exp_id, run_name=f"{study}-{i:03d}", tags=tags).info.run_id
        for key, value in t.get("params", {}).items():
            client.log_param(run, key, value)
        for epoch, ap in enumerate(t["ap"]):
            client.log_metric(run, "AP", ap, step=epoch)
            client.log_metric(run, "AP50", min(1.0, 2 * ap), step=epoch)
        client.set_terminated(run)
    client.set_terminated(parent)
    return parent


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.tracking import MlflowClient
    import optuna

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("studies", artifact_location=(root / "artifacts").as_uri())
    # Ablation study: 6 rows x 2 seeds, 3 epochs each; final AP = 0.05 + 0.02 * row + 0.01 * seed.
    ablation = [{"row": r, "seed": s, "ap": [0.01, 0.03, 0.05 + 0.02 * i + 0.01 * s]}
                for i, r in enumerate(ROWS) for s in (0, 1)]
    _log_study(client, exp, "abl-demo", ablation, {"preset": "quick"})
    # k sweep: k in {5, 10, 15}, 2 seeds; plus an Optuna study in its own RDB storage.
    optuna_url = f"sqlite:///{root / 'optuna.db'}"
    ostudy = optuna.create_study(study_name="k-demo", storage=optuna_url, direction="maximize")
    sweep = []
    for k in (5, 10, 15):
        for s in (0, 1):
            ap = 0.20 + 0.01 * (k == 10) + 0.005 * s
            radius = 1.0 + 0.25 * s
            sweep.append({"seed": s, "ap": [0.1, ap], "params": {"assign.candidate_k": k, "assign.center_radius": radius}})
            trial = ostudy.ask({"assign.candidate_k": optuna.distributions.IntDistribution(5, 15),
                                "assign.center_radius": optuna.distributions.FloatDistribution(0.5, 3.0)})
            assert trial.params  # sampled; we overwrite the objective with our synthetic AP below
            ostudy.tell(trial, ap + 0.01 * trial.params["assign.candidate_k"] / 15)
    _log_study(client, exp, "k-demo", sweep, {"optuna_storage": optuna_url, "optuna_study": "k-demo"})
    return uri, client


def test_aggregation_from_real_mlflow_runs(store):
    uri, _ = store
    runs = load_study(uri, "abl-demo")
    assert len(runs.trials) == 12 and runs.parent_id is not None and runs.parent_tags["preset"] == "quick"
    stats = ablation_stats(runs.trials)
    assert [s.key for s in stats] == ROWS
    simota = stats[-1]
    expected = [100 * (0.05 + 0.02 * 5), 100 * (0.05 + 0.02 * 5 + 0.01)]
    assert simota.ap_mean == pytest.approx(statistics.fmean(expected))
    assert simota.ap_std == pytest.approx(statistics.stdev(expected)) and simota.n == 2
    assert simota.paper_ap == 47.3 and stats[0].paper_ap == 38.5
    assert runs.trials[0].ap_history[:2] == ((0, 0.01), (1, 0.03))
    points = k_curve(load_study(uri, "k-demo").trials)
    assert [p.k for p in points] == [5, 10, 15]
    assert points[1].ap_mean == pytest.approx(100 * statistics.fmean([0.21, 0.215]))
    assert points[0].ap_std == pytest.approx(100 * statistics.stdev([0.20, 0.205]))
    assert k_curve(runs.trials) == []  # k never varies in the ablation study


def test_report_command_writes_the_html(store, tmp_path, capsys):
    from yolox_ray.cli import main

    uri, _ = store
    assert main(["report", "--study", "abl-demo", "--out", str(tmp_path / "r"), "--tracking-uri", uri]) == 0
    assert str(tmp_path / "r" / "report.html") in capsys.readouterr().out
    assert (tmp_path / "r" / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_study_is_a_clear_error(store, tmp_path, capsys):
    uri, _ = store
    rc = run_report_cli(Namespace(study="nope", out=str(tmp_path), tracking_uri=uri))
    assert rc == 1
    out = capsys.readouterr().out
    assert "study='nope'" in out and "abl-demo" in out and "k-demo" in out


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is required: see docs/ci_requirements.md (apt-get install -y chromium)"
    return path


def _headless(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'chrome-profile'}", "--virtual-time-budget=5000"]
    return subprocess.run([_chromium(), *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(store, tmp_path):
    uri, client = store
    html_abl = build_report("abl-demo", tmp_path / "abl", uri, ui_url="http://127.0.0.1:5999")
    html_k = build_report("k-demo", tmp_path / "k", uri)
    text = html_abl.read_text()
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 2  # ablation bars + learning curves
    # Every run is linked into the MLflow UI.
    exp_id = client.get_experiment_by_name("studies").experiment_id
    for t in load_study(uri, "abl-demo").trials:
        assert f"http://127.0.0.1:5999/#/experiments/{exp_id}/runs/{t.run_id}" in text

    dom = _headless("--dump-dom", html_abl.as_uri(), tmp=tmp_path).stdout
    ids = set(re.findall(r'<img id="([^"]+)"[^>]*data-rendered="yes"', dom))
    assert ids == {"plot-ablation", "plot-learning-curves"}, dom[:2000]
    assert 'data-plots-rendered="2"' in dom
    assert dom.count('class="run-link"') == 12

    dom = _headless("--dump-dom", html_k.as_uri(), tmp=tmp_path).stdout
    ids = set(re.findall(r'<img id="([^"]+)"[^>]*data-rendered="yes"', dom))
    assert ids == {"plot-k-curve", "plot-importances", "plot-learning-curves"}, dom[:2000]
    assert "assign.candidate_k" in dom and "assign.center_radius" in dom  # importances table

    shot = tmp_path / "shot.png"
    _headless(f"--screenshot={shot}", "--window-size=1100,1400", html_k.as_uri(), tmp=tmp_path)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] == 1400 and pixels[..., :3].std() > 0.05  # not a blank page
