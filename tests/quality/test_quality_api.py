"""End to end over HTTP: three annotators with their own tokens, consensus and gold items,
a reviewer, and the quality report whose figures the fixture implies (worked out below).

30 items with one ``cat`` box each; 6 overlap items (k = 3) ranked first, 2 gold items
(labels: the same box) served first (``gold_rate`` 1). Everyone accepts everything but:
bob and carol reject overlap item 0, carol rejects overlap item 1 and gold item 1.

Item-level answers on the 6 overlap items ("cat" or "(none)"): item 0 = 1 cat / 2 none,
item 1 = 2 cat / 1 none, items 2-5 = 3 cat. Fleiss: P_i = 1/3, 1/3, 1, 1, 1, 1 ->
P-bar = 14/18; p_cat = 15/18, p_none = 3/18 -> P_e = 234/324; kappa = (14/18 - 234/324)
/ (1 - 234/324) = 0.2 ("clarify"). Gold accuracy: alice 2/2, bob 2/2, carol 1/2 (needs
attention). Items 0 and 1 wait for a reviewer; items 2-5 are final by consensus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from quality_data import BOX, boxed_items

from engine.config import Settings
from engine.formats.export import export
from engine.review.people import add_person
from engine.serving.app import create_app
from engine.store import Store

REJECTS = {("bob", 0), ("carol", 0), ("carol", 1), ("carol", "gold-1")}


@pytest.fixture
def project(settings: Settings, store: Store) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    ids = boxed_items(store, [0.9 - i / 100 for i in range(6)] + [0.5] * 24)
    tokens = {name: add_person(store, name, "annotator")[1] for name in ("alice", "bob", "carol")}
    tokens["rita"] = add_person(store, "rita", "reviewer")[1]
    app = create_app(settings.model_copy(update={"gold_rate": 1.0}), store)
    with TestClient(app) as client:
        yield client, {"ids": ids, "tokens": tokens}


def _as(tokens: dict[str, str], name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[name]}"}


def test_three_annotators_consensus_gold_and_the_report(
    project: tuple[TestClient, dict[str, Any]], auth: dict[str, str], tmp_path: Path
) -> None:
    client, data = project
    ids, tokens = data["ids"], data["tokens"]
    overlap, gold = ids[:6], ids[28:]
    got = client.post("/quality/overlap", json={"k": 3, "item_ids": overlap}, headers=auth)
    assert got.status_code == 200 and got.json()["item_ids"] == overlap
    box = {"kind": "box", "box_xyxy": list(BOX.box_xyxy)}
    for item_id in gold:
        body = {"item_id": item_id, "labels": [{"label": "cat", "region": box}]}
        made = client.post("/quality/gold", json=body, headers=_as(tokens, "rita"))
        assert made.status_code == 201 and made.json()["role"] == "gold"
    # annotators may not see or change any of it
    for path in ("/quality/review", "/reports/quality", f"/quality/items/{gold[0]}"):
        assert client.get(path, headers=_as(tokens, "alice")).status_code == 403
    name_of = {item_id: i for i, item_id in enumerate(overlap)} | {
        gold[0]: "gold-0",
        gold[1]: "gold-1",
    }
    payloads: dict[str, list[dict[str, Any]]] = {"gold": [], "other": []}
    served: dict[str, list[str]] = {}
    for person in ("alice", "bob", "carol"):
        headers = _as(tokens, person)
        served[person] = []
        while (lease := client.post("/queue/next", headers=headers)).status_code == 200:
            body = lease.json()
            item_id = body["item_id"]
            served[person].append(item_id)
            payloads["gold" if item_id in gold else "other"].append(body)
            for s in client.get(f"/items/{item_id}/suggestions", headers=headers).json():
                assert s["status"] == "pending"  # nobody sees another person's decision
            action = "reject" if (person, name_of.get(item_id)) in REJECTS else "accept"
            fb = {"item_id": item_id, "action": action, "client_key": f"{person}:{item_id}"}
            assert client.post("/feedback", json=fb, headers=headers).status_code == 201
        assert lease.status_code == 204
    # gold came first for everyone, then the overlap items by score
    for person in ("alice", "bob", "carol"):
        assert set(served[person][:2]) == set(gold) and served[person][2:8] == overlap
    assert sum(len(v) for v in served.values()) == 3 * 2 + 3 * 6 + 22
    # a gold lease looks like any other: same fields, nothing that says gold
    assert {tuple(sorted(p)) for p in payloads["gold"]} == {tuple(sorted(payloads["other"][0]))}
    assert all("gold" not in str(p).lower() for p in payloads["gold"])

    # an annotator cannot decide on a quality item they were not handed
    tokens["dave"] = add_person(client.app.state.store, "dave", "annotator")[1]  # type: ignore[attr-defined]
    late = {"item_id": overlap[3], "action": "accept", "client_key": "dave:late"}
    assert client.post("/feedback", json=late, headers=_as(tokens, "dave")).status_code == 409

    reviewer = _as(tokens, "rita")
    cases = client.get("/quality/review", headers=reviewer).json()
    assert sorted(c["item_id"] for c in cases) == overlap[:2]
    by_item = {c["item_id"]: c for c in cases}
    assert set(by_item[overlap[0]]["majority"]) == {"bob", "carol"}
    assert set(by_item[overlap[1]]["majority"]) == {"alice", "bob"}

    report = client.get("/reports/quality", headers=reviewer).json()
    agreement = report["agreement"]
    assert agreement["items"] == 6
    assert agreement["fleiss_kappa"] == pytest.approx(0.2)
    assert agreement["verdict"] == "clarify"
    assert [(c["label"], round(c["fleiss_kappa"], 6)) for c in agreement["per_class"]] == [
        ("cat", 0.2)
    ]
    assert report["resolution"] == {
        "items": 6,
        "open": 0,
        "review": 2,
        "final_consensus": 4,
        "final_reviewer": 0,
    }
    people = {p["name"]: p for p in report["people"]}
    assert {n: people[n]["gold_accuracy"] for n in ("alice", "bob", "carol")} == {
        "alice": 1.0,
        "bob": 1.0,
        "carol": 0.5,
    }
    assert people["alice"]["decisions"] == 2 + 6 + len(served["alice"]) - 8
    assert people["alice"]["units"] == len(served["alice"])  # one box accepted per item
    assert people["carol"]["units"] == len(served["carol"]) - 3
    assert report["attention"] == {"classes": ["cat"], "people": ["carol"], "overall": "clarify"}
    assert report["gold"] == {"items": 2}
    # model vs human: every finished item judged its one suggestion with it (46 leases,
    # 4 rejects); every final label of a finished item was the model's box (recall 1)
    [model] = report["models"]
    assert (model["model_version"], model["label"], model["judged"]) == ("v1", "cat", 46)
    assert model["rejection_rate"] == pytest.approx(4 / 46)
    assert model["recall"] == 1.0
    assert sum(row["judged"] for row in report["models_over_time"]) == 46

    # the reviewer picks; exports then carry final labels only, saying how each was decided
    pick = client.post(f"/quality/review/{overlap[0]}", json={"pick": "bob"}, headers=reviewer)
    assert pick.status_code == 200 and pick.json()["resolution"] == "reviewer"
    again = client.post(f"/quality/review/{overlap[0]}", json={"pick": "bob"}, headers=reviewer)
    assert again.status_code == 409
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    exported = {e.item.item_id: e for e in store.labeled_items()}
    assert overlap[1] not in exported  # still waiting for a reviewer
    assert exported[overlap[0]].labels == ()  # bob's answer: no cat
    assert {lab.source for lab in exported[overlap[2]].labels} == {"consensus"}
    assert {lab.source for lab in exported[gold[0]].labels} == {"gold"}
    report = client.get("/reports/quality", headers=reviewer).json()
    assert report["resolution"]["final_reviewer"] == 1 and report["resolution"]["review"] == 1
    written = export(store, "ndjson", tmp_path / "out")
    lines = [json.loads(line) for f in written.files for line in f.read_text().splitlines()]
    decided = {line["dataRow"]["id"]: line["decidedBy"] for line in lines}
    assert decided[overlap[2]] == "consensus" and decided[gold[0]] == "gold"
    assert overlap[1] not in decided and overlap[0] not in decided  # bob's answer: no label
    assert decided[ids[10]] == "person"
