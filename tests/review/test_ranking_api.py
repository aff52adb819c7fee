"""The ranking policy over HTTP and the CLI: re-rank a live queue, explain an item."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ranking_data import box_prediction, store_predictions
from typer.testing import CliRunner

from engine.store import Store


@pytest.fixture
def no_model_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every model build is recorded and refused: ranking must never need one."""
    from engine.models import registry

    built: list[str] = []

    def refuse(spec: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(spec.name)
        raise AssertionError(f"model {spec.name} was built")

    monkeypatch.setattr(registry, "build_model", refuse)
    return built


@pytest.fixture
def backlog(store: Store) -> Store:
    store_predictions(
        store,
        [
            box_prediction("near", [[0.5, 0.45]]),
            box_prediction("close", [[0.9, 0.85]]),
            box_prediction("sure", [[0.99, 0.01], [0.3, 0.2]]),
        ],
    )
    return store


def _next(client: TestClient, who: str) -> str:
    response = client.post("/queue/next", json={"annotator": who})
    assert response.status_code == 200, response.text
    item_id = str(response.json()["item_id"])
    assert client.post(f"/queue/{item_id}/release", json={"annotator": who}).status_code == 200
    return item_id


def test_changing_the_policy_reorders_the_live_queue(
    client: TestClient, backlog: Store, no_model_builds: list[str]
) -> None:
    assert _next(client, "ann") == "near"
    response = client.post("/queue/rank", json={"score": "margin"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scored"] == 3 and body["changed"] >= 2
    assert body["policy"]["policy"]["score"] == "margin"
    assert _next(client, "ann") == "close"
    assert client.get("/queue/policy").json()["policy"]["score"] == "margin"
    assert client.post("/queue/rank", json={}).status_code == 200  # defaults again
    assert _next(client, "ann") == "near"
    assert no_model_builds == []


def test_bad_policy_is_a_422_naming_the_field_and_changes_nothing(
    client: TestClient, backlog: Store
) -> None:
    before = {i: s for i, s, _ in backlog.top_items(limit=3)}
    for body, field in (
        ({"score": "wild"}, "score"),
        ({"head": 0}, "head"),
        ({"colour": "red"}, "colour"),
        ({"weight": "x"}, "weight"),
    ):
        response = client.post("/queue/rank", json=body)
        assert response.status_code == 422, response.text
        assert field in response.text
    assert {i: s for i, s, _ in backlog.top_items(limit=3)} == before


def test_an_item_explains_its_rank(client: TestClient, backlog: Store) -> None:
    why = client.get("/items/sure/ranking").json()
    assert why["rank"] == 2 and why["policy"]["policy"]["score"] == "auto"
    regions = why["regions"]
    assert [r["top_classes"][0] for r in regions] == [
        {"label": "cat", "prob": pytest.approx(0.99)},
        {"label": "cat", "prob": pytest.approx(0.3)},
    ]
    assert regions[1]["uncertainty"] > regions[0]["uncertainty"]
    # the item's uncertainty: the max over shown boxes (the 0.3 box is shown at 0.25)
    assert why["uncertainty"] == pytest.approx(regions[1]["uncertainty"])
    assert why["queue_score"] == pytest.approx(why["uncertainty"])
    listed = client.get("/items/sure/suggestions", params={"min_score": 0}).json()
    assert [s["uncertainty"] for s in listed] == [r["uncertainty"] for r in regions]
    assert listed[0]["top_classes"][:2] == [
        {"label": "cat", "prob": pytest.approx(0.99)},
        {"label": "dog", "prob": pytest.approx(0.01)},
    ]
    assert client.get("/items/nope/ranking").status_code == 404


def test_annotators_cannot_rank(client: TestClient, backlog: Store) -> None:
    from engine.review.people import add_person

    token = add_person(backlog, "ann", "annotator")[1]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/queue/rank", json={}, headers=headers).status_code == 403
    assert client.get("/items/near/ranking", headers=headers).status_code == 200


def test_cli_rank_and_top_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.cli import app
    from engine.config import load_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELENGINE_DATA_DIR", str(tmp_path / "data"))
    store = Store(load_settings().resolved_database_url)
    store_predictions(
        store, [box_prediction("near", [[0.5, 0.45]]), box_prediction("close", [[0.9, 0.85]])]
    )
    runner = CliRunner()
    ranked = runner.invoke(app, ["rank", "--policy", "margin,reduction=mean"])
    assert ranked.exit_code == 0, ranked.output
    assert "ranked 2 items under score=margin reduction=mean" in ranked.output
    assert store.top_items(limit=1)[0][0] == "close"
    shown = runner.invoke(app, ["rank", "--show"])
    assert "score=margin" in shown.output
    why = runner.invoke(app, ["top", "--why", "--limit", "2"])
    assert why.exit_code == 0, why.output
    assert "u=" in why.output and "cat" in why.output
    bad = runner.invoke(app, ["rank", "--policy", "score=wild"])
    assert bad.exit_code != 0 and "'score'" in " ".join(bad.output.split())
