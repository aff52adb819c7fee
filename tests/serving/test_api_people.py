"""People over HTTP on a real store: tokens on every route, /me, roles, /users, the docs.

Who acts for whom (``X-Annotator``) and the 409s on someone else's lease are in
tests/review/test_api_leases.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine.config import REPO_CONFIG_DIR, Settings, load_settings
from engine.review.people import add_person
from engine.serving.app import create_app
from engine.store import Store

SERVICE = {"Authorization": "Bearer test-token"}  # tests/conftest.py API_TOKEN


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(settings: Settings, store: Store) -> Iterator[TestClient]:
    """The app with no default headers: each request says who it is."""
    with TestClient(create_app(settings, store)) as client:
        yield client


@pytest.fixture
def people(store: Store) -> dict[str, dict[str, str]]:
    """One person per role (and a second annotator): name -> their bearer header."""
    roles = {"ann": "annotator", "ben": "annotator", "rita": "reviewer", "adam": "admin"}
    return {name: _bearer(add_person(store, name, role)[1]) for name, role in roles.items()}


def _guarded_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, url) of the OpenAPI document but /health, path parameters filled in."""
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    routes = []
    for path, operations in paths.items():
        if path == "/health":
            continue
        url = path.replace("{item_id}", "x").replace("{job_id}", "x").replace("{name}", "x")
        routes += [(method.upper(), url) for method in operations]
    return routes


def test_every_route_but_health_and_the_page_needs_a_live_token(
    api: TestClient, store: Store
) -> None:
    _, revoked = add_person(store, "gone", "admin")
    store.revoke_user("gone")
    routes = _guarded_routes(api)
    assert len(routes) >= 24 and ("GET", "/me") in routes and ("DELETE", "/users/x") in routes
    for headers in ({}, _bearer("le_not-a-token"), _bearer(revoked)):
        for method, url in routes:
            response = api.request(method, url, json={}, headers=headers)
            assert response.status_code == 401, (method, url, headers, response.text)
            assert "WWW-Authenticate" in response.headers, (method, url)
    assert api.get("/health").status_code == 200
    page = api.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "invalid or revoked" in api.get("/me", headers=_bearer(revoked)).json()["detail"]


def test_me_for_a_person_and_for_the_service_token(
    api: TestClient, people: dict[str, dict[str, str]]
) -> None:
    assert api.get("/me", headers=people["rita"]).json() == {
        "name": "rita",
        "role": "reviewer",
        "service": False,
    }
    # a person's own token ignores X-Annotator
    ann = api.get("/me", headers={**people["ann"], "X-Annotator": "adam"}).json()
    assert ann == {"name": "ann", "role": "annotator", "service": False}
    assert api.get("/me", headers={**SERVICE, "X-Annotator": "ada"}).json() == {
        "name": "ada",
        "role": "admin",
        "service": True,
    }
    assert api.get("/me", headers=SERVICE).json() == {
        "name": "anonymous",
        "role": "admin",
        "service": True,
    }


@pytest.mark.parametrize("who", ["ann", "rita"])
def test_annotators_and_reviewers_may_not_touch_jobs(
    api: TestClient, people: dict[str, dict[str, str]], store: Store, who: str
) -> None:
    headers = people[who]
    for method, url in (("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/jobs/x")):
        response = api.request(method, url, json={"model": "yolo11n"}, headers=headers)
        assert response.status_code == 403, (method, url)
        assert "needs the admin role" in response.json()["detail"]
        assert f"{who!r}" in response.json()["detail"]
    assert store.list_jobs() == []
    # what their role does allow
    assert api.get("/items", headers=headers).status_code == 200
    assert api.get("/queue/progress", headers=headers).status_code == 200


@pytest.mark.parametrize("who", ["ann", "rita"])
def test_only_admins_manage_people(
    api: TestClient, people: dict[str, dict[str, str]], store: Store, who: str
) -> None:
    headers = people[who]
    assert api.get("/users", headers=headers).status_code == 403
    added = api.post("/users", json={"name": "mallory", "role": "admin"}, headers=headers)
    assert added.status_code == 403
    assert api.delete("/users/ben", headers=headers).status_code == 403
    assert store.get_user("mallory") is None
    ben = store.get_user("ben")
    assert ben is not None and ben.active


@pytest.mark.parametrize("who", ["adam", "service"])
def test_admins_and_the_service_token_pass_the_role_checks(
    api: TestClient, people: dict[str, dict[str, str]], who: str
) -> None:
    headers = SERVICE if who == "service" else people[who]
    assert api.get("/jobs", headers=headers).json() == []
    # past the role check: an unknown model is the next thing refused (no worker started)
    unknown = api.post("/jobs", json={"model": "no-such-model"}, headers=headers)
    assert unknown.status_code == 422 and "unknown model 'no-such-model'" in unknown.text
    assert api.get("/jobs/x", headers=headers).status_code == 404
    listed = api.get("/users", headers=headers)
    assert listed.status_code == 200
    assert {u["name"]: u["role"] for u in listed.json()} == {
        "adam": "admin",
        "ann": "annotator",
        "ben": "annotator",
        "rita": "reviewer",
    }


