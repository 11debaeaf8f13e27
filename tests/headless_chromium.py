"""Headless Chromium for the report tests: load a page, dump its DOM, read what the page's own
scripts marked (which plots were drawn, how many page errors)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is required: see docs/ci_requirements.md (apt-get install -y chromium)"
    return path


def headless(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    # Software WebGL (SwiftShader) for plotly's parallel coordinates; console messages go to stderr.
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp / 'chrome-profile'}",
             "--virtual-time-budget=8000"]
    return subprocess.run([chromium(), *flags, *args], capture_output=True, text=True, timeout=300)


def console_messages(stderr: str) -> list[str]:
    """The page's console messages, less SwiftShader's performance notes (not page errors)."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line and "GL Driver Message (OpenGL, Performance" not in line]


def rendered(dom: str) -> set[str]:
    tags = re.findall(r"<(?:img|div)\b[^>]*>", dom)
    return {re.search(r'id="([^"]+)"', t).group(1) for t in tags
            if re.search(r'\bclass="[^"]*\bplot\b', t) and 'data-rendered="yes"' in t}
