"""MLflow tracking for studies: the local server, the parent/child runs, and the engine logger.

Layout of a local tracking store (``root``, default ``./mlruns``)::

    mlruns/
      mlflow.db        SQLite backend store (only the server process opens it)
      artifacts/       artifact store, served by the server (``mlflow-artifacts:/`` URIs)
      server.json      {"pid", "port", "uri", "owner_pid", "auth"} of the running server
      server.log       the server's stdout/stderr

`start_server(root)` starts ``mlflow server`` on 127.0.0.1 in its own process group (or reuses
the one `server.json` points at if it still answers ``/health``), so trial processes only talk
HTTP and never open SQLite themselves (ray_stack.md §5, §8.11). A server whose owner died (e.g. a
killed sweep driver) is adopted by the next process that reuses it, which then stops it.

Multi-node clusters (`tracking_session(..., address=...)`): trials on other nodes cannot reach the
driver's loopback, so when the connected cluster has nodes besides the driver's, the local server
listens on the driver's Ray node IP (the address those nodes already use to reach this node), with
MLflow's allowed Host headers set to that address only, and **with authentication**: MLflow's
basic-auth app (``--app-name basic-auth``), whose admin credential is generated (``secrets``) when the
store is first served beyond loopback and kept owner-only next to it::

    mlruns/auth/              0700
      basic_auth.ini          0600: [mlflow] section of MLflow's auth config (default_permission
                              NO_PERMISSIONS, the admin user and password), [yolox-ray] the Flask secret key
      basic_auth.db           MLflow's user/permission database

The credential travels as a `TrackingAuth`, whose repr/str hide the password: the driver's MLflow
clients read it from ``MLFLOW_TRACKING_USERNAME/PASSWORD`` set for the session (`authenticated`); a
Tune trial gets it in its pickled context and a Train worker in its loop config, and each sets it in
its own process (`apply_auth`). It is never printed, logged as a param/tag, or written elsewhere. The
admin credential belongs to the store's auth database and stays with the driver. A study's trials get
a credential of their own (`study_credential`): the user ``study-<name>``, allowed to edit the study's
experiment only (NO_PERMISSIONS elsewhere), with a fresh random password each time a driver starts or
resumes the study (set by the admin, held in memory only, so nothing stores it). Basic auth over plain HTTP: on a network you do not trust, use
``--tracking-uri`` of an https server. A loopback ``--tracking-uri`` with such a cluster is refused
before any trial starts, and every trial checks its tracking URI and credential at start
(`check_reachable`), naming the URI and its node.

Runs: one **parent run per study** (`ensure_study_run`, its id kept in ``<study_dir>/mlflow.json``
and re-used on resume) and one **child run per trial** (`ensure_trial_run`, tagged
``mlflow.parentRunId`` and ``trial_id``, found again with ``search_runs`` on resume, so a resumed
trial writes into the same run and never a new one). The child run is created by the Tune trial
function on the driver side before its TorchTrainer starts; rank 0 of the Train run then logs into
it through `MLflowTrialLogger`, an engine callback (``yolox_ray.engine.trainer.Callback``).

Metric names written by `MLflowTrialLogger`:

- per logged iteration (step = global iteration): ``train/<key>`` for every number the engine passes
  (loss terms, ``lr``, ``fg_per_gt``, ``iter_time``, ...);
- per epoch (step = epoch, 1-based): every numeric epoch metric under its own name (``loss``,
  ``lr``, ``best_AP``, ``epoch_seconds`` ...); after an evaluation also the 12 COCO stats
  (``AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl``); COCO stats are *not* logged on epochs
  without an evaluation, so curves show real points only;
- ``best_checkpoint_AP`` (step = epoch) each time ``checkpoints/best_ckpt.pth`` is uploaded.

Artifacts: ``config.yaml`` (resolved config), ``checkpoints/best_ckpt.pth`` (the EMA weights and
config of the best evaluation so far, `engine.checkpoint.weights_file`; loads into ``yolox-ray eval``),
``per_class_ap/epoch_NNN.csv`` (when the epoch metrics carry ``per_class_ap``), ``curves.png``.
The driver's dataset checks (`log_data_checks`, from `make_trainer`): metrics ``data/<split>/...``
(unreadable images, skipped annotations, ...) and ``data_checks/summary.json`` +
``data_checks/<split>_unreadable.tsv``.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import functools
import io
import ipaddress
import json
import math
import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from configparser import ConfigParser
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from yolox_ray.cluster.ray_setup import cluster_nodes, free_port, init_ray, node_ip
from yolox_ray.config import ConfigError
from yolox_ray.metrics import AP, AP50, COCO_STAT_KEYS, LOSS
from yolox_ray.storage import StoragePath, as_storage

LOCAL_HOST = "127.0.0.1"
AUTH_DIR = "auth"  # under the store root: MLflow's basic-auth config and database (owner-only)
AUTH_CONFIG = "basic_auth.ini"
AUTH_USER = "yolox-ray"
STUDY_USER_PREFIX = "study-"  # + the study name: the MLflow user a study's trials log as
_CRED_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
STUDY_RUN_FILE = "mlflow.json"
# The AP of the best checkpoint uploaded so far (`checkpoints/best_ckpt.pth`).
BEST_CHECKPOINT_AP = f"best_checkpoint_{AP}"
# MLflow limits (mlflow.utils.validation): 1000 metrics / 100 params / 100 tags per log_batch call.
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100


class TrackingError(RuntimeError):
    """The MLflow server could not be started/reached, or a run could not be found/created."""


class TrackingUnreachableError(TrackingError):
    """A trial (or Train worker) cannot reach its tracking server; the message names URI and node."""


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uri_host(uri: str) -> str | None:
    """The host of an http(s) tracking URI; None for file/sqlite/databricks-style URIs."""
    parts = urllib.parse.urlsplit(uri)
    return parts.hostname if parts.scheme in ("http", "https") else None


def check_reachable(uri: str, where: str, timeout_s: float = 10.0) -> None:
    """Fail now, naming `uri` and this node, if an http(s) tracking server does not answer /health
    from here, or refuses this process's credential (instead of trials whose every log call is
    swallowed into a warning)."""
    if uri_host(uri) is None:
        return
    if not server_healthy(uri, timeout_s=timeout_s):
        hint = (" (a loopback address: only processes on the server's own machine reach it)"
                if is_loopback_host(uri_host(uri)) else "")
        raise TrackingUnreachableError(
            f"{where} on node {node_ip()}: the MLflow tracking server {uri} does not answer{hint}; "
            f"give --tracking-uri a server every node of the cluster can reach")
    auth = current_auth()
    if auth is None and (os.environ.get("MLFLOW_TRACKING_TOKEN") or os.environ.get("MLFLOW_TRACKING_AUTH")):
        return  # another kind of credential: MLflow's client knows how to send it, this probe does not
    status = _api_status(uri, auth, timeout_s)
    if status in (401, 403):
        has = "its credential was refused" if auth else "no credential was handed to this process"
        raise TrackingUnreachableError(
            f"{where} on node {node_ip()}: the MLflow tracking server {uri} requires authentication and "
            f"{has} (HTTP {status}); for your own server set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD "
            f"for the driver")


def _api_status(uri: str, auth: TrackingAuth | None, timeout_s: float) -> int | None:
    """HTTP status of one read-only API call (search one experiment) with `auth`; None if no answer."""
    import base64

    req = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1")
    if auth is not None:
        token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError, ValueError):
        return None


# =============================================================================================
# Credentials


@dataclass(frozen=True)
class TrackingAuth:
    """An HTTP basic-auth credential for a tracking server. Its repr/str hide the password, so it can
    ride in a pickled trial context or a Train loop config (which Ray shows with str()) unseen."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"TrackingAuth(username={self.username!r}, password=<hidden>)"

    __str__ = __repr__


