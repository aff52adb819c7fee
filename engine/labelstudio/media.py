"""Fetch the media a Label Studio task points at, safely, and keep it by content.

A task's ``data`` value may be:

- a Label Studio path: ``/data/upload/...``, ``/data/local-files/?d=...`` (any
  path under ``/data/``, ``/tasks/``, ``/storage-data/``): fetched from the
  Label Studio URL with the API key: a legacy token as ``Token <key>``, a personal
  access token (a JWT) exchanged for a short-lived ``Bearer`` access token, renewed
  before it expires and once more on a 401 (``engine.labelstudio.auth``);
- an ``http(s)://`` URL: fetched only from an allowed host (Label Studio's own
  host plus ``media_allowed_hosts``); the API key is sent only to Label Studio's
  origin, and a redirect is checked like the first URL (and loses the key when
  it leaves that origin);
- a local path or ``file://`` URI: read only inside the data roots.

Every download is capped at ``max_bytes`` and written once to
``<media_dir>/<sha256>.<ext>``, so it becomes a store item with a content-hash
id (``engine.ingest.content_id``). A URL fetched before is read from that file
instead of the network (an in-memory LRU maps URL -> file). The Label Studio URL
and key come from settings, else the ``LABEL_STUDIO_URL`` /
``LABEL_STUDIO_API_KEY`` environment variables, else a per-call fallback (what
Label Studio's ``/setup`` sent).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from engine.config import Settings
from engine.ingest import IMAGE_SUFFIXES, digest_id
from engine.labelstudio.auth import LabelStudioAuth, LabelStudioAuthError
from engine.paths import confine

log = logging.getLogger(__name__)

LABEL_STUDIO_PREFIXES = ("/data/", "/tasks/", "/storage-data/")
_CONTENT_TYPES = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "image/webp": ".webp",
}
_CHUNK_BYTES = 1 << 20
_MAX_KEYS = 16  # Label Studio (url, key) pairs whose access tokens are kept


class MediaError(ValueError):
    """Task media cannot be fetched; the message names the reference and what to do."""


@dataclass(frozen=True)
class LabelStudioAccess:
    """Where Label Studio lives and the key its media need (either may be unknown)."""

    url: str | None = None
    api_key: str | None = None


@dataclass(frozen=True)
class Media:
    """Fetched bytes, their sha256 and the local file that holds them."""

    data: bytes
    sha256: str
    path: Path
    source: str
    from_cache: bool

    @property
    def item_id(self) -> str:
        """The store id of this content (``engine.ingest.digest_id``)."""
        return digest_id(self.sha256)


class MediaFetcher:
    """Resolves task media references to local, content-addressed files (thread-safe)."""

    def __init__(
        self,
        *,
        media_dir: Path,
        data_roots: Sequence[Path],
        label_studio: LabelStudioAccess | None = None,
        allowed_hosts: Sequence[str] = (),
        max_bytes: int = 64 * 1024**2,
        timeout_s: float = 30.0,
        max_cached_urls: int = 10_000,
    ) -> None:
        if max_bytes <= 0 or timeout_s <= 0 or max_cached_urls <= 0:
            raise ValueError("max_bytes, timeout_s and max_cached_urls must be positive")
        self.media_dir = media_dir.expanduser().resolve()
        self.data_roots = [root.expanduser().resolve() for root in data_roots]
        self.label_studio = label_studio or LabelStudioAccess()
        self.allowed_hosts = tuple(h.strip().lower() for h in allowed_hosts if h.strip())
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._max_cached_urls = max_cached_urls
        self._urls: OrderedDict[str, tuple[str, Path]] = OrderedDict()
        self._auths: OrderedDict[tuple[str, str], LabelStudioAuth] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, environ: Mapping[str, str] | None = None
    ) -> MediaFetcher:
        env = os.environ if environ is None else environ
        access = LabelStudioAccess(
            url=settings.label_studio_url or env.get("LABEL_STUDIO_URL") or None,
            api_key=settings.label_studio_api_key or env.get("LABEL_STUDIO_API_KEY") or None,
        )
        return cls(
            media_dir=settings.data_dir / "media",
            data_roots=settings.resolved_data_roots,
            label_studio=access,
            allowed_hosts=settings.media_allowed_hosts,
            max_bytes=settings.media_max_bytes,
        )

    def access(self, fallback: LabelStudioAccess | None = None) -> LabelStudioAccess:
        """The configured Label Studio URL and key, each completed from ``fallback``."""
        fallback = fallback or LabelStudioAccess()
        return LabelStudioAccess(
            url=self.label_studio.url or fallback.url,
            api_key=self.label_studio.api_key or fallback.api_key,
        )

    def fetch(self, ref: str, *, fallback: LabelStudioAccess | None = None) -> Media:
        """The bytes behind a task data value (see the module doc for what is accepted)."""
        if not isinstance(ref, str) or not ref.strip():
            raise MediaError(f"task media reference must be a non-empty string, got {ref!r}")
        ref = ref.strip()
        access = self.access(fallback)
        if ref.startswith(LABEL_STUDIO_PREFIXES):
            if not access.url:
                raise MediaError(
                    f"{_display(ref)} is a Label Studio path but no Label Studio URL is known: "
                    "set LABELENGINE_LABEL_STUDIO_URL (or LABEL_STUDIO_URL)"
                )
            return self._fetch_url(access.url.rstrip("/") + ref, ref, access)
        scheme = urlsplit(ref).scheme.lower()
        if scheme in ("http", "https"):
            return self._fetch_url(ref, ref, access)
        if scheme == "file" or len(scheme) <= 1:  # a one-letter scheme is a Windows drive
            return self._read_local(ref)
        raise MediaError(
            f"{_display(ref)}: media scheme {scheme}:// is not supported; use a Label Studio "
            "path, http(s) from an allowed host, or a local path under the data roots"
        )

    # -- local files ----------------------------------------------------------------

    def _read_local(self, ref: str) -> Media:
        raw = unquote(urlsplit(ref).path) if ref.lower().startswith("file:") else ref
        path = confine(raw, self.data_roots)
        if not path.is_file():
            raise MediaError(f"{_display(ref)}: no such file")
        size = path.stat().st_size
        if size > self.max_bytes:
            raise MediaError(f"{_display(ref)}: file is {size} bytes, over media_max_bytes")
        data = path.read_bytes()
        return Media(data, hashlib.sha256(data).hexdigest(), path, ref, from_cache=False)

    # -- http(s) --------------------------------------------------------------------

    def _fetch_url(self, url: str, ref: str, access: LabelStudioAccess) -> Media:
        self._check_host(url, access)
        with self._lock:
            cached = self._urls.get(url)
            if cached is not None:
                self._urls.move_to_end(url)
        if cached is not None and cached[1].is_file():
            return Media(cached[1].read_bytes(), cached[0], cached[1], ref, from_cache=True)
        auth = None
        if access.url and access.api_key and _origin(url) == _origin(access.url):
            auth = self._auth(access.url, access.api_key)
        data, content_type = self._download(url, auth, access)
        digest = hashlib.sha256(data).hexdigest()
        path = self._write(digest, _suffix(url, content_type), data)
        with self._lock:
            self._urls[url] = (digest, path)
            while len(self._urls) > self._max_cached_urls:
                self._urls.popitem(last=False)
        return Media(data, digest, path, ref, from_cache=False)

    def allowed(self, url: str, access: LabelStudioAccess | None = None) -> bool:
        """Whether ``url``'s host may be fetched (Label Studio's or an allowed host)."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme.lower() not in ("http", "https") or not host:
            return False
        host_port = f"{host}:{_port(parts)}"
        ls_url = (access or self.access()).url
        entries = [*self.allowed_hosts]
        if ls_url:
            ls = urlsplit(ls_url)
            entries.append(f"{(ls.hostname or '').lower()}:{_port(ls)}")
        return any(entry in (host, host_port) for entry in entries)

    def _check_host(self, url: str, access: LabelStudioAccess) -> None:
        if self.allowed(url, access):
            return
        parts = urlsplit(url)
        host = parts.hostname or "(none)"
        if parts.scheme.lower() not in ("http", "https"):
            raise MediaError(f"{_display(url)}: only http(s) media can be fetched")
        allowed = ", ".join(self._allowed_names(access)) or "none"
        raise MediaError(
            f"media host {host!r} is not allowed (allowed: {allowed}); add it to "
            f"LABELENGINE_MEDIA_ALLOWED_HOSTS to fetch {_display(url)}"
        )

    def _allowed_names(self, access: LabelStudioAccess) -> list[str]:
        names = list(self.allowed_hosts)
        if access.url:
            names.insert(0, urlsplit(access.url).netloc)
        return names

    def _auth(self, url: str, api_key: str) -> LabelStudioAuth:
        """The (shared, cached) auth of one Label Studio and key."""
        key = (_base_url(url), api_key)
        with self._lock:
            auth = self._auths.get(key)
            if auth is not None:
                self._auths.move_to_end(key)
                return auth
        try:
            auth = LabelStudioAuth(key[0], api_key, timeout_s=self.timeout_s)
        except ValueError as exc:
            raise MediaError(f"the Label Studio API key cannot be used: {exc}") from exc
        with self._lock:
            auth = self._auths.setdefault(key, auth)
            while len(self._auths) > _MAX_KEYS:
                self._auths.popitem(last=False)
        return auth

    def _download(
        self, url: str, auth: LabelStudioAuth | None, access: LabelStudioAccess
    ) -> tuple[bytes, str]:
        header = _header(auth, url)
        try:
            try:
                return self._get(url, header, access)
            except urllib.error.HTTPError as exc:
                if exc.code != 401 or auth is None or not auth.personal:
                    raise
                log.info("Label Studio refused the access token for %s; renewing", _display(url))
                header = _header(auth, url, rejected=header)
                return self._get(url, header, access)
        except urllib.error.HTTPError as exc:
            hint = _refused_hint(auth) if exc.code in (401, 403) else ""
            raise MediaError(f"{_display(url)}: HTTP {exc.code} {exc.reason}{hint}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MediaError(f"cannot fetch {_display(url)}: {reason}") from exc

    def _get(self, url: str, header: str | None, access: LabelStudioAccess) -> tuple[bytes, str]:
        request = urllib.request.Request(url, headers={"User-Agent": "labelengine"})
        if header:
            request.add_header("Authorization", header)
        opener = urllib.request.build_opener(
            _CheckedRedirects(lambda new_url: self._check_host(new_url, access))
        )
        with opener.open(request, timeout=self.timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise MediaError(
                    f"{_display(url)} is {declared} bytes, over media_max_bytes ({self.max_bytes})"
                )
            data = _read_capped(response, self.max_bytes, url)
            content_type = response.headers.get_content_type()
        log.debug("fetched %s (%d bytes)", _display(url), len(data))
        return data, content_type

    def _write(self, digest: str, suffix: str, data: bytes) -> Path:
        self.media_dir.mkdir(parents=True, exist_ok=True)
        path = self.media_dir / f"{digest}{suffix}"
        if not path.is_file():
            partial = path.with_name(f".{path.name}.{threading.get_ident()}.part")
            partial.write_bytes(data)
            os.replace(partial, path)
        return path


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an allowed host, and drops the key on a new origin."""

    def __init__(self, check: Callable[[str], None]) -> None:
        self._check = check

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        self._check(newurl)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _header(auth: LabelStudioAuth | None, url: str, rejected: str | None = None) -> str | None:
    if auth is None:
        return None
    try:
        return auth.header() if rejected is None else auth.renew(rejected)
    except LabelStudioAuthError as exc:
        raise MediaError(f"cannot fetch {_display(url)}: {exc}") from exc


def _refused_hint(auth: LabelStudioAuth | None) -> str:
    if auth is None:
        return "; no API key was sent (set LABELENGINE_LABEL_STUDIO_API_KEY)"
    if auth.personal:
        return (
            "; Label Studio refused the access token exchanged for the personal access token "
            "(is its user a member of this project's organization, with personal access "
            "tokens enabled there?)"
        )
    return (
        "; check the Label Studio API key (LABELENGINE_LABEL_STUDIO_API_KEY or "
        "LABEL_STUDIO_API_KEY)"
    )


def _read_capped(response: Any, max_bytes: int, url: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := response.read(_CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise MediaError(f"{_display(url)} is over media_max_bytes ({max_bytes} bytes)")
        chunks.append(chunk)
    if not total:
        raise MediaError(f"{_display(url)}: the response is empty")
    return b"".join(chunks)


def _port(parts: Any) -> int:
    if parts.port is not None:
        return int(parts.port)
    return 443 if parts.scheme.lower() == "https" else 80


def _origin(url: str | None) -> tuple[str, str, int] | None:
    if not url:
        return None
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), _port(parts)


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc}{parts.path.rstrip('/')}"


def _suffix(url: str, content_type: str) -> str:
    """A file suffix for the media: from the path (or ``?d=``), else the content type."""
    parts = urlsplit(url)
    candidates = [parts.path, *parse_qs(parts.query).get("d", [])]
    for candidate in reversed(candidates):
        suffix = Path(unquote(candidate)).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            return suffix
    return _CONTENT_TYPES.get(content_type, ".bin")


def _display(ref: str) -> str:
    """A reference safe for messages and logs: no query string values, bounded length."""
    parts = urlsplit(ref)
    if parts.scheme.lower() in ("http", "https") and parts.query:
        ref = ref.split("?", 1)[0] + "?..."
    return ref if len(ref) <= 200 else ref[:197] + "..."
