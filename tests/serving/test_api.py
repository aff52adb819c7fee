"""The HTTP API against a real SQLite store: auth, items, images, suggestions, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import text

from engine.config import Settings
from engine.serving.app import create_app
from engine.store import Store
from engine.types import Box, Item, Prediction, Span, Suggestion


def _png_bytes(width_px: int, height_px: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height_px, width_px, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def image_item(tmp_path: Path, store: Store) -> tuple[Item, bytes]:
    data = _png_bytes(32, 24, seed=1)
    path = tmp_path / "images" / "cat.png"
    path.parent.mkdir()
    path.write_bytes(data)
    item = Item("img-1", "image", uri=str(path))
    store.add_items([item], [None])
    return item, data


def _predict(store: Store, item_id: str, suggestions: list[Suggestion], score: float) -> None:
    names = tuple(sorted({s.label for s in suggestions}))
    probs = np.zeros((len(suggestions), len(names)), dtype=np.float32)
    for row, s in enumerate(suggestions):
        probs[row, names.index(s.label)] = s.score
    store.save_predictions(
        [Prediction(item_id, "yolo11n", "yolo11n-v1", tuple(suggestions), probs, names)], [score]
    )


# -- auth -------------------------------------------------------------------


def test_health_needs_no_token_and_reports_counts(
    settings: Settings, store: Store, image_item: tuple[Item, bytes]
) -> None:
    with TestClient(create_app(settings, store)) as anonymous:
        response = anonymous.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["items"] == 1 and body["predictions"] == 0
    assert body["schema_version"] == store.schema_version()
    assert body["version"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {b"Authorization": b"Bearer wrong"},
        {b"Authorization": b"Basic dGVzdC10b2tlbg=="},  # the right token, wrong scheme
        {b"Authorization": "Bearer t\u00e9st-token".encode("latin-1")},
    ],
    ids=["missing", "wrong", "basic-scheme", "non-ascii"],
)
def test_every_guarded_route_refuses_without_the_token(
    settings: Settings, store: Store, headers: dict[bytes, bytes]
) -> None:
    routes = [
        ("GET", "/items"),
        ("GET", "/items/x"),
        ("GET", "/items/x/image"),
        ("GET", "/items/x/suggestions"),
        ("POST", "/feedback"),
        ("POST", "/queue/next"),
        ("POST", "/queue/x/heartbeat"),
        ("POST", "/queue/x/release"),
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", "/jobs/x"),
        ("GET", "/jobs/x/errors"),
    ]
    with TestClient(create_app(settings, store)) as anonymous:
        for method, url in routes:
            response = anonymous.request(method, url, json={}, headers=headers)
            assert response.status_code == 401, (method, url)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert "token" in response.json()["detail"]


def test_token_is_generated_once_per_data_dir_when_not_configured(
    tmp_path: Path, store: Store, auth: dict[str, str]
) -> None:
    settings = Settings(data_dir=tmp_path / "fresh", data_roots=[tmp_path])
    token = settings.token()
    with TestClient(create_app(settings, store)) as client:
        assert client.get("/items", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/items", headers=auth).status_code == 401


# -- items and images -------------------------------------------------------


def test_items_round_trip_with_paging_and_kind(client: TestClient, store: Store) -> None:
    items = [Item(f"t-{i}", "text", text=f"text {i}") for i in range(5)]
    store.add_items([*items, Item("i-0", "image", uri="/nowhere.png")], [None] * 6)
    page = client.get("/items", params={"offset": 1, "limit": 2, "kind": "text"}).json()
    assert [it["item_id"] for it in page["items"]] == ["t-1", "t-2"]
    assert (page["offset"], page["limit"]) == (1, 2)
    images = client.get("/items", params={"kind": "image"}).json()["items"]
    assert [(it["item_id"], it["image_url"]) for it in images] == [("i-0", "/items/i-0/image")]
    one = client.get("/items/t-3").json()
    assert (one["kind"], one["text"], one["image_url"]) == ("text", "text 3", None)


def test_item_query_validation_is_a_readable_422(client: TestClient) -> None:
    response = client.get("/items", params={"limit": 0, "kind": "video"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "query.limit" in detail and "query.kind" in detail
    assert {tuple(e["loc"]) for e in response.json()["errors"]} == {
        ("query", "limit"),
        ("query", "kind"),
    }


def test_an_offset_past_64_bits_and_a_bad_value_are_422_in_the_documented_shape(
    client: TestClient,
) -> None:
    """Found by fuzzing: a huge offset was a 500; a ValueError's 422 lacked ``errors``."""
    huge = client.get("/items", params={"offset": 7933260198177228493936394240})
    assert huge.status_code == 422 and huge.json()["errors"][0]["loc"] == ["query", "offset"]
    assert client.get("/items", params={"offset": 2**63 - 1}).json()["items"] == []
    empty_label = client.post("/queue/next", json={"label": ""})
    assert empty_label.status_code == 422
    assert empty_label.json() == {
        "detail": "label filter must be non-empty when given",
        "errors": [],
    }


