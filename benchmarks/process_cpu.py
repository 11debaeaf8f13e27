"""Who uses the CPU while a command runs: CPU seconds per process (grouped by role), from /proc.

    python benchmarks/process_cpu.py [--interval 1] [--top 15] [--timeline 10] -- COMMAND [ARGS...]

Runs COMMAND and samples every process on the machine each `--interval` seconds (utime + stime
from /proc/PID/stat, so short-lived processes are counted from their first sample on). At the end
it prints, per role (the Train worker, Ray's raylet / GCS / dashboard / agents, the MLflow server,
the driver, everything else), the CPU seconds used while the command ran and their share of the
machine's capacity (cores x wall time), then the busiest single processes. On a 2-core machine
where the training worker wants both cores, every CPU second another process takes is a second
the step waits for (benchmarks/train_speed.py); this says whose seconds they are. `--timeline S`
also prints each role's CPU per S-second window, which separates start-up (imports, actor creation)
from the steady load during training. Linux only.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")

# (role, substring of the command line): first match wins; order from specific to general.
ROLES = (
    ("Ray Train worker", "ray::RayTrainWorker"),
    ("Ray Train controller", "TrainController"),
    ("Ray Tune trial / driver task", "ray::_Inner"),
    ("Ray dashboard agent", "dashboard/agent.py"),
    ("Ray runtime-env agent", "runtime_env/agent"),
    ("Ray dashboard", "dashboard/dashboard.py"),
    ("Ray log monitor", "log_monitor.py"),
    ("Ray monitor", "monitor.py"),
    ("Ray raylet", "raylet"),
    ("Ray GCS", "gcs_server"),
    ("Ray idle workers", "ray::IDLE"),
    ("Ray other workers", "ray::"),
    ("MLflow server", "mlflow"),
    ("gunicorn/uvicorn (MLflow)", "uvicorn"),
)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15 of stat)


def sample() -> dict[int, tuple[float, str]]:
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            pid = int(entry.name)
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                out[pid] = (cpu, _cmdline(pid))
    return out


def role(cmdline: str, driver_pid: int, pid: int) -> str:
    if pid == driver_pid:
        return "the command (driver)"
    for name, key in ROLES:
        if key in cmdline:
            return name
    return "everything else"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    p.add_argument("--top", type=int, default=15, help="busiest single processes to list")
    p.add_argument("--timeline", type=float, default=0.0, help="also print CPU per role per this many seconds")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command to run after --")
    if args.interval <= 0:
        p.error(f"--interval: must be > 0, got {args.interval}")

    first = sample()  # processes alive before the command: only what they use from now on counts
    start = time.perf_counter()
    proc = subprocess.Popen(command)
    last: dict[int, tuple[float, str]] = {}
    seen_cmd: dict[int, str] = {}
    windows: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    while proc.poll() is None:
        window = int((time.perf_counter() - start) // args.timeline) if args.timeline > 0 else 0
        for pid, (cpu, cmd) in sample().items():
            before = last.get(pid, first.get(pid, (0.0, "")))[0] if (pid in last or pid in first) else 0.0
            last[pid] = (cpu, cmd)
            if cmd:
                seen_cmd[pid] = cmd
            if cpu > before:
                windows[window][role(seen_cmd.get(pid, cmd), proc.pid, pid)] += cpu - before
        time.sleep(args.interval)
    wall = time.perf_counter() - start
    per_role: dict[str, float] = defaultdict(float)
    per_process = []
    for pid, (cpu, cmd) in last.items():
        used = cpu - first.get(pid, (0.0, ""))[0] if pid in first else cpu
        if used <= 0:
            continue
        cmd = seen_cmd.get(pid, cmd)
        name = role(cmd, proc.pid, pid)
        per_role[name] += used
        per_process.append((used, pid, name, cmd))
    cores = os.cpu_count() or 1
    total = sum(per_role.values())
    print(f"\n[process_cpu] exit {proc.returncode}, wall {wall:.1f} s, {cores} cores = {cores * wall:.0f} core-s; "
          f"sampled every {args.interval} s (a process's last {args.interval} s before it exits is not seen)")
    print(f"  {'role':<32}{'CPU s':>9}{'% of machine':>14}{'% of used':>11}")
    for name, used in sorted(per_role.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<32}{used:>9.1f}{100 * used / (cores * wall):>13.1f}%{100 * used / total:>10.1f}%")
    print(f"  {'all':<32}{total:>9.1f}{100 * total / (cores * wall):>13.1f}%")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"  the command itself with the descendants it waited for (getrusage, exact): "
          f"{usage.ru_utime + usage.ru_stime:.1f} CPU s")
    if args.timeline > 0:
        names = [name for name, _ in sorted(per_role.items(), key=lambda kv: -kv[1])][:8]
        print(f"  CPU s per {args.timeline:g}-s window (columns: the 8 busiest roles)")
        print("  " + f"{'from s':>7}" + "".join(f"{name[:13]:>14}" for name in names))
        for window in sorted(windows):
            print("  " + f"{window * args.timeline:>7.0f}" + "".join(f"{windows[window].get(n, 0.0):>14.1f}" for n in names))
    print("  busiest processes:")
    for used, pid, name, cmd in sorted(per_process, reverse=True)[: args.top]:
        print(f"  {used:>8.1f} s  pid {pid:<7} {name:<28} {cmd[:90]}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
