"""Tracking off the driver's node, the parts that need no cluster: where a local server may listen,
and the start-of-trial reachability check (the two-node test covers the rest end to end)."""

from __future__ import annotations

import socket

import pytest

from yolox_ray.cluster import tracking
from yolox_ray.config import ConfigError


def test_non_loopback_server_needs_an_explicit_opt_in(tmp_path):
    with pytest.raises(ConfigError, match="unauthenticated on 10.1.2.3.*--tracking-insecure"):
        tracking.start_server(tmp_path / "mlruns", host="10.1.2.3")
    assert not (tmp_path / "mlruns").exists()  # refused before anything was created


def test_without_a_cluster_the_server_stays_on_loopback():
    assert tracking.server_host_for_cluster(None) == tracking.LOCAL_HOST
    assert tracking.server_host_for_cluster("http://127.0.0.1:5000") == tracking.LOCAL_HOST


def test_loopback_detection():
    assert tracking.is_loopback_host("127.0.0.1") and tracking.is_loopback_host("localhost")
    assert tracking.is_loopback_host("::1") and not tracking.is_loopback_host("10.77.0.1")
    assert tracking.uri_host("http://10.77.0.1:5000") == "10.77.0.1"
    assert tracking.uri_host("sqlite:////tmp/x.db") is None


def test_unreachable_tracking_fails_naming_uri_and_node():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(tracking.TrackingUnreachableError, match=rf"trial t1 on node .*{uri}.*loopback"):
        tracking.check_reachable(uri, "trial t1", timeout_s=2)
    tracking.check_reachable("sqlite:////nonexistent/mlflow.db", "trial t1")  # not a server: nothing to check
