"""Shared fixtures: where the genuine MovieLens 100K is, and tiny generated worlds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tfrs_movies  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test imports TensorFlow)

REPO = Path(__file__).resolve().parents[1]


def find_ml100k() -> Path | None:
    """The genuine ML-100K: $TFRS_MOVIES_DATA/ml-100k, data/ml-100k, or ../shared/data/ml-100k."""
    candidates = []
    if os.environ.get("TFRS_MOVIES_DATA"):
        candidates.append(Path(os.environ["TFRS_MOVIES_DATA"]) / "ml-100k")
    candidates += [REPO / "data" / "ml-100k", REPO.parent / "shared" / "data" / "ml-100k"]
    for path in candidates:
        if (path / "u.data").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    path = find_ml100k()
    if path is None:
        pytest.skip("genuine MovieLens 100K not found (set TFRS_MOVIES_DATA)")
    return path


@pytest.fixture(scope="session")
def tiny_world():
    """A small generated world (200 users, 150 movies, ~6k ratings), the same in every test."""
    from tfrs_movies.data.synthetic import generate_world

    return generate_world(n_users=200, n_movies=150, n_ratings=6000, seed=7)
