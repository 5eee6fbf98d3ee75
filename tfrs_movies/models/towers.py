"""Towers: the networks that turn raw features into embeddings.

Each tower takes a batch of raw features (a dict, see :mod:`tfrs_movies.features.side`) or a string
tensor of ids, and returns ``(batch, output_dim)`` float32 embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.features import side as F
from tfrs_movies.features.preprocessing import (
    genre_multi_hot,
    id_lookup,
    numeric_normalizer,
    strip_year,
)


def dense_stack(
    widths: Sequence[int], dropout: float = 0.0, batch_norm: bool = False, linear_last: bool = True
) -> list[tf.keras.layers.Layer]:
    """Dense layers of ``widths`` (ReLU; the last linear when ``linear_last``), with optional dropout and
    batch normalisation between them."""
    layers: list[tf.keras.layers.Layer] = []
    for i, width in enumerate(widths):
        last = i == len(widths) - 1
        layers.append(tf.keras.layers.Dense(width, activation=None if last and linear_last else "relu"))
        if not last:
            if batch_norm:
                layers.append(tf.keras.layers.BatchNormalization())
            if dropout > 0:
                layers.append(tf.keras.layers.Dropout(dropout))
    return layers


class IdTower(tf.keras.Model):
    """String ids -> ``StringLookup`` (OOV slot 0) -> ``Embedding`` -> optional dense stack.

    Input: ``(batch,)`` string tensor of ids. Output: ``(batch, d)`` where ``d`` is the last of
    ``layers`` or ``embedding_dim`` when there are none. With ``normalize`` the output is L2-unit.
    """

    def __init__(
        self,
        vocabulary: Iterable,
        embedding_dim: int,
        layers: Sequence[int] = (),
        l2: float = 0.0,
        normalize: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.lookup = id_lookup(vocabulary)
        regularizer = tf.keras.regularizers.l2(l2) if l2 > 0 else None
        self.embedding = tf.keras.layers.Embedding(
            self.lookup.vocabulary_size(), embedding_dim, embeddings_regularizer=regularizer
        )
        self.dense = dense_stack(list(layers))
        self.normalize = normalize

    def call(self, ids: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = self.embedding(self.lookup(ids))
        for layer in self.dense:
            x = layer(x, training=training)
        if self.normalize:
            x = tf.math.l2_normalize(x, axis=-1)
        return x


class BagEmbedding(tf.keras.layers.Layer):
    """A padded ``(batch, L)`` string tensor ("" = padding) -> the mean of its embeddings ``(batch, d)``
    (zeros for an empty bag)."""

    def __init__(self, vocabulary: Iterable, dim: int, l2: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        vocab = sorted({str(v) for v in vocabulary} - {""})
        self.lookup = tf.keras.layers.StringLookup(
            vocabulary=np.array(vocab, dtype=object), mask_token="", num_oov_indices=1
        )  # an array, not a list: see id_lookup
        regularizer = tf.keras.regularizers.l2(l2) if l2 > 0 else None
        self.embedding = tf.keras.layers.Embedding(len(vocab) + 2, dim, embeddings_regularizer=regularizer)

    def call(self, values: tf.Tensor) -> tf.Tensor:
        index = self.lookup(values)
        mask = tf.cast(tf.not_equal(index, 0), tf.float32)[..., None]
        total = tf.reduce_sum(self.embedding(index) * mask, axis=1)
        return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


class CategoryEmbedding(tf.keras.layers.Layer):
    """A ``(batch,)`` string category -> ``(batch, d)`` embedding, with an OOV slot."""

    def __init__(self, vocabulary: Iterable, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lookup = id_lookup(vocabulary)
        self.embedding = tf.keras.layers.Embedding(self.lookup.vocabulary_size(), dim)

    def call(self, values: tf.Tensor) -> tf.Tensor:
        return self.embedding(self.lookup(values))


class NumericFeature(tf.keras.layers.Layer):
    """A ``(batch,)`` float feature -> ``(batch, 1)`` standardised by an adapted ``Normalization``."""

    def __init__(self, values: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self.norm = numeric_normalizer(values)

    def call(self, values: tf.Tensor) -> tf.Tensor:
        return tf.reshape(self.norm(tf.cast(values, tf.float32)), (-1, 1))


class TitleTokens(tf.keras.layers.Layer):
    """``(batch,)`` titles -> mean embedding of their word tokens (year removed) ``(batch, d)``."""

    def __init__(self, titles: Iterable[str], dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        words = sorted({w for t in titles for w in strip_year(str(t)).lower().split()})
        self.bag = BagEmbedding(words, dim)

    def call(self, titles: tf.Tensor) -> tf.Tensor:
        text = tf.strings.lower(tf.strings.regex_replace(titles, r"\s*\(\d{4}\)\s*$", ""))
        tokens = tf.strings.split(text).to_tensor(default_value="", shape=[None, 12])
        return self.bag(tokens)


class FeatureTower(tf.keras.Model):
    """The user or movie tower over every side feature in a :class:`FeatureSpace`.

    Input: a dict of raw features (ids, categories, numbers, padded bags). Each feature is embedded, the
    pieces are concatenated and passed through ``layers`` (ReLU, linear last); without layers a linear
    projection to ``embedding_dim`` joins them. Output: ``(batch, d)``, L2-unit when ``normalize``.

    The id embedding has one row per id of the vocabulary plus an OOV row (``id_buckets=0``), or
    ``id_buckets`` rows that ids are hashed into (``tf.keras.layers.Hashing``: a fixed table size
    whatever the number of users, at the price of collisions).
    """

    def __init__(
        self,
        space: F.FeatureSpace,
        side: str,
        embedding_dim: int,
        layers: Sequence[int] = (),
        l2: float = 0.0,
        normalize: bool = False,
        dropout: float = 0.0,
        batch_norm: bool = False,
        feature_dim: int = 16,
        name: str | None = None,
        id_buckets: int = 0,
    ) -> None:
        super().__init__(name=name)
        if id_buckets < 0:
            raise ValueError(f"model.id_buckets must be 0 (a vocabulary) or a bucket count, got {id_buckets}")
        self.side = side
        self.parts: dict[str, tf.keras.layers.Layer] = {}
        regularizer = tf.keras.regularizers.l2(l2) if l2 > 0 else None
        if side == "user":
            ids = space.id_users if space.id_users is not None else space.users
            features, table, id_name = space.user_features, space.user_table, S.USER_ID
        else:
            features, table, ids, id_name = space.movie_features, space.movie_table, space.movies, S.MOVIE_ID
        self.id_name = id_name
        if "id" in features:
            if id_buckets > 0:  # ids hashed into a fixed number of rows, whatever the vocabulary
                lookup, rows = tf.keras.layers.Hashing(num_bins=id_buckets), id_buckets
            else:  # one row per id of the vocabulary, plus the OOV row
                lookup = id_lookup(ids)
                rows = lookup.vocabulary_size()
            self.parts[id_name] = tf.keras.Sequential(
                [lookup, tf.keras.layers.Embedding(rows, embedding_dim, embeddings_regularizer=regularizer)]
            )
        for key, values in table.items():
            if key == F.HISTORY:
                self.parts[key] = BagEmbedding(space.movies, embedding_dim, l2=l2)
            elif key in (F.AGE, F.YEAR, F.RUNTIME, F.IMDB_RATING):
                self.parts[key] = NumericFeature(values)
            elif key == F.GENRES:
                vocab = sorted({g for g in values.ravel() if g})
                self.parts[key] = tf.keras.Sequential(
                    [genre_multi_hot(vocab), tf.keras.layers.Dense(feature_dim, use_bias=False)]
                )
            elif key == F.TITLE:
                self.parts[key] = TitleTokens(values, feature_dim)
            elif key in (F.TAGS, F.PEOPLE):
                self.parts[key] = BagEmbedding(values.ravel(), feature_dim)
            else:  # gender, occupation, zip prefix, age bucket
                self.parts[key] = CategoryEmbedding(values, feature_dim)
        self.names = sorted(self.parts)
        widths = list(layers) or ([embedding_dim] if self.names != [id_name] else [])
        self.dense = dense_stack(widths, dropout, batch_norm)
        self.normalize = normalize

    def call(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        if not isinstance(features, dict):
            features = {self.id_name: features}
        x = tf.concat([self.parts[name](features[name]) for name in self.names], axis=-1)
        for layer in self.dense:
            x = layer(x, training=training)
        if self.normalize:
            x = tf.math.l2_normalize(x, axis=-1)
        return x

    def input_names(self) -> list[str]:
        return list(self.names)
