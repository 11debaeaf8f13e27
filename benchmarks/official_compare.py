"""Speed against the official YOLOX code (PyPI `yolox==0.3.0`), in one process, one run, one machine.

Three comparisons, each printed with its settings and our speed-up over official (> 1: ours faster):

  step   one training step (forward + SimOTA loss + backward) of `--model` at `--side`, batch
         `--batch`: the official model (built by the official Exp of that size, i.e. YOLOX /
         YOLOPAFPN / YOLOXHead with its depth/width) against ours with the official state dict loaded
         (`load_official_weights`), on the same images and labels (10 GTs per image, as
         benchmarks/step_speed.py). Our assignment runs the 0.3.0 release's geometry (box and centre,
         radius 2.5). Before timing, both outputs and losses are printed side by side (an agreement
         check of the weight copy, not timed). Steps alternate A, B, A, B; medians.
  data   the training-data pipeline at `--data-side`: the official `exp.get_data_loader`
         (COCODataset -> MosaicDetection -> TrainTransform, YoloBatchSampler, num_workers 0) against
         our `build_train_loader` (data.workers 0) over the same JPEGs with the same augmentation
         settings (the official Exp of `--model`), samples/s of whole float32 batches, rounds
         alternating A, B; medians.
  epoch  whole training epochs of `--epoch-model` at `--epoch-side`: the official training loop,
         our bare engine (`yolox_ray.engine.Trainer`) and `yolox-ray train --workers 1
         --cpus-per-worker THREADS` (a subprocess with its own local Ray cluster and an MLflow server
         started here; its times are read back from the run's MLflow metrics). The official
         `yolox.core.Trainer` cannot run on a CPU unmodified (it calls torch.cuda.set_device, puts the
         model on "cuda:N", prefetches with CUDA streams and its random_resize allocates a CUDA
         tensor), so the official loop here is `Trainer.train_one_iter` written out with the official
         parts: `exp.get_model`, `exp.get_optimizer`, `exp.get_data_loader`, `exp.preprocess`,
         `exp.get_lr_scheduler`, `yolox.utils.ModelEMA`; fp16 off (the Trainer's GradScaler is then a
         no-op, so loss.backward() + optimizer.step() is what it runs); no evaluation, no checkpoint
         file, no mosaic switch-off, fixed input size (multi-scale off in all three). Epoch seconds
         are the training iterations only (our engine's `train_seconds_epoch`; its closing
         evaluation is excluded); the first epoch is warm-up, the median of the others is printed.
  eval   COCO evaluation of `--epoch-model` at `--epoch-side` on `--eval-images` synthetic val images:
         the official evaluation (COCOEvaluator's loop written out with its parts, since its
         evaluate() casts the batch to torch.cuda tensors: exp.get_eval_loader, the official model,
         yolox.utils.postprocess, convert_to_coco_format, evaluate_prediction with the official
         COCOeval_opt) against our `yolox_ray.evaluation.evaluate` (pycocotools) on the same weights
         (official state dict loaded into ours), and the time our engine's evaluation epoch adds to a
         training epoch (epoch_seconds - train_seconds_epoch of the bare engine: EMA model, evaluation,
         best-model bookkeeping). The head's obj and cls biases are zeroed on both models so that
         every prediction passes the 0.01 score threshold (an untrained model's prior, 1e-4, would
         pass none): the heaviest post-processing and COCOeval load. Official NMS: torchvision
         cannot load here (see below), so on both sides the NMS is our exact greedy batched NMS
         (same kept boxes as torchvision's), registered as `torchvision.ops.batched_nms`; the ratio
         compares everything else. Rounds alternate A, B; medians.

Install the baseline into its own venv (never into the project's environment), then run with that
venv's python and this checkout first on the path:

    scripts/install_official_yolox.sh            # ../venv-official, see the script
    PYTHONPATH=. ../venv-official/bin/python benchmarks/official_compare.py [--sections step,data,epoch,eval]
        [--model yolox_s] [--side 320] [--batch 4] [--reps 3]
        [--data-side 640] [--data-batches 4] [--rounds 4] [--images 32]
        [--epoch-model yolox_nano] [--epoch-side 256] [--epoch-batch 8] [--epochs 3] [--threads 2]
        [--eval-images 200] [--eval-rounds 3]

`--check` only imports both packages and prints their versions. torchvision: official yolox imports
it only for NMS (evaluation), and PyPI's wheels are CUDA builds that do not load next to a CPU torch;
when it does not import, a stand-in module is registered whose `ops.batched_nms` is our exact NMS
(`yolox_ray.evaluation.batched_nms`; its plain `ops.nms` raises: the official postprocess calls
only batched_nms in class-aware mode, the mode the eval section uses).

The numbers are only a measurement on a quiet machine (nothing else running, load average ~0):
these comparisons share one CPU budget and any other process skews them. No number from a loaded
machine belongs in the README.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's yolox_ray, not an installed copy

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from step_speed import make_labels, step as our_step  # noqa: E402  (benchmarks/ is sys.path[0])
from yolox_ray.engine.resources import cpu_has_bf16  # noqa: E402
from yolox_ray.config import (ExperimentConfig, LossConfig, MODEL_PRESETS,  # noqa: E402
                              apply_overrides, dump_yaml, experiment_preset)

OFFICIAL_MODELS = ("yolox_nano", "yolox_tiny", "yolox_s", "yolox_m", "yolox_l", "yolox_x")
SECTIONS = ("step", "data", "epoch", "eval")
ASSIGN_0_3_0 = {"assign.geometry": "box_and_center", "assign.center_radius": 2.5}  # the release's SimOTA prior


def _nms_less_torchvision() -> types.ModuleType:
    """Stand-in for `import torchvision` in yolox/utils/boxes.py, which needs only its NMS: class-aware
    `ops.batched_nms` is our exact greedy NMS (the same kept boxes, in the same score order)."""
    from yolox_ray.evaluation import batched_nms

    def unavailable(*_args, **_kwargs):
        raise RuntimeError("torchvision is not installed (its PyPI wheels need a CUDA torch); only the "
                           "class-aware batched_nms stand-in is available in this benchmark")
    module = types.ModuleType("torchvision")
    module.ops = types.SimpleNamespace(nms=unavailable, batched_nms=batched_nms)
    module.__version__ = "stand-in (batched_nms = yolox_ray's exact NMS)"
    return module


def import_official() -> tuple[types.ModuleType, str]:
    """The official `yolox` package (exits with one line if it is not importable)."""
    try:
        import torchvision  # noqa: F401
        tv = f"torchvision {torchvision.__version__}"
    except ImportError:
        sys.modules["torchvision"] = _nms_less_torchvision()
        tv = "torchvision stand-in (not installed; NMS = yolox_ray.evaluation.batched_nms)"
    except (RuntimeError, OSError) as exc:
        sys.exit(f"official_compare: torchvision is installed but does not import ({exc}); "
                 f"scripts/install_official_yolox.sh removes it from the venv")
    try:
        import yolox
        from loguru import logger
    except ImportError as exc:
        sys.exit(f"official_compare: the official YOLOX package does not import with {sys.executable} ({exc}); "
                 f"install it with scripts/install_official_yolox.sh and run that venv's python")
    logger.remove()  # the official code logs every dataset load at INFO
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"yolox\.")  # its torch.cuda.amp calls
    logger.add(sys.stderr, level="WARNING")
    return yolox, tv


def official_exp(model: str, num_classes: int):
    from yolox.exp import get_exp

    exp = get_exp(exp_name=model)
    exp.num_classes = num_classes
    return exp


def aug_overrides(exp) -> dict:
    """Our data settings equal to the official Exp's augmentation (so both pipelines do the same work)."""
    return {"data.mosaic_prob": float(exp.mosaic_prob), "data.mixup_prob": float(exp.mixup_prob),
            "data.enable_mixup": bool(exp.enable_mixup), "data.mosaic_scale": tuple(exp.mosaic_scale),
            "data.mixup_scale": tuple(exp.mixup_scale), "data.degrees": float(exp.degrees),
            "data.translate": float(exp.translate), "data.shear": float(exp.shear),
            "data.hsv_prob": float(exp.hsv_prob), "data.flip_prob": float(exp.flip_prob)}


