"""The study scripts end to end on a real local Ray cluster with a real MLflow server and real Optuna:
the quick ablation at a tiny budget writes a table with every roadmap row and the paper's column and
resumes without rerunning anything; the SimOTA search writes its k-vs-AP curve and importances."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from yolox_ray.cluster import tracking
from yolox_ray.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PAPER_JSON = ROOT.parent / "shared" / "reference" / "paper_tables.json"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"study_{name}", ROOT / "studies" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny(cache: Path) -> list[str]:
    """A few seconds of training per trial: 1 epoch of 1 iteration on 16 images of 128 px."""
    return ["model.width=0.125", "data.input_size=[128,128]", "data.test_size=[128,128]", "data.random_size=[4,4]",
            "data.synthetic_train=16", "data.synthetic_val=8", "data.synthetic_size=128", f"data.cache_dir={cache}",
            "train.max_iters=1", "train.batch_size=4", "eval.batch_size=8"]






def test_bad_arguments_fail_before_any_cluster_work(tmp_path):
    import ray

    ablation = _script("ablation_table")
    tune_simota = _script("tune_simota")
    aug = _script("aug_schedule")
    cases = [
        (ablation, ["--preset", "paper"], "--data"),
        (ablation, ["--rows", "simota,yolo9000"], "yolo9000"),
        (ablation, ["--seeds", "0"], "--seeds"),
        (ablation, ["--data", str(tmp_path / "no_coco")], "not found"),
        (ablation, ["train.no_such_key=1"], "no_such_key"),
        (ablation, ["--epochs", "0"], "epochs"),
        (tune_simota, ["--k-grid", "--k-values", "4,10"], "5..15"),
        (tune_simota, ["--seeds", "3"], "--k-grid"),
        (tune_simota, ["--samples", "0"], "num_samples"),
        (aug, ["--preset", "paper"], "--data"),
    ]
    for module, argv, message in cases:
        with pytest.raises(ConfigError, match=message):
            module.main([*argv, "--out", str(tmp_path), "--tracking-uri", "http://127.0.0.1:9"])
    assert not ray.is_initialized()


@pytest.mark.slow
def test_quick_ablation_table_end_to_end_and_resume(server, ray_cluster, tmp_path, capsys):
    ablation = _script("ablation_table")
    # Two rows run (the two ends of the roadmap: coupled anchor-based YOLOv3 vs SimOTA); the table lists all six.
    argv = ["--epochs", "1", "--rows", "yolov3_baseline,simota", "--name", "abl-e2e", "--out", str(tmp_path / "out"), "--tracking-uri", server.uri,
            *_tiny(tmp_path / "data")]
    assert ablation.main(argv) == 0
    study = tmp_path / "out" / "abl-e2e"
    printed = capsys.readouterr().out

    reference = json.loads(PAPER_JSON.read_text())["ablation_roadmap"]["rows"]
    roadmap = [r for r in reference if r["key"] != "nms_free"]
    rows = list(csv.DictReader((study / "ablation_table.csv").open()))
    assert [r["key"] for r in rows] == [r["key"] for r in roadmap]
    for ours, paper in zip(rows, roadmap):
        assert ours["label"] == paper["label"] and float(ours["paper_ap"]) == paper["ap"]
        assert float(ours["paper_params_m"]) == paper["params_m"] and float(ours["paper_gflops"]) == paper["gflops"]
        assert float(ours["params_m"]) > 0 and float(ours["gflops"]) > 0
        assert ours["preset"] == "quick" and ours["commit"]
        if ours["key"] in ("yolov3_baseline", "simota"):
            assert ours["n_seeds"] == "1" and ours["n_missing"] == "0" and 0.0 <= float(ours["ap_mean"]) <= 100.0
        else:
            assert ours["n_seeds"] == "0" and ours["ap_mean"] == ""
    assert rows[0]["rows run"] == "yolov3_baseline, simota"
    # The coupled YOLOv3 head is a different network from the decoupled one (params of the model trained).
    assert rows[0]["params_m"] != rows[1]["params_m"] and rows[1]["params_m"] == rows[2]["params_m"]
    md = (study / "ablation_table.md").read_text()
    assert all(paper["label"] in md and f"{paper['ap']:.1f}" in md for paper in roadmap)
    assert "| row | AP (ours)" in md and md in printed

    client = tracking.client_for(server.uri)
    parent = json.loads((study / "mlflow.json").read_text())["run_id"]
    children = tracking.child_runs(server.uri, json.loads((study / "mlflow.json").read_text())["experiment_id"], parent)
    assert sorted(r.data.tags["row"] for r in children) == ["simota", "yolov3_baseline"]
    assert all(r.info.status == "FINISHED" and "AP" in r.data.metrics for r in children)
    artifacts = {a.path for a in client.list_artifacts(parent)}
    assert {"ablation_table.md", "ablation_table.csv"} <= artifacts
    assert client.get_run(parent).data.tags["preset"] == "quick"
    report = (study / "report" / "report.html").read_text()
    assert 'id="plot-ablation"' in report

    # Running the same command again continues the study: nothing is rerun or duplicated.
    trials_before = json.loads((study / "trials.json").read_text())["trials"]
    assert ablation.main(argv) == 0
    assert "resuming the study" in capsys.readouterr().out
    trials_after = json.loads((study / "trials.json").read_text())["trials"]
    assert sorted((t["trial_id"], t["run_id"], t["metrics"].get("AP")) for t in trials_after) == \
           sorted((t["trial_id"], t["run_id"], t["metrics"].get("AP")) for t in trials_before)
    assert len(tracking.child_runs(server.uri, children[0].info.experiment_id, parent)) == 2


@pytest.mark.slow
def test_every_row_learns_a_little_and_logs_its_assignment_diagnostics(server, ray_cluster, tmp_path):
    """All six quick rows at a reduced budget (3 epochs x 4 steps, no L1 tail so the loss terms stay the
    same): every row's loss falls from its first steps to its last, and the diagnostics reach MLflow."""
    ablation = _script("ablation_table")
    tiny = [a for a in _tiny(tmp_path / "data") if not a.startswith("train.max_iters")]
    argv = ["--epochs", "3", "--name", "abl-rows", "--out", str(tmp_path / "out"), "--tracking-uri", server.uri,
            *tiny, "train.max_iters=4", "train.no_aug_epochs=0", "train.print_interval=1", "train.warmup_epochs=0.5",
            "train.lr_per_image=0.0025"]
    assert ablation.main(argv) == 0
    study = tmp_path / "out" / "abl-rows"
    info = json.loads((study / "mlflow.json").read_text())
    client = tracking.client_for(server.uri)
    children = tracking.child_runs(server.uri, info["experiment_id"], info["run_id"])
    assert sorted(r.data.tags["row"] for r in children) == sorted(
        ["yolov3_baseline", "decoupled_head", "strong_augmentation", "anchor_free", "multi_positives", "simota"])
    for run in children:
        row = run.data.tags["row"]
        losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)]
        assert len(losses) == 12, row
        assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, (row, losses)
        metrics = run.data.metrics
        for name in ("fg_per_gt", "pos_iou", "pos_iou_zero", "pos_score", "train/pos_iou"):
            assert name in metrics, (row, name)
        assert 0.0 <= metrics["pos_iou_zero"] <= 1.0 and 0.0 <= metrics["pos_iou"] <= 1.0
        assert 0.0 < metrics["pos_score"] < 1.0
        # One positive per GT for the single-positive rows, the 3x3 area for multi positives, and at
        # least one (its dynamic k, small while the boxes are untrained) for SimOTA.
        if row in ("yolov3_baseline", "decoupled_head", "strong_augmentation", "anchor_free"):
            assert metrics["fg_per_gt"] <= 1.0, row
        elif row == "multi_positives":
            assert metrics["fg_per_gt"] > 1.5, row
        else:
            assert metrics["fg_per_gt"] >= 1.0, row
    table = (study / "ablation_table.md").read_text()
    assert "anchors (rows 1-3)" in table and " px" in table


