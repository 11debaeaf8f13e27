"""Is the study storage the same place for the driver and the worker nodes? Checked once, before any trial.

A study's Train workers write checkpoints on their own nodes and the Tune driver reads them back, so
`--out` must be shared (an NFS mount at the same path on every node, or an object store). A folder
that exists only on the driver's machine otherwise fails late and obscurely inside every trial; here
the driver writes a token under the study storage and a Ray task on each other node (on a one-node
cluster: on that node) reads it back through the same filesystem object Ray's storage uses.
"""

from __future__ import annotations

import secrets
from typing import Any

from yolox_ray.storage import StoragePath

CHECK_PREFIX = ".storage_check_"


def _read_token(marker: StoragePath) -> tuple[str, str | None, str | None]:
    """(node IP, the token read, the error) as seen from the node this task runs on."""
    import ray

    ip = ray.util.get_node_ip_address()
    try:
        return ip, marker.read_text(), None
    except FileNotFoundError:
        return ip, None, f"{marker} does not exist there"
    except Exception as exc:  # noqa: BLE001 - reported to the driver as text
        return ip, None, f"{type(exc).__name__}: {exc}"


def check_storage_visible(storage: StoragePath, *, timeout_s: float = 120.0) -> None:
    """Write a token under `storage` here, read it from every other alive node (one task each, no
    CPU); a StorageError names the storage, the node and what it saw. Ray must be connected."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from yolox_ray.storage import StorageError

    token = secrets.token_hex(8)
    marker = storage / f"{CHECK_PREFIX}{token}"
    marker.write_text(token)  # StorageError when the driver cannot write there
    try:
        here = ray.get_runtime_context().get_node_id()
        alive = [n for n in ray.nodes() if n.get("Alive")]
        nodes = [n for n in alive if n["NodeID"] != here] or alive
        task = ray.remote(num_cpus=0, max_retries=0)(_read_token)
        refs: dict[Any, str] = {
            task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(marker):
            str(n["NodeManagerAddress"]) for n in nodes}
        ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        if pending:
            raise StorageError(f"study storage {storage}: node {refs[pending[0]]} did not answer the storage check "
                               f"within {timeout_s:.0f} s")
        for ref in ready:
            try:
                ip, seen, error = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the node died or the task could not run
                raise StorageError(f"study storage {storage}: the check on node {refs[ref]} failed: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
            if seen != token:
                what = error or "another file's content"
                raise StorageError(
                    f"study storage {storage} is not visible from node {ip}: {what}. The driver wrote it, the node "
                    "cannot read it: on a cluster --out must be shared storage (the same mount on every node) "
                    "or a URI such as s3://bucket/studies")
    finally:
        try:
            marker.delete()
        except StorageError:
            pass
