"""The contract every registered model honours, run on tiny generated data.

A new model gets these tests by registering itself; it may add ``contract_params`` (a ClassVar of
``model.params`` overrides) to stay fast on tiny data.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_movies import schema as S
from tfrs_movies.config import load_config
from tfrs_movies.data.splits import random_split, with_validation
from tfrs_movies.models.base import Recommender
from tfrs_movies.models.registry import build_model, get_model_class, model_names

NAMES = model_names()


@pytest.fixture(scope="module")
def world_split(tiny_world):
    return tiny_world.dataset, with_validation(random_split(tiny_world.dataset.ratings, 0.2, seed=42), 0.1)


@pytest.fixture(scope="module")
def fitted(world_split, tmp_path_factory):
    """Each model fitted once (lazily) and shared by the tests below."""
    dataset, split = world_split
    cache: dict[str, Recommender] = {}

    def get(name: str) -> Recommender:
        if name not in cache:
            cls = get_model_class(name)
            overrides = {"model.name": name, "train.epochs": 3, "train.verbose": 0, "train.batch_size": 256}
            overrides.update({f"model.params.{k}": v for k, v in getattr(cls, "contract_params", {}).items()})
            model = build_model(load_config(None, overrides))
            model.fit(split.train, dataset, split.valid)
            cache[name] = model
        return cache[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_loss_goes_down(name, fitted):
    model = fitted(name)
    loss = model.history.get("loss")
    if not loss:
        pytest.skip(f"{name} is not trained by gradient steps")
    assert loss[-1] < loss[0]


@pytest.mark.parametrize("name", NAMES)
def test_predictions_stay_in_range(name, fitted, world_split):
    model = fitted(name)
    _, split = world_split
    predicted = model.predict(split.test[S.USER_ID].to_numpy(), split.test[S.MOVIE_ID].to_numpy())
    assert predicted.shape == (len(split.test),)
    assert np.isfinite(predicted).all()
    if model.predicts_ratings:
        low, high = model.rating_scale
        assert predicted.min() >= low and predicted.max() <= high


@pytest.mark.parametrize("name", NAMES)
def test_recommendations_exclude_seen_movies(name, fitted):
    model = fitted(name)
    users = model.users[:20]
    top, scores = model.recommend(users, k=10)
    assert top.shape == (20, 10)
    seen = model.seen_mask(users)
    for row, user_top in enumerate(top):
        seen_ids = set(model.catalogue[seen[row].indices])
        assert not seen_ids & set(user_top)
        assert len(set(user_top)) == 10
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


@pytest.mark.parametrize("name", NAMES)
def test_unknown_users_and_similar_movies_never_crash(name, fitted):
    model = fitted(name)
    top, _ = model.recommend(np.array([10**9]), k=5)
    assert top.shape == (1, 5)
    movie = model.catalogue[0]
    similar, _ = model.similar_movies(np.array([movie]), k=5)
    assert similar.shape == (1, 5) and movie not in similar[0]


@pytest.mark.parametrize("name", NAMES)
def test_save_then_load_gives_the_same_outputs(name, fitted, world_split, tmp_path):
    model = fitted(name)
    _, split = world_split
    model.save(tmp_path / name)
    loaded = Recommender.load(tmp_path / name)
    assert type(loaded) is type(model)
    users = model.users[:10]
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-5)
    pairs = split.test.head(50)
    np.testing.assert_allclose(
        loaded.predict(pairs[S.USER_ID].to_numpy(), pairs[S.MOVIE_ID].to_numpy()),
        model.predict(pairs[S.USER_ID].to_numpy(), pairs[S.MOVIE_ID].to_numpy()),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_array_equal(loaded.recommend(users, 5)[0], model.recommend(users, 5)[0])
