"""The Keras side of the sequence model: query tower, candidate tower and the TFRS model with its heads.

Raw user features (what the exported query tower takes): ``user_id`` (B,) str, the FeatureSpace's
demographics when configured, ``seq_history`` (B, L) str the most recent movies (left padded, ""),
``seq_ratings`` (B, L) float32 their ratings.

Training batches add ``targets`` (B, L) str (the next movie of each slot, "" none) and
``target_ratings`` (B, L) float32. Losses (``tfrs.Model.compute_loss``): next-movie retrieval as a
softmax over every catalogue movie (the target is the one positive, as TFRS ``Retrieval`` with the whole
catalogue as candidates and accidental hits removed), and the target's rating (MSE through
``tfrs.tasks.Ranking``, RMSE tracked), weighted.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies import schema as S
from tfrs_movies.features.preprocessing import ids_as_strings, position_lookup
from tfrs_movies.models.attention import (
    PAD,
    MovieEncoder,
    PairHead,
    RatingHead,
    SequenceEncoder,
    attention_mask,
    mlp,
    run,
)

HISTORY = "seq_history"
HISTORY_RATINGS = "seq_ratings"
TARGETS = "targets"
TARGET_RATINGS = "target_ratings"


class QueryTower(tf.keras.Model):
    """Raw user features -> ``(B, d)`` query: the encoder's state at the most recent slot, joined with
    the user tower's features and passed through the query layers (linear to ``d`` at the end)."""

    def __init__(self, encoder: SequenceEncoder, user_tower, widths, dim: int, dropout: float,
                 batch_norm: bool, name: str = "query_tower") -> None:  # fmt: skip
        super().__init__(name=name)
        self.encoder = encoder
        self.user_tower = user_tower
        self.layers_ = mlp(widths, dropout, batch_norm)
        self.out = tf.keras.layers.Dense(dim) if (widths or user_tower is not None) else None

    def encode(self, features, training: bool = False):
        """(states (B, L, d), valid (B, L), last attention (B, heads, L, L), user vector or None)."""
        states, valid, scores = self.encoder(
            features[HISTORY], features.get(HISTORY_RATINGS), training=training
        )
        user = self.user_tower(features, training=training) if self.user_tower is not None else None
        return states, valid, scores, user

    def head(self, states: tf.Tensor, user: tf.Tensor | None, training: bool = False) -> tf.Tensor:
        """(N, d) states (and (N, du) user features) -> (N, d) queries."""
        if self.out is None:
            return states
        x = states if user is None else tf.concat([states, user], axis=-1)
        return self.out(run(self.layers_, x, training))

    def call(self, features, training: bool = False) -> tf.Tensor:
        states, _, _, user = self.encode(features, training)
        return self.head(states[:, -1], user, training)


class CandidateTower(tf.keras.Model):
    """``{"movie_id": (B,)}`` or a string tensor -> ``(B, d)`` (the shared movie encoder)."""

    def __init__(self, movie_encoder: MovieEncoder, name: str = "candidate_tower") -> None:
        super().__init__(name=name)
        self.movie_encoder = movie_encoder

    def call(self, features, training: bool = False) -> tf.Tensor:
        ids = features[S.MOVIE_ID] if isinstance(features, dict) else features
        return self.movie_encoder(ids)


