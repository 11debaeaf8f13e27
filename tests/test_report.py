"""The study report: real MLflow runs (SQLite store), a real Optuna study, rendered in headless Chromium."""

from __future__ import annotations

import re
import statistics
from argparse import Namespace

import pytest

from headless_chromium import console_messages as _console_messages
from headless_chromium import headless as _headless
from headless_chromium import rendered as _rendered
from yolox_ray.report import (
    Schedule,
    ablation_stats,
    build_report,
    k_curve,
    learning_curves,
    load_study,
    row_deltas,
    run_report_cli,
    study_schedule,
)

ROWS = ["yolov3_baseline", "decoupled_head", "strong_augmentation", "anchor_free", "multi_positives", "simota"]
# A short quick-style schedule (the quick preset's until it went to 72 epochs): 18 epochs, evaluated at 6
# and 12, then every epoch of the 6 no-aug ones.
EPOCHS, EVAL_STEPS = 18, [6, 12, 13, 14, 15, 16, 17, 18]
SCHEDULE = {"train.epochs": 18, "train.warmup_epochs": 1.0, "train.no_aug_epochs": 6}


def _log_study(client, exp_id: str, study: str, trials: list[dict], parent_tags: dict | None = None) -> str:
    """One parent run and a child per trial, laid out like yolox_ray.cluster.tracking writes them:
    AP/AP50 at the evaluated epochs `t["steps"]`, the loss at every epoch 1..`t["epochs"]`."""
    from mlflow.entities import Metric, Param

    parent = client.create_run(exp_id, run_name=study, tags={"study": study, **(parent_tags or {})}).info.run_id
    for i, t in enumerate(trials):
        tags = {"study": study, "mlflow.parentRunId": parent, "seed": str(t["seed"]), **t.get("tags", {})}
        if "row" in t:
            tags["row"] = t["row"]
        run = client.create_run(exp_id, run_name=f"{study}-{i:03d}", tags=tags).info.run_id
        metrics = [Metric("AP", ap, 0, step) for step, ap in zip(t["steps"], t["ap"])]
        metrics += [Metric("AP50", min(1.0, 2 * ap), 0, step) for step, ap in zip(t["steps"], t["ap"])]
        metrics += [Metric("loss", 5.0 - 0.1 * e, 0, e) for e in range(1, t["epochs"] + 1)]
        client.log_batch(run, metrics=metrics, params=[Param(k, str(v)) for k, v in t.get("params", {}).items()])
        client.set_terminated(run)
    client.set_terminated(parent)
    return parent


def _ablation_ap(i: int, s: int) -> list[float]:
    """Row i, seed s: rising over the evaluated epochs to a final 0.05 + 0.02 * i + 0.01 * s."""
    final = 0.05 + 0.02 * i + 0.01 * s
    return [final * (n + 1) / len(EVAL_STEPS) for n in range(len(EVAL_STEPS))]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.tracking import MlflowClient
    import optuna

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("studies", artifact_location=(root / "artifacts").as_uri())
    # Ablation study: 6 rows x 2 seeds over that 18-epoch schedule.
    ablation = [{"row": r, "seed": s, "ap": _ablation_ap(i, s), "steps": EVAL_STEPS, "epochs": EPOCHS,
                 "params": SCHEDULE} for i, r in enumerate(ROWS) for s in (0, 1)]
    _log_study(client, exp, "abl-demo", ablation, {"preset": "quick"})
    # k sweep: k in {5, 10, 15}, 2 seeds, 4 epochs; plus an Optuna study in its own RDB storage in which
    # trials 1 and 4 were stopped by ASHA after 2 of 4 epochs (OptunaSearch tells them COMPLETE).
    optuna_url = f"sqlite:///{root / 'optuna.db'}"
    ostudy = optuna.create_study(study_name="k-demo", storage=optuna_url, direction="maximize")
    sweep = []
    for n, (k, s) in enumerate((k, s) for k in (5, 10, 15) for s in (0, 1)):
        ap = 0.20 + 0.01 * (k == 10) + 0.005 * s
        radius = 1.0 + 0.25 * s
        early = n in (1, 4)
        sweep.append({"seed": s, "ap": [0.1, ap] if not early else [0.1], "steps": [2, 4], "epochs": 2 if early else 4,
                      "params": {"assign.candidate_k": k, "assign.center_radius": radius, "train.epochs": 4,
                                 "train.warmup_epochs": 1, "train.no_aug_epochs": 1},
                      "tags": {"early_stopped": str(early).lower()}})
        trial = ostudy.ask({"assign.candidate_k": optuna.distributions.IntDistribution(5, 15),
                            "assign.center_radius": optuna.distributions.FloatDistribution(0.5, 3.0)})
        value = ap + 0.01 * trial.params["assign.candidate_k"] / 15 - 0.02 * trial.params["assign.center_radius"]
        for epoch in range(1, (2 if early else 4) + 1):
            trial.report(value * epoch / 4, epoch)
        ostudy.tell(trial, value * (2 if early else 4) / 4)
    _log_study(client, exp, "k-demo", sweep, {"optuna_storage": optuna_url, "optuna_study": "k-demo",
                                              "searcher": "optuna"})
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
    assert [step for step, _ in runs.trials[0].ap_history] == EVAL_STEPS
    assert [step for step, _ in runs.trials[0].loss_history] == list(range(1, 19))
    points = k_curve([t for t in load_study(uri, "k-demo").trials if t.tags["early_stopped"] == "false"])
    assert [p.k for p in points] == [5, 10, 15]
    assert points[2].ap_mean == pytest.approx(100 * 0.205) and points[2].n == 1  # k 15 seed 0 stopped early
    assert points[1].ap_mean == pytest.approx(100 * statistics.fmean([0.21, 0.215])) and points[1].n == 2
    assert k_curve(runs.trials) == []  # k never varies in the ablation study