@pytest.mark.slow
def test_simota_search_writes_k_curve_and_importances(server, ray_cluster, tmp_path):
    tune_simota = _script("tune_simota")
    argv = ["--samples", "2", "--epochs", "1", "--name", "simota-e2e", "--out", str(tmp_path / "out"),
            "--tracking-uri", server.uri, *_tiny(tmp_path / "data")]
    assert tune_simota.main(argv) == 0
    study = tmp_path / "out" / "simota-e2e"
    trials = json.loads((study / "trials.json").read_text())["trials"]
    assert len(trials) == 2 and all(t["status"] == "finished" for t in trials)
    ks = [t["params"]["assign.candidate_k"] for t in trials]
    assert all(isinstance(k, int) and 5 <= k <= 15 for k in ks)

    curve = json.loads((study / "k_curve.json").read_text())
    assert sorted(p["k"] for p in curve) == sorted(set(ks)) and sum(p["n"] for p in curve) == 2
    assert (study / "k_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    import optuna

    optuna_study = optuna.load_study(study_name="simota-e2e", storage=f"sqlite:///{study / 'optuna.db'}")
    assert len([t for t in optuna_study.trials if t.state.name == "COMPLETE"]) == 2
    importances = json.loads((study / "importances.json").read_text())
    assert set(importances) == set(optuna_study.best_params) and len(importances) == 8
    assert sum(importances.values()) == pytest.approx(1.0)
    assert (study / "importances.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (study / "best_config.yaml").exists()
    report = (study / "report" / "report.html").read_text()
    assert 'id="plot-importances"' in report and 'id="plot-k-curve"' in report
