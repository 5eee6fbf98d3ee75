"""The model contract for the baselines, the rating networks and the composites, on tiny generated data.

For every model: its serving parts score the catalogue as ``model.score`` does for known users (the same
top 10, the same numbers where the form computes them), unknown users do not crash them, a save / load
round trip gives the same scores and predictions from ``model.json`` + ``arrays.npz`` alone, and bad
``model.params`` are a one-line ConfigError naming the key.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.data.splits import random_split, with_validation
from tfrs_movies.models.base import Recommender
from tfrs_movies.models.registry import build_model, get_model_class

TRAIN = {"train.verbose": 0, "train.optimizer": "adam", "train.learning_rate": 0.01, "train.epochs": 3,
         "train.batch_size": 256, "train.early_stopping.metric": "rmse"}  # fmt: skip
SMALL_AUTOREC = {"model.name": "autorec", "model.params.hidden": 16, "train.batch_size": 32}
CASES: dict[str, dict] = {
    "popularity": {"model.name": "popularity"},
    "biases": {"model.name": "biases"},
    "svd": {"model.name": "svd", "model.params.rank": 5},
    "soft_impute": {"model.name": "soft_impute", "model.params.shrinkage": 4.0},
    "hard_impute": {"model.name": "hard_impute", "model.params.rank": 3},
    "ease": {"model.name": "ease", "model.params.l2": 10.0},
    # EASE on the 60 most-rated of 150 movies: the dot form over the kept columns, the rest scored 0.
    "ease_top60": {"model.name": "ease", "model.params.l2": 10.0, "model.params.max_movies": 60},
    # EDLAE with l2 and dropout chosen on validation (the choice is saved with the model).
    "edlae": {"model.name": "ease", "model.params.l2": [5.0, 20.0], "model.params.dropout": 0.25},
    "ials": {"model.name": "ials", "model.params.dim": 8, "model.params.epochs": 4},
    "mf": {"model.name": "mf", "model.embedding_dim": 8},
    "ncf": {"model.name": "ncf", "model.embedding_dim": 8, "model.params.layers": [16, 8]},
    "cf_mlp": {"model.name": "cf_mlp", "model.embedding_dim": 8, "model.params.layers": [16, 8]},
    "autorec_item": SMALL_AUTOREC,
    "autorec_user": {**SMALL_AUTOREC, "model.params.kind": "user"},
    "autorec_local_kernel": {**SMALL_AUTOREC, "model.params.kernel_dim": 3, "model.params.kernel_l2": 0.01},
    "hybrid": {"model.name": "hybrid", "model.params.components": [
        {"model": "popularity", "set": {}},
        {"model": "ease", "set": {"model.params.l2": 10.0}},
        {"model": "svd", "set": {"model.params.rank": 4}},
    ]},
    "blend": {"model.name": "blend", "model.params.meta": True, "model.params.members": [
        {"model.name": "mf", "model.embedding_dim": 8},
        {"model.name": "autorec", "model.params.hidden": 16, "train.batch_size": 32},
        {"model.name": "biases"},
    ]},
}  # fmt: skip
# The dot form (an index over candidate vectors) where the score is one; a scorer elsewhere.
DOT = {"popularity", "ease", "ease_top60", "edlae", "ials", "mf", "autorec_item", "autorec_user",
       "autorec_local_kernel"}
# Movies of the catalogue left without train (or validation) ratings: the networks' baseline answers them.
UNRATED = 3


@pytest.fixture(scope="module")
def world(tiny_world):
    split = with_validation(random_split(tiny_world.dataset.ratings, 0.2, seed=42), 0.1)
    unrated = np.sort(tiny_world.dataset.movies[S.MOVIE_ID].to_numpy())[:UNRATED]
    split.train = split.train[~split.train[S.MOVIE_ID].isin(unrated)].reset_index(drop=True)
    split.valid = split.valid[~split.valid[S.MOVIE_ID].isin(unrated)].reset_index(drop=True)
    return tiny_world.dataset, split


@pytest.fixture(scope="module")
def fitted(world):
    dataset, split = world
    cache: dict[str, Recommender] = {}

    def get(case: str) -> Recommender:
        if case not in cache:
            model = build_model(load_config(None, {**TRAIN, **CASES[case]}))
            cache[case] = model.fit(split.train, dataset, split.valid)
            assert len(cache[case].catalogue) == len(dataset.movies)  # the unrated movies included
        return cache[case]

    return get


def serving_scores(model: Recommender, user_ids: np.ndarray) -> np.ndarray:
    scorer = model.serving_parts().catalogue_scorer()
    return scorer(tf.constant([str(u) for u in user_ids])).numpy()


def assert_same_top(expected: np.ndarray, got: np.ndarray, k: int = 10) -> None:
    """``got``'s top ``k`` per row is a top ``k`` of ``expected``: the same movies up to ties in
    ``expected`` (its values at ``got``'s top equal its own top values, in order)."""
    top = np.argsort(-got, axis=1, kind="stable")[:, :k]
    best = -np.sort(-expected, axis=1)[:, :k]
    np.testing.assert_allclose(np.take_along_axis(expected, top, axis=1), best, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_serving_parts_score_like_the_model(case, fitted):
    model = fitted(case)
    assert model.serving_parts().is_dot == (case in DOT)
    users = model.users[:25]
    expected = model.score(users)
    got = serving_scores(model, users)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert_same_top(expected, got)
    # An unknown user gets a row of finite scores (the serving loader answers them by cold start).
    unknown = serving_scores(model, np.array([10**9, users[0]]))
    assert unknown.shape == (2, len(model.catalogue)) and np.isfinite(unknown).all()


@pytest.mark.parametrize("case", ["ease", "ease_top60"])
def test_ease_serving_query_follows_update_seen(case, fitted, world):
    import pandas as pd

    _, split = world
    model = build_model(load_config(None, CASES[case]))
    model.fit(split.train, world[0])
    model.update_seen(pd.concat([split.train, split.valid]))
    users = np.unique(split.valid[S.USER_ID].to_numpy())[:20]
    parts = model.serving_parts()
    assert parts.is_dot and not parts.approximate_index
    np.testing.assert_allclose(serving_scores(model, users), model.score(users), rtol=1e-5, atol=1e-5)


def test_ease_approximation_serves_only_its_kept_movies(fitted):
    model = fitted("ease_top60")
    assert model.restricted and len(model.kept) == 60 and model.weights.shape == (60, 60)
    parts = model.serving_parts()
    assert parts.candidates.shape == (len(model.catalogue), 60)
    outside = np.setdiff1d(np.arange(len(model.catalogue)), model.kept)
    assert not parts.candidates[outside].any()  # scored 0, as model.score scores them
    counts = np.bincount(model.seen.indices, minlength=len(model.catalogue))
    assert counts[model.kept].min() >= counts[outside].max()  # the most-rated movies
    assert not model.score(model.users[:10])[:, outside].any()


@pytest.mark.parametrize("case", sorted(CASES))
def test_save_then_load_is_exact_and_holds_no_pickle(case, fitted, world, tmp_path):
    model = fitted(case)
    _, split = world
    folder = model.save(tmp_path / case)
    assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "model.json"]
    with np.load(folder / "arrays.npz", allow_pickle=False) as archive:  # nothing needs unpickling
        assert all(archive[name].dtype != object for name in archive.files)
    loaded = Recommender.load(folder)
    assert type(loaded) is type(model)
    users = np.concatenate([model.users[:10], [10**9]])
    np.testing.assert_array_equal(loaded.score(users), model.score(users))
    pairs = split.test.head(200)
    args = pairs[S.USER_ID].to_numpy(), pairs[S.MOVIE_ID].to_numpy()
    np.testing.assert_array_equal(loaded.predict(*args), model.predict(*args))
    np.testing.assert_allclose(serving_scores(loaded, users[:5]), serving_scores(model, users[:5]), atol=1e-6)


NAMES = sorted({c["model.name"] for c in CASES.values()})


@pytest.mark.parametrize("name", NAMES)
def test_unknown_param_is_a_one_line_config_error(name):
    with pytest.raises(ConfigError) as err:
        build_model(load_config(None, {"model.name": name, "model.params.no_such_key": 1}))
    message = str(err.value)
    assert "model.params.no_such_key" in message and "\n" not in message


@pytest.mark.parametrize("name", NAMES)
def test_param_of_the_wrong_type_is_a_one_line_config_error(name):
    cls = get_model_class(name)
    fields = cls.param_fields()
    if not fields:
        pytest.skip(f"{name} has no params")
    key, default = sorted(fields.items())[0]
    wrong = "not a list" if isinstance(default, list) else ["a", "list"]
    with pytest.raises(ConfigError) as err:
        build_model(load_config(None, {"model.name": name, f"model.params.{key}": wrong}))
    message = str(err.value)
    assert f"model.params.{key}" in message and "\n" not in message


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("autorec", "kind", "both"),
        ("autorec", "input_dropout", 1.5),
        ("ncf", "dropout", -0.1),
        ("ease", "l2", -1.0),
        ("svd", "rank", -1),
        ("biases", "reg_user", -1.0),
        ("blend", "ridge", -1.0),
        ("hybrid", "metric", "ndcg"),
        ("hybrid", "weights", [1.0]),
    ],
)
def test_out_of_range_param_is_a_one_line_config_error(name, key, value):
    with pytest.raises(ConfigError) as err:
        build_model(load_config(None, {"model.name": name, f"model.params.{key}": value}))
    message = str(err.value)
    assert f"model.params.{key}" in message and "\n" not in message