def point_exp_at(exp, root: Path, side: int, epochs: int) -> None:
    from yolox_ray.data.synthetic import TRAIN_ANN, VAL_ANN

    exp.data_dir = str(root)
    exp.train_ann, exp.val_ann = Path(TRAIN_ANN).name, Path(VAL_ANN).name  # official: <root>/annotations/<name>
    exp.input_size = exp.test_size = (side, side)
    exp.multiscale_range = 0
    exp.data_num_workers = 0
    exp.max_epoch, exp.no_aug_epochs = epochs, 0
    exp.warmup_epochs = 1 if epochs > 1 else 0
    exp.seed = 0


def ratio_line(name: str, official: float, ours: float, unit: str, higher_better: bool) -> str:
    speedup = ours / official if higher_better else official / ours
    return f"  {name:<34}{official:>12.4g}{ours:>12.4g} {unit:<10}{speedup:>7.2f}x"


def table_header() -> str:
    return f"  {'':<34}{'official':>12}{'ours':>12} {'':<10}{'speedup':>8}"


# ------------------------------------------------------------------------------------------------
# (a) the train step

def bench_step(args) -> None:
    from yolox_ray.losses import YOLOXLoss
    from yolox_ray.models import build_model, load_official_weights

    num_classes = 80
    torch.manual_seed(0)
    exp = official_exp(args.model, num_classes)
    official = exp.get_model().train()
    ours = build_model(args.model, num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(official.state_dict(), Path(tmp) / "official.pth")
        load_official_weights(ours, Path(tmp) / "official.pth")
    ours.train()
    loss_fn = YOLOXLoss(LossConfig(), apply_overrides(ExperimentConfig(), ASSIGN_0_3_0).assign, num_classes)
    images = torch.rand(args.batch, 3, args.side, args.side, generator=torch.Generator().manual_seed(1)) * 255
    labels = make_labels(args.batch, args.side, 10, num_classes)
    hw = (args.side, args.side)
    print(f"\n[step] {args.model} {args.side}px batch {args.batch}, 10 GTs/image, {num_classes} classes, "
          f"torch threads {torch.get_num_threads()}, {args.reps} timed steps each (A,B alternating, medians)")

    official.eval(), ours.eval()
    with torch.no_grad():
        a, b = official(images), ours(images)
    print(f"  agreement, eval outputs from the copied weights: max |official - ours| / max |official| = "
          f"{float((a - b).abs().max() / a.abs().max()):.2e}")
    official.train(), ours.train()

    def official_step():
        official.zero_grad(set_to_none=True)
        out = official(images, labels)
        out["total_loss"].backward()
        return out

    nhwc = copy.deepcopy(ours).to(memory_format=torch.channels_last)
    variants = {  # name -> one step; ours as the engine runs it (train.channels_last, the default) first
        "official": official_step,
        "ours, channels_last (default)": lambda: our_step(nhwc, loss_fn, images, labels, hw, True),
        "ours, train.channels_last=false": lambda: our_step(ours, loss_fn, images, labels, hw, False),
    }
    if cpu_has_bf16():
        variants["ours, train.amp=true (bf16)"] = lambda: our_step(nhwc, loss_fn, images, labels, hw, True, True)
    else:
        print("  (no train.amp=true row: this CPU has no bfloat16 units, where bf16 autocast is slower)")

    first = {k: float(torch.as_tensor(v).detach()) for k, v in official_step().items()}  # warm-up of each; the loss agreement below
    ours.zero_grad(set_to_none=True)
    mine = loss_fn(ours(images), ours.anchor_grid(hw, images.device), labels, False)
    mine.total.backward()
    mine = {"total": float(mine.total.detach()), **{k: float(v.detach()) for k, v in mine.terms.items()}}
    print(f"  agreement, first-step loss: official {first['total_loss']:.5f} (iou {first['iou_loss']:.4f} "
          f"obj {first['conf_loss']:.4f} cls {first['cls_loss']:.4f}), ours {mine['total']:.5f} "
          f"(iou {mine['iou']:.4f} obj {mine['obj']:.4f} cls {mine['cls']:.4f})")
    for name, fn in variants.items():
        if name != "official":
            fn()  # warm-up (oneDNN picks and caches its kernels per format and dtype)

    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.reps):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(table_header())
    for name in variants:
        if name != "official":
            print(ratio_line(name, med["official"], med[name], "s/step", False))
    print("  (official: float32, NCHW; its fp16 switch is CUDA-only)")
    for name, values in times.items():
        print(f"    {name}: {', '.join(f'{t:.3f}' for t in values)} s")