def test_gains_beside_the_papers_gains(store):
    uri, _ = store
    deltas = row_deltas(ablation_stats(load_study(uri, "abl-demo").trials))
    assert [d.key for d in deltas] == ROWS[1:]
    # Ours: final AP rises by 0.02 per row for both seeds -> +2.00 points per step; spread of a
    # difference of two 2-seed means whose seeds differ by 1 point: sqrt(0.5/2 + 0.5/2).
    assert [d.ours for d in deltas] == pytest.approx([2.0] * 5)
    assert [d.ours_std for d in deltas] == pytest.approx([0.5 ** 0.5] * 5)
    # The paper's Table 2: 38.5 -> 39.6 -> 42.0 -> 42.9 -> 45.0 -> 47.3.
    assert [d.paper for d in deltas] == pytest.approx([1.1, 2.4, 0.9, 2.1, 2.3])
    # A study that skips rows compares each row with the one above it in the study.
    stats = [s for s in ablation_stats(load_study(uri, "abl-demo").trials) if s.key in ("yolov3_baseline", "simota")]
    (only,) = row_deltas(stats)
    assert only.ours == pytest.approx(10.0) and only.paper == pytest.approx(47.3 - 38.5)


def test_learning_curves_cover_the_whole_schedule(store):
    uri, _ = store
    trials = load_study(uri, "abl-demo").trials
    assert study_schedule(trials) == Schedule(epochs=18, warmup_epochs=1.0, no_aug_epochs=6)
    curves = learning_curves(trials)
    assert len(curves) == len(ROWS) and curves[0].label.startswith("YOLOv3 baseline (2 seeds")
    assert [step for step, _ in curves[0].ap] == EVAL_STEPS  # both evaluations before the no-aug tail too
    assert [step for step, _ in curves[0].loss] == list(range(1, 19))
    # Mean over the two seeds, in percent: row 0 ends at (5 + 6) / 2, its first evaluation is 1/8 of that.
    assert curves[0].ap[-1][1] == pytest.approx(5.5) and curves[0].ap[0][1] == pytest.approx(5.5 / 8)