def test_param_defaults_are_unchanged():
    """The shipped figures were measured with these defaults."""
    expected = {
        "biases": {"reg_user": 5.0, "reg_movie": 2.0, "iterations": 10},
        "svd": {"rank": 10, "reg_user": 5.0, "reg_movie": 2.0, "bias_iterations": 10},
        "soft_impute": {"shrinkage": 14.0, "max_rank": 100, "tol": 1e-5, "max_iterations": 100,
                        "reg_user": 5.0, "reg_movie": 2.0, "bias_iterations": 10},
        "hard_impute": {"rank": 2, "tol": 1e-2, "max_iterations": 100, "reg_user": 5.0, "reg_movie": 2.0,
                        "bias_iterations": 10},
        "ease": {"l2": 400.0, "dropout": 0.0, "full_rank": False, "select_metric": "ndcg@10",
                 "validation_fraction": 0.1, "max_movies": 0, "memory_gb": 0.0},
        "popularity": {},
        "mf": {"l2": 0.1, "bias_l2": 0.001, "init_std": 0.05, "refit": True, "refit_epochs_scale": 1.0},
        "ncf": {"layers": [64, 32, 16], "dropout": 0.2, "l2": 0.01, "refit": True, "refit_epochs_scale": 1.0},
        "cf_mlp": {"layers": [128, 64, 32], "dropout": 0.2, "l2": 0.01, "refit": True,
                   "refit_epochs_scale": 1.0},
        "autorec": {"kind": "item", "hidden": 500, "depth": 1, "activation": "sigmoid", "l2": 200.0,
                    "input_dropout": 0.2, "dropout": 0.0, "lr_decay": 0.95, "refit": True,
                    "refit_epochs_scale": 1.0, "kernel_dim": 0, "kernel_l2": 0.0},
        "hybrid": {"components": [{"model": "retrieval", "set": {}}, {"model": "ease", "set": {}}],
                   "metric": "ndcg@10", "grid_step": 0.1, "weights": [], "weight_fraction": 0.5,
                   "weight_buckets": 1, "bucket_min_users": 50, "cross_fit": False, "fusion": "zscore"},
    }  # fmt: skip
    for name, defaults in expected.items():
        assert get_model_class(name).param_fields() == defaults, name
    from tfrs_movies.models.blend import DEFAULT_MEMBERS

    blend = get_model_class("blend").param_fields()
    assert blend == {"members": DEFAULT_MEMBERS, "ridge": 1.0, "meta": False, "refit": True,
                     "refit_epochs_scale": 1.0}  # fmt: skip


def test_member_scorer_puts_columns_in_the_composite_catalogue_order(fitted):
    from tfrs_movies.models.hybrid import MemberScorer

    model = fitted("svd")
    catalogue = model.catalogue[::-2]  # a composite that knows fewer movies, in another order
    users = model.users[:5]
    got = MemberScorer(model, catalogue)(tf.constant([str(u) for u in users])).numpy()
    columns = np.searchsorted(model.catalogue, catalogue)
    np.testing.assert_allclose(got, model.score(users)[:, columns], rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="does not score every movie"):
        MemberScorer(model, np.append(catalogue, 10**9))
