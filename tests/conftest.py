"""Shared fixtures and the suite's rules.

Fixtures: ``settings`` and a real SQLite ``store`` in a temporary folder, the
API's bearer header (``auth``) and a ``client`` of the app on them, a tiny random
LiteMedSAM (``tiny_sam``), and ONE embedded Ray node for the whole session
(``ray_cluster``); a real PostgreSQL server for the session (``postgres_server``,
pgserver) with a fresh database and ``pg_store`` per test.

Rules (hooks below):

- no silent skips: a skipped test fails unless it is marked ``gpu`` (CUDA-only
  tests may skip on a machine without one); a module that skips at import fails;
- the tests that use ``ray_cluster`` run last, so the in-process Ray node starts
  once, after every other test, and stops at the end of the session. The tests
  that start Ray nodes in subprocesses (``tests/prelabel/test_warm_ray.py``, the
  job workers) pass with it up too, but run before it: their nodes inherit none of
  the ``RAY_*`` variables ``ray.init`` sets here, and no idle node shares the cores.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from engine.config import REPO_CONFIG_DIR, Settings, load_settings
from engine.store import Store

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from engine.models.sam.segmenter import SamSegmenter

API_TOKEN = "test-token"
RAY_CPUS = 2  # what the Ray tests size their jobs for (their settings say ray_num_cpus: 2)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        config_dir=REPO_CONFIG_DIR,
        api_token=API_TOKEN,
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.resolved_database_url)
    yield store
    store.close()


_database_names = (f"engine_test_{i}" for i in itertools.count())


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        import pgserver
    except ImportError as exc:
        pytest.fail(f"pgserver is not installed ({exc}); `pip install pgserver` to run these")
    pgdata: Path = tmp_path_factory.mktemp("pgdata")
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="delete")
    except Exception as exc:  # any failure to start means "no server here", said plainly
        pytest.fail(f"PostgreSQL (pgserver) could not start in {pgdata}: {exc!r}")
    # A throwaway cluster: durability is irrelevant, and without fsync it stops in
    # a fraction of a second instead of ~5 s of shutdown checkpoint.
    server.psql(
        "ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off; "
        "SELECT pg_reload_conf();"
    )
    yield server
    server.cleanup()


@pytest.fixture
def pg_store(postgres_server: Any) -> Iterator[Store]:
    name = next(_database_names)
    postgres_server.psql(f"CREATE DATABASE {name};")
    uri: str = postgres_server.get_uri(name)
    store = Store(uri.replace("postgresql://", "postgresql+psycopg://", 1))
    assert store.dialect == "postgresql"
    yield store
    store.close()


@pytest.fixture
def auth() -> dict[str, str]:
    """The bearer header of the ``settings`` fixture's API token."""
    return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def client(settings: Settings, store: Store, auth: dict[str, str]) -> Iterator[TestClient]:
    """The app on ``settings`` and ``store``, every request sent with the bearer token."""
    from fastapi.testclient import TestClient

    from engine.serving.app import create_app

    with TestClient(create_app(settings, store), headers=auth) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tiny_sam() -> SamSegmenter:
    """A tiny random LiteMedSAM named ``sam-tiny``, one per test module."""
    from tiny_models import tiny_sam

    return tiny_sam(name="sam-tiny")


# -- one Ray node for the session -----------------------------------------------------


@dataclass(frozen=True)
class RayCluster:
    """The session's embedded Ray node (``engine.prelabel.runtime.start_local_ray``)."""

    node_id: str
    address: str
    temp_dir: Path

    def check_still_up(self) -> None:
        """Fail unless this process is still connected to this very node."""
        from engine.prelabel.runtime import ray_running

        assert ray_running(), "Ray was shut down during the test: the session's node is gone"
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        assert node_id == self.node_id, f"Ray runs on node {node_id}, not the session's"


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """ONE embedded Ray node (loopback, 2 CPUs) for every test that needs Ray.

    Started the way a job starts its own (``start_local_ray``), so a job run in this
    process finds Ray initialised: ``ray_session`` then reuses it and leaves it running
    (``_jobs_on_the_session_ray`` makes sure of it). Shut down at the end of the
    session; its temp dir is removed and the variables Ray set in this process's
    environment (``RAY_AUTH_MODE``...) are restored.
    """
    from engine.prelabel.runtime import LOCAL_HEAD_ENV, ray_running, ray_temp_dir, start_local_ray

    if ray_running():
        pytest.fail("Ray was started in this process outside the ray_cluster fixture")
    environ = dict(os.environ)
    for name in ("RAY_ADDRESS", LOCAL_HEAD_ENV):  # a job would join that cluster instead
        os.environ.pop(name, None)
    data_dir = tmp_path_factory.mktemp("ray") / "data"
    settings = load_settings(data_dir=data_dir, ray_num_cpus=RAY_CPUS)
    start_local_ray(settings)
    import ray

    context = ray.get_runtime_context()
    cluster = RayCluster(context.get_node_id(), context.gcs_address, ray_temp_dir(settings))
    assert ray.cluster_resources().get("CPU") == RAY_CPUS
    try:
        yield cluster
    finally:
        ray.shutdown()
        assert not ray_running()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
        os.environ.clear()
        os.environ.update(environ)


@pytest.fixture(autouse=True)
def _jobs_on_the_session_ray(request: pytest.FixtureRequest) -> Iterator[None]:
    """For a test that uses ``ray_cluster``: its jobs must run on that node.

    While it runs, a job in this process may neither run its stages in-process
    (the local executor) nor start or join another Ray node; afterwards the
    session's node must still be the one this process is connected to.
    """
    if "ray_cluster" not in request.fixturenames:
        yield
        return
    from engine.prelabel import local, runtime

    cluster: RayCluster = request.getfixturevalue("ray_cluster")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(
            "a job in the test process did not run on the session's Ray node "
            "(tests/conftest.py ray_cluster): it ran in-process or started its own Ray"
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(local, "run_in_process", refuse)
        patch.setattr(runtime, "start_local_ray", refuse)
        patch.setattr(runtime, "connect_ray", refuse)
        yield
    cluster.check_still_up()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that use the session's Ray node last (stable order otherwise)."""
    uses_ray = [item for item in items if "ray_cluster" in getattr(item, "fixturenames", ())]
    if uses_ray:
        last = set(uses_ray)
        items[:] = [item for item in items if item not in last] + uses_ray


# -- no silent skips ------------------------------------------------------------------

_SKIP_RULE = "a skip fails unless the test is marked gpu (tests/conftest.py)"


def _skip_reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None] | Any:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and not item.get_closest_marker("gpu"):
        report.outcome = "failed"
        report.longrepr = f"skipped: {_skip_reason(report.longrepr)}\n({_SKIP_RULE})"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None] | Any:
    report = yield
    if report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped at import: {_skip_reason(report.longrepr)}\n({_SKIP_RULE})"
    return report