def current_auth() -> TrackingAuth | None:
    """The basic-auth credential this process's MLflow clients send (MLflow's own lookup: the
    MLFLOW_TRACKING_USERNAME/PASSWORD variables, else ~/.mlflow/credentials), or None."""
    from mlflow.utils.credentials import read_mlflow_creds

    creds = read_mlflow_creds()
    return TrackingAuth(creds.username, creds.password) if creds.username and creds.password else None


def apply_auth(auth: TrackingAuth | None) -> None:
    """Make this process's MLflow clients send `auth` (for processes that exist for one trial or
    Train worker: MLflow takes credentials from the environment only)."""
    if auth is not None:
        os.environ[_CRED_ENV[0]], os.environ[_CRED_ENV[1]] = auth.username, auth.password


@contextlib.contextmanager
def authenticated(auth: TrackingAuth | None) -> Iterator[None]:
    """`apply_auth` for the duration of the block, then the previous values back (the driver)."""
    if auth is None:
        yield
        return
    before = {k: os.environ.get(k) for k in _CRED_ENV}
    apply_auth(auth)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def study_credential(tracking_uri: str, study: str, experiment_id: str, out: Any = None) -> TrackingAuth | None:
    """The credential a study's trials log with: user ``study-<study>`` with EDIT on `experiment_id` only
    and a new random password (the previous one stops working), made with this process's credential.

    None without a credential (an open server: nothing to hand on). When this process's user cannot
    manage users (not the server's admin, or a server without MLflow's basic-auth app), the trials get
    this process's own credential, and one line says so."""
    admin = current_auth()
    if admin is None:
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    client = AuthServiceClient(tracking_uri)
    user, password = f"{STUDY_USER_PREFIX}{study}", secrets.token_urlsafe(32)
    try:
        try:
            client.create_user(user, password)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            client.update_user_password(user, password)
        try:
            client.grant_user_permission(user, "experiment", experiment_id, "EDIT")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    except MlflowException as exc:
        print(f"[{study}] the trials log as {admin.username}: that user cannot create a per-study user on "
              f"{tracking_uri} ({exc.error_code})", file=out or sys.stdout, flush=True)
        return admin
    return TrackingAuth(user, password)


