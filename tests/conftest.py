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


@pytest.fixture(scope="session")
def tiny_split(tiny_world):
    """The tiny world's per-user random 80/20 split (seed 42), validation carved from train."""
    from tfrs_movies.data.splits import random_split, with_validation

    return with_validation(random_split(tiny_world.dataset.ratings, 0.2, seed=42), 0.1)


@pytest.fixture(scope="session")
def lazily_fitted():
    """``lazily_fitted(dataset, split, config_for) -> get``: ``get(key)`` is the model that
    ``config_for(key)`` (a resolved config) describes, fitted on ``split`` with its validation the
    first time it is asked for, then shared."""
    from tfrs_movies.models.registry import build_model

    def make(dataset, split, config_for):
        cache: dict = {}

        def get(key: str):
            if key not in cache:
                cache[key] = build_model(config_for(key)).fit(split.train, dataset, split.valid)
            return cache[key]

        return get

    return make


# ----- one fitted and exported model of each serving kind, shared by every test module -------------
RETRIEVAL = {
    "model.name": "retrieval", "model.embedding_dim": 16, "train.epochs": 2, "train.verbose": 0,
    "model.user_features": ["id", "gender", "age", "history"], "model.movie_features": ["id", "genres"],
    "export.enabled": False,
}  # fmt: skip
MULTITASK = {
    "model.name": "multitask", "model.embedding_dim": 8, "train.epochs": 2, "train.verbose": 0,
    "model.user_features": ["id", "gender", "age"], "model.movie_features": ["id", "genres"],
    "model.params.head_layers": [16], "export.enabled": False,
}  # fmt: skip
RETRIEVAL_K_MAX = 40
MULTITASK_K_MAX = 30


def _fit(config: dict, dataset):
    from tfrs_movies.config import load_config
    from tfrs_movies.models.registry import build_model

    model = build_model(load_config(None, config))
    model.fit(dataset.ratings, dataset)
    return model


def _export(model, dataset, tmp_path_factory, k_max: int):
    from tfrs_movies.serving.export import export_run

    return export_run(model, dataset, tmp_path_factory.mktemp(f"{model.name}_run"), k_max=k_max)


@pytest.fixture(scope="session")
def fitted_retrieval(tiny_world):
    """A two-tower retrieval model with side features, fitted on the whole tiny world."""
    return _fit(RETRIEVAL, tiny_world.dataset)


@pytest.fixture(scope="session")
def exported_retrieval(fitted_retrieval, tiny_world, tmp_path_factory):
    return _export(fitted_retrieval, tiny_world.dataset, tmp_path_factory, RETRIEVAL_K_MAX)


@pytest.fixture(scope="session")
def fitted_multitask(tiny_world):
    """A multitask (retrieval + rating) model with demographics, fitted on the whole tiny world."""
    return _fit(MULTITASK, tiny_world.dataset)


@pytest.fixture(scope="session")
def exported_multitask(fitted_multitask, tiny_world, tmp_path_factory):
    return _export(fitted_multitask, tiny_world.dataset, tmp_path_factory, MULTITASK_K_MAX)
