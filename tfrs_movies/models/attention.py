"""Layers of the attention sequence model: movie encoder, self-attention encoder, heads.

- :class:`MovieEncoder`: movie id strings of any shape ``(...)`` -> ``(..., d)``: an id embedding plus a
  projection of the movie's side features (genres multi-hot, standardised year / IMDb runtime and
  rating, a bag of directors, leading actors and tags), looked up in-graph from constant tables, so
  the same layer embeds history slots, targets and the catalogue (shared input/output embeddings).
- :class:`SequenceEncoder`: ``(B, L)`` history ids (+ ratings) -> ``(B, L, d)`` states through blocks of
  Keras ``MultiHeadAttention`` with residual connections and layer normalisation; positions are
  counted from the most recent slot (histories are left padded), padding ("" ids) is masked as keys,
  and with ``causal`` each slot sees only itself and earlier slots.
- :func:`mlp`: seed 004's dense stack (LeakyReLU, batch normalisation, dropout).
- :class:`RatingHead`: target attention (the target movie attends over the encoded history) and an
  MLP over [history state, attended history, target movie, user features] -> rating.
- :class:`PairHead`: two users' rating-head representations for one movie -> the pair's rating.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_movies.features import side as F
from tfrs_movies.features.preprocessing import position_lookup

PAD = ""


def movie_feature_tables(table: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """A FeatureSpace movie table (n rows) -> dense float features (n + 1, F) and bag token ids
    (n + 1, P) (0 = none), row 0 being the unknown / padding movie; and the bag vocabulary size."""
    n = len(next(iter(table.values()))) if table else 0
    dense: list[np.ndarray] = []
    if F.GENRES in table:
        vocab = sorted({g for g in table[F.GENRES].ravel() if g})
        index = {g: i for i, g in enumerate(vocab)}
        hot = np.zeros((n, len(vocab)), np.float32)
        for row, genres in enumerate(table[F.GENRES]):
            for g in genres:
                if g:
                    hot[row, index[g]] = 1.0
        dense.append(hot)
    for key in (F.YEAR, F.RUNTIME, F.IMDB_RATING):
        if key in table:
            values = table[key].astype(np.float32)
            dense.append(((values - values.mean()) / (values.std() + 1e-6))[:, None])
    bags = [table[k] for k in (F.PEOPLE, F.TAGS) if k in table]
    if bags:
        tokens = np.concatenate([np.asarray(b, dtype=object) for b in bags], axis=1)
        vocab = sorted({t for t in tokens.ravel() if t})
        index = {t: i + 1 for i, t in enumerate(vocab)}
        bag = np.vectorize(lambda t: index.get(t, 0), otypes=[np.int64])(tokens) if tokens.size else tokens
        bag = np.asarray(bag, np.int64)
        n_bag = len(vocab) + 1
    else:
        bag, n_bag = np.zeros((n, 0), np.int64), 0
    dense_m = np.concatenate(dense, axis=1) if dense else np.zeros((n, 0), np.float32)
    pad = lambda m: np.concatenate([np.zeros((1,) + m.shape[1:], m.dtype), m])  # noqa: E731
    return pad(dense_m), pad(bag), n_bag


class MovieEncoder(tf.keras.layers.Layer):
    """Movie id strings ``(...)`` -> ``(..., d)``; "" and unknown ids share row 0 (masked by callers)."""

    def __init__(self, movies: np.ndarray, table: dict[str, np.ndarray], dim: int, l2: float = 0.0,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.lookup = position_lookup(movies)
        regularizer = tf.keras.regularizers.l2(l2) if l2 > 0 else None
        self.embedding = tf.keras.layers.Embedding(len(movies) + 1, dim, embeddings_regularizer=regularizer)
        dense, bag, n_bag = movie_feature_tables(table)
        self.dense_table = tf.constant(dense) if dense.shape[1] else None
        self.bag_table = tf.constant(bag) if bag.shape[1] else None
        self.project = tf.keras.layers.Dense(dim, use_bias=False) if dense.shape[1] else None
        self.bag_embedding = tf.keras.layers.Embedding(n_bag, dim) if bag.shape[1] else None

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        rows = self.lookup(ids)
        x = self.embedding(rows)
        if self.project is not None:
            x = x + self.project(tf.gather(self.dense_table, rows))
        if self.bag_embedding is not None:
            tokens = tf.gather(self.bag_table, rows)
            present = tf.cast(tokens > 0, tf.float32)[..., None]
            total = tf.reduce_sum(self.bag_embedding(tokens) * present, axis=-2)
            x = x + total / tf.maximum(tf.reduce_sum(present, axis=-2), 1.0)
        return x


def attention_mask(valid: tf.Tensor, causal: bool) -> tf.Tensor:
    """``(B, L)`` valid slots -> ``(B, L, L)`` bool: query i may look at key j (valid, and j <= i when
    ``causal``). A padding query looks at itself only, so no row is empty."""
    length = tf.shape(valid)[1]
    keys = tf.tile(valid[:, None, :], [1, length, 1])
    if causal:
        lower = tf.cast(tf.linalg.band_part(tf.ones([length, length]), -1, 0), tf.bool)
        keys = keys & lower[None]
    eye = tf.eye(length, dtype=tf.bool)[None]
    return keys | (eye & ~valid[:, :, None])


class SequenceEncoder(tf.keras.layers.Layer):
    """``(B, L)`` history ids and ratings -> states ``(B, L, d)``, valid ``(B, L)`` and the last block's
    attention ``(B, heads, L, L)``. Accepts any ``L <= max_length``; padding never changes a valid slot's
    state (it is masked as a key, and positions count back from the last slot)."""

    def __init__(
        self,
        movie_encoder: MovieEncoder,
        max_length: int,
        dim: int,
        num_heads: int,
        num_blocks: int,
        dropout: float,
        causal: bool,
        use_ratings: bool,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.movie_encoder = movie_encoder
        self.causal = causal
        self.dim = dim
        self.position = tf.keras.layers.Embedding(max_length, dim)
        self.rating = tf.keras.layers.Embedding(11, dim) if use_ratings else None  # half stars 0..5
        self.input_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6)
        self.dropout = tf.keras.layers.Dropout(dropout)
        key_dim = max(8, -(-dim // num_heads))
        self.blocks = [
            {
                "attention": tf.keras.layers.MultiHeadAttention(num_heads, key_dim, dropout=dropout),
                "norm1": tf.keras.layers.LayerNormalization(epsilon=1e-6),
                "ffn1": tf.keras.layers.Dense(dim, activation="relu"),
                "ffn2": tf.keras.layers.Dense(dim),
                "norm2": tf.keras.layers.LayerNormalization(epsilon=1e-6),
            }
            for _ in range(num_blocks)
        ]

    def call(self, ids: tf.Tensor, ratings: tf.Tensor | None = None, training: bool = False):
        valid = tf.not_equal(ids, PAD)
        keep = tf.cast(valid, tf.float32)[..., None]
        length = tf.shape(ids)[1]
        x = self.movie_encoder(ids) * (self.dim**0.5)
        x = x + self.position(tf.range(length - 1, -1, -1))[None]  # 0 = the most recent slot
        if self.rating is not None and ratings is not None:
            level = tf.clip_by_value(tf.cast(tf.round(tf.cast(ratings, tf.float32) * 2.0), tf.int32), 0, 10)
            x = x + self.rating(level)
        x = self.dropout(self.input_norm(x), training=training) * keep
        mask = attention_mask(valid, self.causal)
        scores = None
        for block in self.blocks:
            attended, scores = block["attention"](
                x, x, attention_mask=mask, return_attention_scores=True, training=training
            )
            x = block["norm1"](x + self.dropout(attended, training=training))
            inner = block["ffn2"](self.dropout(block["ffn1"](x), training=training))
            x = block["norm2"](x + self.dropout(inner, training=training)) * keep
        if scores is None:  # no block: uniform attention over the valid slots
            weights = tf.cast(mask, tf.float32)
            scores = (weights / tf.maximum(tf.reduce_sum(weights, -1, keepdims=True), 1.0))[:, None]
        return x, valid, scores


def mlp(widths, dropout: float, batch_norm: bool) -> list[tf.keras.layers.Layer]:
    """Seed 004's stack: Dense -> BatchNorm -> LeakyReLU -> Dropout for every width."""
    layers: list[tf.keras.layers.Layer] = []
    for width in widths:
        layers.append(tf.keras.layers.Dense(width))
        if batch_norm:
            layers.append(tf.keras.layers.BatchNormalization())
        layers.append(tf.keras.layers.LeakyReLU(0.2))
        if dropout > 0:
            layers.append(tf.keras.layers.Dropout(dropout))
    return layers


