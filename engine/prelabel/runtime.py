"""Start or join a Ray cluster for a pre-label job.

``ray_session(settings)`` connects to ``settings.ray_address`` (or the
``RAY_ADDRESS`` environment variable) when one is set; otherwise it starts an
embedded single-node cluster sized from the settings, listening on loopback
only, with its temp files under the data dir. A Ray session that is already
running in this process is reused and left running.

The server keeps one such node warm for its jobs (``engine.prelabel.ray_head``):
it passes the node's address in ``RAY_ADDRESS`` and again in ``LOCAL_HEAD_ENV``,
which tells a job that this cluster is the engine's own single node (its sizes
are final, as for an embedded one) and that it should join it over loopback.
If that node is gone, the job starts its own embedded node instead.

``labelengine ray start`` leaves such a node standing for a data dir
(``STANDING_NODE_FILE``); with no cluster configured, every later job of that
data dir joins it and pays no start-up (``labelengine ray stop`` ends it).

Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when it is imported: with it
set to ``0`` every Ray server binds ``127.0.0.1`` instead of all interfaces.
The variable is set only here, just before Ray is imported and started, and
restored afterwards (Ray's child processes keep the value they started with).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.config import Settings

log = logging.getLogger(__name__)

# Ray puts unix sockets at <temp>/session_<date>_<pid>/sockets/plasma_store (about
# 62 characters below <temp>); a unix socket path must stay under 108 bytes.
MAX_TEMP_DIR_CHARS = 40
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Set by the server for its workers: the address of the local Ray node it started.
LOCAL_HEAD_ENV = "LABELENGINE_LOCAL_RAY_HEAD"
AUTH_MODE_ENV = "RAY_AUTH_MODE"
# Written by `labelengine ray start` (engine.prelabel.ray_head): a node every later
# command of the same data dir joins instead of starting its own.
STANDING_NODE_FILE = "ray-node.json"


def ray_temp_dir(settings: Settings) -> Path:
    """``<data_dir>/ray`` when short enough for Ray's socket paths, else a short
    per-data-dir folder under the system temp dir."""
    preferred = (settings.data_dir / "ray").expanduser().resolve()
    if len(str(preferred)) <= MAX_TEMP_DIR_CHARS:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"le-ray-{digest}"


def cluster_address(settings: Settings) -> str | None:
    """The cluster to join: ``settings.ray_address``, else ``$RAY_ADDRESS``, else none."""
    return settings.ray_address or os.environ.get("RAY_ADDRESS") or None


@contextmanager
def loopback_ray() -> Iterator[None]:
    """Within the block, Ray (imported here if not yet) binds and dials ``127.0.0.1``."""
    previous = os.environ.get(_LOOPBACK_ENV)
    os.environ[_LOOPBACK_ENV] = "0"
    try:
        from ray._private import ray_constants

        if getattr(ray_constants, "ENABLE_RAY_CLUSTER", False):
            # Ray was imported earlier, with the default: bind loopback anyway.
            ray_constants.ENABLE_RAY_CLUSTER = False
        yield
    finally:
        if previous is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = previous


def start_local_ray(settings: Settings) -> None:
    """Start an embedded Ray node: loopback only, no dashboard, quiet workers."""
    with loopback_ray():
        import ray

        temp_dir = ray_temp_dir(settings)
        temp_dir.mkdir(parents=True, exist_ok=True)
        ray.init(
            num_cpus=settings.ray_num_cpus or os.cpu_count() or 1,
            object_store_memory=settings.ray_object_store_bytes,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=str(temp_dir),
        )


def local_head_address(settings: Settings) -> str | None:
    """The address of the server's local Ray node when this job is to join it."""
    address = cluster_address(settings)
    marker = os.environ.get(LOCAL_HEAD_ENV)
    return address if address and marker == address else None


def ray_running() -> bool:
    """Whether this process is connected to Ray (without importing Ray)."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


def connect_ray(address: str) -> None:
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)


def reachable(address: str, timeout_s: float = 2.0) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def join_local_head(settings: Settings, address: str) -> bool:
    """Join the engine's own local node (the server's, or a standing one) over loopback;
    False (and an embedded node started here instead) when that node is gone.

    Reachability is checked first: ``ray.init`` waits many minutes for a
    cluster that is not there.
    """
    if reachable(address):
        with loopback_ray():
            connect_ray(address)
        log.info("joined the local Ray node at %s", address)
        return True
    log.warning("the local Ray node at %s is gone; starting an embedded one", address)
    os.environ.pop("RAY_ADDRESS", None)  # ray.init() would look for it there
    start_local_ray(settings)
    return False


def standing_node_path(settings: Settings) -> Path:
    return settings.data_dir.expanduser().resolve() / STANDING_NODE_FILE


def standing_node_address(settings: Settings) -> str | None:
    """The address of this data dir's standing node when it is up (its auth mode, which a
    joining driver must share, goes into the environment); ``None`` otherwise."""
    try:
        info = json.loads(standing_node_path(settings).read_text(encoding="utf-8"))
        address, holder_pid = str(info["address"]), int(info["holder_pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(holder_pid) or not reachable(address, timeout_s=0.5):
        return None
    if info.get("auth_mode"):
        os.environ[AUTH_MODE_ENV] = str(info["auth_mode"])
    return address


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    return True


@dataclass(frozen=True)
class RaySession:
    """What a job needs to know about the cluster it runs on."""

    resources: dict[str, float]
    # True: a single-node cluster the engine started (sizes are final): this process's
    # embedded node, or the server's local node
    embedded: bool

    @property
    def cpus(self) -> float:
        return float(self.resources.get("CPU", 0.0))

    @property
    def gpus(self) -> float:
        return float(self.resources.get("GPU", 0.0))


@contextmanager
def ray_session(settings: Settings) -> Iterator[RaySession]:
    """Ensure Ray is up for the duration of the block.

    Shuts Ray down afterwards only if this call started or joined it (a joined
    cluster keeps running: this process only disconnects from it).
    """
    owned = not ray_running()
    address = cluster_address(settings)
    head = local_head_address(settings)
    standing = None if (head or address or not owned) else standing_node_address(settings)
    if owned:
        if head:
            join_local_head(settings, head)
        elif standing:
            join_local_head(settings, standing)
        elif address:
            log.info("joining Ray cluster at %s", address)
            connect_ray(address)
        else:
            start_local_ray(settings)
    import ray

    try:
        resources = {k: float(v) for k, v in ray.cluster_resources().items()}
        engine_node = head is not None or not address
        yield RaySession(resources=resources, embedded=len(ray.nodes()) == 1 and engine_node)
    finally:
        if owned:
            ray.shutdown()