def test_unknown_item_is_404_with_a_message(client: TestClient) -> None:
    for url in ("/items/missing", "/items/missing/image", "/items/missing/suggestions"):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json() == {"detail": "item 'missing' not found"}


def test_image_bytes_with_content_type(client: TestClient, image_item: tuple[Item, bytes]) -> None:
    item, data = image_item
    response = client.get(f"/items/{item.item_id}/image")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == data
    decoded = Image.open(io.BytesIO(response.content))
    assert decoded.size == (32, 24)


def test_jpeg_without_suffix_is_sniffed(client: TestClient, tmp_path: Path, store: Store) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="JPEG")
    path = tmp_path / "blob"
    path.write_bytes(buffer.getvalue())
    store.add_items([Item("jpg", "image", uri=str(path))], [None])
    assert client.get("/items/jpg/image").headers["content-type"] == "image/jpeg"


def test_text_item_has_no_image(client: TestClient, store: Store) -> None:
    store.add_items([Item("t", "text", text="hello")], [None])
    response = client.get("/items/t/image")
    assert response.status_code == 400
    assert response.json()["detail"] == "item 't' is a text item; it has no image"


def test_missing_image_file_is_404(client: TestClient, tmp_path: Path, store: Store) -> None:
    store.add_items([Item("gone", "image", uri=str(tmp_path / "gone.png"))], [None])
    response = client.get("/items/gone/image")
    assert response.status_code == 404
    assert "missing" in response.json()["detail"]


