"""The attention sequence model: masking, causality, the heads, histories after refit, persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.data.splits import leave_last_out_split
from tfrs_movies.features.sequences import history_tables
from tfrs_movies.models.attention import MovieEncoder, SequenceEncoder
from tfrs_movies.models.base import Recommender
from tfrs_movies.models.registry import build_model
from tfrs_movies.models.sequence_net import HISTORY

TINY = {
    "model.name": "sequence", "model.embedding_dim": 16, "model.history_length": 8, "train.epochs": 2,
    "train.verbose": 0, "train.batch_size": 64, "model.temperature": 1.0,
    "model.params.num_blocks": 1, "model.params.rating_layers": [16], "model.params.pair_epochs": 1,
    "model.params.pairs_per_movie": 2, "model.user_features": ["gender", "age"],
    "model.movie_features": ["id", "genres", "year"],
}  # fmt: skip


def encoder(causal: bool, max_length: int = 8) -> SequenceEncoder:
    tf.keras.utils.set_random_seed(0)
    movies = np.arange(1, 21)
    return SequenceEncoder(MovieEncoder(movies, {}, 8), max_length, 8, 2, 2, 0.0, causal, use_ratings=True)


def test_padding_gets_zero_attention_and_never_changes_the_output():
    layer = encoder(causal=False)
    short = tf.constant([["", "", "3", "7"]])
    longer = tf.constant([["", "", "", "", "3", "7"]])
    r_short, r_long = tf.constant([[0.0, 0.0, 4.0, 2.0]]), tf.constant([[0.0, 0.0, 0.0, 0.0, 4.0, 2.0]])
    s_short, valid, scores = layer(short, r_short)
    s_long, _, _ = layer(longer, r_long)
    np.testing.assert_allclose(s_short[:, -2:], s_long[:, -2:], atol=1e-5)
    assert valid.numpy().tolist() == [[False, False, True, True]]
    # Valid queries put exactly zero weight on padding keys; padded states are zero.
    np.testing.assert_array_equal(scores.numpy()[0, :, 2:, :2], 0.0)
    np.testing.assert_allclose(scores.numpy()[0, :, 2:, 2:].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(s_short.numpy()[0, :2], 0.0)
    # Whatever sits in a padding slot's rating does not matter either.
    s_noise, _, _ = layer(short, tf.constant([[5.0, 3.0, 4.0, 2.0]]))
    np.testing.assert_allclose(s_noise[:, -2:], s_short[:, -2:], atol=1e-5)


def test_causal_slots_never_see_later_movies():
    layer = encoder(causal=True)
    a, _, scores = layer(tf.constant([["1", "2", "3", "4"]]), tf.constant([[1.0, 2.0, 3.0, 4.0]]))
    b, _, _ = layer(tf.constant([["1", "2", "9", "5"]]), tf.constant([[1.0, 2.0, 5.0, 1.0]]))
    np.testing.assert_allclose(a[:, :2], b[:, :2], atol=1e-5)  # slots 0, 1 unchanged by slots 2, 3
    assert not np.allclose(a[:, 2:], b[:, 2:])
    upper = np.triu(np.ones((4, 4), bool), 1)
    assert (scores.numpy()[0][:, upper] == 0).all()


def test_unknown_params_and_bad_choices_are_config_errors():
    with pytest.raises(ConfigError, match="model.params.mode"):
        build_model(load_config(None, {**TINY, "model.params.mode": "lstm"}))
    with pytest.raises(ConfigError, match="pair_epochs needs a rating head"):
        build_model(load_config(None, {**TINY, "model.params.heads": "retrieval"}))
    with pytest.raises(ConfigError, match="window_lenght"):
        build_model(load_config(None, {**TINY, "model.params.window_lenght": 3}))


@pytest.fixture(scope="module")
def split(tiny_world):
    return leave_last_out_split(tiny_world.dataset.ratings)


@pytest.fixture(scope="module")
def fitted(tiny_world, split):
    model = build_model(load_config(None, TINY))
    model.fit(split.train, tiny_world.dataset, split.valid)
    model.update_seen(pd.concat([split.train, split.valid]))
    return model


def test_fitted_model_learns_rates_and_recommends(fitted, split):
    assert fitted.predicts_ratings and fitted.history["loss"][-1] < fitted.history["loss"][0]
    assert "val_ndcg@10" in fitted.history and fitted.history["pair_loss"]
    predicted = fitted.predict(split.test[S.USER_ID].to_numpy(), split.test[S.MOVIE_ID].to_numpy())
    assert np.isfinite(predicted).all() and predicted.min() >= 1 and predicted.max() <= 5
    top, _ = fitted.recommend(fitted.users[:5], 10)
    for row, user in enumerate(fitted.users[:5]):
        seen = set(fitted.catalogue[fitted.seen_mask([user]).indices])
        assert not seen & set(top[row])


def test_served_history_includes_validation_after_update_seen(fitted, split):
    ids, _ = history_tables(pd.concat([split.train, split.valid]), fitted.users, 8)
    rows = fitted.user_rows(fitted.users)
    np.testing.assert_array_equal(rows[HISTORY], ids)
    # The validation movie is each user's most recent slot.
    last = split.valid.set_index(S.USER_ID)[S.MOVIE_ID].reindex(fitted.users)
    has = last.notna().to_numpy()
    assert (rows[HISTORY][has, -1] == last[has].astype(int).astype(str).to_numpy()).all()


def test_explanations_weigh_only_watched_movies(fitted):
    users = fitted.users[:4]
    movies = fitted.catalogue[:4]
    history, weights = fitted.explain(users, movies)
    assert history.shape == weights.shape == (4, 8)
    assert (weights[history == ""] == 0).all()
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-4)
    # Target attention: another movie for the same user moves the weights.
    _, other = fitted.explain(users, fitted.catalogue[4:8])
    assert not np.allclose(weights, other)


def test_pair_rating_is_symmetric_and_in_range(fitted):
    a, b = fitted.users[:6], fitted.users[6:12]
    movies = fitted.catalogue[:6]
    ab, ba = fitted.predict_pair(a, b, movies), fitted.predict_pair(b, a, movies)
    np.testing.assert_allclose(ab, ba, atol=1e-5)
    assert np.isfinite(ab).all() and ab.min() >= 1 and ab.max() <= 5


def test_save_and_load_keep_scores_ratings_and_pairs(fitted, tmp_path):
    loaded = Recommender.load(fitted.save(tmp_path / "m"))
    users = fitted.users[:5]
    np.testing.assert_allclose(loaded.score(users), fitted.score(users), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        loaded.predict_pair(users, users[::-1], fitted.catalogue[:5]),
        fitted.predict_pair(users, users[::-1], fitted.catalogue[:5]),
        rtol=1e-5,
    )
    np.testing.assert_array_equal(loaded.user_rows(users)[HISTORY], fitted.user_rows(users)[HISTORY])


@pytest.mark.parametrize("heads", ["retrieval", "rating"])
def test_seed_004_windows_with_either_head(tiny_world, split, heads, tmp_path):
    config = {**TINY, "model.params.mode": "windows", "model.params.heads": heads, "train.epochs": 1,
              "model.params.pair_epochs": 0}  # fmt: skip
    model = build_model(load_config(None, config))
    assert model.length == 3  # window of 4: three watched movies and the target
    model.fit(split.train[split.train[S.USER_ID] <= 60], tiny_world.dataset)
    scores = model.score(model.users[:3])
    assert scores.shape == (3, len(model.catalogue)) and np.isfinite(scores).all()
    history, weights = model.explain(model.users[:3], model.catalogue[:3])
    assert history.shape == (3, 3) and (weights[history == ""] == 0).all()
    assert model.predicts_ratings == (heads == "rating")
    if heads == "rating":  # no query vectors: top-N is the rating head over the catalogue (scorer form)
        parts = model.serving_parts()
        assert not parts.is_dot and set(parts.extras) == {"explain"}
    if heads == "retrieval":  # explanations from the query's own attention; no pair SavedModel
        from tfrs_movies.serving.sequence import export_sequence_extras

        entries = export_sequence_extras(model, tmp_path)
        assert set(entries) == {"explain"} and entries["explain"]["weights"] == "query_attention"
        serve = tf.saved_model.load(str(tmp_path / "explain")).signatures["serving_default"]
        users = tf.constant(model.users[:3].astype(str))
        out = serve(user_id=users, movie_id=tf.constant(model.catalogue[:3].astype(str)))
        np.testing.assert_allclose(out["weights"].numpy(), weights, rtol=1e-4, atol=1e-6)
