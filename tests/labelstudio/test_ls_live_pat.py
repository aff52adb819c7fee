"""Task media fetched from a real Label Studio 1.23 with only a personal access token.

Label Studio (tests/lstudio.py) starts with a legacy token for its preset user; the
tests use that token only to create the user's personal access token (``POST
/api/token/``) and to upload an image. From then on the engine holds nothing but the
PAT: MediaFetcher and LabelStudioClient exchange it at ``/api/token/refresh/`` for a
``Bearer`` access token, and a wrong PAT gives an error that names Label Studio's answer.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import requests
from PIL import Image

from engine.labelstudio.auth import is_personal_access_token
from engine.labelstudio.client import LabelStudioClient, LabelStudioError
from engine.labelstudio.media import LabelStudioAccess, MediaError, MediaFetcher
from engine.labelstudio.push import MediaMapping

if TYPE_CHECKING:
    from lstudio import LiveLabelStudio

pytest_plugins = ["lstudio"]  # the session-wide Label Studio fixtures
pytestmark = pytest.mark.labelstudio

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Choices name="kind" toName="image"><Choice value="red"/><Choice value="noise"/></Choices>
</View>"""


def png_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def personal_access_token(label_studio: LiveLabelStudio) -> str:
    """The preset user's PAT, created through the API (one per user: revoke any older)."""
    url, legacy = label_studio
    headers = {"Authorization": f"Token {legacy}"}
    settings = requests.get(f"{url}/api/jwt/settings", headers=headers, timeout=30)
    settings.raise_for_status()
    if not settings.json()["api_tokens_enabled"]:
        enabled = {"api_tokens_enabled": True, "legacy_api_tokens_enabled": True}
        requests.post(
            f"{url}/api/jwt/settings", json=enabled, headers=headers, timeout=30
        ).raise_for_status()
    created = requests.post(f"{url}/api/token/", headers=headers, timeout=30)
    if created.status_code == 409:  # "You already have a valid token": revoke, create again
        listed = requests.get(f"{url}/api/token/", headers=headers, timeout=30).json()
        for row in listed:
            requests.post(
                f"{url}/api/token/blacklist/", json={"refresh": row["token"]}, timeout=30
            ).raise_for_status()
        created = requests.post(f"{url}/api/token/", headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    token = str(created.json()["token"])
    assert is_personal_access_token(token), token[:12]
    return token


@pytest.fixture(scope="module")
def project_id(label_studio: LiveLabelStudio, personal_access_token: str) -> int:
    """A project created by a LabelStudioClient that holds only the PAT."""
    with LabelStudioClient(label_studio.url, personal_access_token) as client:
        return int(client.create_project("media over a personal access token", CONFIG)["id"])


def upload(label_studio: LiveLabelStudio, project: int, name: str, data: bytes) -> int:
    """Import one image file into a project (task data ``/data/upload/...``); its task id."""
    answer = requests.post(
        f"{label_studio.url}/api/projects/{project}/import",
        params={"return_task_ids": "true"},
        files={"file": (name, data, "image/png")},
        headers={"Authorization": f"Token {label_studio.token}"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    (task_id,) = answer.json()["task_ids"]
    return int(task_id)


def fetcher(tmp_path: Path, access: LabelStudioAccess | None) -> MediaFetcher:
    return MediaFetcher(media_dir=tmp_path / "media", data_roots=[tmp_path], label_studio=access)


def test_an_uploaded_image_is_fetched_with_only_the_pat(
    label_studio: LiveLabelStudio, personal_access_token: str, project_id: int, tmp_path: Path
) -> None:
    image = png_bytes(seed=1)
    task_id = upload(label_studio, project_id, "noise.png", image)
    with LabelStudioClient(label_studio.url, personal_access_token) as client:
        ref = str(client.get_task(task_id)["data"]["image"])
    assert ref.startswith("/data/upload/") and ref.endswith(".png"), ref

    # Label Studio refuses the PAT sent as is: the exchange is what makes it work
    as_is = requests.get(
        label_studio.url + ref,
        headers={"Authorization": f"Token {personal_access_token}"},
        timeout=30,
    )
    assert as_is.status_code == 401, as_is.text

    pat = LabelStudioAccess(label_studio.url, personal_access_token)
    media = fetcher(tmp_path / "configured", pat).fetch(ref)
    assert media.data == image and media.sha256 == hashlib.sha256(image).hexdigest()
    assert media.path.read_bytes() == image and not media.from_cache

    # the same key arriving as /setup's access_token (the per-call fallback)
    from_setup = fetcher(tmp_path / "setup", None).fetch(ref, fallback=pat)
    assert from_setup.data == image and not from_setup.from_cache


def test_a_local_file_is_fetched_with_only_the_pat(
    label_studio: LiveLabelStudio,
    label_studio_media_root: Path,
    personal_access_token: str,
    project_id: int,
    tmp_path: Path,
) -> None:
    folder = label_studio_media_root / uuid.uuid4().hex[:8]
    folder.mkdir()
    image = png_bytes(seed=2)
    (folder / "local.png").write_bytes(image)
    ref = MediaMapping(root=label_studio_media_root).value_for(str(folder / "local.png"))
    assert ref.startswith("/data/local-files/?d="), ref
    with LabelStudioClient(label_studio.url, personal_access_token) as client:
        client.add_local_files_storage(project_id, str(folder))
    media = fetcher(tmp_path, LabelStudioAccess(label_studio.url, personal_access_token))
    assert media.fetch(ref).data == image


def test_a_wrong_pat_is_refused_with_label_studios_answer(
    label_studio: LiveLabelStudio, personal_access_token: str, project_id: int, tmp_path: Path
) -> None:
    task_id = upload(label_studio, project_id, "other.png", png_bytes(seed=3))
    with LabelStudioClient(*label_studio) as client:
        ref = str(client.get_task(task_id)["data"]["image"])
    header, payload, signature = personal_access_token.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"  # right shape and claims, bad signature
    wrong = fetcher(tmp_path, LabelStudioAccess(label_studio.url, forged))
    with pytest.raises(
        MediaError, match=r"personal access token .*HTTP 401: Token is invalid.*create a new"
    ):
        wrong.fetch(ref)
    with pytest.raises(LabelStudioError, match="token/refresh/: HTTP 401") as refused:
        LabelStudioClient(label_studio.url, forged)
    assert refused.value.status == 401
