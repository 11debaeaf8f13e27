"""Train one ablation row in-process (no Ray, no MLflow) and print its learning curve.

Used for the quick preset's per-row recipe search (`yolox_ray/ablation_recipes.json` records the
command and the results): it is the same engine the Ray trials run, without the cluster around it.

    python benchmarks/row_probe.py --row simota --epochs 8 [key=value ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from yolox_ray.ablation import ROW_KEYS, ablation_rows
from yolox_ray.engine import Trainer


class _Curve:
    def __init__(self) -> None:
        self.points: list[dict] = []

    def on_epoch_end(self, trainer, epoch, metrics, checkpoint) -> None:
        keep = {k: metrics[k] for k in ("epoch", "loss", "AP", "AP50", "fg_per_gt", "pos_iou", "pos_iou_zero",
                                        "pos_score", "epoch_seconds", "train_seconds_epoch") if k in metrics}
        keep["evaluated"] = bool(metrics.get("evaluated"))
        self.points.append(keep)
        line = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in keep.items())
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--row", choices=ROW_KEYS, required=True)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="input size (default: the preset's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    p.add_argument("overrides", nargs="*", help="key=value applied to the row")
    args = p.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.overrides)
    row = ablation_rows("quick", epochs=args.epochs, rows=[args.row], overrides=overrides, size=args.size)[0]
    curve = _Curve()
    start = time.perf_counter()
    # cpus: torch and OpenCV threads sized as in a study trial given that many CPUs (engine.resources).
    summary = Trainer(row.config, callbacks=[curve], cpus=args.threads).fit()
    seconds = time.perf_counter() - start
    train = row.config.train
    result = {"row": args.row, "epochs": train.epochs, "warmup_epochs": train.warmup_epochs,
              "no_aug_epochs": train.no_aug_epochs, "ema_decay": train.ema_decay, "size": row.config.data.input_size[0], "overrides": args.overrides,
              "AP": summary["AP"], "AP50": summary["AP50"], "seconds": round(seconds, 1), "curve": curve.points}
    print(f"RESULT row={args.row} AP={summary['AP']:.4f} AP50={summary['AP50']:.4f} seconds={seconds:.0f} "
          f"{' '.join(args.overrides)}", flush=True)
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
