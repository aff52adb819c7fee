"""engine.labelstudio.auth: key shapes, the cached access token, its expiry, renewal, failures.

Label Studio's own exchange endpoint is exercised in tests/labelstudio/test_ls_live_pat.py.
Here a stand-in plays it: ``Exchange`` is a ``post_json`` that answers the way Label
Studio 1.23 does (``{"access": <JWT>}``, or its 401 JSON), and ``StandIn`` is a real local
HTTP server with the refresh endpoint and ``/data/upload/...`` behind ``Bearer`` tokens,
so MediaFetcher's renew-on-401 path runs over real HTTP.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from media_server import QuietHandler, http_server

from engine.labelstudio.auth import (
    REFRESH_PATH,
    LabelStudioAuth,
    LabelStudioAuthError,
    access_lifetime_s,
    is_personal_access_token,
    jwt_claims,
)
from engine.labelstudio.client import LabelStudioClient, LabelStudioError
from engine.labelstudio.media import LabelStudioAccess, MediaError, MediaFetcher

LEGACY = "0123456789abcdef0123456789abcdef01234567"
LS_INVALID = json.dumps({"status_code": 401, "detail": "Token is invalid", "exc_info": None})


def make_jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


PAT = make_jwt({"token_type": "refresh", "exp": 8_103_284_752, "iat": 1_796_084_752})


@dataclass
class Exchange:
    """A ``post_json`` answering like Label Studio's /api/token/refresh/ (a stand-in)."""

    lifetime_s: float | None = 300.0
    status: int = 200
    delay_s: float = 0.0
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, url: str, body: dict[str, Any], timeout_s: float) -> tuple[int, str]:
        time.sleep(self.delay_s)
        self.calls.append((url, body))
        if self.status != 200:
            return self.status, LS_INVALID
        claims: dict[str, Any] = {"token_type": "access", "jti": f"n{len(self.calls)}"}
        if self.lifetime_s is not None:
            claims.update(iat=1_796_084_761, exp=1_796_084_761 + self.lifetime_s)
        return 200, json.dumps({"access": make_jwt(claims)})


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_key_shapes() -> None:
    assert is_personal_access_token(PAT) and is_personal_access_token(f"  {PAT}\n")
    for key in (LEGACY, "a.b", "a..c", "a.b.c.d", "a b.c.d", ""):
        assert not is_personal_access_token(key), key
    assert jwt_claims(PAT) == {"token_type": "refresh", "exp": 8_103_284_752, "iat": 1_796_084_752}
    assert jwt_claims("x.!!!.y") is None and jwt_claims(LEGACY) is None
    assert access_lifetime_s(make_jwt({"iat": 100, "exp": 400})) == 300.0
    assert access_lifetime_s(make_jwt({"exp": 400})) is None


def test_a_truncated_or_empty_key_is_refused_with_a_reason() -> None:
    truncated = PAT.rsplit(".", 1)[0]  # what Label Studio's token list shows
    with pytest.raises(ValueError, match=r"header\.payload.*without its signature"):
        LabelStudioAuth("http://ls", truncated)
    with pytest.raises(ValueError, match="API key is needed"):
        LabelStudioAuth("http://ls", "  ")


def test_a_legacy_token_is_sent_as_is_and_never_exchanged() -> None:
    exchange = Exchange()
    auth = LabelStudioAuth("http://ls/", LEGACY, post_json=exchange)
    assert auth.header() == f"Token {LEGACY}" == auth.renew(f"Token {LEGACY}")
    assert not auth.personal and exchange.calls == []
    assert LEGACY not in repr(auth)


def test_a_pat_is_exchanged_once_and_the_access_token_kept_until_near_expiry() -> None:
    exchange, clock = Exchange(lifetime_s=300.0), Clock()
    auth = LabelStudioAuth("http://ls/", PAT, post_json=exchange, clock=clock)
    first = auth.header()
    assert first.startswith("Bearer ") and jwt_claims(first.split()[1])["jti"] == "n1"  # type: ignore[index]
    assert exchange.calls == [("http://ls" + REFRESH_PATH, {"refresh": PAT})]
    clock.now_s += 269.0  # renewed RENEW_MARGIN_S (30 s) before the token's 300 s run out
    assert auth.header() == first and len(exchange.calls) == 1
    clock.now_s += 1.0
    second = auth.header()
    assert second != first and len(exchange.calls) == 2 and auth.exchanges == 2
    assert PAT not in repr(auth)


def test_a_short_lived_token_is_kept_for_half_its_life() -> None:
    exchange, clock = Exchange(lifetime_s=20.0), Clock()
    auth = LabelStudioAuth("http://ls", PAT, post_json=exchange, clock=clock)
    first = auth.header()
    clock.now_s += 9.9
    assert auth.header() == first
    clock.now_s += 0.2
    assert auth.header() != first and len(exchange.calls) == 2


def test_without_exp_the_token_is_kept_until_a_401_and_renewed_once_per_rejection() -> None:
    exchange, clock = Exchange(lifetime_s=None), Clock()
    auth = LabelStudioAuth("http://ls", PAT, post_json=exchange, clock=clock)
    first = auth.header()
    clock.now_s += 1e6
    assert auth.header() == first and len(exchange.calls) == 1
    second = auth.renew(first)
    assert second != first and len(exchange.calls) == 2
    # a second caller rejected with the old header gets the new one, no new exchange
    assert auth.renew(first) == second and len(exchange.calls) == 2


