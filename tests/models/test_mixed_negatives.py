"""Mixed negatives for the two-tower model: uniform catalogue draws beside the in-batch negatives, their
logQ correction, and TFRS's hard-negative mining inside the cross-replica task."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.models.registry import build_model
from tfrs_movies.models.retrieval import mixed_sampling_probability
from tfrs_movies.models.tasks import CrossReplicaRetrieval


def test_the_mixture_correction_is_the_expected_count_among_the_candidates():
    # B = 4 positives drawn by popularity, n = 10 uniform draws from N = 5 movies.
    mixed = mixed_sampling_probability(4, 10, 5)
    share = np.array([0.5, 0.25, 0.25, 0.0], np.float32)
    np.testing.assert_allclose(mixed(share).numpy(), [4 * 0.5 + 2, 4 * 0.25 + 2, 4 * 0.25 + 2, 2.0])


def test_hard_negatives_match_tfrs_retrieval():
    rng = np.random.default_rng(0)
    queries = tf.constant(rng.normal(size=(6, 4)), tf.float32)
    candidates = tf.constant(rng.normal(size=(6, 4)), tf.float32)
    ids = tf.constant(["a", "b", "a", "c", "d", "e"])
    probability = tf.constant(rng.uniform(0.1, 0.9, 6), tf.float32)
    ours = CrossReplicaRetrieval(0.5, remove_accidental_hits=True, num_hard_negatives=2)
    theirs = tfrs.tasks.Retrieval(
        loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction="sum"),
        temperature=0.5, remove_accidental_hits=True, num_hard_negatives=2,
    )  # fmt: skip
    expected = theirs(queries, candidates, compute_metrics=False, candidate_sampling_probability=probability,
                      candidate_ids=ids)  # fmt: skip
    got = ours(queries, candidates, candidate_sampling_probability=probability, candidate_ids=ids)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    # Fewer negatives in each softmax: a smaller loss than with all of them.
    everything = CrossReplicaRetrieval(0.5, remove_accidental_hits=True)
    assert float(got) < float(everything(queries, candidates, candidate_sampling_probability=probability,
                                         candidate_ids=ids))  # fmt: skip


def _config(**params) -> dict:
    overrides = {"model.name": "retrieval", "train.epochs": 2, "train.verbose": 0, "train.batch_size": 128,
                 "model.embedding_dim": 8, "model.sampling_correction": False,
                 "export.enabled": False}  # fmt: skip
    return load_config(None, {**overrides, **{f"model.params.{k}": v for k, v in params.items()}})


@pytest.fixture(scope="module")
def fitted(tiny_world, tiny_split):
    return {
        n: build_model(_config(uniform_negatives=n)).fit(tiny_split.train, tiny_world.dataset, None)
        for n in (0, 64)
    }


@pytest.mark.slow
def test_uniform_negatives_add_to_each_softmax(fitted, tiny_split):
    """With the same weights, more negatives in every query's softmax give a larger loss."""
    model = fitted[64]
    keras_model = model.model
    batch = tiny_split.train.iloc[:128]
    features = model.space.join({
        S.USER_ID: tf.constant(batch[S.USER_ID].astype(str).to_numpy()),
        S.MOVIE_ID: tf.constant(batch[S.MOVIE_ID].astype(str).to_numpy()),
    })  # fmt: skip
    mixed = float(keras_model.compute_loss(features))
    keras_model.uniform_negatives, keras_model.catalogue = 0, None
    assert mixed > float(keras_model.compute_loss(features)) > 0


@pytest.mark.slow
def test_a_mixed_negative_model_learns_and_ranks(fitted, tiny_split):
    model = fitted[64]
    losses = model.history["loss"]
    assert losses[-1] < losses[0]
    users = tiny_split.test[S.USER_ID].unique()[:5]
    scores = model.score(users)
    assert scores.shape == (5, len(model.catalogue)) and np.isfinite(scores).all()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"uniform_negatives": -1}, "model.params.uniform_negatives' must be >= 0"),
        ({"hard_negatives": -2}, "model.params.hard_negatives' must be >= 0"),
        ({"uniform_negatives": 10, "full_softmax": True}, "exclude each other"),
    ],
)
def test_bad_negative_settings_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        build_model(_config(**params))
