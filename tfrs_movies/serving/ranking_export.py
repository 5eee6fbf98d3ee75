"""Export a TFRS two-tower ranking model as one SavedModel from raw ids to its prediction.

``write_ranking(model, out_dir)`` writes (inside the atomic export of
:mod:`tfrs_movies.serving.export`, as the model's serving parts ask) a SavedModel whose

    serving_default(user_id: string (B,), movie_id: string (B,))
        -> {"score": float32 (B,), "<output>": float32 (B,)}

returns what ``model.predict`` returns: ``<output>`` is ``rating`` (clipped to the rating scale) for
rating models and ``probability`` for the ``rating >= 4`` classifiers; ``score`` is the same value
under a name every ranking export shares, so two-stage serving never needs to know which it is. The
user's and the movie's side features are looked up in-graph from the ids. A second signature,

    from_features(user_id, movie_id, <every raw user and movie side feature the towers read>)
        -> {"score", "<output>"}

takes the side features themselves (named as in :mod:`tfrs_movies.features.side`, batch first), for a
user or movie the tables do not hold yet; ids the towers never trained on use their features alone.
Every head is covered:

- ``concat`` / ``dot_sigmoid`` / multitask's rating head: the head's output is the rating;
- ``cosine``: the head predicts the per-user normalised rating, mapped back with the user's mean and
  scale (the global ones for users the normaliser never saw), exactly as :class:`UserRatingNormalizer`;
- ``classification`` (``rating_classifier``, ``dnn_multi_embedding``): the head's logit through a sigmoid.

Pairs the towers cannot represent (a movie without train ratings or features, a user without either)
get the model's fallback: global mean + known biases, or the positive rate for classifiers.
``ranking.json`` beside the SavedModel says which output it has.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.features.preprocessing import ids_as_strings
from tfrs_movies.features.side import lookup_tables
from tfrs_movies.io import atomic_write_json
from tfrs_movies.models.ranking import IDENTITY, SIGMOID, USER_NORMALIZER, TowerRecommender  # noqa: F401

# Two-stage serving orders candidates by z(retrieval score) + weight * z(this model's score); 0.25 was
# the best weight on the validation split of configs/ml100k_two_stage.yaml (docs/BENCHMARKS.md).
DEFAULT_RERANK_WEIGHT = 0.25
# How the head's raw output becomes the prediction: IDENTITY, USER_NORMALIZER, SIGMOID (imported from
# tfrs_movies.models.ranking, where each model declares its own).


def position_table(ids: np.ndarray) -> tf.lookup.StaticHashTable:
    """String id -> its row in ``ids``; anything else -> -1."""
    keys = tf.constant(ids_as_strings(ids), tf.string)
    values = tf.range(len(ids), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)


def _specs(sample: dict[str, np.ndarray]) -> dict[str, tf.TensorSpec]:
    """Batch-first specs named after the raw features of a one-row sample."""
    out = {}
    for name, values in sample.items():
        values = np.asarray(values)
        dtype = tf.string if values.dtype == object or values.dtype.kind in "US" else tf.float32
        out[name] = tf.TensorSpec([None] * max(values.ndim, 1), dtype, name=name)
    return out


def is_ranking_model(model) -> bool:
    """Whether :func:`write_ranking` can export ``model``: a fitted feature-tower model (every one has a
    TFRS ranking module; its serving parts offer it as ``ranking``)."""
    return isinstance(model, TowerRecommender) and model.model is not None


class RankingModule(tf.Module):
    """``serving_default(user_id, movie_id) -> {"score", "rating" | "probability"}``, see the module doc."""

    def __init__(self, model):
        super().__init__()
        space = model.space
        self.keras = model.model
        self.transform = model.output_transform()
        self.output_name = "probability" if self.transform == SIGMOID else "rating"
        self.user_lookup, utab = lookup_tables(space.users, space.user_table)
        self.movie_lookup, mtab = lookup_tables(space.movies, space.movie_table)
        self.user_tables = {n: tf.Variable(v, trainable=False) for n, v in utab.items()}
        self.movie_tables = {n: tf.Variable(v, trainable=False) for n, v in mtab.items()}
        self.user_pos = position_table(model.users)
        self.movie_col = position_table(model.catalogue)
        # One extra slot at the end of each table for "unknown".
        self.b_user = tf.Variable(np.append(model.b_user, 0.0).astype(np.float32), trainable=False)
        self.b_movie = tf.Variable(np.append(model.b_movie, 0.0).astype(np.float32), trainable=False)
        self.trained = tf.Variable(np.append(model.trained_movies, False), trainable=False)
        if self.transform == USER_NORMALIZER:
            norm = model.normalizer
            users = pd.Index(model.users)
            means = norm.means.reindex(users).fillna(norm.global_mean).to_numpy(np.float64)
            scales = norm.scales.reindex(users).fillna(norm.global_scale).to_numpy(np.float64)
            self.user_mean = tf.Variable(
                np.append(means, norm.global_mean).astype(np.float32), trainable=False
            )
            self.user_scale = tf.Variable(
                np.append(scales, norm.global_scale).astype(np.float32), trainable=False
            )
        self.mu = float(model.mu)
        self.positive_rate = float(model.positive_rate)
        self.cold_users = space.has_cold_start_user_features
        self.cold_movies = space.has_cold_start_movie_features
        self.low, self.high = (float(x) for x in model.rating_scale)
        self.trained_users = position_table(
            model.space.id_users if model.space.id_users is not None else model.users
        )
        self.trained_movie_ids = position_table(model.catalogue[np.asarray(model.trained_movies, bool)])
        user_specs = _specs(model.space.user_rows(model.users[:1]))
        movie_specs = _specs(model.space.movie_rows(model.catalogue[:1]))
        self.feature_names = sorted(user_specs) + sorted(movie_specs)
        self.user_feature_names = set(user_specs)
        specs = {**user_specs, **movie_specs}

        @tf.function(input_signature=[specs[n] for n in self.feature_names])
        def from_features(*tensors):
            return self._from_features(dict(zip(self.feature_names, tensors, strict=True)))

        self.from_features = from_features

    def _transform(self, raw: tf.Tensor, user_slot: tf.Tensor) -> tf.Tensor:
        if self.transform == SIGMOID:
            return tf.sigmoid(raw)
        if self.transform == USER_NORMALIZER:
            return raw * tf.gather(self.user_scale, user_slot) + tf.gather(self.user_mean, user_slot)
        return raw

    def _from_features(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        users = {n: v for n, v in features.items() if n in self.user_feature_names}
        movies = {n: v for n, v in features.items() if n not in self.user_feature_names}
        # Ids without an embedding go to the OOV slot, so their features speak for them.
        users[S.USER_ID] = tf.where(self.trained_users.lookup(users[S.USER_ID]) >= 0, users[S.USER_ID], "")
        movies[S.MOVIE_ID] = tf.where(
            self.trained_movie_ids.lookup(movies[S.MOVIE_ID]) >= 0, movies[S.MOVIE_ID], ""
        )
        raw = tf.cast(
            self.keras.predict_pairs(self.keras.encode_users(users), self.keras.encode_movies(movies)),
            tf.float32,
        )
        upos = self.user_pos.lookup(features[S.USER_ID])
        user_slot = tf.where(upos >= 0, upos, tf.shape(self.b_user, tf.int64)[0] - 1)
        out = self._transform(raw, user_slot)
        if self.transform != SIGMOID:
            out = tf.clip_by_value(out, self.low, self.high)
        return {"score": out, self.output_name: out}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None], tf.string, name="movie_id"),
        ]
    )
    def serving_default(self, user_id, movie_id):
        upos, mcol = self.user_pos.lookup(user_id), self.movie_col.lookup(movie_id)
        known_user, in_catalogue = upos >= 0, mcol >= 0
        n_users, n_movies = tf.shape(self.b_user, tf.int64)[0] - 1, tf.shape(self.b_movie, tf.int64)[0] - 1
        user_slot = tf.where(known_user, upos, n_users)
        trained = tf.gather(self.trained, tf.where(in_catalogue, mcol, n_movies))
        urow, mrow = self.user_lookup(user_id), self.movie_lookup(movie_id)
        users = {n: tf.gather(t, urow) for n, t in self.user_tables.items()}
        users[S.USER_ID] = tf.where(known_user, user_id, "")
        movies = {n: tf.gather(t, mrow) for n, t in self.movie_tables.items()}
        movies[S.MOVIE_ID] = tf.where(trained, movie_id, "")
        raw = tf.cast(
            self.keras.predict_pairs(self.keras.encode_users(users), self.keras.encode_movies(movies)),
            tf.float32,
        )
        predicted = self._transform(raw, user_slot)
        if self.transform == SIGMOID:
            fallback = tf.fill(tf.shape(raw), self.positive_rate)
        else:
            fallback = (
                self.mu
                + tf.gather(self.b_user, user_slot)
                + tf.gather(self.b_movie, tf.where(trained, mcol, n_movies))
            )
        user_ok = known_user | ((urow > 0) & self.cold_users)
        movie_ok = in_catalogue & (trained | self.cold_movies)
        out = tf.where(user_ok & movie_ok, predicted, fallback)
        if self.transform != SIGMOID:
            out = tf.clip_by_value(out, self.low, self.high)
        return {"score": out, self.output_name: out}


def write_ranking(model, out: Path) -> dict:
    """Save the ranking SavedModel into ``out`` (not atomic: used inside an atomic export); returns
    its description (also written as ``ranking.json``)."""
    if not is_ranking_model(model):
        raise ValueError(
            f"write_ranking supports TFRS two-tower ranking models, not {type(model).__name__}"
        )
    module = RankingModule(model)
    signatures = {"serving_default": module.serving_default, "from_features": module.from_features}
    tf.saved_model.save(module, str(out), signatures=signatures)
    info = {
        "model": model.name,
        "output": module.output_name,
        "transform": module.transform,
        "rating_scale": [module.low, module.high],
        "signature": "serving_default(user_id: string (B,), movie_id: string (B,)) -> score, "
        + module.output_name,
        "from_features": module.feature_names,
        # How two-stage serving weighs this model against the retrieval score (config export.rerank_weight).
        "rerank_weight": float(model.config.get("export", {}).get("rerank_weight", DEFAULT_RERANK_WEIGHT)),
    }
    atomic_write_json(out / "ranking.json", info)
    return info
