"""Connecting to (or starting) the Ray cluster, shared by `train` and `tune`.

Local by default; `address="auto"`, `"HOST:PORT"` or `"ray://…"` joins an existing cluster. The local cluster
gets a `trial_slot` custom resource so that a Tune trial (the Train driver) does not take a CPU
away from its own Train workers on a small machine (ray_stack.md §3b). Studies keep the dashboard
on because Ray Train V2 needs the State API to free the placement groups of trials Tune stops (§3b).
`yolox-ray train` needs no State API and starts its local cluster without the dashboard's head
modules unless asked (`--ray-dashboard`): on a 2-core machine those idle processes wake often enough
to stall the two intra-op threads every step waits on, about 4 % of an epoch (benchmarks/ray_overhead.py).

Authentication: only the local cluster we start ourselves (one machine, loopback) defaults to
``RAY_AUTH_MODE=disabled``. Joining an existing cluster keeps the user's auth settings
(``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN``/``~/.ray/auth_token``): forcing "disabled" there would
fail to connect to a token-protected cluster, or quietly talk to one without a token.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

# Quieter, faster defaults; set before Ray is imported (users may override any of them).
_ENV_DEFAULTS = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "TUNE_GLOBAL_CHECKPOINT_S": "2",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}
# Only for a cluster started here (loopback, one machine); never when joining one (see the docstring).
_LOCAL_ENV_DEFAULTS = {"RAY_AUTH_MODE": "disabled"}

TRIAL_SLOT = "trial_slot"


def set_ray_env_defaults() -> None:
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    trial_slots: int = 1,
    temp_dir: str | None = None,
    dashboard_port: int | None = None,
    dashboard: bool = True,
    quiet: bool = True,
) -> None:
    """Start a local Ray cluster (address None) or connect to `address`; no-op if already connected.

    trial_slots: how many Tune trials (Train drivers) may run at once on the local cluster.
    dashboard: start the local cluster's dashboard (and with it the State API); a joined cluster
    keeps whatever its head runs.
    """
    set_ray_env_defaults()
    import ray

    if ray.is_initialized():
        return
    kwargs: dict = dict(
        logging_level=logging.WARNING if quiet else logging.INFO,
        log_to_driver=not quiet,
    )
    if address is not None:
        ray.init(address=address, **kwargs)
        return
    for key, value in _LOCAL_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if dashboard:
        kwargs.update(dashboard_host="127.0.0.1", dashboard_port=dashboard_port or free_port())
    ray.init(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        resources={TRIAL_SLOT: trial_slots},
        include_dashboard=dashboard,
        _temp_dir=temp_dir,
        **kwargs,
    )


def state_api_reachable(address: str | None = None, timeout_s: int = 30) -> bool:
    """Whether the cluster's State API (served by its dashboard) answers. Ray Train V2 frees the
    placement group of a trial Tune stops (ASHA) only through it (ray_stack.md §3b); without it the
    freed trial's CPUs/GPUs stay reserved. `address`: a bootstrap (GCS) or dashboard address; None:
    the cluster this process is connected to."""
    try:
        from ray.util.state import list_nodes

        list_nodes(address=address, limit=1, timeout=timeout_s, raise_on_missing_output=False)
        return True
    except Exception:  # noqa: BLE001 - no dashboard, no ray[default], a dashboard that does not answer
        return False


STATE_API_WARNING = (
    "warning: early stopping is on but this cluster's Ray State API (its dashboard) does not answer: "
    "Ray Train cannot release the placement group of a trial ASHA stops, so its CPUs/GPUs stay reserved "
    "and later trials may wait for resources forever. Fix: start the head with "
    "`ray start --head --include-dashboard=true` (needs `pip install 'ray[default]'`), or run the study "
    "with --no-early-stop (early_stop: false).")


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


@dataclass(frozen=True)
class ClusterNodes:
    """The connected cluster's node addresses as seen from this driver (what tracking must reach)."""

    driver_ip: str
    node_ips: tuple[str, ...]

    @property
    def remote_ips(self) -> tuple[str, ...]:
        """Nodes other than the driver's: they cannot reach the driver's loopback."""
        return tuple(ip for ip in self.node_ips if ip != self.driver_ip)


def cluster_nodes() -> ClusterNodes:
    """The driver's node IP and every alive node's IP (Ray must be connected)."""
    import ray

    ips = sorted({str(n["NodeManagerAddress"]) for n in ray.nodes() if n.get("Alive")})
    return ClusterNodes(driver_ip=ray.util.get_node_ip_address(), node_ips=tuple(ips))


def node_ip() -> str:
    """This process's node IP (for messages that say where something failed)."""
    import ray

    try:
        return ray.util.get_node_ip_address()
    except Exception:  # not inside Ray
        return socket.gethostname()
