"""Tracking off the driver's node, the parts that need no cluster: the authenticated server a
multi-node cluster gets (on this machine's own non-loopback address), where a local server may
listen, and the start-of-trial reachability check (the two-node test covers the rest end to end)."""

from __future__ import annotations

import base64
import json
import socket
import stat
import urllib.error
import urllib.request
from argparse import Namespace
from configparser import ConfigParser

import pytest

from yolox_ray.cluster import tracking


def _status(uri: str, user: str | None = None, password: str | None = None) -> int:
    """HTTP status of a plain read-only API request (written here, not the code's own probe)."""
    req = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/search?max_results=5")
    if user is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_a_non_loopback_server_refuses_unauthenticated_requests(auth_server, capsys):
    srv = auth_server
    host = tracking.uri_host(srv.uri)
    assert not tracking.is_loopback_host(host)
    # The credential file: owner-only, in an owner-only folder next to the store.
    ini = srv.root / "auth" / "basic_auth.ini"
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
    assert stat.S_IMODE(ini.parent.stat().st_mode) == 0o700
    cfg = ConfigParser(interpolation=None)
    cfg.read(ini)
    user, password = cfg["mlflow"]["admin_username"], cfg["mlflow"]["admin_password"]
    assert len(password) >= 32 and cfg["mlflow"]["default_permission"] == "NO_PERMISSIONS"

    assert _status(srv.uri) == 401  # no credential
    assert _status(srv.uri, user, password[:-1] + ("x" if password[-1] != "x" else "y")) == 401
    assert _status(srv.uri, "somebody", password) == 401
    assert _status(srv.uri, user, password) == 200
    assert tracking.server_healthy(srv.uri)  # /health stays open: the liveness probe needs no secret

    # A process without the credential is stopped at once, saying so; with it, it passes.
    with pytest.raises(tracking.TrackingUnreachableError, match="requires authentication and no credential"):
        tracking.check_reachable(srv.uri, "trial t1")
    with tracking.authenticated(tracking.TrackingAuth(user, password)):
        tracking.check_reachable(srv.uri, "trial t1")
    assert tracking.current_auth() is None  # the previous (empty) environment is back

    # Reused, with the same credential; the password is in no record, log or repr.
    again = tracking.start_server(srv.root, host=host)
    assert (again.pid, again.uri) == (srv.pid, srv.uri)
    assert again.auth == tracking.TrackingAuth(user, password)
    for text in ((srv.root / "server.json").read_text(), (srv.root / "server.log").read_text(errors="replace"),
                 repr(again), str(again.auth)):
        assert password not in text
    assert json.loads((srv.root / "server.json").read_text())["auth"] is True

    # `yolox-ray ui` points at it and says where the password is, without printing it.
    assert tracking.run_ui_cli(Namespace(port=0, mlruns=str(srv.root))) == 0
    printed = capsys.readouterr().out
    assert srv.uri in printed and str(ini) in printed and password not in printed


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


def test_the_credential_travels_pickled_but_never_shows():
    import pickle

    from ray.train.v2._internal.state.schema import _to_json_serializable_value

    from yolox_ray.cluster.tune import _TrialContext

    auth = tracking.TrackingAuth("yolox-ray", "s3cr3t-" + "x" * 30)
    assert pickle.loads(pickle.dumps(auth)) == auth  # what a trial / Train worker receives
    ctx = _TrialContext(spec=None, study_run=None, train_storage="/tmp", auth=auth)
    loop_config = {"tracking": {"tracking_uri": "http://10.0.0.1:5000", "run_id": "r", "auth": auth}}
    # How they can be shown: repr/str (logs, tracebacks) and Ray Train's run state (dashboard, state API).
    for text in (repr(auth), str(auth), repr(ctx), str(loop_config),
                 json.dumps(_to_json_serializable_value(loop_config))):
        assert "s3cr3t" not in text and "yolox-ray" in text, text
