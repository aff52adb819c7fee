"""People, roles and tokens on a real store (``engine.review.people``, ``store/users.py``),
and the ``labelengine users`` commands as real subprocesses."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.config import load_settings
from engine.review.people import (
    ROLES,
    SERVICE,
    TOKEN_PREFIX,
    Person,
    add_person,
    person_for_token,
    reissue_person,
    token_sha256,
)
from engine.store import Store
from engine.store import schema as t

SERVICE_TOKEN = "service-token"


def _user_rows(store: Store) -> list[dict[str, object]]:
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(t.users))]


def test_a_token_is_256_random_bits_behind_a_prefix(store: Store) -> None:
    tokens = [add_person(store, f"person-{i}", "annotator")[1] for i in range(20)]
    assert len(set(tokens)) == len(tokens)
    for token in tokens:
        assert token.startswith(TOKEN_PREFIX)
        body = token[len(TOKEN_PREFIX) :]
        assert len(body) == 43  # token_urlsafe(32): 32 bytes, base64url without padding
        assert len(base64.urlsafe_b64decode(body + "=")) == 32
    # 20 tokens of 256 bits: no two share even their first 8 characters by chance
    assert len({token[:11] for token in tokens}) == len(tokens)


def test_the_store_holds_only_the_tokens_sha256(store: Store) -> None:
    record, token = add_person(store, "ada", "reviewer")
    assert (record.name, record.role, record.active) == ("ada", "reviewer", True)
    (row,) = _user_rows(store)
    assert row["token_sha256"] == token_sha256(token)
    assert len(str(row["token_sha256"])) == 64
    for value in row.values():
        assert token not in str(value)
        assert token[len(TOKEN_PREFIX) :] not in str(value)
    assert person_for_token(store, token, SERVICE_TOKEN) == Person("ada", "reviewer")


def test_re_adding_an_active_name_is_refused_and_keeps_the_old_token(store: Store) -> None:
    _, token = add_person(store, "ada", "annotator")
    with pytest.raises(ValueError, match="'ada' exists; revoke them first"):
        add_person(store, "ada", "admin")
    assert person_for_token(store, token, SERVICE_TOKEN) == Person("ada", "annotator")
    assert len(_user_rows(store)) == 1


def test_revoke_then_add_issues_a_new_token_and_the_old_one_stops_working(store: Store) -> None:
    _, old = add_person(store, "bob", "annotator")
    assert store.revoke_user("bob") is True
    assert person_for_token(store, old, SERVICE_TOKEN) is None
    record = store.get_user("bob")
    assert record is not None and record.active is False
    assert store.revoke_user("bob") is False  # nothing active left to revoke
    again, new = add_person(store, "bob", "reviewer")
    assert new != old and again.active and again.role == "reviewer"
    assert person_for_token(store, old, SERVICE_TOKEN) is None
    assert person_for_token(store, new, SERVICE_TOKEN) == Person("bob", "reviewer")
    assert [r.name for r in store.list_users()] == ["bob"]


def test_reissue_revokes_the_old_token(store: Store) -> None:
    _, first = add_person(store, "admin", "admin")
    _, second = reissue_person(store, "admin", "admin")
    assert person_for_token(store, first, SERVICE_TOKEN) is None
    assert person_for_token(store, second, SERVICE_TOKEN) == Person("admin", "admin")


@pytest.mark.parametrize(
    ("name", "role", "message"),
    [
        ("carol", "superuser", "role must be one of annotator, reviewer, admin"),
        ("carol", "", "role must be one of"),
        ("anonymous", "annotator", "reserved for integrations"),
        ("  anonymous ", "annotator", "reserved for integrations"),
        ("labelstudio:x", "annotator", "reserved for integrations"),
        ("labelstudio:", "admin", "reserved for integrations"),
        ("", "annotator", "1 to 128 characters"),
        ("   ", "annotator", "1 to 128 characters"),
        ("x" * 129, "annotator", "1 to 128 characters"),
    ],
)
def test_bad_roles_and_reserved_names_are_refused(
    store: Store, name: str, role: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        add_person(store, name, role)
    assert _user_rows(store) == []


def test_names_are_stripped(store: Store) -> None:
    record, token = add_person(store, "  dana ", "annotator")
    assert record.name == "dana"
    assert person_for_token(store, token, SERVICE_TOKEN) == Person("dana", "annotator")


def test_the_service_token_acts_as_admin_for_the_named_person(store: Store) -> None:
    assert person_for_token(store, SERVICE_TOKEN, SERVICE_TOKEN) == Person(
        SERVICE, "admin", service=True
    )
    assert person_for_token(store, SERVICE_TOKEN, SERVICE_TOKEN, "ada") == Person(
        "ada", "admin", service=True
    )
    blank = person_for_token(store, SERVICE_TOKEN, SERVICE_TOKEN, "  ")
    assert blank is not None and blank.name == SERVICE
    _, token = add_person(store, "eve", "annotator")
    # a person's token ignores whom it claims to act for
    assert person_for_token(store, token, SERVICE_TOKEN, "ada") == Person("eve", "annotator")
    assert person_for_token(store, "le_unknown", SERVICE_TOKEN) is None
    assert person_for_token(store, SERVICE_TOKEN + "x", SERVICE_TOKEN) is None


def test_each_role_includes_the_one_before() -> None:
    assert ROLES == ("annotator", "reviewer", "admin")
    for i, role in enumerate(ROLES):
        person = Person("p", role)
        assert [person.may(other) for other in ROLES] == [j <= i for j in range(len(ROLES))]


# -- labelengine users ---------------------------------------------------------------


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELENGINE_")}
    env.update(LABELENGINE_DATA_DIR=str(data_dir), COLUMNS="200")
    labelengine = Path(sys.executable).parent / "labelengine"
    return subprocess.run(
        [str(labelengine), "users", *args],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _store_of(data_dir: Path) -> Store:
    return Store(load_settings(data_dir=data_dir).resolved_database_url)


def test_users_add_list_revoke_on_the_command_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    added = _cli(data_dir, "add", "grace", "--role", "reviewer")
    assert added.returncode == 0, added.stderr
    lines = added.stdout.strip().splitlines()
    assert lines[0] == "added grace (reviewer); their token (shown once):"
    token = lines[-1]
    assert len(lines) == 2 and token.startswith(TOKEN_PREFIX) and len(token) == 46
    store = _store_of(data_dir)
    try:
        assert person_for_token(store, token, SERVICE_TOKEN) == Person("grace", "reviewer")
        (row,) = _user_rows(store)
        assert all(token not in str(value) for value in row.values())
    finally:
        store.close()

    listed = _cli(data_dir, "list")
    assert listed.returncode == 0, listed.stderr
    assert "grace" in listed.stdout and "reviewer" in listed.stdout
    assert "active" in listed.stdout
    assert token not in listed.stdout and token[len(TOKEN_PREFIX) :][:8] not in listed.stdout

    taken = _cli(data_dir, "add", "grace")
    assert taken.returncode == 2
    assert "'grace' exists; revoke them first" in taken.stdout
    assert TOKEN_PREFIX not in taken.stdout

    revoked = _cli(data_dir, "revoke", "grace")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked grace" in revoked.stdout
    assert "revoked" in _cli(data_dir, "list").stdout
    store = _store_of(data_dir)
    try:
        assert person_for_token(store, token, SERVICE_TOKEN) is None
    finally:
        store.close()
    again = _cli(data_dir, "revoke", "grace")
    assert again.returncode == 2 and "no active person named 'grace'" in again.stdout
    reissued = _cli(data_dir, "add", "grace", "--role", "admin")
    assert reissued.returncode == 0 and reissued.stdout.strip().splitlines()[-1] != token


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "bob", "--role", "boss"), "role must be one of annotator, reviewer, admin"),
        (("add", "anonymous"), "reserved for integrations"),
        (("add", "labelstudio:7"), "reserved for integrations"),
    ],
)
def test_users_add_refuses_a_bad_role_or_name(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = _cli(tmp_path / "data", *args)
    assert result.returncode == 2
    assert "error:" in result.stdout and message in result.stdout
    assert TOKEN_PREFIX not in result.stdout
