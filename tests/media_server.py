"""A tiny real HTTP server that serves media the way Label Studio does (for media tests).

Files are served from a dict ``path -> bytes`` (the path includes any query,
``/data/local-files/?d=...``); every request is recorded with its
``Authorization`` header; when ``token`` is set, a request without
``Authorization: Token <token>`` gets 401. ``redirects`` maps a path to a
``Location`` answered with 302.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class MediaServer:
    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""

    def hits(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that answers with ``_answer`` and logs nothing."""

    def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port in a thread; yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextmanager
def serve_media(server: MediaServer) -> Iterator[MediaServer]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization")
            server.requests.append((self.path, auth))
            if server.token is not None and auth != f"Token {server.token}":
                self._answer(401, b'{"detail": "Authentication credentials were not provided."}')
            elif self.path in server.redirects:
                self.send_response(302)
                self.send_header("Location", server.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path in server.files:
                self._answer(200, server.files[self.path], "image/png")
            else:
                self._answer(404, b"not found")

    with http_server(Handler) as url:
        server.url = url
        yield server