def _write_private(path: Path, text: str) -> None:
    """Create `path` owner-only (0600) from the start: the content is never readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def auth_config_path(root: str | Path) -> Path:
    return Path(root).expanduser().resolve() / AUTH_DIR / AUTH_CONFIG


def server_auth(root: str | Path) -> tuple[TrackingAuth, str]:
    """The admin credential and Flask secret key of the store's basic-auth server: read from
    ``<root>/auth/basic_auth.ini``, or generated there (folder 0700, file 0600) the first time.
    Generated once per store: MLflow creates the admin from the ini only while its auth database
    has no admin, so the ini and ``basic_auth.db`` belong together."""
    path = auth_config_path(root)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        cfg = ConfigParser(interpolation=None)
        cfg["mlflow"] = {
            "default_permission": "NO_PERMISSIONS",  # nothing for anyone but the admin
            "database_uri": f"sqlite:///{path.parent / 'basic_auth.db'}",
            "admin_username": AUTH_USER,
            "admin_password": secrets.token_urlsafe(32),
            "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
            # Without it every request pays a PBKDF2 check (slow on a busy driver); one worker, one user,
            # so the cache's cross-worker staleness does not arise.
            "auth_cache_ttl_seconds": "600",
        }
        cfg["yolox-ray"] = {"flask_secret_key": secrets.token_hex(32)}
        buf = io.StringIO()
        cfg.write(buf)
        with contextlib.suppress(FileExistsError):  # another process created it first: read theirs
            _write_private(path, buf.getvalue())
    os.chmod(path.parent, 0o700)
    os.chmod(path, 0o600)
    cfg = ConfigParser(interpolation=None)
    cfg.read(path)
    try:
        auth = TrackingAuth(cfg["mlflow"]["admin_username"], cfg["mlflow"]["admin_password"])
        return auth, cfg["yolox-ray"]["flask_secret_key"]
    except KeyError as exc:
        raise TrackingError(f"{path} lacks {exc}: delete the {path.parent} folder to start over "
                            f"(its server's users are lost)") from None


# =============================================================================================
# Server lifecycle


@dataclass(frozen=True)
class TrackingServer:
    """A running ``mlflow server``. `owned`: this process is responsible for stopping it."""

    uri: str
    pid: int
    port: int
    root: Path
    owned: bool
    auth: TrackingAuth | None = None  # a server beyond loopback: its basic-auth admin credential

    @property
    def record_path(self) -> Path:
        return self.root / "server.json"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    return True


def server_healthy(uri: str, timeout_s: float = 2.0) -> bool:
    """True if ``GET <uri>/health`` answers 200."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _is_mlflow_process(pid: int) -> bool:
    try:
        return b"mlflow" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _wait_healthy(uri: str, pid: int, timeout_s: float, log_path: Path | None, kill_on_timeout: bool = True) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server_healthy(uri):
            return
        if not _pid_alive(pid):
            break
        time.sleep(0.5)
    tail = ""
    if log_path is not None and log_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    alive = _pid_alive(pid)
    if alive and kill_on_timeout:
        _kill_group(pid)
    raise TrackingError(
        f"MLflow server at {uri} (pid {pid}) did not become healthy within {timeout_s:.0f} s"
        f"{' (it exited)' if not alive else ' and was stopped' if kill_on_timeout else ''}; last lines of {log_path}:\n{tail}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start_server(root: str | Path = "mlruns", *, port: int | None = None, host: str = LOCAL_HOST,
                 timeout_s: float = 180.0) -> TrackingServer:
    """Start (or reuse) a local MLflow tracking server over ``<root>/mlflow.db`` on `host` (127.0.0.1).

    Reuse: if ``<root>/server.json`` names a live server that answers ``/health``, it is returned
    (owned only if the process that started it is gone, i.e. it is adopted). Otherwise a new
    ``mlflow server`` is started in its own session/process group; the call waits for
    ``/health`` (the first start migrates the SQLite schema and can take ~30 s on a loaded box).
    A non-loopback `host` (a cluster's node IP) gets MLflow's basic-auth app with the store's
    credential (`server_auth`, returned as ``.auth``): nobody's store is served to a network open.
    """
    root = Path(root).expanduser().resolve()
    secure = not is_loopback_host(host)
    root.mkdir(parents=True, exist_ok=True)
    record = root / "server.json"
    with _locked(root / "server.lock"):
        auth, secret_key = server_auth(root) if secure else (None, None)
        if record.exists():
            try:
                info = json.loads(record.read_text())
                pid, uri, rec_port = int(info["pid"]), str(info["uri"]), int(info["port"])
                owner = int(info.get("owner_pid", -1))
            except (ValueError, KeyError, TypeError):
                pid, uri, rec_port, owner = -1, "", 0, -1
            if pid > 0 and _pid_alive(pid) and _is_mlflow_process(pid):
                if uri_host(uri) != host:
                    raise TrackingError(f"the MLflow server over {root} (pid {pid}) listens at {uri}, not on {host}: "
                                        f"stop it, or use another --mlruns folder")
                if secure and not info.get("auth"):
                    raise TrackingError(f"the MLflow server over {root} (pid {pid}) listens at {uri} without "
                                        f"authentication: stop it, and the next start serves the store with it")
                if not server_healthy(uri):  # may still be starting: give it time
                    _wait_healthy(uri, pid, timeout_s, root / "server.log", kill_on_timeout=False)
                adopt = not _pid_alive(owner) or owner == os.getpid()
                if adopt:
                    info["owner_pid"] = os.getpid()
                    record.write_text(json.dumps(info))
                return TrackingServer(uri=uri, pid=pid, port=rec_port, root=root, owned=adopt, auth=auth)
            record.unlink()  # stale record of a dead server
        port = port or free_port()
        uri = f"http://{host}:{port}"
        if server_healthy(uri):
            raise TrackingError(f"port {port} is already serving something else; pass another port")
        artifacts = root / "artifacts"
        artifacts.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", artifacts.as_uri(),
               "--host", host, "--port", str(port), "--workers", "1"]
        env = _server_env()
        if secure:
            # MLflow 3 refuses non-local Host headers unless allowed; allow only ours. Every API and UI
            # request needs the credential (open: /health, static files, server info); MLflow's auth
            # config and its Flask CSRF key come from the environment.
            cmd += ["--allowed-hosts", f"{host}:{port},{host}", "--app-name", "basic-auth"]
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config_path(root))
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secret_key
        log_path = root / "server.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=str(root), env=env)
        _wait_healthy(uri, proc.pid, timeout_s, log_path)
        record.write_text(json.dumps({"pid": proc.pid, "port": port, "uri": uri, "owner_pid": os.getpid(),
                                      "started_at": time.time(), "auth": secure}))
        return TrackingServer(uri=uri, pid=proc.pid, port=port, root=root, owned=True, auth=auth)