def run(layers, x: tf.Tensor, training: bool) -> tf.Tensor:
    for layer in layers:
        x = layer(x, training=training)
    return x


class RatingHead(tf.keras.layers.Layer):
    """Target attention + MLP -> rating, for every query slot selected by ``select``.

    ``states`` (B, L, d) encoded history, ``valid`` (B, L), ``targets`` (B, Lq, d) target movie vectors,
    ``allowed`` (B, Lq, L) which history slots each target may attend to, ``user`` (B, du) or None,
    ``state_at`` (B, Lq, d) the history state each target is predicted from; ``select`` (B, Lq) bool.
    Returns ratings (N,), representations (N, h) and attention weights (B, Lq, L) (mean over heads).
    """

    def __init__(self, dim: int, num_heads: int, widths, dropout: float, batch_norm: bool, mean: float,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.attention = tf.keras.layers.MultiHeadAttention(num_heads, max(8, -(-dim // num_heads)))
        self.layers_ = mlp(widths, dropout, batch_norm)
        self.out = tf.keras.layers.Dense(1)
        self.mean = float(mean)

    def call(self, states, valid, targets, allowed, user, state_at, select, training: bool = False):
        attended, scores = self.attention(
            targets, states, attention_mask=allowed, return_attention_scores=True, training=training
        )
        any_key = tf.reduce_any(allowed, axis=-1, keepdims=True)
        attended = attended * tf.cast(any_key, tf.float32)  # nothing watched: nothing attended
        weights = tf.reduce_mean(scores, axis=1) * tf.cast(allowed, tf.float32)
        parts = [state_at, attended, targets]
        if user is not None:
            parts.append(tf.tile(user[:, None, :], [1, tf.shape(targets)[1], 1]))
        z = tf.boolean_mask(tf.concat(parts, axis=-1), select)
        z = run(self.layers_, z, training)
        return tf.squeeze(self.out(z), -1) + self.mean, z, weights


class PairHead(tf.keras.layers.Layer):
    """(z_a, z_b, rating_a, rating_b) -> the pair's rating: the mean of the two users' predicted ratings
    plus a learned, symmetric correction from their representations (starts at the plain mean)."""

    def __init__(self, widths, **kwargs) -> None:
        super().__init__(**kwargs)
        self.layers_ = mlp(widths, 0.0, False)
        self.out = tf.keras.layers.Dense(1, kernel_initializer="zeros")

    def call(self, z_a, z_b, rating_a, rating_b, training: bool = False):
        x = tf.concat([z_a + z_b, tf.abs(z_a - z_b)], axis=-1)
        correction = tf.squeeze(self.out(run(self.layers_, x, training)), -1)
        return (rating_a + rating_b) / 2.0 + correction
