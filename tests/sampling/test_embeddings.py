"""project_embedding: one fixed random projection per input width, L2-normalised."""

from __future__ import annotations

import numpy as np
import pytest

from engine.sampling import embeddings
from engine.sampling.embeddings import project_embedding, projection_matrix
from engine.types import EMBEDDING_WIDTH


def test_wide_vectors_go_to_256_unit_length_the_same_every_call() -> None:
    vec = np.random.default_rng(0).normal(size=1280)
    out = project_embedding(vec)
    assert out.shape == (EMBEDDING_WIDTH,) and out.dtype == np.float32
    assert np.linalg.norm(out) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(out, project_embedding(vec.copy()))
    embeddings._matrix.cache_clear()  # drawn again: the same matrix (a fixed seed)
    np.testing.assert_array_equal(out, project_embedding(vec))


def test_the_projection_is_pinned() -> None:
    """The matrix for a width never changes (stored embeddings depend on it)."""
    matrix = projection_matrix(1280)
    assert matrix.shape == (1280, 256) and not matrix.flags.writeable
    assert matrix[0, :3].tolist() == pytest.approx(PINNED_1280, abs=1e-6)
    assert not np.allclose(projection_matrix(1024)[0, :3], matrix[0, :3])


def test_narrow_vectors_keep_their_values_normalised() -> None:
    vec = np.array([3.0, 4.0])
    np.testing.assert_allclose(project_embedding(vec), [0.6, 0.8])
    assert project_embedding(np.zeros(5)).tolist() == [0.0] * 5
    assert project_embedding(np.ones(300), width=300).shape == (300,)


def test_rows_are_projected_one_by_one_and_cosines_survive() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(1, 2048))
    rows = np.vstack([base, base + 0.1 * rng.normal(size=(1, 2048)), rng.normal(size=(1, 2048))])
    out = project_embedding(rows)
    assert out.shape == (3, EMBEDDING_WIDTH)
    np.testing.assert_allclose(out[1], project_embedding(rows[1]), atol=1e-6)
    assert out[0] @ out[1] > 0.95 and abs(out[0] @ out[2]) < 0.3


def test_bad_inputs_are_refused() -> None:
    for bad in (np.zeros(0), np.zeros((2, 2, 2)), np.array([1.0, np.nan])):
        with pytest.raises(ValueError):
            project_embedding(bad)
    with pytest.raises(ValueError):
        project_embedding(np.ones(3), width=0)


PINNED_1280 = [0.01744365505874157, -0.015831075608730316, -0.02228657156229019]
