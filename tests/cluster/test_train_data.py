"""Issue 14 from the driver: bad data is refused before Ray starts (exit code 2, one line), skips
are printed before the cluster starts and land in MLflow, deterministic errors are not retried."""

from __future__ import annotations

import re

import io
import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.2"

from yolox_ray.cli import main  # noqa: E402
from tiny_config import tiny_cfg  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from data_helpers import MALFORMED, write_coco_root  # noqa: E402

ARGS = ["--epochs", "20", "model.num_classes=2"]


class RayStarted(BaseException):
    """Raised instead of starting Ray: everything before it is the pre-Ray path."""


@pytest.fixture
def no_ray(monkeypatch):
    import ray

    from yolox_ray.cluster import ray_setup

    def refuse(*args, **kwargs):
        raise RayStarted()

    monkeypatch.setattr(ray_setup, "init_ray", refuse)
    assert not ray.is_initialized()
    yield
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return write_coco_root(tmp_path_factory.mktemp("pristine") / "coco")


@pytest.fixture
def dataset(pristine, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(pristine, root)
    return root


@pytest.mark.parametrize("case, message", [
    ("invalid_json", r"annotation file .*instances_train2017\.json is not valid JSON: "),
    ("empty_images", r"annotation file .*instances_train2017\.json lists no images: the dataset is empty"),
    ("duplicate_ids", r"annotation file .*instances_train2017\.json: duplicate image ids \[1\]"),
    ("all_background", r"annotation file .*instances_train2017\.json: no usable .*every image is background"),
])
def test_fatal_data_exits_2_before_ray(no_ray, dataset, capsys, case, message):
    import re

    MALFORMED[case](dataset)
    assert main(["train", "--data", str(dataset), *ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("yolox-ray: dataset error: ")
    assert re.search(message, err), err


def test_missing_files_and_too_many_unreadable_exit_2(no_ray, dataset, capsys):
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        (dataset / "train2017" / name).unlink()
    assert main(["train", "--data", str(dataset), *ARGS]) == 2
    assert "3 of 40 images listed in" in capsys.readouterr().err
    shutil.rmtree(dataset / "val2017")
    assert main(["train", "--data", str(dataset), *ARGS]) == 2
    # One line naming the missing path (the class-count lookup finds it first: "not found").
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(r"val2017 (does not exist|not found)", err), err
    (dataset / "annotations" / "instances_train2017.json").unlink()
    assert main(["train", "--data", str(dataset), *ARGS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(r"instances_train2017\.json (does not exist|not found)", err), err


@pytest.mark.parametrize("case, line", [
    ("missing_jpeg", "data train: 1 unreadable images skipped: 000007.jpg (missing)"),
    ("truncated_jpeg", "data train: 1 unreadable images skipped: 000007.jpg (truncated JPEG (no end-of-image marker))"),
    ("zero_byte_jpeg", "data train: 1 unreadable images skipped: 000007.jpg (empty file)"),
    ("unknown_image_id", "data train: 1 annotations on unknown image ids"),
    ("unknown_category_id", "data train: 1 annotations with unknown category ids"),
    ("zero_width_box", "data train: 1 boxes with non-positive width/height"),
    ("negative_height_box", "data train: 1 boxes with non-positive width/height"),
    ("out_of_image_box", "data train: 1 boxes outside their image"),
    ("nan_box", "data train: 1 boxes with non-finite (NaN/inf) coordinates"),
    ("300_boxes", "data train: 1 images with more than data.max_labels=120 boxes (each sample keeps the first 120)"),
])
def test_skips_are_printed_before_ray_starts(no_ray, dataset, capsys, case, line):
    MALFORMED[case](dataset)
    with pytest.raises(RayStarted):  # not refused: the run would go on
        main(["train", "--data", str(dataset), *ARGS])
    out = capsys.readouterr().out
    assert line.replace("data train: 1 unreadable", "data train: 1 unreadable") in out, out
    assert "data val: 6 images, 6 boxes" in out


def test_clean_data_prints_only_the_sizes(no_ray, dataset, capsys):
    with pytest.raises(RayStarted):
        main(["train", "--data", str(dataset), *ARGS])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("data ")]
    assert lines == [f"data train: 40 images, 40 boxes ({dataset / 'annotations/instances_train2017.json'})",
                     f"data val: 6 images, 6 boxes ({dataset / 'annotations/instances_val2017.json'})"]


def _study_file(tmp_path, root):
    import yaml

    spec = {"name": "datacheck", "preset": "yolox_nano", "searcher": "grid", "num_samples": 1,
            "overrides": {"data.root": str(root), "model.num_classes": 2, "train.epochs": 4,
                          "train.warmup_epochs": 1, "train.no_aug_epochs": 1},
            "space": {"assign.candidate_k": {"type": "grid", "values": [10]}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_study_refuses_bad_data_before_ray(no_ray, dataset, tmp_path, capsys):
    MALFORMED["duplicate_ids"](dataset)
    out = tmp_path / "out"
    assert main(["tune", "--study", str(_study_file(tmp_path, dataset)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yolox-ray: dataset error: annotation file ") and "duplicate image ids [1]" in err
    assert not out.exists()


def test_study_prints_skips_before_ray(no_ray, dataset, tmp_path, capsys, monkeypatch):
    from yolox_ray.cluster import tune

    monkeypatch.setattr(tune, "init_ray", lambda *a, **k: (_ for _ in ()).throw(RayStarted()))
    MALFORMED["nan_box"](dataset)
    with pytest.raises(RayStarted):
        main(["tune", "--study", str(_study_file(tmp_path, dataset)), "--out", str(tmp_path / "out")])
    assert "[datacheck] data train: 1 boxes with non-finite (NaN/inf) coordinates" in capsys.readouterr().out


def test_study_with_one_bad_row_warns_and_goes_on(no_ray, dataset, tmp_path, capsys, monkeypatch):
    from yolox_ray.cluster import tune
    from yolox_ray.cluster.tune import StudyRow, StudySpec, run_study

    monkeypatch.setattr(tune, "init_ray", lambda *a, **k: (_ for _ in ()).throw(RayStarted()))
    overrides = {"model.num_classes": 2, "train.epochs": 4, "train.warmup_epochs": 1, "train.no_aug_epochs": 1}
    # A missing root is refused when the spec is built (yolox_ray.study); a corrupt train file is only
    # found by the data pre-flight, which warns and lets that row's trials fail.
    broken = tmp_path / "broken_coco"
    shutil.copytree(dataset, broken)
    (broken / "annotations" / "instances_train2017.json").write_text("{not json")
    spec = StudySpec(name="onebad", searcher="grid", preset="yolox_nano", overrides=overrides, seeds=(0,),
                     rows=(StudyRow("broken", overrides={"data.root": str(broken)}),
                           StudyRow("good", overrides={"data.root": str(dataset)})))
    with pytest.raises(RayStarted):
        run_study(spec, storage_root=tmp_path / "studies")
    out = capsys.readouterr().out
    assert "[onebad] data train: 40 images, 40 boxes" in out
    assert "[onebad] warning: row broken: dataset error: " in out and "(its trials will fail)" in out
    assert "instances_train2017.json" in out


# ------------------------------------------------------------------------------------------------
# On a real Ray cluster


class CountStarts:
    """Appends a line to `path` each time a worker starts training (i.e. per attempt)."""

    def __init__(self, path: str):
        self.path = path

    def on_train_start(self, trainer):
        with open(self.path, "a") as f:
            f.write(f"{trainer.rank}\n")


class PoisonWeights:
    def on_train_start(self, trainer):
        import torch

        with torch.no_grad():
            next(trainer.model.parameters()).fill_(float("nan"))




@pytest.mark.slow
def test_deterministic_error_is_not_retried(ray_cluster, tmp_path):
    import time

    from yolox_ray.cluster.train import DeterministicTrainingError, make_trainer

    cfg = tiny_cfg(str(tmp_path / "cache"), epochs=2, no_aug_epochs=0)
    starts = tmp_path / "starts.txt"
    trainer = make_trainer(cfg, run_name="nan", storage_path=str(tmp_path), max_failures=2,
                           worker_callbacks=[CountStarts(str(starts)), PoisonWeights()])
    t0 = time.perf_counter()
    with pytest.raises(DeterministicTrainingError) as info:
        trainer.fit()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("NonFiniteLossError: non-finite loss at iteration 0 (epoch 1, step 1/2, rank 0)")
    assert message.endswith("(a deterministic error: not retried)")
    assert starts.read_text().splitlines() == ["0"]  # one attempt, although max_failures=2
    assert trainer.attempts == 1
    print(f"failed in {time.perf_counter() - t0:.1f} s")


@pytest.mark.slow
def test_corrupt_image_is_skipped_and_counted_in_mlflow(ray_cluster, tmp_path, tmp_path_factory, request):
    from yolox_ray.cluster import tracking
    from yolox_ray.cluster.train import run_training
    from yolox_ray.data import generate_synthetic

    root = generate_synthetic(tmp_path / "synth", 24, 4, 128, seed=5)  # COCO 2017 layout
    victim = sorted((root / "train2017").iterdir())[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])  # truncated: 1 of 24 (4 %) is under the 5 % limit
    cfg = tiny_cfg(str(tmp_path / "cache"), epochs=1, no_aug_epochs=0,
                   **{"data.root": str(root), "train.warmup_epochs": 0, "train.eval_interval": 1})
    srv = tracking.start_server(tmp_path_factory.getbasetemp() / "mlflow_shared")
    if srv.owned:
        request.config.add_cleanup(lambda: tracking.stop_server(srv))
    out = io.StringIO()
    summary = run_training(cfg, storage=str(tmp_path / "runs"), name="corrupt", tracking_uri=srv.uri, out=out)
    text = out.getvalue()
    assert summary["checkpoint"] is not None and summary["epochs"] == 1
    assert f"data train: 1 unreadable images skipped: {victim.name} (truncated JPEG" in text
    assert "data train: 23 images" in text

    client = tracking.client_for(srv.uri)
    run = client.get_run(summary["tracking"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["data/train/unreadable_images"] == 1.0
    assert run.data.metrics["data/train/images"] == 23.0
    assert run.data.metrics["data/val/unreadable_images"] == 0.0
    listed = client.download_artifacts(run.info.run_id, "data_checks/train_unreadable.tsv", str(tmp_path / "dl"))
    rows = Path(listed).read_text().splitlines()
    assert rows[0] == "file_name\treason" and rows[1].startswith(f"{victim.name}\ttruncated JPEG")


@pytest.mark.parametrize("flags, dashboard", [([], False), (["--ray-dashboard"], True)])
def test_train_starts_its_local_cluster_without_ray_dashboard_unless_asked(monkeypatch, dataset, flags, dashboard):
    """Issue 13: the dashboard's idle head processes slow a 2-CPU epoch; a single run needs no State API."""
    from yolox_ray.cluster import ray_setup

    seen = {}

    def record(*args, **kwargs):
        seen.update(kwargs)
        raise RayStarted()

    monkeypatch.setattr(ray_setup, "init_ray", record)
    with pytest.raises(RayStarted):
        main(["train", "--data", str(dataset), *flags, *ARGS])
    assert seen["dashboard"] is dashboard


@pytest.mark.parametrize("dashboard", [False, True])
def test_init_ray_hands_the_dashboard_choice_to_ray(monkeypatch, dashboard):
    import ray

    from yolox_ray.cluster import ray_setup

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.update(kwargs))
    ray_setup.init_ray(num_cpus=2, dashboard=dashboard)
    assert seen["include_dashboard"] is dashboard
    assert seen["num_cpus"] == 2
    assert ("dashboard_host" in seen) is dashboard  # only a dashboard that runs gets a loopback port
