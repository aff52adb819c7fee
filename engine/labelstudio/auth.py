"""The ``Authorization`` header Label Studio expects for an API key, legacy or personal.

Label Studio has two kinds of API key:

- a legacy token (40 hex characters): sent as is, ``Token <key>``;
- a personal access token (Label Studio >= 1.16, what a user gets by default in 1.23): a
  JWT *refresh* token (``eyJ...``, three dot-separated parts) that is never sent as is. It
  is exchanged at ``POST /api/token/refresh/`` (``{"refresh": <key>}``) for an access
  token (a JWT that lives 5 minutes in 1.23) sent as ``Bearer <access>``.

``LabelStudioAuth`` exchanges once and keeps the access token for most of its lifetime:
``exp - iat`` read from the token without checking its signature (the engine only carries
it; Label Studio is the one that verifies it), counted on the engine's own clock so a clock
skew between the two machines does not matter. A caller whose request got a 401 calls
``renew`` to exchange again (once). Thread-safe: concurrent callers wait for one exchange.

The POST is a ``post_json(url, body, timeout_s) -> (status, text)`` callable so each
caller keeps its HTTP library (urllib by default; ``engine.labelstudio.client`` passes requests);
it raises ``OSError`` (``requests.RequestException`` is one) when no answer comes back.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

REFRESH_PATH = "/api/token/refresh/"
RENEW_MARGIN_S = 30.0
_MAX_ANSWER_BYTES = 64 * 1024
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_TRUNCATED_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$")

PostJson = Callable[[str, dict[str, Any], float], tuple[int, str]]


class LabelStudioAuthError(RuntimeError):
    """Label Studio did not exchange a personal access token.

    ``status`` is ``None`` when no answer came back; ``body`` is the answer's text;
    ``reason`` says in words what went wrong and what to do.
    """

    def __init__(self, url: str, status: int | None, body: str) -> None:
        self.url, self.status, self.body = url, status, body
        self.reason = _reason(status, body)
        super().__init__(
            f"Label Studio did not exchange the personal access token (POST {url}): {self.reason}"
        )


def is_personal_access_token(key: str) -> bool:
    """Whether ``key`` is shaped like a JWT (a personal access token), not a legacy token."""
    return bool(_JWT.match(key.strip()))


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, decoded without checking its signature; None if unreadable."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def access_lifetime_s(access_token: str) -> float | None:
    """``exp - iat`` of an access token in seconds; None when either claim is missing."""
    claims = jwt_claims(access_token) or {}
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float) or exp <= iat:
        return None
    return float(exp - iat)


def urllib_post_json(url: str, body: dict[str, Any], timeout_s: float) -> tuple[int, str]:
    """POST ``body`` as JSON with urllib; ``(status, text)`` of the answer, errors included."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "labelengine",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), _text(response.read(_MAX_ANSWER_BYTES))
    except urllib.error.HTTPError as exc:
        return int(exc.code), _text(exc.read(_MAX_ANSWER_BYTES))


class LabelStudioAuth:
    """The header for one Label Studio (``url``) and one API key (legacy or personal)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        post_json: PostJson | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        key = api_key.strip()
        if not key:
            raise ValueError("a Label Studio API key is needed (legacy or personal access token)")
        if _TRUNCATED_JWT.match(key):
            raise ValueError(
                "the Label Studio API key has two parts (header.payload): that is a personal "
                "access token as Label Studio lists it, without its signature; use the full "
                "token shown once when it was created, or create a new one"
            )
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.url = url.rstrip("/")
        self.personal = is_personal_access_token(key)
        self.timeout_s = timeout_s
        self._key = key
        self._post_json = post_json or urllib_post_json
        self._clock = clock
        self._lock = threading.Lock()
        self._header: str | None = None
        self._renew_at: float | None = None  # on self._clock; None: keep until a 401
        self.exchanges = 0

    def __repr__(self) -> str:  # never show the key
        kind = "personal access token" if self.personal else "legacy token"
        return f"LabelStudioAuth({self.url!r}, {kind})"

    def header(self) -> str:
        """``Token <key>``, or ``Bearer <access>`` from a cached or a new exchange."""
        if not self.personal:
            return f"Token {self._key}"
        with self._lock:
            if self._header is None or self._expired():
                return self._exchange()
            return self._header

    def renew(self, rejected: str) -> str:
        """A new header after Label Studio answered 401 to ``rejected`` (a header this
        object gave). Exchanges again unless another caller already did since."""
        if not self.personal:
            return self.header()
        with self._lock:
            if self._header is None or self._header == rejected:
                return self._exchange()
            return self._header

    def _expired(self) -> bool:
        return self._renew_at is not None and self._clock() >= self._renew_at

    def _exchange(self) -> str:
        url = self.url + REFRESH_PATH
        started = self._clock()
        try:
            status, text = self._post_json(url, {"refresh": self._key}, self.timeout_s)
        except OSError as exc:
            raise LabelStudioAuthError(url, None, str(exc)) from exc
        if status != 200:
            raise LabelStudioAuthError(url, status, text)
        try:
            access = json.loads(text)["access"]
        except (ValueError, KeyError, TypeError):
            access = None
        if not isinstance(access, str) or not access:
            raise LabelStudioAuthError(url, status, f"no access token in the answer: {text}")
        lifetime_s = access_lifetime_s(access)
        self._header = f"Bearer {access}"
        self._renew_at = (
            None
            if lifetime_s is None
            else started + max(lifetime_s - RENEW_MARGIN_S, lifetime_s / 2)
        )
        self.exchanges += 1
        return self._header


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _reason(status: int | None, body: str) -> str:
    if status is None:
        return f"no answer ({body})"
    detail = body.strip()[:300]
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("detail"):
        detail = str(answer["detail"])[:300]
    hint = ""
    if status == 401:
        hint = (
            "; the token is invalid, expired or revoked: create a new personal access token "
            "in Label Studio (Account & Settings), or use a legacy token"
        )
    elif status in (404, 405):
        hint = (
            "; this Label Studio has no personal access tokens (older than 1.16?): "
            "use its legacy token"
        )
    return f"HTTP {status}: {detail}{hint}"