# ------------------------------------------------------------------------------------------------
# (b) the data pipeline

def bench_data(args, root: Path) -> None:
    from yolox_ray.data import COCODataset, DataWarning, build_train_loader
    from yolox_ray.data.synthetic import TRAIN_ANN, TRAIN_IMAGES

    from yolox_ray.data.classes import dataset_num_classes

    batch = args.batch_data
    exp = official_exp(args.model, dataset_num_classes(str(root)))
    point_exp_at(exp, root, args.data_side, epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pin_memory=True without an accelerator
        official_loader = exp.get_data_loader(batch_size=batch, is_distributed=False, no_aug=False)
    cfg = apply_overrides(experiment_preset(args.model), {
        "data.root": str(root), "data.input_size": (args.data_side, args.data_side), "data.workers": 0,
        "train.batch_size": batch, "train.epochs": 10 ** 6, "train.no_aug_epochs": 0, "train.warmup_epochs": 0,
        **aug_overrides(exp)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dataset = COCODataset(root / TRAIN_ANN, root / TRAIN_IMAGES)
    ours_loader = build_train_loader(cfg, dataset, workers=0)
    print(f"\n[data] {len(dataset)} synthetic 640-px JPEGs -> {args.data_side}px batches of {batch}, in this process "
          f"(num_workers 0), {args.rounds} rounds x {args.data_batches} batches each (A,B alternating, medians); "
          f"augmentation of the official {args.model} Exp on both: mosaic_prob {exp.mosaic_prob}, "
          f"mixup {exp.enable_mixup} (p {exp.mixup_prob}), mosaic_scale {exp.mosaic_scale}, "
          f"degrees {exp.degrees}, shear {exp.shear}, hsv_prob {exp.hsv_prob}, flip_prob {exp.flip_prob}; "
          f"cv2 threads {cv2.getNumThreads()}")

    official_it = iter(official_loader)  # the official sampler is infinite
    ours_epoch = [0]
    ours_it = [iter(())]

    def next_ours():
        try:
            return next(ours_it[0])
        except StopIteration:
            ours_loader.set_epoch(ours_epoch[0])
            ours_epoch[0] += 1
            ours_it[0] = iter(ours_loader)
            return next(ours_it[0])

    def take(name: str) -> float:
        start, n = time.perf_counter(), 0
        for _ in range(args.data_batches):
            images = next(official_it)[0] if name == "official" else next_ours()[0]
            assert images.dtype == torch.float32 and images.shape[-1] == args.data_side
            n += images.shape[0]
        return n / (time.perf_counter() - start)

    take("official"), take("ours")  # warm-up (file cache, first-call costs)
    rates: dict[str, list[float]] = {"official": [], "ours": []}
    for _ in range(args.rounds):
        for name in ("official", "ours"):
            rates[name].append(take(name))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(table_header())
    print(ratio_line("data pipeline, median", med["official"], med["ours"], "samples/s", True))


# ------------------------------------------------------------------------------------------------
# (c) whole epochs

def official_epochs(exp, batch: int, epochs: int) -> tuple[list[float], int]:
    """The official Trainer's loop (before_train + train_one_iter) on the CPU; seconds per epoch."""
    from yolox.utils import ModelEMA

    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    model = exp.get_model()
    model.train()
    optimizer = exp.get_optimizer(batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pin_memory=True without an accelerator
        loader = exp.get_data_loader(batch_size=batch, is_distributed=False, no_aug=False)
    max_iter = len(loader)
    lr_scheduler = exp.get_lr_scheduler(exp.basic_lr_per_img * batch, max_iter)
    ema = ModelEMA(model, 0.9998) if exp.ema else None
    batches = iter(loader)
    seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        for it in range(max_iter):
            inps, targets = next(batches)[:2]
            inps, targets = inps.to(torch.float32), targets.to(torch.float32)
            targets.requires_grad = False
            inps, targets = exp.preprocess(inps, targets, exp.input_size)
            outputs = model(inps, targets)
            loss = outputs["total_loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update(model)
            lr = lr_scheduler.update_lr(epoch * max_iter + it + 1)
            for group in optimizer.param_groups:
                group["lr"] = lr
        seconds.append(time.perf_counter() - start)
    return seconds, max_iter


def our_epoch_config(args, root: Path, exp, num_classes: int) -> ExperimentConfig:
    side = args.epoch_side
    return apply_overrides(experiment_preset(args.epoch_model), {
        "model.num_classes": num_classes,
        "data.root": str(root), "data.input_size": (side, side), "data.test_size": (side, side),
        "data.multiscale_range": 0, "data.random_size": None, "data.workers": 0, **aug_overrides(exp),
        "train.multiscale": False, "train.epochs": args.epochs, "train.warmup_epochs": exp.warmup_epochs,
        "train.no_aug_epochs": 0, "train.batch_size": args.epoch_batch, "train.eval_interval": 10 ** 6,
        "train.print_interval": 10 ** 6, "train.seed": 0, "eval.batch_size": 8, **ASSIGN_0_3_0,
    })


def bare_epochs(cfg: ExperimentConfig, cpus: int) -> tuple[list[float], int]:
    from yolox_ray.engine import Trainer

    seconds: list[float] = []

    class Collect:
        def on_epoch_end(self, trainer, epoch, metrics, checkpoint):
            seconds.append(float(metrics["train_seconds_epoch"]))

    trainer = Trainer(cfg, callbacks=[Collect()], cpus=cpus)  # cpus as a Ray worker gets them
    trainer.fit()
    return seconds, trainer.iters_per_epoch


def cli_epochs(cfg: ExperimentConfig, root: Path, tmp: Path, cpus: int,
               flags: tuple[str, ...] = ()) -> tuple[list[float], int, float]:
    """`yolox-ray train [flags]` in a subprocess (its own Ray cluster under `tmp`); times from its MLflow run."""
    from mlflow.tracking import MlflowClient

    from yolox_ray.cluster.tracking import TRAIN_EXPERIMENT, start_server, stop_server

    config = tmp / "epoch_config.yaml"
    dump_yaml(cfg, config)
    name = f"official-compare-{int(time.time())}"
    server = start_server(tmp / "mlruns", timeout_s=900)  # a loaded machine starts it slowly
    try:
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)  # Ray workers inherit it
        env = dict(os.environ, PYTHONPATH=path, RAY_TMPDIR=str(tmp))  # its own cluster, never another one here
        cmd = [sys.executable, "-m", "yolox_ray.cli", "train", "--workers", "1", "--cpus-per-worker", str(cpus),
               "--model", cfg.name, "--data", str(root), "--config", str(config), "--storage", str(tmp / "ray_results"),
               "--name", name, "--tracking-uri", server.uri, "--max-failures", "0", *flags]
        print(f"  $ {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"official_compare: yolox-ray train failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
                     f"\n{proc.stderr[-3000:]}")
        client = MlflowClient(server.uri)
        experiment = client.get_experiment_by_name(TRAIN_EXPERIMENT)
        run = client.search_runs([experiment.experiment_id], filter_string=f"tags.train_run_name = '{name}'")[0]
        history = sorted(client.get_metric_history(run.info.run_id, "train_seconds_epoch"), key=lambda m: m.step)
        iters = client.get_metric_history(run.info.run_id, "iteration")
        per_epoch = int(min(m.value for m in iters)) if iters else 0
        return [m.value for m in history], per_epoch, wall
    finally:
        stop_server(server)


def bench_epoch(args, root: Path, tmp: Path) -> None:
    from yolox_ray.data.classes import dataset_num_classes

    num_classes = dataset_num_classes(str(root))
    exp = official_exp(args.epoch_model, num_classes)
    point_exp_at(exp, root, args.epoch_side, args.epochs)
    cfg = our_epoch_config(args, root, exp, num_classes)
    print(f"\n[epoch] {args.epoch_model} {args.epoch_side}px, batch {args.epoch_batch}, {args.images} images, "
          f"{args.epochs} epochs (first = warm-up, median of the rest), {num_classes} classes, lr warm-up "
          f"{exp.warmup_epochs} epoch, EMA on, no eval/no-aug phase/multi-scale; data in-process; "
          f"torch threads {args.threads}, cv2 threads {cv2.getNumThreads()}; "
          f"augmentation: official {args.epoch_model} Exp on all three (mosaic_prob {exp.mosaic_prob}, "
          f"mixup {exp.enable_mixup})", flush=True)
    rows: list[tuple[str, list[float], int]] = []
    torch.set_num_threads(args.threads)
    seconds, iters = official_epochs(exp, args.epoch_batch, args.epochs)
    rows.append(("official loop (official parts)", seconds, iters))
    print(f"  official loop done: {', '.join(f'{s:.1f}' for s in seconds)} s", flush=True)
    seconds, iters = bare_epochs(cfg, args.threads)
    rows.append(("yolox_ray bare engine (defaults)", seconds, iters))
    print(f"  bare engine done: {', '.join(f'{s:.1f}' for s in seconds)} s", flush=True)
    variants = {"bare engine, channels_last=false": {"train.channels_last": False}}
    if cpu_has_bf16():
        variants["bare engine, train.amp=true (bf16)"] = {"train.amp": True}
    for name, overrides in variants.items():
        seconds, iters = bare_epochs(apply_overrides(cfg, overrides), args.threads)
        rows.append((name, seconds, iters))
        print(f"  {name} done: {', '.join(f'{s:.1f}' for s in seconds)} s", flush=True)
    wall = None
    if not args.skip_cli:
        seconds, iters, wall = cli_epochs(cfg, root, tmp, args.threads)
        rows.append(("yolox-ray train (Ray, 1 worker)", seconds, iters))
        seconds, iters, _ = cli_epochs(cfg, root, tmp, args.threads, ("--ray-dashboard",))
        rows.append(("yolox-ray train --ray-dashboard", seconds, iters))
    base = statistics.median(rows[0][1][1:])
    print(f"  {'':<34}{'iters/ep':>9}{'epoch s':>10}{'iters/s':>9}{'vs official':>13}   per-epoch s")
    for name, seconds, iters in rows:
        med = statistics.median(seconds[1:])
        print(f"  {name:<34}{iters:>9}{med:>10.2f}{iters / med:>9.3f}{base / med:>12.2f}x   "
              f"{', '.join(f'{s:.2f}' for s in seconds)}")
    if wall is not None:
        print(f"  yolox-ray train wall time incl. Ray/MLflow start-up and the final evaluation: {wall:.1f} s")


# ------------------------------------------------------------------------------------------------
# (d) evaluation

def _zero_score_biases(model: torch.nn.Module) -> None:
    """obj and cls biases to 0 (score 0.25 everywhere): every prediction passes the score threshold."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias") and any(key in name for key in ("obj_preds", "cls_preds")):
                param.zero_()


def official_eval(exp, model, batch: int) -> float:
    """One COCO evaluation with the official parts; seconds from the first batch to COCOeval's stats."""
    from yolox.utils import postprocess

    loader = exp.get_eval_loader(batch_size=batch, is_distributed=False)
    evaluator = exp.get_evaluator(batch_size=batch, is_distributed=False)
    evaluator.dataloader = loader
    model.eval()
    start = time.perf_counter()
    data_list = []
    with torch.no_grad():
        for imgs, _, info_imgs, ids in loader:
            outputs = postprocess(model(imgs.float()), exp.num_classes, exp.test_conf, exp.nmsthre)
            data_list.extend(evaluator.convert_to_coco_format(outputs, info_imgs, ids))
    evaluator.evaluate_prediction(data_list, torch.tensor([0.0, 0.0, float(max(len(loader) - 1, 1))]))
    return time.perf_counter() - start


def bench_eval(args, root: Path) -> None:
    from yolox_ray.data import COCODataset
    from yolox_ray.data.classes import dataset_num_classes
    from yolox_ray.data.synthetic import VAL_ANN, VAL_IMAGES
    from yolox_ray.engine import Trainer
    from yolox_ray.evaluation import evaluate
    from yolox_ray.models import build_model, load_official_weights

    num_classes = dataset_num_classes(str(root))
    side, batch = args.epoch_side, 8
    exp = official_exp(args.epoch_model, num_classes)
    point_exp_at(exp, root, side, epochs=1)
    cfg = apply_overrides(experiment_preset(args.epoch_model), {
        "model.num_classes": num_classes, "data.root": str(root), "data.test_size": (side, side),
        "data.input_size": (side, side), "data.workers": 0, "eval.batch_size": batch})
    exp.test_conf, exp.nmsthre = cfg.eval.conf_thresh, cfg.eval.nms_thresh
    official = exp.get_model()
    _zero_score_biases(official)
    ours = build_model(args.epoch_model, num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(official.state_dict(), Path(tmp) / "official.pth")
        load_official_weights(ours, Path(tmp) / "official.pth")
    dataset = COCODataset(root / VAL_ANN, root / VAL_IMAGES)
    print(f"\n[eval] {args.epoch_model} {side}px, {len(dataset)} val images, batch {batch}, conf "
          f"{cfg.eval.conf_thresh}, NMS {cfg.eval.nms_thresh}, head obj/cls biases zeroed (every prediction "
          f"passes the threshold), data in-process, torch threads {torch.get_num_threads()}; {args.eval_rounds} "
          f"rounds (A,B alternating, medians) after one warm-up each", flush=True)
    official_eval(exp, official, batch)  # warm-up of each
    evaluate(ours, dataset, cfg, "cpu")
    times: dict[str, list[float]] = {"official": [], "ours": []}
    for _ in range(args.eval_rounds):
        times["official"].append(official_eval(exp, official, batch))
        start = time.perf_counter()
        evaluate(ours, dataset, cfg, "cpu")
        times["ours"].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(table_header())
    print(ratio_line("COCO evaluation, median", med["official"], med["ours"], "s", False))
    for name, values in times.items():
        print(f"    {name}: {', '.join(f'{t:.2f}' for t in values)} s")

    # What an evaluation epoch of our engine adds to a training epoch (EMA model, evaluate, best AP).
    engine_cfg = apply_overrides(cfg, {"train.epochs": 2, "train.max_iters": 2, "train.eval_interval": 1,
                                       "train.warmup_epochs": 0, "train.no_aug_epochs": 0, "train.batch_size": 8,
                                       "train.print_interval": 10 ** 6, "train.seed": 0, **aug_overrides(exp)})
    added: list[float] = []

    class Collect:
        def on_epoch_end(self, trainer, epoch, metrics, checkpoint):
            added.append(float(metrics["epoch_seconds"]) - float(metrics["train_seconds_epoch"]))

    trainer = Trainer(engine_cfg, callbacks=[Collect()], cpus=args.threads)
    _zero_score_biases(trainer.model)
    if trainer.ema is not None:
        _zero_score_biases(trainer.ema.module)
    trainer.fit()
    print(ratio_line("engine: an eval epoch adds (2nd)", med["official"], added[-1], "s", False))
    print(f"    engine eval-epoch additions: {', '.join(f'{t:.2f}' for t in added)} s (epoch 1 includes loading the "
          f"val set)")


# ------------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only import both packages and print versions")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--model", default="yolox_s", help="step and data: official size to compare")
    p.add_argument("--side", type=int, default=320, help="step: square input side")
    p.add_argument("--batch", type=int, default=4, help="step: batch")
    p.add_argument("--reps", type=int, default=3, help="step: timed steps per side")
    p.add_argument("--data-side", type=int, default=640, help="data: output side")
    p.add_argument("--batch-data", type=int, default=8, help="data: batch")
    p.add_argument("--data-batches", type=int, default=4, help="data: batches per round")
    p.add_argument("--rounds", type=int, default=4, help="data: timed rounds per side")
    p.add_argument("--images", type=int, default=32, help="data and epoch: synthetic training images (640 px)")
    p.add_argument("--epoch-model", default="yolox_nano")
    p.add_argument("--epoch-side", type=int, default=256)
    p.add_argument("--epoch-batch", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3, help="epoch: epochs per mode (the first is warm-up)")
    p.add_argument("--threads", type=int, default=2, help="torch threads in-process = --cpus-per-worker of the Ray run")
    p.add_argument("--skip-cli", action="store_true", help="epoch: leave out the `yolox-ray train` subprocess")
    p.add_argument("--eval-images", type=int, default=200, help="eval: synthetic val images (640 px)")
    p.add_argument("--eval-rounds", type=int, default=3, help="eval: timed evaluations per side")
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad or not sections:
        p.error(f"--sections: unknown {bad or 'empty'}; choose from {', '.join(SECTIONS)}")
    args.sections = sections
    for flag in ("model", "epoch_model"):
        if getattr(args, flag) not in OFFICIAL_MODELS or getattr(args, flag) not in MODEL_PRESETS:
            p.error(f"--{flag.replace('_', '-')}: {getattr(args, flag)!r} is not an official YOLOX size "
                    f"({', '.join(OFFICIAL_MODELS)})")
    for flag in ("side", "data_side", "epoch_side"):
        if getattr(args, flag) < 64 or getattr(args, flag) % 32:
            p.error(f"--{flag.replace('_', '-')}: must be a multiple of 32 and >= 64, got {getattr(args, flag)}")
    for flag in ("batch", "reps", "batch_data", "data_batches", "rounds", "images", "epoch_batch", "threads",
                 "eval_images", "eval_rounds"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')}: must be >= 1, got {getattr(args, flag)}")
    if args.epochs < 2:
        p.error(f"--epochs: must be >= 2 (the first epoch is warm-up), got {args.epochs}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # lines show as they come on a slow machine
    yolox, tv = import_official()
    import yolox_ray

    print(f"official yolox {yolox.__version__} ({Path(yolox.__file__).parent}); yolox_ray "
          f"({Path(yolox_ray.__file__).parent}); torch {torch.__version__}; {tv}; python {sys.executable}; "
          f"cpus {os.cpu_count()}; load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.check:
        official_exp("yolox_nano", 80).get_model()  # the official builders run
        print("check: both packages import and the official model builds")
        return 0
    torch.set_num_threads(args.threads)
    if "step" in args.sections:
        bench_step(args)
    if {"data", "epoch", "eval"} & set(args.sections):
        from yolox_ray.data import generate_synthetic

        with tempfile.TemporaryDirectory(prefix="ocmp_") as tmp:
            val = args.eval_images if "eval" in args.sections else 4
            root = generate_synthetic(Path(tmp) / "ds", args.images, val, 640, seed=0)
            if "data" in args.sections:
                bench_data(args, root)
            if "epoch" in args.sections:
                bench_epoch(args, root, Path(tmp))
            if "eval" in args.sections:
                bench_eval(args, root)
    print(f"\nload average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"(a measurement needs a quiet machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