def _server_env() -> dict[str, str]:
    # The server's GenAI job runner (huey: ~8 extra processes) is not used by yolox-ray.
    env = dict(os.environ)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # Our auth config names the admin; a caller's MLFLOW_AUTH_ADMIN_* would override it.
    for key in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_CONFIG_PATH",
                "MLFLOW_FLASK_SERVER_SECRET_KEY", *_CRED_ENV):
        env.pop(key, None)
    return env


def _kill_group(pid: int, timeout_s: float = 20.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL whatever is left after `timeout_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                # The leader is gone; give its group (uvicorn, job runner) a moment, then make sure.
                time.sleep(0.2)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                return
            time.sleep(0.1)


def stop_server(server: TrackingServer) -> None:
    """Stop the server's whole process group and remove its record (whoever started it)."""
    _kill_group(server.pid)
    with _locked(server.root / "server.lock"):
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            if json.loads(server.record_path.read_text())["pid"] == server.pid:
                server.record_path.unlink()


def _ray_connected() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def server_host_for_cluster(tracking_uri: str | None) -> str:
    """Where a local server must listen so every node of the connected cluster reaches it (loopback
    when there is no cluster or it is this node alone); refuses a loopback `tracking_uri` that
    other nodes could not reach."""
    if not _ray_connected():
        return LOCAL_HOST
    nodes = cluster_nodes()
    if not nodes.remote_ips:
        return LOCAL_HOST
    if tracking_uri is not None:
        if is_loopback_host(uri_host(tracking_uri)):
            raise ConfigError(
                f"--tracking-uri {tracking_uri} is this machine's loopback, but the cluster has other nodes "
                f"({', '.join(nodes.remote_ips)}) whose trials cannot reach it: give the address of a tracking "
                f"server every node can reach, or leave --tracking-uri out to serve the local store on "
                f"{nodes.driver_ip} (with authentication)")
        return LOCAL_HOST
    if is_loopback_host(nodes.driver_ip):
        raise ConfigError(f"this driver's Ray node address is {nodes.driver_ip} but the cluster has other nodes "
                          f"({', '.join(nodes.remote_ips)}): start Ray here with a reachable --node-ip-address, "
                          f"or give --tracking-uri")
    return nodes.driver_ip


@contextlib.contextmanager
def tracking_session(tracking_uri: str | None = None, root: str | Path = "mlruns", *,
                     address: str | None = None) -> Iterator[str]:
    """Yield a tracking URI: `tracking_uri` as given, else a local server under `root` (stopped on
    exit if this process started or adopted it).

    `address`: the Ray cluster the trials will run on; it is joined first (and left on exit if joined
    here) so the server can listen where every node reaches it (`server_host_for_cluster`). Without
    it, an already connected cluster is used the same way; none: loopback. A server beyond loopback
    is authenticated; its credential is this process's MLflow credential for the session.
    """
    joined = False
    if address is not None and not _ray_connected():
        init_ray(address)
        joined = True
    try:
        host = server_host_for_cluster(tracking_uri)
        if tracking_uri:
            yield tracking_uri
            return
        server = start_server(root, host=host)
        if server.auth is not None:
            print(f"MLflow tracking server for the cluster: {server.uri} (basic auth, user {server.auth.username}; "
                  f"password in {auth_config_path(root)}, readable by you only)", flush=True)
        try:
            with authenticated(server.auth):
                yield server.uri
        finally:
            if server.owned:
                stop_server(server)
    finally:
        if joined:
            import ray

            ray.shutdown()


def run_ui_cli(args: Any) -> int:
    """`yolox-ray ui [--port P] [--mlruns DIR]`: the MLflow UI on 127.0.0.1 until Ctrl-C.

    Reuses the study server if one is running over that store (it serves the same UI), else
    serves the store itself with ``mlflow ui``.
    """
    root = Path(getattr(args, "mlruns", "mlruns")).expanduser().resolve()
    record = root / "server.json"
    if record.exists():
        with contextlib.suppress(ValueError, KeyError):
            info = json.loads(record.read_text())
            if _pid_alive(int(info["pid"])) and server_healthy(info["uri"]):
                login = (f" (log in as {AUTH_USER}; the password is in {auth_config_path(root)})"
                         if info.get("auth") else "")
                print(f"MLflow UI (study server already running): {info['uri']}{login}", flush=True)
                return 0
    if not (root / "mlflow.db").exists():
        print(f"yolox-ray ui: no MLflow store at {root} (expected {root / 'mlflow.db'})", file=sys.stderr)
        return 2
    port = int(getattr(args, "port", 5000) or 5000)
    uri = f"http://{LOCAL_HOST}:{port}"
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", (root / "artifacts").as_uri(), "--host", LOCAL_HOST, "--port", str(port),
           "--workers", "1"]
    proc = subprocess.Popen(cmd, start_new_session=True, cwd=str(root), env=_server_env())
    try:
        _wait_healthy(uri, proc.pid, 180.0, None)
        print(f"MLflow UI: {uri}  (Ctrl-C to stop)", flush=True)
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        _kill_group(proc.pid)
    return 0


# =============================================================================================
# Parent (study) and child (trial) runs


def client_for(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the source tree (suffix ``-dirty`` with local changes); None if unknown."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def get_or_create_experiment(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # created concurrently by another process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@dataclass(frozen=True)
class StudyRun:
    tracking_uri: str
    experiment_id: str
    run_id: str  # the parent run

    def url(self, run_id: str | None = None) -> str:
        return run_url(self.tracking_uri, self.experiment_id, run_id or self.run_id)


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    if tracking_uri.startswith("http"):
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{tracking_uri} experiment {experiment_id} run {run_id}"


def _str_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in tags.items() if v is not None}


def ensure_study_run(tracking_uri: str, *, study: str, study_dir: str | Path | StoragePath,
                     experiment_name: str | None = None, tags: Mapping[str, Any] | None = None) -> StudyRun:
    """The study's parent run: re-used from ``<study_dir>/mlflow.json`` if it exists on this
    server (set back to RUNNING), else created (and its id written there). `study_dir` may be
    any study storage (`yolox_ray.storage`)."""
    client = client_for(tracking_uri)
    path = as_storage(study_dir) / STUDY_RUN_FILE
    if path.exists():
        info = json.loads(path.read_text())
        try:
            run = client.get_run(info["run_id"])
        except Exception:  # not on this server (another store): start a new parent below
            warnings.warn(f"parent run {info.get('run_id')} of study {study!r} is not on {tracking_uri}; "
                          "creating a new one", stacklevel=2)
        else:
            if run.info.status != "RUNNING":
                client.update_run(run.info.run_id, status="RUNNING")
            if info.get("tracking_uri") != tracking_uri:  # e.g. the local server came back on another port
                info["tracking_uri"] = tracking_uri
                path.write_text(json.dumps(info, indent=1))
            return StudyRun(tracking_uri, run.info.experiment_id, run.info.run_id)
    exp_id = get_or_create_experiment(client, experiment_name or study)
    all_tags = {"study": study, "kind": "study", "git_commit": git_commit()}
    all_tags.update(tags or {})
    run = client.create_run(exp_id, run_name=study, tags=_str_tags(all_tags))
    path.write_text(json.dumps({"run_id": run.info.run_id, "experiment_id": exp_id, "tracking_uri": tracking_uri,
                                "study": study}, indent=1))
    return StudyRun(tracking_uri, exp_id, run.info.run_id)


def find_trial_run(client: Any, experiment_id: str, parent_run_id: str, trial_id: str) -> Any | None:
    """The child run of `trial_id` under `parent_run_id` (the oldest if several), or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.trial_id = '{trial_id}'",
        order_by=["attributes.start_time ASC"], max_results=10)
    return runs[0] if runs else None


def ensure_trial_run(study_run: StudyRun, trial_id: str, *, run_name: str, tags: Mapping[str, Any]) -> str:
    """The child run of one trial: found again by its ``trial_id`` tag (and set back to RUNNING)
    on a retry/resume, created otherwise. Returns its run id."""
    client = client_for(study_run.tracking_uri)
    run = find_trial_run(client, study_run.experiment_id, study_run.run_id, trial_id)
    if run is not None:
        if run.info.status != "RUNNING":
            client.update_run(run.info.run_id, status="RUNNING")
        client.set_tag(run.info.run_id, "resumed", "true")
        return run.info.run_id
    all_tags = {"mlflow.parentRunId": study_run.run_id, "trial_id": trial_id, "kind": "trial",
                "git_commit": git_commit()}
    all_tags.update(tags)
    run = client.create_run(study_run.experiment_id, run_name=run_name, tags=_str_tags(all_tags))
    return run.info.run_id


def finish_run(tracking_uri: str, run_id: str, status: str = "FINISHED", tags: Mapping[str, Any] | None = None) -> None:
    """Set a run's final status (FINISHED, FAILED or KILLED) and optional tags."""
    client = client_for(tracking_uri)
    for key, value in _str_tags(tags or {}).items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, status=status)


TRAIN_EXPERIMENT = "yolox-ray-train"


def start_training_run(tracking_uri: str, cfg: Any, run_name: str, *,
                       experiment_name: str = TRAIN_EXPERIMENT) -> dict[str, str]:
    """The MLflow run of a stand-alone `yolox-ray train` run (no study): re-attached by its
    deterministic Train run name when that run is resumed, created otherwise. Returns the
    ``tracking`` dict `make_trainer` takes."""
    client = client_for(tracking_uri)
    exp_id = get_or_create_experiment(client, experiment_name)
    runs = client.search_runs([exp_id], filter_string=f"tags.train_run_name = '{run_name}'",
                              order_by=["attributes.start_time ASC"], max_results=1)
    if runs:
        run_id = runs[0].info.run_id
        if runs[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
    else:
        tags = {"kind": "train", "train_run_name": run_name, "preset": cfg.name, "seed": cfg.train.seed,
                "assigner": cfg.assign.assigner, "geometry": cfg.assign.geometry, "git_commit": git_commit()}
        run_id = client.create_run(exp_id, run_name=run_name, tags=_str_tags(tags)).info.run_id
    return {"tracking_uri": tracking_uri, "run_id": run_id}


def end_training_run(tracking: Mapping[str, str], status: str = "FINISHED") -> None:
    finish_run(tracking["tracking_uri"], tracking["run_id"], status)


def log_data_checks(tracking_uri: str, run_id: str, reports: Any) -> None:
    """What the driver's dataset checks skipped (`yolox_ray.data.checks.SplitReport`s): metrics
    ``data/<split>/{images,boxes,unreadable_images,skipped_annotations,clipped_boxes,
    background_images,truncated_images}`` (step 0), artifacts ``data_checks/summary.json`` and,
    when images were skipped, ``data_checks/<split>_unreadable.tsv`` (file name, reason).
    Failures warn; they never stop a run."""
    from mlflow.entities import Metric

    try:
        client = client_for(tracking_uri)
        now = int(time.time() * 1000)
        metrics = [Metric(key=k, value=v, timestamp=now, step=0) for r in reports for k, v in r.metrics().items()]
        client.log_batch(run_id, metrics=metrics)
        summary = {r.split: {**r.to_dict(), "summary": r.lines()} for r in reports}
        client.log_text(run_id, json.dumps(summary, indent=2, sort_keys=True), "data_checks/summary.json")
        for r in reports:
            if r.unreadable:
                text = "file_name\treason\n" + "".join(f"{n}\t{why}\n" for n, why in r.unreadable.items())
                client.log_text(run_id, text, f"data_checks/{r.split}_unreadable.tsv")
    except Exception as exc:  # noqa: BLE001 - tracking must never kill a training run
        warnings.warn(f"MLflow logging (data checks) failed for run {run_id}: {exc!r}", stacklevel=2)


def child_runs(tracking_uri: str, experiment_id: str, parent_run_id: str) -> list[Any]:
    client = client_for(tracking_uri)
    return client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              max_results=10000)


# =============================================================================================
# The engine callback (rank 0 of a Train run)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:  # numpy / torch scalars
        import numbers

        if isinstance(value, numbers.Real):
            return float(value)
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            return float(value.item())
    except (TypeError, ValueError):
        pass
    return None


class MLflowTrialLogger:
    """Engine callback that logs one trial into an existing MLflow run (rank 0 only).

    Logging problems (server unreachable, ...) are reported as warnings and never stop training;
    the run's status is left to the owner of the run (the Tune trial function). Metrics are
    buffered and sent by a background thread (its own client), so a slow or locked server never
    stalls a training step; the epoch end and `on_train_end` wait until everything buffered is sent.
    """

    def __init__(self, tracking_uri: str, run_id: str, *, flush_every_s: float = 10.0,
                 flush_every_n: int = 500, log_checkpoints: bool = True, log_curves: bool = True):
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.flush_every_s = flush_every_s
        self.flush_every_n = flush_every_n
        self.log_checkpoints = log_checkpoints
        self.log_curves = log_curves
        self._client = None
        self._buffer: list[Any] = []
        self._last_flush = time.monotonic()
        self._outbox: queue.Queue[list[Any]] = queue.Queue()
        self._sender: threading.Thread | None = None
        self._best_logged: float | None = None
        self._warned: set[str] = set()

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    def _safe(self, what: str, fn, *args, **kwargs) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never kill a training run
            if what not in self._warned:
                self._warned.add(what)
                warnings.warn(f"MLflow logging ({what}) failed for run {self.run_id}: {exc!r}", stacklevel=2)
            return None

    @staticmethod
    def _is_rank0(trainer: Any) -> bool:
        return int(getattr(trainer, "rank", 0)) == 0

    def _metric(self, key: str, value: float, step: int):
        from mlflow.entities import Metric

        return Metric(key=key, value=value, timestamp=int(time.time() * 1000), step=int(step))

    def flush(self, wait: bool = False) -> None:
        """Hand the buffered metrics to the sender thread; with `wait`, return once all are sent."""
        while self._buffer:
            batch, self._buffer = self._buffer[:_MAX_METRICS_PER_BATCH], self._buffer[_MAX_METRICS_PER_BATCH:]
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_loop, name=f"mlflow-sender-{self.run_id[:8]}",
                                                daemon=True)
                self._sender.start()
            self._outbox.put(batch)
        self._last_flush = time.monotonic()
        if wait and self._sender is not None:
            self._outbox.join()

    def _send_loop(self) -> None:
        client = client_for(self.tracking_uri)  # its own client: the training thread keeps the other
        while True:
            batch = self._outbox.get()
            try:
                self._safe("log_batch", client.log_batch, self.run_id, metrics=batch)
            finally:
                self._outbox.task_done()

    # -- callback methods ---------------------------------------------------------------------

    def on_train_start(self, trainer: Any) -> None:
        if not self._is_rank0(trainer):
            return
        from mlflow.entities import Param

        from yolox_ray.config import dump_yaml, to_flat_dict

        if hasattr(trainer, "tracking_run_id") and getattr(trainer, "tracking_run_id", None) is None:
            trainer.tracking_run_id = self.run_id  # saved in checkpoints
        run = self._safe("get_run", self.client.get_run, self.run_id)
        if run is None:
            return
        best = run.data.metrics.get("best_checkpoint_AP")
        self._best_logged = float(best) if best is not None else None
        logged = run.data.params  # a resumed run: the first attempt logged them (maybe not all)
        flat = to_flat_dict(trainer.cfg)
        params = [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in flat.items()
                  if k not in logged]
        if not params:
            return
        for i in range(0, len(params), _MAX_PARAMS_PER_BATCH):
            self._safe("log params", self.client.log_batch, self.run_id, params=params[i:i + _MAX_PARAMS_PER_BATCH])
        self._safe("config artifact", self.client.log_text, self.run_id, dump_yaml(trainer.cfg), "config.yaml")

    def on_iter_end(self, trainer: Any, step: int, metrics: Mapping[str, Any]) -> None:
        if not self._is_rank0(trainer):
            return
        for key, value in metrics.items():
            number = _number(value)
            if number is not None:
                self._buffer.append(self._metric(f"train/{key}", number, step))
        if len(self._buffer) >= self.flush_every_n or time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: Mapping[str, Any],
                     checkpoint: Mapping[str, Any] | None) -> None:
        if not self._is_rank0(trainer):
            return
        evaluated = bool(metrics.get("evaluated", any(k in metrics for k in COCO_STAT_KEYS[2:])))
        for key, value in metrics.items():
            if key in COCO_STAT_KEYS and not evaluated:
                continue  # AP/AP50 carried over from an earlier evaluation: not a new point
            number = _number(value)
            if number is not None:
                self._buffer.append(self._metric(key, number, epoch))
        # Wait here, once an epoch: the epoch's metrics are in MLflow before its checkpoint is reported
        # to Ray, so a trial stopped or killed right after loses none of them.
        self.flush(wait=True)
        per_class = metrics.get("per_class_ap")
        if evaluated and per_class:
            self._safe("per-class AP", self.client.log_text, self.run_id, _per_class_csv(per_class),
                       f"per_class_ap/epoch_{int(epoch):03d}.csv")
        ap = _number(metrics.get(AP))
        if (self.log_checkpoints and evaluated and checkpoint is not None and ap is not None
                and (self._best_logged is None or ap > self._best_logged)):
            if self._safe("best checkpoint", self._upload_checkpoint, checkpoint) is not None:
                self._best_logged = ap
                self._safe(BEST_CHECKPOINT_AP, self.client.log_batch, self.run_id,
                           metrics=[self._metric(BEST_CHECKPOINT_AP, ap, epoch)])
                self._safe("best_epoch tag", self.client.set_tag, self.run_id, "best_epoch", str(int(epoch)))

    def _upload_checkpoint(self, checkpoint: Mapping[str, Any]) -> bool:
        """Upload the EMA weights + config only (`engine.checkpoint.weights_file`): Ray's checkpoint
        is the one full-state copy, so MLflow need not hold the raw model and optimizer again."""
        import torch

        from yolox_ray.engine.checkpoint import weights_file

        with tempfile.TemporaryDirectory(prefix="yolox_ckpt_") as tmp:
            path = Path(tmp) / "best_ckpt.pth"
            torch.save(weights_file(dict(checkpoint)), path)
            self.client.log_artifact(self.run_id, str(path), "checkpoints")
        return True

    def on_train_end(self, trainer: Any, summary: Mapping[str, Any]) -> None:
        if not self._is_rank0(trainer):
            return
        self.flush(wait=True)
        final = []
        for key, value in summary.items():
            number = _number(value)
            if number is not None and math.isfinite(number):
                final.append(self._metric(f"final/{key}", number, int(getattr(trainer, "epoch", 0))))
        if final:
            self._safe("final metrics", self.client.log_batch, self.run_id, metrics=final)
        if self.log_curves:
            self._safe("curves", self._log_curves)

    def _log_curves(self) -> None:
        from matplotlib.figure import Figure

        panels = [(f"train/{LOSS}", f"{LOSS} (per logged iteration)"), ("train/lr", "lr"),
                  (AP, f"{AP} (evaluated epochs)"), (AP50, f"{AP50} (evaluated epochs)")]
        histories = {k: self.client.get_metric_history(self.run_id, k) for k, _ in panels}
        if not any(histories.values()):
            return
        fig = Figure(figsize=(9, 6), tight_layout=True)
        for i, (key, title) in enumerate(panels):
            ax = fig.add_subplot(2, 2, i + 1)
            points = sorted((m.step, m.value) for m in histories[key])
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 50 else None)
            ax.set_title(title)
            ax.set_xlabel("epoch" if key in COCO_STAT_KEYS else "iteration")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        with tempfile.TemporaryDirectory(prefix="yolox_curves_") as tmp:
            path = Path(tmp) / "curves.png"
            path.write_bytes(buf.getvalue())
            self.client.log_artifact(self.run_id, str(path))


def _per_class_csv(per_class: Any) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["class", AP])
    items = per_class.items() if isinstance(per_class, Mapping) else enumerate(per_class)
    for name, value in items:
        number = _number(value)
        writer.writerow([name, "" if number is None else f"{number:.6f}"])
    return out.getvalue()
