"""A real two-node Ray cluster on one machine, for the multi-node tests.

The head and the worker node each live in their own Linux network namespace, joined by a veth pair
(10.77.0.1/24 and 10.77.0.2/24 by default), so neither can reach the other's loopback, exactly like
two machines; the filesystem is shared, like an NFS mount. Needs root and iproute2 (`ip netns`).

Everything here is found again by id for cleanup: the namespaces by name, and every process by the
namespace it runs in (`ip netns pids`), so a test can kill "the worker node" without touching any
other Ray cluster on the machine (never `ray stop`, which kills every Ray process it finds).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
GCS_PORT = 6379  # each namespace has its own ports: nothing else on the machine can clash
DASHBOARD_PORT = 8265  # the head's job server (`ray job submit --address http://HEAD_IP:8265`)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here (None when they can): tried, not guessed."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"yrprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class TwoNodes:
    """The namespaces, addresses and node processes of one two-node cluster."""

    tag: str
    base: Path  # short path: Ray's socket paths must stay under 107 characters
    head_ip: str = "10.77.0.1"
    worker_ip: str = "10.77.0.2"
    env: dict[str, str] = field(default_factory=dict)
    node_procs: list[subprocess.Popen] = field(default_factory=list)
    worker_starts: int = 0

    @property
    def head_ns(self) -> str:
        return f"yrh{self.tag}"

    @property
    def worker_ns(self) -> str:
        return f"yrw{self.tag}"

    @property
    def address(self) -> str:
        return f"{self.head_ip}:{GCS_PORT}"

    # -- network ---------------------------------------------------------------------------------

    def create_network(self) -> None:
        h, w = f"yrvh{self.tag}", f"yrvw{self.tag}"
        _ip("netns", "add", self.head_ns)
        _ip("netns", "add", self.worker_ns)
        _ip("link", "add", h, "type", "veth", "peer", "name", w)
        _ip("link", "set", h, "netns", self.head_ns)
        _ip("link", "set", w, "netns", self.worker_ns)
        for ns, dev, ip in ((self.head_ns, h, self.head_ip), (self.worker_ns, w, self.worker_ip)):
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            # A default route, so "which address is mine" (Ray's node-IP probe) finds the veth address.
            _ip("-n", ns, "route", "add", "default", "dev", dev)

    def popen(self, ns: str, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start `cmd` inside namespace `ns` (its own process group), output to `log`."""
        full_env = {**os.environ, **self.env, **(env or {})}
        with open(log, "ab") as fh:
            return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=full_env, start_new_session=True)

    def pids(self, ns: str) -> list[int]:
        out = _ip("netns", "pids", ns, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_namespace(self, ns: str, timeout_s: float = 20.0) -> list[int]:
        """SIGKILL every process in `ns` (by pid, found through the namespace) until none is left."""
        killed: list[int] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pids = self.pids(ns)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        for proc in self.node_procs:  # reap our own children
            if proc.poll() is None:
                try:
                    proc.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    pass
        return killed

    # -- Ray ---------------------------------------------------------------------------------------

    def start_head(self, resources: dict[str, float], dashboard: bool = False) -> None:
        """The head: no CPUs (no training here), `resources` (e.g. the trial drivers' slots); returns once
        the head node is registered (a worker started earlier would fail to join). `dashboard`: its job
        server on `head_ip:DASHBOARD_PORT` (for `ray job submit`); off, start-up is a minute shorter on 2 cores."""
        cmd = [RAY, "start", "--head", "--block", "--node-ip-address", self.head_ip, "--port", str(GCS_PORT),
               "--num-cpus", "0", "--num-gpus", "0", "--resources", json.dumps(resources),
               *(["--include-dashboard", "true", "--dashboard-host", self.head_ip, "--dashboard-port",
                  str(DASHBOARD_PORT)] if dashboard else ["--include-dashboard", "false"]),
               "--object-store-memory", str(100 * 1024**2), "--temp-dir", str(self.base / "head"),
               "--disable-usage-stats"]
        self.node_procs.append(self.popen(self.head_ns, cmd, self.base / "head.log"))
        self.wait_nodes(1)

    def start_worker(self, num_cpus: int) -> None:
        """A worker node joining the head over the veth pair (again after `kill_worker`)."""
        self.worker_starts += 1
        cmd = [RAY, "start", "--block", "--address", self.address, "--node-ip-address", self.worker_ip,
               "--num-cpus", str(num_cpus), "--num-gpus", "0", "--object-store-memory", str(100 * 1024**2),
               "--disable-usage-stats"]
        self.node_procs.append(self.popen(self.worker_ns, cmd, self.base / f"worker{self.worker_starts}.log"))

    def kill_worker(self) -> list[int]:
        return self.kill_namespace(self.worker_ns)

    def run_in_head(self, code: str, timeout_s: float = 120.0) -> str:
        """Run a Python snippet as a Ray driver inside the head namespace; its stdout."""
        out = subprocess.run(["ip", "netns", "exec", self.head_ns, sys.executable, "-c", code],
                             capture_output=True, text=True, timeout=timeout_s, env={**os.environ, **self.env})
        if out.returncode != 0:
            raise RuntimeError(f"driver snippet failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def wait_nodes(self, n: int, timeout_s: float = 180.0) -> None:
        """Until the cluster has `n` alive nodes, asked from the head namespace (retried while the
        head is still starting: its GCS or raylet may not answer yet)."""
        code = ("import ray, time\n"
                f"ray.init(address='{self.address}', logging_level='ERROR')\n"
                "deadline = time.time() + 30\n"
                f"while sum(x['Alive'] for x in ray.nodes()) != {n} and time.time() < deadline:\n"
                "    time.sleep(0.5)\n"
                "print(sum(x['Alive'] for x in ray.nodes()))\n")
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                alive = int(self.run_in_head(code, timeout_s=120).split()[-1])
            except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
                last = str(exc)[-2000:]
                time.sleep(2)
                continue
            if alive == n:
                return
            last = f"{alive} alive nodes"
        raise RuntimeError(f"the cluster did not reach {n} alive nodes in {timeout_s:.0f} s ({last});\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        # The nodes' and the test's logs, and a Ray job's driver output (kept by the head).
        for log in [*sorted(self.base.glob("*.log")), *sorted(self.base.glob("head/session_*/logs/job-driver-*.log"))]:
            text = log.read_text(errors="replace").splitlines()
            parts.append(f"--- {log.name} (last 40 lines)\n" + "\n".join(text[-40:]))
        return "\n".join(parts)

    # -- cleanup -----------------------------------------------------------------------------------

    def destroy(self) -> None:
        """Kill every process in both namespaces (by pid), then delete the namespaces (and the veth)."""
        for ns in (self.worker_ns, self.head_ns):
            self.kill_namespace(ns)
        for proc in self.node_procs:
            if proc.poll() is None:
                with_timeout = proc.wait if hasattr(proc, "wait") else None
                if with_timeout:
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
        for ns in (self.worker_ns, self.head_ns):
            _ip("netns", "del", ns, check=False)
