#!/usr/bin/env python
"""Build the HTML report of one study from MLflow (same as `yolox-ray report`).

    python dashboards/build_report.py --study ablation-quick [--out reports/ablation-quick]
                                      [--tracking-uri http://127.0.0.1:5000] [--optuna-storage sqlite:///...]

Without --tracking-uri it reads the local store `./mlruns` (through its server if one is running).
The report is one self-contained HTML file (plots embedded) with the PNGs beside it.
"""

from __future__ import annotations

import argparse
import sys

from yolox_ray.report import run_report_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, help="study name (the MLflow parent run's `study` tag)")
    parser.add_argument("--out", default=None, help="output folder (default reports/<study>)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: ./mlruns)")
    parser.add_argument("--optuna-storage", default=None,
                        help="Optuna RDB URL (default: the one recorded on the study's parent run)")
    return run_report_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
