#!/usr/bin/env python
"""Open the MLflow UI over the local store on 127.0.0.1 (same as `yolox-ray ui`).

    python dashboards/mlflow_ui.py [--port 5000] [--mlruns mlruns]

If a study's tracking server is already running over that store, its address is printed instead.
"""

from __future__ import annotations

import argparse
import sys

from yolox_ray.cluster.tracking import run_ui_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--mlruns", default="mlruns", help="the local tracking store folder")
    return run_ui_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
