"""``labelengine ray start|stop|status``: a local Ray node that later commands join."""

from __future__ import annotations

import typer

from engine.cli.common import ConfigOpt, _fail, _settings, console

ray_app = typer.Typer(
    no_args_is_help=True,
    help="A standing local Ray node: later prelabel / embed commands join it (no start-up).",
)


@ray_app.command("start")
def ray_start(config: ConfigOpt = None) -> None:
    """Start a Ray node for this data dir and leave it running."""
    from engine.prelabel.ray_head import LocalRayHead
    from engine.prelabel.runtime import cluster_address, standing_node_address

    settings = _settings(config)
    if cluster_address(settings):
        raise _fail("a cluster is configured (ray_address / RAY_ADDRESS): jobs use that one")
    running = standing_node_address(settings)
    if running:
        console.print(f"already running at {running}")
        return
    head = LocalRayHead(settings, standing=True)
    address = head.address()
    if address is None:
        raise _fail(f"the Ray node did not start; see {head.log_path}")
    console.print(f"Ray node up at {address}; later jobs join it (`labelengine ray stop` ends it)")


@ray_app.command("stop")
def ray_stop(config: ConfigOpt = None) -> None:
    """Stop this data dir's standing Ray node."""
    from engine.prelabel.ray_head import stop_standing_node

    stopped = stop_standing_node(_settings(config))
    console.print("Ray node stopped" if stopped else "no Ray node was running")


@ray_app.command("status")
def ray_status(config: ConfigOpt = None) -> None:
    """Whether a standing Ray node is up, and where."""
    from engine.prelabel.runtime import standing_node_address

    address = standing_node_address(_settings(config))
    console.print(f"Ray node up at {address}" if address else "no Ray node running")
    if address is None:
        raise typer.Exit(code=1)
