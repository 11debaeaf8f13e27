#!/usr/bin/env python
"""The quick preset's per-row recipe search: every row x every lr at a given budget, the best lr per
row written to `yolox_ray/ablation_recipes.json` with this command and every result.

    python scripts/quick_row_recipes.py --epochs 8 --lrs 0.01,0.02,0.04 [--parallel 2] [--write] [--reuse]

Each run is `benchmarks/row_probe.py` (the engine in-process, one thread; no Ray or MLflow around it:
the search ranks recipes, it does not time them). The lr is the step lr at the preset's batch of 8.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from yolox_ray.ablation import rescale_schedule, scale_spec

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "yolox_ray" / "ablation_recipes.json"


def run_one(row: str, lr: float, epochs: int, size: int | None, extra: list[str], out: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "row_probe.py"), "--row", row, "--epochs", str(epochs),
           "--json", str(out), f"train.lr_per_image={lr / 8}", *extra]
    if size:
        cmd += ["--size", str(size)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"row": row, "lr": lr, "error": proc.stderr.strip().splitlines()[-1:]}
    result = json.loads(out.read_text().strip().splitlines()[-1])
    result["lr"] = lr
    print(f"{row:20s} lr {lr:<6g} AP50 {100 * result['AP50']:5.1f}  AP {100 * result['AP']:5.1f}  "
          f"{result['seconds']:.0f} s", flush=True)
    return result


DEFAULT_LR = 0.02  # the preset's shared step lr
# Below this AP50 at the search budget a row has not started to learn with any lr, so the search
# cannot rank them (differences are noise): such a row keeps the shared lr.
MIN_SEPARABLE_AP50 = 0.02


def choose(results: list[dict], default_lr: float) -> dict[str, dict]:
    """Per row the lr with the best AP50 (AP breaks ties), or `default_lr` when no lr got the row past
    MIN_SEPARABLE_AP50."""
    best: dict[str, dict] = {}
    for r in results:
        if r.get("error"):
            print(f"{r['row']} lr {r['lr']}: failed: {r['error']}")
            continue
        if r["row"] not in best or (r["AP50"], r["AP"]) > (best[r["row"]]["AP50"], best[r["row"]]["AP"]):
            best[r["row"]] = r
    chosen = {}
    for row, r in best.items():
        if r["AP50"] >= MIN_SEPARABLE_AP50:
            chosen[row] = dict(r, why=f"best AP50 {100 * r['AP50']:.1f} % at the search budget")
        else:
            chosen[row] = dict(r, lr=default_lr, AP50=None, AP=None,
                               why=f"no lr passed AP50 {100 * MIN_SEPARABLE_AP50:.0f} % at the search budget "
                                   f"(best {100 * r['AP50']:.1f} %): the shared lr is kept")
    return chosen


def _recorded() -> dict:
    """The recipe file as recorded ({} before the first search)."""
    return json.loads(RECIPES.read_text()) if RECIPES.exists() else {}


def recorded_results(epochs: int, size: int | None) -> dict[tuple[str, float], dict]:
    """{(row, lr): result} recorded in the recipe file at this budget (no overrides), without errors."""
    return {(r["row"], r["lr"]): r for r in _recorded().get("all", []) if at_budget(r, epochs, size) and not r.get("error")}


@functools.cache
def _schedule(epochs: int) -> tuple[float, int, float]:
    """(warm-up, no-aug tail, EMA decay) the quick preset gives `epochs` now (built once: the spec reads
    the recipe file)."""
    train = rescale_schedule(scale_spec("quick").train, epochs)
    return train.warmup_epochs, train.no_aug_epochs, round(train.ema_decay, 6)


def at_budget(result: dict, epochs: int, size: int | None) -> bool:
    """A recorded cell is at this budget if it ran this many epochs with the schedule the preset now
    gives them (warm-up, no-aug tail and EMA: the preset's schedule may have changed since), at this size."""
    ema = result.get("ema_decay")
    return (result.get("epochs") == epochs and (size is None or result.get("size") == size)
            and (result.get("warmup_epochs"), result.get("no_aug_epochs"), ema if ema is None else round(ema, 6))
            == _schedule(epochs))


def other_budgets(epochs: int, size: int | None) -> list[dict]:
    """Recorded cells of other budgets, kept in the file when a search at this budget is written."""
    return [r for r in _recorded().get("all", []) if not at_budget(r, epochs, size)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="yolov3_baseline,decoupled_head,strong_augmentation,anchor_free,multi_positives,simota")
    p.add_argument("--lrs", default="0.01,0.02,0.04")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--write", action="store_true", help=f"write the best lr per row to {RECIPES.name}")
    p.add_argument("--rechoose", action="store_true",
                   help=f"no runs: choose again from the results recorded in {RECIPES.name} (same command)")
    p.add_argument("--reuse", action="store_true",
                   help=f"take the results recorded in {RECIPES.name} at the same budget instead of running them again "
                        "(to add lrs or rows to a finished search; recorded lrs outside --lrs stay candidates)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    rows, lrs = args.rows.split(","), [float(x) for x in args.lrs.split(",")]
    start = time.perf_counter()
    if args.rechoose:
        write = args.write  # as asked now, not as in the recorded command
        argv = _recorded()["command"].split()[2:]
        args = p.parse_args(argv)  # the recorded search's rows and budget
        args.write = write
        rows = args.rows.split(",")
        results = [r for r in recorded_results(args.epochs, args.size).values() if r["row"] in rows]
    else:
        done = recorded_results(args.epochs, args.size) if args.reuse and not args.overrides else {}
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.parallel) as pool:
            jobs = {(row, lr): pool.submit(run_one, row, lr, args.epochs, args.size, args.overrides,
                                           Path(tmp) / f"{row}-{lr}.jsonl")
                    for row in rows for lr in lrs if (row, lr) not in done}
            results = [done[(row, lr)] if (row, lr) in done else jobs[(row, lr)].result() for row in rows for lr in lrs]
        # Recorded cells of these rows at other lrs stay candidates: a search can extend an earlier one.
        results += [r for (row, lr), r in done.items() if row in rows and lr not in lrs]
    if not results:
        print(f"error: no results at this budget in {RECIPES.name} (the cells recorded there ran another "
              "schedule: see its 'budget'); nothing written", file=sys.stderr)
        return 1
    print(f"search took {time.perf_counter() - start:.0f} s")
    best = choose(results, default_lr=DEFAULT_LR)
    for row, r in best.items():
        print(f"{row}: lr {r['lr']:g} ({r['why']})")
    if args.write:
        command = "python scripts/quick_row_recipes.py " + " ".join(argv if argv is not None else sys.argv[1:])
        data = {
            "why": "per-row step lr of the quick ablation preset, chosen by AP50 so that the preset does not "
                   "favour the row it was first tuned on",
            "budget": f"{args.epochs} epochs of the quick schedule (rescaled as --epochs does), "
                      f"{args.size or 'the preset'} px, seed 0, one thread per run, {args.parallel} runs at a time",
            "command": command,
            "rows": {row: {"overrides": {"train.lr_per_image": r["lr"] / 8}, "lr_per_step": r["lr"],
                           "why": r["why"]} for row, r in best.items()},
            "all": [{k: r.get(k) for k in ("row", "lr", "AP", "AP50", "seconds", "epochs", "size", "warmup_epochs",
                                           "no_aug_epochs", "ema_decay", "error", "note")
                     if k != "note" or r.get("note")} for r in results] + other_budgets(args.epochs, args.size),
        }
        full_budget = _recorded().get("full_budget")
        if full_budget:  # rows re-chosen at the preset's full schedule stay (they override this search's pick)
            data["full_budget"] = full_budget
        RECIPES.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {RECIPES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
