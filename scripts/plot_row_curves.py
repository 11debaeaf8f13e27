"""Plot the quick ablation rows' AP50 curves at several budgets from `benchmarks/row_probe.py --json` lines.

Why: a row that has not learned at the quick budget needs a number for "how long would it take";
the README shows this plot and the JSON lines it came from are kept beside it.

    python scripts/plot_row_curves.py docs/ablation_budget_curves.jsonl docs/ablation_budget_curves.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from yolox_ray.ablation import ROW_KEYS, ablation_rows


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, help="JSON lines written by row_probe.py --json")
    p.add_argument("out", type=Path, help="PNG to write")
    args = p.parse_args(argv)
    from matplotlib.figure import Figure

    results = load(args.results)
    base_epochs = ablation_rows("quick", rows=[ROW_KEYS[0]])[0].config.train.epochs
    rows = [key for key in ROW_KEYS if any(r["row"] == key for r in results)]
    fig = Figure(figsize=(4.2 * len(rows), 3.4))
    axes = fig.subplots(1, len(rows), sharey=True, squeeze=False)[0]
    for ax, key in zip(axes, rows):
        for r in sorted((r for r in results if r["row"] == key), key=lambda r: r["epochs"]):
            points = [(c["epoch"], 100 * c["AP50"]) for c in r["curve"] if c.get("evaluated")]
            ax.plot(*zip(*points), marker="o", ms=3, label=f"{r['epochs'] / base_epochs:g}x ({r['epochs']} ep)")
        ax.axhline(20, color="grey", lw=0.8, ls="--")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("val AP50 %")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
