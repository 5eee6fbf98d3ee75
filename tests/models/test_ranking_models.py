"""The TFRS ranking heads, the rating classifier, multitask and seed 003's DNN, on tiny generated data.

Each rating head must learn the planted structure of the generated world (beat the global mean);
the cosine head's target is the exact, invertible per-user normalisation; the multitask loss weights
really weight the tasks; the DNN's top-N scores are cosines.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.data.splits import random_split, with_validation
from tfrs_movies.evaluation.metrics import rmse
from tfrs_movies.models.multitask import MultitaskModel
from tfrs_movies.models.ranking import TARGET, ConcatHead
from tfrs_movies.models.registry import build_model

FAST = {"train.verbose": 0, "train.optimizer": "adam", "train.learning_rate": 0.01, "train.epochs": 6,
        "train.batch_size": 256, "train.early_stopping.metric": "rmse", "model.embedding_dim": 16,
        "model.params.head_layers": [32]}  # fmt: skip
HEADS = {
    "concat": {"model.name": "ranking", "model.params.head": "concat"},
    "dot_sigmoid": {"model.name": "ranking", "model.params.head": "dot_sigmoid"},
    "cosine": {
        "model.name": "ranking",
        "model.params.head": "cosine",
        "model.user_features": ["id", "gender", "occupation", "age"],
        "model.movie_features": ["id", "genres"],
        "model.user_layers": [32, 16],
        "model.movie_layers": [32, 16],
    },  # fmt: skip
    "cosine_no_biases": {
        "model.name": "ranking",
        "model.params.head": "cosine",
        "model.params.biases": False,
    },
    "tag_ranking": {"model.name": "tag_ranking"},
    "multitask": {"model.name": "multitask", "model.params.retrieval_weight": 0.01},
}


@pytest.fixture(scope="module")
def world(tiny_world):
    return tiny_world.dataset, with_validation(random_split(tiny_world.dataset.ratings, 0.2, seed=42), 0.1)


@pytest.fixture(scope="module")
def fitted(world):
    """Models fitted once per configuration (lazily), shared by the tests below."""
    dataset, split = world
    cache = {}

    def get(case: str, **overrides):
        key = (case, tuple(sorted(overrides.items())))
        if key not in cache:
            model = build_model(load_config(None, {**FAST, **HEADS.get(case, {}), **overrides}))
            model.fit(split.train, dataset, split.valid)
            cache[key] = model
        return cache[key]

    return get


def _pairs(frame):
    return frame[S.USER_ID].to_numpy(), frame[S.MOVIE_ID].to_numpy()


@pytest.mark.parametrize("case", sorted(HEADS))
def test_each_head_learns_the_planted_structure_better_than_the_global_mean(case, fitted, world):
    _, split = world
    model = fitted(case)
    mean_rmse = rmse(split.test[S.RATING], np.full(len(split.test), split.train[S.RATING].mean()))
    assert rmse(split.test[S.RATING], model.predict(*_pairs(split.test))) < mean_rmse - 0.05
    assert model.history["best_epoch"][0] >= 1 and "val_rmse" in model.history


def test_cosine_head_target_is_normalised_and_its_inverse_exact(fitted, world):
    _, split = world
    model = fitted("cosine")
    target = model._targets(split.train)[TARGET]
    assert target.min() >= -1 - 1e-6 and target.max() <= 1 + 1e-6
    users = split.train[S.USER_ID].to_numpy()
    np.testing.assert_allclose(model.normalizer.inverse(users, target), split.train[S.RATING], atol=1e-5)
    extra = model.extra_metrics(split.test)
    assert 0 < extra["mae_normalized"] <= extra["rmse_normalized"] < 2
    # predict is the inverse of the cosine head's output, clipped to the rating scale.
    low, high = model.rating_scale
    predicted = model.predict(*_pairs(split.test))
    assert predicted.min() >= low and predicted.max() <= high


def test_rating_classifier_metrics_are_in_range_and_beat_chance(fitted, world):
    _, split = world
    model = fitted("classifier", **{"model.name": "rating_classifier", "train.early_stopping.metric": "auc"})
    assert not model.predicts_ratings
    probability = model.predict(*_pairs(split.test))
    assert ((probability >= 0) & (probability <= 1)).all()
    metrics = model.extra_metrics(split.test)
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["auc"] <= 1 and metrics["log_loss"] > 0
    assert metrics["auc"] > 0.65
    assert "val_auc" in model.history and model.history["best_epoch"][0] >= 1
    # score is the same probability over the catalogue
    user = model.users[:1]
    np.testing.assert_allclose(
        model.score(user)[0], model.predict(np.repeat(user, len(model.catalogue)), model.catalogue), atol=1e-5
    )


def test_ranking_refuses_the_classification_head_and_mismatched_towers():
    with pytest.raises(ConfigError, match="rating_classifier"):
        build_model(load_config(None, {"model.name": "ranking", "model.params.head": "classification"}))
    with pytest.raises(ConfigError, match="same width"):
        build_model(load_config(None, {"model.name": "ranking", "model.params.head": "dot_sigmoid",
                                       "model.user_layers": [8], "model.movie_layers": [16]}))  # fmt: skip


def test_concat_head_matrix_equals_the_pairwise_head():
    tf.keras.utils.set_random_seed(0)
    head = ConcatHead([8, 4], dropout=0.2)
    u, v = tf.random.normal((5, 3)), tf.random.normal((7, 6))
    pairs = head(tf.repeat(u, 7, axis=0), tf.tile(v, (5, 1)))
    np.testing.assert_allclose(head.matrix(u, v, chunk=2).numpy().ravel(), pairs.numpy(), atol=1e-5)


def test_multitask_weights_scale_each_task_and_zero_removes_its_gradient(fitted, world):
    _, split = world
    model = fitted("multitask")
    batch = model.space.join(
        {S.USER_ID: tf.constant(split.train[S.USER_ID].astype(str).to_numpy()[:64]),
         S.MOVIE_ID: tf.constant(split.train[S.MOVIE_ID].astype(str).to_numpy()[:64]),
         TARGET: tf.constant(split.train[S.RATING].to_numpy(np.float32)[:64])}
    )  # fmt: skip
    keras: MultitaskModel = model.model
    retrieval, rating = (float(x) for x in keras.task_losses(batch))
    head_weights = keras.mlp.trainable_variables
    for w_ret, w_rat in ((1.0, 0.0), (0.0, 1.0), (0.5, 2.0)):
        keras.retrieval_weight, keras.rating_weight = w_ret, w_rat
        with tf.GradientTape() as tape:
            loss = keras.compute_loss(batch)
        assert float(loss) == pytest.approx(w_ret * retrieval + w_rat * rating, rel=1e-5)
        grads = tape.gradient(loss, head_weights)
        # The rating head only serves the rating task: with weight 0 it gets no gradient at all.
        silent = all(g is None or not np.any(g.numpy()) for g in grads)
        assert silent == (w_rat == 0.0)


def test_dnn_multi_embedding_scores_are_cosines(fitted, world):
    dataset, split = world
    model = fitted(
        "dnn",
        **{
            "model.name": "dnn_multi_embedding",
            "model.params.joint_dim": 16,
            "train.early_stopping.metric": "log_loss",
        },
    )
    scores = model.score(model.users[:20])
    assert scores.shape == (20, len(model.catalogue))
    assert scores.min() >= -1 - 1e-5 and scores.max() <= 1 + 1e-5
    vectors = model.movie_embeddings()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    users = model._user_codes(model.users[:1])["vec"]
    expected = (users / np.linalg.norm(users)) @ unit.T
    trained = model.trained_movies  # movies without train ratings (id-only tower) are ranked last
    np.testing.assert_allclose(scores[0, trained], expected[0, trained], atol=1e-5)
    assert (scores[0, ~trained] <= scores[0, trained].min() + 1e-6).all()
    metrics = model.extra_metrics(split.test)
    assert metrics["auc"] > 0.6


def test_cold_start_users_with_features_go_through_the_towers(fitted, world):
    dataset, _ = world
    model = fitted("cosine")
    cold = np.array([10**9])  # not in the dataset: no features either -> popularity, never an error
    np.testing.assert_allclose(model.score(cold)[0], model.popularity)
    # A dataset user absent from train keeps their demographics: scored by the towers.
    model_users = set(model.users)
    absent = [u for u in dataset.users[S.USER_ID] if u not in model_users]
    if absent:
        scores = model.score(np.array(absent[:1]))[0]
        assert not np.allclose(scores, model.popularity)
    # Unknown movie: the global mean plus the user's bias; unknown user and movie: the global mean.
    user = model.users[0]
    got = model.predict(np.array([user, 10**9]), np.array([10**9, 10**9]))
    np.testing.assert_allclose(got, np.clip([model.mu + model.b_user[0], model.mu], *model.rating_scale))


@pytest.mark.parametrize("case", ["cosine", "multitask"])
def test_save_and_load_keep_the_normaliser_and_both_outputs(case, fitted, world, tmp_path):
    from tfrs_movies.models.base import Recommender

    _, split = world
    model = fitted(case)
    loaded = Recommender.load(model.save(tmp_path / case))
    pairs = split.test.head(100)
    np.testing.assert_allclose(loaded.predict(*_pairs(pairs)), model.predict(*_pairs(pairs)), atol=1e-5)
    np.testing.assert_allclose(loaded.score(model.users[:5]), model.score(model.users[:5]), atol=1e-5)
    if case == "cosine":
        assert loaded.extra_metrics(pairs) == pytest.approx(model.extra_metrics(pairs))
