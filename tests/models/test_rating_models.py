"""The rating networks (mf, ncf, cf_mlp, autorec) and the blend, on tiny generated data.

Each must learn the planted taste structure of the generated world (beat the global mean clearly);
AutoRec's loss must ignore unobserved entries; the blend's weights must come from the validation ratings.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.config import load_config
from tfrs_movies.data.splits import random_split, with_validation
from tfrs_movies.evaluation.metrics import rmse
from tfrs_movies.models.autorec import MASK, RATINGS, AutoRecModel
from tfrs_movies.models.blend import ridge_weights
from tfrs_movies.models.registry import build_model
from tfrs_movies.training.fit import RatingEarlyStopping, make_early_stopping

FAST = {"train.verbose": 0, "train.optimizer": "adam", "train.learning_rate": 0.01,
        "train.early_stopping.metric": "rmse", "train.early_stopping.patience": 3}  # fmt: skip
AUTOREC = {"model.name": "autorec", "train.batch_size": 16, "train.epochs": 20,
           "model.params.hidden": 32, "model.params.l2": 20.0}  # fmt: skip
CASES = {
    "mf": {"model.name": "mf", "model.embedding_dim": 16, "train.epochs": 8, "train.batch_size": 256},
    "ncf": {"model.name": "ncf", "model.embedding_dim": 16, "train.epochs": 6, "train.batch_size": 256},
    "cf_mlp": {"model.name": "cf_mlp", "model.embedding_dim": 16, "train.epochs": 6, "train.batch_size": 256},
    "i_autorec": AUTOREC,
    "u_autorec": {**AUTOREC, "model.params.kind": "user"},
}


@pytest.fixture(scope="module")
def world(tiny_world):
    split = with_validation(random_split(tiny_world.dataset.ratings, 0.2, seed=42), 0.1)
    return tiny_world.dataset, split


def _rmse(model, frame) -> float:
    predicted = model.predict(frame[S.USER_ID].to_numpy(), frame[S.MOVIE_ID].to_numpy())
    return rmse(frame[S.RATING].to_numpy(), predicted)


@pytest.mark.parametrize("case", sorted(CASES))
def test_learns_the_planted_structure_better_than_the_global_mean(case, world):
    dataset, split = world
    model = build_model(load_config(None, {**FAST, **CASES[case]}))
    model.fit(split.train, dataset, split.valid)
    mean_rmse = rmse(split.test[S.RATING].to_numpy(), np.full(len(split.test), split.train[S.RATING].mean()))
    assert _rmse(model, split.test) < mean_rmse - 0.1
    # Early-stopped on validation RMSE, then refitted on train + validation for the best epoch count.
    best = model.history["best_epoch"][0]
    assert len(model.history["refit_loss"]) == best and "refit_val_rmse" not in model.history


def test_unknown_users_and_movies_get_mean_plus_known_bias(world):
    dataset, split = world
    model = build_model(load_config(None, {**FAST, **CASES["mf"], "train.epochs": 1}))
    model.fit(split.train, dataset, split.valid)
    user, movie = model.users[0], model.catalogue[0]
    got = model.predict(np.array([10**9, user, 10**9]), np.array([movie, 10**9, 10**9]))
    movie_bias = model.b_movie[0] if model.trained_movies[0] else 0.0
    low, high = model.rating_scale
    expected = np.clip([model.mu + movie_bias, model.mu + model.b_user[0], model.mu], low, high)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_autorec_loss_ignores_unobserved_entries():
    tf.keras.utils.set_random_seed(0)
    model = AutoRecModel(n_inputs=6, n_rows=4, hidden=3, l2=1.0)
    model(tf.zeros([1, 6]))
    rng = np.random.default_rng(0)
    ratings = rng.integers(1, 6, size=(4, 6)).astype(np.float32)
    mask = (rng.random((4, 6)) < 0.5).astype(np.float32)
    mask[0, 0], mask[1, 2] = 0.0, 1.0
    loss = model.compute_loss({RATINGS: tf.constant(ratings), MASK: tf.constant(mask)}).numpy()
    changed = ratings.copy()
    changed[mask == 0] = rng.normal(0, 100, size=int((mask == 0).sum()))  # any placeholder at all
    same = model.compute_loss({RATINGS: tf.constant(changed), MASK: tf.constant(mask)}).numpy()
    assert same == pytest.approx(loss, rel=1e-6)
    observed = ratings.copy()
    observed[1, 2] += 1.0  # an observed entry does count
    assert model.compute_loss({RATINGS: tf.constant(observed), MASK: tf.constant(mask)}).numpy() != loss


def test_rating_early_stopping_minimises_rmse(world):
    dataset, split = world
    model = build_model(load_config(None, {**FAST, **CASES["mf"], "model.params.refit": False}))
    stopper = make_early_stopping(model, split.train, split.valid)
    assert isinstance(stopper, RatingEarlyStopping) and not stopper.higher_is_better
    model.fit(split.train, dataset, split.valid)
    best = model.history["best_epoch"][0]
    assert model.history["val_rmse"][best - 1] == min(model.history["val_rmse"])
    # The best epoch's weights are restored.
    assert _rmse(model, split.valid) == pytest.approx(min(model.history["val_rmse"]), abs=1e-5)


def test_blend_weights_come_from_validation_not_test(world):
    dataset, split = world
    members = [
        {"model.name": "mf", "model.embedding_dim": 16, "train.epochs": 6, "train.batch_size": 256},
        {**AUTOREC, "train.epochs": 10},
    ]
    config = load_config(None, {**FAST, "model.name": "blend", "model.params.members": members,
                                "model.params.refit": False})  # fmt: skip
    blend = build_model(config).fit(split.train, dataset, split.valid)
    # The weights are the ridge solution on the members' validation predictions...
    x = blend.features(split.valid[S.USER_ID].to_numpy(), split.valid[S.MOVIE_ID].to_numpy())
    intercept, weights = ridge_weights(x, split.valid[S.RATING].to_numpy(np.float64), 1.0)
    np.testing.assert_allclose(blend.weights, weights, rtol=1e-6)
    assert blend.intercept == pytest.approx(intercept)
    # ...and not a solution fitted on test.
    xt = blend.features(split.test[S.USER_ID].to_numpy(), split.test[S.MOVIE_ID].to_numpy())
    _, on_test = ridge_weights(xt, split.test[S.RATING].to_numpy(np.float64), 1.0)
    assert not np.allclose(blend.weights, on_test)
    assert _rmse(blend, split.valid) <= min(blend.history[f"member{k}_val_rmse"][0] for k in range(2)) + 1e-6
