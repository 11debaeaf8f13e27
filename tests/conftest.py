"""Root conftest: its folder (tests/) goes on sys.path, so test modules can import shared helpers
such as `tiny_config`."""

import os
import shutil
import tempfile

import pytest


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    """The real MLflow server over one store shared by the whole session: the first module starts it,
    later ones find it through its server.json, and it stops when the session ends."""
    from yolox_ray.cluster import tracking

    # A generous start-up limit: on a loaded 2-core machine the first migration of the store is slow.
    srv = tracking.start_server(tmp_path_factory.getbasetemp() / "mlflow_shared", timeout_s=600)
    if srv.owned:
        request.config.add_cleanup(lambda: tracking.stop_server(srv))
    return srv


@pytest.fixture(scope="module")
def ray_cluster(request):
    """A local Ray cluster for one test module: 2 CPUs, 2 trial slots, fast Train health checks. The
    module is pickled by value, since Ray workers cannot import test files."""
    import ray.cloudpickle

    from yolox_ray.cluster.ray_setup import init_ray, shutdown_ray

    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    ray.cloudpickle.register_pickle_by_value(request.module)
    temp_dir = tempfile.mkdtemp(prefix="yrc", dir="/tmp")  # short: Ray's socket paths have a length limit
    init_ray(num_cpus=2, trial_slots=2, temp_dir=temp_dir)
    yield
    shutdown_ray()
    shutil.rmtree(temp_dir, ignore_errors=True)
    mp.undo()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory, request):
    """A real MLflow server on this machine's non-loopback address (where a multi-node cluster's server
    listens), hence with basic auth; shared by the session like `server`. Skips without such an address."""
    import ray.util

    from yolox_ray.cluster import tracking

    host = ray.util.get_node_ip_address()  # the address of the default route (no packet is sent)
    if tracking.is_loopback_host(host):
        if os.environ.get("CI"):
            pytest.fail(f"the authenticated-server tests must run in CI, but this machine has no non-loopback "
                        f"address (got {host})")
        pytest.skip(f"this machine has no non-loopback address (got {host})")
    srv = tracking.start_server(tmp_path_factory.getbasetemp() / "mlflow_auth", host=host, timeout_s=600)
    if srv.owned:
        request.config.add_cleanup(lambda: tracking.stop_server(srv))
    return srv