def test_page_opens_with_the_result_and_ends_with_the_metadata(store, tmp_path):
    uri, _ = store
    text = build_report("abl-demo", tmp_path / "abl", uri).read_text()
    h2 = re.findall(r"<h2>([^<]*)</h2>", text)
    assert h2[0] == "Result: the ablation roadmap" and h2[1] == "Learning curves" and h2[-1].startswith("Runs")
    table = text[text.index("id='ablation-table'"):text.index("</table>", text.index("id='ablation-table'"))]
    assert "+2.00" in table and "+1.1" in table and "+2.4" in table and "47.3" in table
    details = text.index("<details id='metadata'>")
    assert details > text.index("<table id='runs'>") and "<details id='metadata' open" not in text
    assert "preset" in text[details:] and "train.no_aug_epochs" in text[details:]  # raw key lists inside
    assert "Plotly.newPlot" not in text and len(text) < 1_000_000  # no Optuna study: plotly.js not inlined

    text = build_report("k-demo", tmp_path / "k", uri).read_text()
    h2 = re.findall(r"<h2>([^<]*)</h2>", text)
    assert h2[:4] == ["Result", "SimOTA candidate k", "Learning curves", "Optuna analysis"]
    assert "first trial (the official defaults)" in text
    for plot in ("history", "parallel", "slice", "contour"):
        assert f'id="plot-optuna-{plot}"' in text
    assert "4 full-length trials, 2 early-stopped by ASHA (Optuna trials 1, 4)" in text
    assert "early-stopped by ASHA (value at its last rung)" in text  # the history's marked trace
    assert re.search(r"<script[^>]*\bsrc=", text) is None  # offline: plotly.js inlined, no CDN
    assert text.count("Plotly.newPlot") >= 4


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


@pytest.mark.slow
def test_report_renders_in_headless_chromium(store, tmp_path):
    uri, client = store
    html_abl = build_report("abl-demo", tmp_path / "abl", uri, ui_url="http://127.0.0.1:5999")
    html_k = build_report("k-demo", tmp_path / "k", uri)
    text = html_abl.read_text()
    # Every run is linked into the MLflow UI.
    exp_id = client.get_experiment_by_name("studies").experiment_id
    for t in load_study(uri, "abl-demo").trials:
        assert f"http://127.0.0.1:5999/#/experiments/{exp_id}/runs/{t.run_id}" in text

    run = _headless("--dump-dom", html_abl.as_uri(), tmp=tmp_path)
    dom = run.stdout
    assert _rendered(dom) == {"plot-ablation", "plot-learning-curves"}, dom[:2000]
    assert 'data-plots="2"' in dom and 'data-plots-rendered="2"' in dom and 'data-page-errors="0"' in dom
    assert dom.count('class="run-link"') == 12
    assert _console_messages(run.stderr) == []

    run = _headless("--dump-dom", html_k.as_uri(), tmp=tmp_path)
    dom = run.stdout
    expected = {"plot-k-curve", "plot-learning-curves", "plot-importances", "plot-optuna-history",
                "plot-optuna-parallel", "plot-optuna-slice", "plot-optuna-contour"}
    assert _rendered(dom) == expected, dom[:2000]
    assert 'data-plots="7"' in dom and 'data-plots-rendered="7"' in dom, re.findall(r"<body[^>]*>", dom)
    assert 'data-page-errors="0"' in dom, dom[dom.find('id="page-errors"'):][:1000]
    assert _console_messages(run.stderr) == []
    assert "early-stopped by ASHA" in dom  # the history plot's legend, drawn by plotly
    assert "assign.candidate_k" in dom and "assign.center_radius" in dom  # importances table

    shot = tmp_path / "shot.png"
    _headless(f"--screenshot={shot}", "--window-size=1100,1400", html_k.as_uri(), tmp=tmp_path)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] == 1400 and pixels[..., :3].std() > 0.05  # not a blank page


@pytest.mark.slow
def test_a_broken_page_is_caught(tmp_path):
    """The check can fail: a page with a script error and an undrawn plot reports both."""
    page = tmp_path / "broken.html"
    from yolox_ray import report  # the page's own scripts, as the report writes them

    page.write_text(f"<html><head><script>{report._ERROR_SCRIPT}</script><script>{report._MARK_SCRIPT}</script>"
                    "</head><body><img id='p1' class='plot' src='missing.png'><div id='p2' class='plot'></div>"
                    "<script>undefinedFunction();</script><pre id='page-errors' hidden></pre></body></html>")
    run = _headless("--dump-dom", page.as_uri(), tmp=tmp_path)
    assert _rendered(run.stdout) == set()
    assert 'data-plots="2"' in run.stdout and 'data-plots-rendered="0"' in run.stdout
    errors = int(re.search(r'data-page-errors="(\d+)"', run.stdout).group(1))
    assert errors >= 2  # the failed image and the ReferenceError
    assert any("undefinedFunction" in m for m in _console_messages(run.stderr))