def test_post_users_shows_the_token_once_and_it_works(
    api: TestClient, people: dict[str, dict[str, str]], store: Store
) -> None:
    added = api.post("/users", json={"name": "zoe", "role": "reviewer"}, headers=people["adam"])
    assert added.status_code == 201, added.text
    body = added.json()
    token = body.pop("token")
    assert token.startswith("le_") and len(token) == 46
    assert body["name"] == "zoe" and body["role"] == "reviewer" and body["active"] is True
    assert api.get("/me", headers=_bearer(token)).json()["name"] == "zoe"
    listed = api.get("/users", headers=SERVICE)
    assert token not in listed.text and "token" not in listed.json()[0]
    assert all(token not in str(u) for u in store.list_users())
    default_role = api.post("/users", json={"name": "yan"}, headers=SERVICE)
    assert default_role.status_code == 201 and default_role.json()["role"] == "annotator"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "ann"}, "'ann' exists; revoke them first"),
        ({"name": "anonymous"}, "reserved for integrations"),
        ({"name": "labelstudio:x"}, "reserved for integrations"),
        ({"name": "kim", "role": "owner"}, "body.role"),
        ({"name": ""}, "body.name"),
        ({"name": "kim", "token": "le_mine"}, "body.token"),
    ],
)
def test_post_users_refuses_taken_reserved_and_bad_input(
    api: TestClient,
    people: dict[str, dict[str, str]],
    store: Store,
    body: dict[str, str],
    message: str,
) -> None:
    response = api.post("/users", json=body, headers=people["adam"])
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert "le_" not in response.text
    assert store.get_user("kim") is None
    assert len(store.list_users()) == 4


def test_delete_users_revokes_and_unknown_is_404(
    api: TestClient, people: dict[str, dict[str, str]], store: Store
) -> None:
    assert api.get("/me", headers=people["ben"]).status_code == 200
    revoked = api.delete("/users/ben", headers=people["adam"])
    assert revoked.status_code == 200
    assert revoked.json()["name"] == "ben" and revoked.json()["active"] is False
    assert api.get("/me", headers=people["ben"]).status_code == 401
    assert api.post("/queue/next", headers=people["ben"]).status_code == 401
    again = api.delete("/users/ben", headers=SERVICE)
    assert again.status_code == 404 and "no active person named 'ben'" in again.json()["detail"]
    assert api.delete("/users/nobody", headers=SERVICE).status_code == 404
    # a revoked person comes back with a new token through POST /users
    back = api.post("/users", json={"name": "ben"}, headers=SERVICE)
    assert back.status_code == 201
    assert api.get("/me", headers=_bearer(back.json()["token"])).json()["name"] == "ben"
    assert api.get("/me", headers=people["ben"]).status_code == 401


def test_a_person_token_is_not_accepted_by_label_studio_routes(
    api: TestClient, people: dict[str, dict[str, str]]
) -> None:
    """Label Studio's routes take the service token (or Basic with it), not a person's."""
    for method, url in (("GET", "/versions"), ("POST", "/setup"), ("POST", "/webhook")):
        response = api.request(method, url, json={}, headers=people["adam"])
        assert response.status_code == 401, (method, url)


# -- the docs ------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/docs", "/openapi.json"])
def test_docs_need_a_token(api: TestClient, people: dict[str, dict[str, str]], url: str) -> None:
    assert api.get(url).status_code == 401
    assert api.get(url, headers=_bearer("wrong")).status_code == 401
    for headers in (SERVICE, people["ann"]):
        response = api.get(url, headers=headers)
        assert response.status_code == 200, response.text
    if url == "/openapi.json":
        assert "/users" in api.get(url, headers=SERVICE).json()["paths"]
    else:
        assert "swagger" in api.get(url, headers=SERVICE).text.lower()


def test_open_docs_serves_them_without_a_token(tmp_path: Path, store: Store) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data",
        data_roots=[tmp_path],
        config_dir=REPO_CONFIG_DIR,
        api_token="test-token",
        open_docs=True,
    )
    with TestClient(create_app(settings, store)) as client:
        assert client.get("/docs").status_code == 200
        spec = client.get("/openapi.json")
        assert spec.status_code == 200 and "/me" in spec.json()["paths"]
        assert client.get("/me").status_code == 401  # only the docs are open