def test_paths_outside_the_data_roots_are_refused(
    client: TestClient, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, store: Store
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "secret.png"
    outside.write_bytes(_png_bytes(4, 4, seed=2))
    link = tmp_path / "innocent.png"
    link.symlink_to(outside)
    uris = {
        "dotdot": str(tmp_path / ".." / ".." / "etc" / "passwd"),
        "relative": "../../etc/passwd",
        "absolute": "/etc/passwd",
        "symlink": str(link),
    }
    store.add_items([Item(name, "image", uri=uri) for name, uri in uris.items()], [None] * 4)
    for name in uris:
        response = client.get(f"/items/{name}/image")
        assert response.status_code == 403, name
        detail = response.json()["detail"]
        assert "outside the configured data roots" in detail
        assert str(outside) not in detail and "passwd" not in detail


# -- suggestions --------------------------------------------------------------


def test_suggestions_with_threshold_and_version(
    client: TestClient, store: Store, image_item: tuple[Item, bytes]
) -> None:
    item, _ = image_item
    box = Box(1.0, 2.0, 20.0, 22.5)
    _predict(
        store,
        item.item_id,
        [
            Suggestion("cat", 0.9, box, "yolo11n", "yolo11n-v1"),
            Suggestion("dog", 0.1, Box(0, 0, 5, 5), "yolo11n", "yolo11n-v1"),
        ],
        score=0.4,
    )
    shown = client.get(f"/items/{item.item_id}/suggestions").json()
    assert len(shown) == 1
    first = shown[0]
    assert (first["label"], first["score"], first["status"]) == (
        "cat",
        pytest.approx(0.9),
        "pending",
    )
    assert first["region"] == {"kind": "box", "box_xyxy": [1.0, 2.0, 20.0, 22.5]}
    assert (first["model_name"], first["model_version"]) == ("yolo11n", "yolo11n-v1")
    stored = store.suggestions_for(item.item_id)[0]
    assert first["suggestion_id"] == stored.suggestion_id
    everything = client.get(f"/items/{item.item_id}/suggestions", params={"min_score": 0}).json()
    assert [s["label"] for s in everything] == ["cat", "dog"]
    other = client.get(f"/items/{item.item_id}/suggestions", params={"model_version": "v9"})
    assert other.status_code == 200 and other.json() == []
    assert client.get(f"/items/{item.item_id}/suggestions?min_score=2").status_code == 422


def test_span_suggestions_on_text(client: TestClient, store: Store) -> None:
    store.add_items([Item("t", "text", text="Ada Lovelace wrote")], [None])
    _predict(store, "t", [Suggestion("PER", 0.8, Span(0, 12, "Ada Lovelace"), "ner", "ner-1")], 0.3)
    region = client.get("/items/t/suggestions").json()[0]["region"]
    assert region == {"kind": "span", "start": 0, "end": 12, "text": "Ada Lovelace"}


# -- errors and OpenAPI -------------------------------------------------------


def test_unexpected_errors_are_500_without_internals(
    settings: Settings, store: Store, image_item: tuple[Item, bytes], auth: dict[str, str]
) -> None:
    item, _ = image_item
    _predict(store, item.item_id, [Suggestion("cat", 0.9, None, "m", "v")], score=0.5)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE suggestions"))  # reading suggestions now fails
    app = create_app(settings, store)
    with TestClient(app, headers=auth, raise_server_exceptions=False) as client:
        response = client.get(f"/items/{item.item_id}/suggestions")
        assert client.get(f"/items/{item.item_id}").status_code == 200  # the rest still works
    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"detail"}
    assert body["detail"].startswith("internal server error (id ")
    assert "Traceback" not in response.text and "no such table" not in response.text


def test_openapi_lists_every_route_with_models(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    expected = {
        ("/health", "get"),
        ("/items", "get"),
        ("/items/{item_id}", "get"),
        ("/items/{item_id}/image", "get"),
        ("/items/{item_id}/suggestions", "get"),
        ("/feedback", "post"),
        ("/queue/next", "post"),
        ("/queue/{item_id}/heartbeat", "post"),
        ("/queue/{item_id}/release", "post"),
        ("/queue/progress", "get"),
        ("/items/{item_id}/labels", "get"),
        ("/me", "get"),
        ("/users", "get"),
        ("/users", "post"),
        ("/users/{name}", "delete"),
        ("/jobs", "get"),
        ("/jobs", "post"),
        ("/jobs/{job_id}", "get"),
        ("/jobs/{job_id}/errors", "get"),
        ("/interactive/segment", "post"),
        ("/interactive/stats", "get"),
        ("/setup", "post"),
        ("/predict", "post"),
        ("/versions", "get"),
        ("/webhook", "post"),
        ("/quality/overlap", "post"),
        ("/quality/gold", "post"),
        ("/quality/items/{item_id}", "get"),
        ("/quality/review", "get"),
        ("/quality/review/{item_id}", "post"),
        ("/quality/batches", "get"),
        ("/quality/batches", "post"),
        ("/quality/batches/{batch_id}/report", "get"),
        ("/quality/batches/{batch_id}/close", "post"),
        ("/reports/quality", "get"),
        ("/queue/rank", "post"),
        ("/queue/policy", "get"),
        ("/items/{item_id}/ranking", "get"),
    }
    found = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert found == expected
    for path, method in expected:
        operation = spec["paths"][path][method]
        assert operation["summary"] and operation["tags"], (path, method)
        assert ("security" in operation) == (path != "/health"), (path, method)
    schemas = spec["components"]["schemas"]
    assert {"FeedbackIn", "FeedbackOut", "JobIn", "JobOut", "LeaseOut", "SuggestionOut"} <= set(
        schemas
    )
    assert "box_xyxy" in schemas["BoxRegion"]["properties"]
