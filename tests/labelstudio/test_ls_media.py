"""MediaFetcher against a real local HTTP server: Label Studio paths, allow-list, caps, cache."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from media_server import MediaServer, serve_media
from PIL import Image

from engine.config import load_settings
from engine.labelstudio.media import LabelStudioAccess, MediaError, MediaFetcher
from engine.paths import PathNotAllowedError


def png_bytes(height: int = 12, width: int = 16, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def ls_server() -> Iterator[MediaServer]:
    files = {
        "/data/upload/1/a.png": png_bytes(),
        "/data/local-files/?d=photos/b.png": png_bytes(seed=1),
    }
    with serve_media(MediaServer(files=files, token="ls-key")) as server:
        yield server


def fetcher(tmp_path: Path, url: str | None, key: str | None = "ls-key", **kw) -> MediaFetcher:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return MediaFetcher(
        media_dir=tmp_path / "media",
        data_roots=[root],
        label_studio=LabelStudioAccess(url, key),
        **kw,
    )


def test_upload_is_fetched_with_the_token_and_cached_by_content(
    tmp_path: Path, ls_server: MediaServer
) -> None:
    media = fetcher(tmp_path, ls_server.url)
    first = media.fetch("/data/upload/1/a.png")
    expected = ls_server.files["/data/upload/1/a.png"]
    digest = hashlib.sha256(expected).hexdigest()
    assert first.data == expected and first.sha256 == digest and not first.from_cache
    assert first.path == (tmp_path / "media" / f"{digest}.png").resolve()
    assert first.path.read_bytes() == expected
    assert first.item_id == digest[:24]
    assert ls_server.requests == [("/data/upload/1/a.png", "Token ls-key")]
    second = media.fetch("/data/upload/1/a.png")
    assert second.from_cache and second.data == expected and second.path == first.path
    assert ls_server.hits("/data/upload/1/a.png") == 1  # the second came from the file


def test_local_files_path_takes_its_suffix_from_d(tmp_path: Path, ls_server: MediaServer) -> None:
    got = fetcher(tmp_path, ls_server.url).fetch("/data/local-files/?d=photos/b.png")
    assert got.path.suffix == ".png"
    assert got.data == ls_server.files["/data/local-files/?d=photos/b.png"]


def test_key_from_the_fallback_when_settings_have_none(
    tmp_path: Path, ls_server: MediaServer
) -> None:
    media = fetcher(tmp_path, None, key=None)
    got = media.fetch("/data/upload/1/a.png", fallback=LabelStudioAccess(ls_server.url, "ls-key"))
    assert got.data == ls_server.files["/data/upload/1/a.png"]
    with pytest.raises(MediaError, match="LABEL_STUDIO_URL"):
        media.fetch("/data/upload/1/a.png")


def test_wrong_key_is_a_clear_error(tmp_path: Path, ls_server: MediaServer) -> None:
    with pytest.raises(MediaError, match=r"HTTP 401.*API key"):
        fetcher(tmp_path, ls_server.url, key="wrong").fetch("/data/upload/1/a.png")
    with pytest.raises(MediaError, match="HTTP 404"):
        fetcher(tmp_path, ls_server.url).fetch("/data/upload/1/missing.png")


def test_disallowed_hosts_are_refused_by_name(tmp_path: Path, ls_server: MediaServer) -> None:
    media = fetcher(tmp_path, ls_server.url)
    with pytest.raises(MediaError, match=r"'example\.com' is not allowed"):
        media.fetch("https://example.com/cat.png")
    # Same host, another port: not Label Studio.
    with pytest.raises(MediaError, match="not allowed"):
        media.fetch("http://127.0.0.1:1/a.png")
    assert ls_server.requests == []
    ls_server.token = None  # a plain image host
    allowed = fetcher(tmp_path, None, allowed_hosts=["127.0.0.1"])
    direct = allowed.fetch(ls_server.url + "/data/upload/1/a.png")
    assert direct.data == ls_server.files["/data/upload/1/a.png"]
    assert ls_server.requests[-1][1] is None  # the key goes only to Label Studio's origin


def test_a_redirect_to_a_disallowed_host_is_refused(tmp_path: Path, ls_server: MediaServer) -> None:
    ls_server.redirects["/data/upload/1/away.png"] = "http://127.0.0.2:9/steal.png"
    with pytest.raises(MediaError, match=r"'127\.0\.0\.2' is not allowed"):
        fetcher(tmp_path, ls_server.url).fetch("/data/upload/1/away.png")
    ls_server.redirects["/data/upload/1/moved.png"] = ls_server.url + "/data/upload/1/a.png"
    moved = fetcher(tmp_path, ls_server.url).fetch("/data/upload/1/moved.png")
    assert moved.data == ls_server.files["/data/upload/1/a.png"]


def test_size_cap(tmp_path: Path, ls_server: MediaServer) -> None:
    with pytest.raises(MediaError, match="over media_max_bytes"):
        fetcher(tmp_path, ls_server.url, max_bytes=100).fetch("/data/upload/1/a.png")
    big = tmp_path / "root" / "big.png"
    big.write_bytes(png_bytes())
    with pytest.raises(MediaError, match="over media_max_bytes"):
        fetcher(tmp_path, None, max_bytes=100).fetch(str(big))


def test_local_paths_stay_inside_the_data_roots(tmp_path: Path) -> None:
    media = fetcher(tmp_path, None)
    inside = tmp_path / "root" / "a.png"
    inside.write_bytes(png_bytes())
    assert media.fetch(str(inside)).path == inside.resolve()
    assert media.fetch(inside.as_uri()).data == inside.read_bytes()
    (tmp_path / "secret.png").write_bytes(b"secret")
    for ref in (str(tmp_path / "root" / ".." / "secret.png"), "/etc/passwd", "file:///etc/passwd"):
        with pytest.raises(PathNotAllowedError):
            media.fetch(ref)
    with pytest.raises(MediaError, match="s3:// is not supported"):
        media.fetch("s3://bucket/a.png")
    with pytest.raises(MediaError, match="non-empty"):
        media.fetch("  ")


def test_settings_and_label_studio_environment(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", data_roots=[tmp_path])
    env = {"LABEL_STUDIO_URL": "http://ls:8080", "LABEL_STUDIO_API_KEY": "env-key"}
    from_env = MediaFetcher.from_settings(settings, environ=env)
    assert from_env.access() == LabelStudioAccess("http://ls:8080", "env-key")
    assert from_env.media_dir == (tmp_path / "data" / "media").resolve()
    configured = load_settings(
        data_dir=tmp_path / "data",
        label_studio_url="https://ls.example.org",
        label_studio_api_key="set-key",
        media_allowed_hosts=["cdn.example.org"],
    )
    fetcher_ = MediaFetcher.from_settings(configured, environ=env)
    assert fetcher_.access() == LabelStudioAccess("https://ls.example.org", "set-key")
    assert fetcher_.allowed("https://cdn.example.org/x.png")
    assert fetcher_.allowed("https://ls.example.org:443/data/upload/x.png")
    assert not fetcher_.allowed("https://ls.example.org:8443/data/upload/x.png")
    assert not fetcher_.allowed("https://evil.example.org/x.png")
