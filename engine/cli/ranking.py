"""``labelengine rank``: re-rank the live queue under a policy, from stored predictions."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.cli.common import ConfigOpt, _fail, _settings, console


def rank(
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="key=value,... of engine/sampling/policy.py, e.g. "
            "'margin,reduction=mean,diversity=kcenter,head=2000,picks=200' "
            "(a bare first word is the score). Default: configs rank_policy.",
        ),
    ] = None,
    show: Annotated[bool, typer.Option("--show", help="Print the current policy only.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Score every unlabeled item again under a policy; no model runs."""
    from engine.review.ranking import current_policy, rank_backlog
    from engine.sampling.policy import PolicyError, policy_from
    from engine.store import Store

    settings = _settings(config)
    store = Store(settings.resolved_database_url)
    try:
        default = policy_from(settings.rank_policy)
        if show:
            console.print(current_policy(store, default).describe())
            return
        chosen = default if policy is None else policy_from(policy)
    except PolicyError as exc:
        raise _fail(str(exc)) from exc
    report = rank_backlog(store, chosen)
    console.print(
        f"ranked {report.n_scored} items under {chosen.describe()}: "
        f"{report.n_changed} scores changed"
        + (
            f", head of {report.n_head} reordered ({report.n_head_embedded} with embeddings)"
            if report.n_head
            else ""
        )
        + f" in {report.seconds:.2f} s"
    )
