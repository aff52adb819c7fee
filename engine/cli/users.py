"""``labelengine users``: people with their own tokens and roles."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.cli.common import ConfigOpt, _fail, _settings, console

users_app = typer.Typer(
    no_args_is_help=True, help="People: add (prints a token once), list, revoke."
)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The person's name (as decisions record it).")],
    role: Annotated[
        str, typer.Option(help="annotator, reviewer or admin (each includes the one before).")
    ] = "annotator",
    config: ConfigOpt = None,
) -> None:
    """Add a person and print their token: it is shown once and stored only hashed."""
    from engine.review.people import add_person
    from engine.store import Store

    store = Store(_settings(config).resolved_database_url)
    try:
        record, token = add_person(store, name, role)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    finally:
        store.close()
    console.print(f"added {record.name} ({record.role}); their token (shown once):")
    print(token)


@users_app.command("list")
def users_list(config: ConfigOpt = None) -> None:
    """Every person, their role and whether their token works."""
    from rich.table import Table

    from engine.store import Store

    store = Store(_settings(config).resolved_database_url)
    try:
        records = store.list_users()
    finally:
        store.close()
    table = Table(title="People")
    for column in ("name", "role", "since", "token"):
        table.add_column(column)
    for r in records:
        since = r.created_at.strftime("%Y-%m-%d %H:%M")
        table.add_row(r.name, r.role, since, "active" if r.active else "revoked")
    console.print(table)


@users_app.command("revoke")
def users_revoke(
    name: Annotated[str, typer.Argument(help="Whose token stops working.")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a person's token (their decisions stay; `users add` issues a new one)."""
    from engine.store import Store

    store = Store(_settings(config).resolved_database_url)
    try:
        revoked = store.revoke_user(name)
    finally:
        store.close()
    if not revoked:
        raise _fail(f"no active person named {name!r}")
    console.print(f"revoked {name}")
