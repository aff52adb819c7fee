"""Diversity on real photos: a pre-label job with the real yolo11n, embeddings from its
own forward pass, the queue ranked plain and then k-center over its head.

The backlog: 40 near-duplicates of one photo (random 88-97 % crops, half of them
mirrored, as consecutive video frames would be) and 10 distinct photos. The
duplicated photo (ultralytics' zidane.jpg, crowded and partly occluded) is among
the most uncertain, so plain uncertainty ranking fills the top of the queue with
copies of it: the failure diversity exists to fix. Needs the weights
(`labelengine models pull`): the test fails when they are missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.config import Settings
from engine.ingest import ingest
from engine.prelabel.job import create_prelabel_job, run_prelabel_job
from engine.review.ranking import rank_backlog
from engine.sampling.policy import RankPolicy, policy_from
from engine.store import Store

DISTINCT = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "coins",
    "moon",
)


def _rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return np.ascontiguousarray(array[..., :3].astype(np.uint8))


def _write_backlog(folder: Path) -> dict[str, str]:
    """The photos as files; returns file stem -> the photo it shows."""
    from skimage import data

    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.origin is not None
    zidane = np.asarray(Image.open(Path(spec.origin).parent / "assets" / "zidane.jpg"))
    rng = np.random.default_rng(0)
    folder.mkdir()
    source: dict[str, str] = {}
    h, w = zidane.shape[:2]
    for i in range(40):
        f = rng.uniform(0.88, 0.97)
        ch, cw = int(h * f), int(w * f)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = zidane[y : y + ch, x : x + cw]
        frame = crop[:, ::-1] if i % 2 else crop
        Image.fromarray(np.ascontiguousarray(frame)).save(folder / f"frame-{i:02d}.jpg")
        source[f"frame-{i:02d}"] = "zidane"
    for name in DISTINCT:
        Image.fromarray(_rgb(getattr(data, name)())).save(folder / f"{name}.png")
        source[name] = name
    return source


def _served_photos(store: Store, source: dict[str, str], n: int) -> list[str]:
    photos = []
    for item_id, _, uri in store.top_items(limit=n):
        assert uri is not None, item_id
        photos.append(source[Path(uri).stem])
    return photos


@pytest.mark.slow
def test_kcenter_keeps_near_duplicates_from_filling_the_top(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    source = _write_backlog(tmp_path / "photos")
    assert ingest(store, str(tmp_path / "photos"), settings.resolved_data_roots).added == 50
    job_config = tmp_path / "job.yaml"
    job_config.write_text("executor: local\n")
    job = create_prelabel_job(store, settings, model_name="yolo11n", job_config_path=job_config)
    final = run_prelabel_job(store, settings, job.job_id)
    assert (final.state, final.done) == ("succeeded", 50), final.message

    embeddings = store.latest_embeddings([i for i, _, _ in store.top_items(limit=50)])
    assert len(embeddings) == 50 and {len(v) for v in embeddings.values()} == {256}

    rank_backlog(store, RankPolicy())
    plain = _served_photos(store, source, 10)
    assert len(set(plain)) < 8, plain  # copies of one photo crowd the top

    report = rank_backlog(store, policy_from("auto,diversity=kcenter,head=50,picks=10"))
    assert report.n_head_embedded == 50
    diverse = _served_photos(store, source, 10)
    assert len(set(diverse)) >= 8, diverse
    assert diverse[0] == plain[0]  # the most uncertain item still comes first