def test_concurrent_callers_share_one_exchange() -> None:
    exchange = Exchange(delay_s=0.2)
    auth = LabelStudioAuth("http://ls", PAT, post_json=exchange)
    headers: list[str] = []
    threads = [threading.Thread(target=lambda: headers.append(auth.header())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(exchange.calls) == 1 and len(set(headers)) == 1 and len(headers) == 8


def test_exchange_failures_name_label_studios_answer() -> None:
    refused = LabelStudioAuth("http://ls", PAT, post_json=Exchange(status=401))
    with pytest.raises(
        LabelStudioAuthError, match=r"HTTP 401: Token is invalid.*create a new"
    ) as e:
        refused.header()
    assert e.value.status == 401 and e.value.body == LS_INVALID

    def no_answer(url: str, body: dict[str, Any], timeout_s: float) -> tuple[int, str]:
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(LabelStudioAuthError, match=r"no answer.*Connection refused") as e:
        LabelStudioAuth("http://ls", PAT, post_json=no_answer).header()
    assert e.value.status is None

    def old_ls(url: str, body: dict[str, Any], timeout_s: float) -> tuple[int, str]:
        return 404, "<h1>Not Found</h1>"

    with pytest.raises(LabelStudioAuthError, match=r"HTTP 404.*older than 1\.16"):
        LabelStudioAuth("http://ls", PAT, post_json=old_ls).header()

    def no_access(url: str, body: dict[str, Any], timeout_s: float) -> tuple[int, str]:
        return 200, '{"refresh": "x"}'

    with pytest.raises(LabelStudioAuthError, match="no access token in the answer"):
        LabelStudioAuth("http://ls", PAT, post_json=no_access).header()


# -- over real HTTP: a stand-in Label Studio (refresh endpoint + uploads behind Bearer) ------


@dataclass
class StandIn:
    files: dict[str, bytes]
    refresh_key: str
    issued: list[str] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""

    def expire_access_tokens(self) -> None:
        self.valid.clear()


@contextmanager
def stand_in_label_studio(server: StandIn) -> Iterator[StandIn]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.seen.append((self.path, None))
            if self.path.rstrip("/") != REFRESH_PATH.rstrip("/"):
                self._answer(404, b"{}")
            elif body.get("refresh") != server.refresh_key:
                self._answer(401, LS_INVALID.encode())
            else:
                access = make_jwt({"iat": 0, "exp": 300, "jti": f"a{len(server.issued)}"})
                server.issued.append(access)
                server.valid.add(access)
                self._answer(200, json.dumps({"access": access}).encode())

        def do_GET(self) -> None:
            auth = self.headers.get("Authorization")
            server.seen.append((self.path, auth))
            token = (auth or "").removeprefix("Bearer ")
            if token not in server.valid:
                self._answer(401, b'{"detail": "Authentication credentials were not provided."}')
            elif self.path in server.files:
                self._answer(200, server.files[self.path], "image/png")
            else:
                self._answer(404, b"{}")

    with http_server(Handler) as url:
        server.url = url
        yield server


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    files = {"/data/upload/1/a.png": b"\x89PNG a", "/data/upload/1/b.png": b"\x89PNG b"}
    with stand_in_label_studio(StandIn(files, refresh_key=PAT)) as server:
        yield server


def fetcher(tmp_path: Path, url: str, key: str) -> MediaFetcher:
    return MediaFetcher(
        media_dir=tmp_path / "media",
        data_roots=[tmp_path],
        label_studio=LabelStudioAccess(url, key),
    )


def test_media_exchanges_once_and_renews_on_a_401(tmp_path: Path, stand_in: StandIn) -> None:
    media = fetcher(tmp_path, stand_in.url, PAT)
    assert media.fetch("/data/upload/1/a.png").data == b"\x89PNG a"
    assert stand_in.seen == [
        (REFRESH_PATH, None),
        ("/data/upload/1/a.png", f"Bearer {stand_in.issued[0]}"),
    ]
    stand_in.expire_access_tokens()  # as if the 5 minutes were over
    assert media.fetch("/data/upload/1/b.png").data == b"\x89PNG b"
    assert stand_in.seen[2:] == [
        ("/data/upload/1/b.png", f"Bearer {stand_in.issued[0]}"),
        (REFRESH_PATH, None),
        ("/data/upload/1/b.png", f"Bearer {stand_in.issued[1]}"),
    ]


def test_media_with_a_refused_pat_or_access_token_says_why(
    tmp_path: Path, stand_in: StandIn
) -> None:
    wrong = make_jwt({"token_type": "refresh", "jti": "not-issued"})
    with pytest.raises(MediaError, match=r"personal access token.*HTTP 401: Token is invalid"):
        fetcher(tmp_path, stand_in.url, wrong).fetch("/data/upload/1/a.png")
    with pytest.raises(MediaError, match="without its signature"):
        fetcher(tmp_path, stand_in.url, PAT.rsplit(".", 1)[0]).fetch("/data/upload/1/a.png")
    media = fetcher(tmp_path, stand_in.url, PAT)
    media.fetch("/data/upload/1/a.png")
    stand_in.refresh_key = "rotated"  # the exchange itself now fails: that error is shown
    stand_in.expire_access_tokens()
    with pytest.raises(MediaError, match=r"b\.png: .*HTTP 401: Token is invalid"):
        media.fetch("/data/upload/1/b.png")


def test_lsclient_uses_the_shared_exchange(stand_in: StandIn) -> None:
    with pytest.raises(LabelStudioError, match="POST /api/token/refresh/: HTTP 401") as e:
        LabelStudioClient(stand_in.url, make_jwt({"jti": "not-issued"}))
    assert e.value.status == 401
    client = LabelStudioClient(stand_in.url, PAT)
    stand_in.expire_access_tokens()
    with pytest.raises(LabelStudioError, match="GET /api/version: HTTP 404"):
        client.version()  # 401 with the old token -> one renewal -> the stand-in's 404
    assert len(stand_in.issued) == 2
    client.close()