class SequenceModel(tfrs.Model):
    """The towers, the optional rating and pair heads, and the losses (see the module docstring)."""

    def __init__(self, query_tower: QueryTower, candidate_tower: CandidateTower, catalogue: np.ndarray,
                 rating_head: RatingHead | None, pair_head: PairHead | None, temperature: float,
                 retrieval_weight: float, rating_weight: float, causal: bool) -> None:  # fmt: skip
        super().__init__()
        # The encoder and query layers (the retrieval query with a retrieval head; the rating head reads
        # its encoded history either way).
        self.history_tower = query_tower
        self.candidate_tower = candidate_tower
        self.rating_head = rating_head
        self.pair_head = pair_head
        self.catalogue = tf.constant(ids_as_strings(catalogue))
        self.position = position_lookup(catalogue)
        self.temperature = float(temperature or 1.0)
        self.retrieval_weight = retrieval_weight
        self.rating_weight = rating_weight if rating_head is not None else 0.0
        self.causal = causal
        self.ranking = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(), metrics=[tf.keras.metrics.RootMeanSquaredError()]
        )
        self.phase = "main"  # "pair": train the pair head only, on pair batches

    # ----- losses ----------------------------------------------------------------------------------
    def compute_loss(self, features, training: bool = False) -> tf.Tensor:
        if self.phase == "pair":
            predicted = self.pair_rating(features["a"], features["b"], features[S.MOVIE_ID], training)
            return self.ranking(labels=features[S.RATING], predictions=predicted)
        states, valid, _, user = self.history_tower.encode(features, training)
        select = tf.not_equal(features[TARGETS], PAD)
        loss = tf.constant(0.0)
        if self.retrieval_weight > 0:
            queries = self.history_tower.head(
                tf.boolean_mask(states, select), self._rows_of(user, select), training
            )
            candidates = self.candidate_tower(self.catalogue, training=training)
            logits = tf.matmul(queries, candidates, transpose_b=True) / self.temperature
            labels = self.position(tf.boolean_mask(features[TARGETS], select)) - 1  # OOV -> -1
            known = labels >= 0
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                tf.boolean_mask(labels, known), tf.boolean_mask(logits, known)
            )
            mean_ce = tf.math.divide_no_nan(tf.reduce_sum(ce), tf.cast(tf.size(ce), tf.float32))
            loss += self.retrieval_weight * mean_ce
        if self.rating_weight > 0:
            targets = self.candidate_tower(features[TARGETS], training=training)
            allowed = attention_mask(valid, True) & valid[:, None, :] if self.causal else (
                tf.tile(valid[:, None, :], [1, tf.shape(valid)[1], 1])
            )  # fmt: skip
            predicted, _, _ = self.rating_head(
                states, valid, targets, allowed, user, states, select, training
            )
            labels = tf.boolean_mask(features[TARGET_RATINGS], select)
            loss += self.rating_weight * self.ranking(labels=labels, predictions=predicted)
        return loss

    @staticmethod
    def _rows_of(user, select):
        """(B, du) user features repeated for each selected slot -> (N, du), or None."""
        if user is None:
            return None
        tiled = tf.tile(user[:, None, :], [1, tf.shape(select)[1], 1])
        return tf.boolean_mask(tiled, select)

    # ----- inference -------------------------------------------------------------------------------
    def rate(self, features, movie_ids: tf.Tensor, training: bool = False):
        """Each user (B rows of raw features) with one movie (B,) -> (rating (B,), representation (B, h),
        attention weights over the history slots (B, L))."""
        states, valid, _, user = self.history_tower.encode(features, training)
        return self.rate_encoded(states, valid, user, movie_ids, training)

    def rate_encoded(self, states, valid, user, movie_ids, training: bool = False):
        """:meth:`rate` from already encoded histories (states (B, L, d), valid (B, L), user or None)."""
        targets = self.candidate_tower(movie_ids, training=training)[:, None, :]
        select = tf.ones([tf.shape(movie_ids)[0], 1], tf.bool)
        rating, z, weights = self.rating_head(
            states, valid, targets, valid[:, None, :], user, states[:, -1:, :], select, training
        )
        return rating, z, weights[:, 0, :]

    def query_attention(self, features) -> tf.Tensor:
        """(B, L): the attention the most recent slot (the query) puts on each history slot, mean over
        heads, in the last block; 0 on padding."""
        _, valid, scores, _ = self.history_tower.encode(features, False)
        return tf.reduce_mean(scores[:, :, -1, :], axis=1) * tf.cast(valid, tf.float32)

    def pair_rating(self, features_a, features_b, movie_ids, training: bool = False) -> tf.Tensor:
        """Two users' raw features and one movie per row -> the pair's predicted rating (B,)."""
        rating_a, z_a, _ = self.rate(features_a, movie_ids, False)
        rating_b, z_b, _ = self.rate(features_b, movie_ids, False)
        return self.pair_head(z_a, z_b, rating_a, rating_b, training)
