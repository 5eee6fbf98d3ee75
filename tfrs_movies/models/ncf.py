"""Neural collaborative filtering for ratings: NeuMF (``ncf``) and the CF-MLP (``cf_mlp``).

NeuMF (He et al. 2017) has two branches over separate user/movie embeddings (``model.embedding_dim``
each): GMF, the element-wise product ``p_u * q_i``, and an MLP over the concatenation ``[p'_u, q'_i]``
(ReLU layers ``model.params.layers``, dropout ``model.params.dropout``). Their outputs are
concatenated and a linear unit regresses the rating (initialised at the global mean); the loss is
TFRS's ``Ranking`` task with MSE, plus per-example L2 on the embeddings (``model.params.l2``).
The CF-MLP is the MLP branch alone (concatenated embeddings into dense layers, then the rating).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies import schema as S
from tfrs_movies.models.mf import (
    MOVIE_INDEX,
    USER_INDEX,
    MeanLossModel,
    PairRatingRecommender,
    PairScorer,
    RatingParams,
    check_non_negative,
    make_optimizer,
)
from tfrs_movies.models.registry import register
from tfrs_movies.models.serving_parts import ServingParts


class NeuMFModel(MeanLossModel):
    """Features: ``user_index`` / ``movie_index`` (batch,) int32 (0 = unknown), ``rating`` (batch,)."""

    def __init__(self, n_users: int, n_movies: int, dim: int, layers: list[int], dropout: float,
                 l2: float, mean: float, gmf: bool = True) -> None:  # fmt: skip
        super().__init__()

        def table(n: int) -> tf.keras.layers.Embedding:
            init = tf.keras.initializers.RandomNormal(stddev=0.05)
            return tf.keras.layers.Embedding(n + 1, dim, embeddings_initializer=init)

        self.gmf = gmf
        if gmf:
            self.gmf_user, self.gmf_movie = table(n_users), table(n_movies)
        self.mlp_user, self.mlp_movie = table(n_users), table(n_movies)
        self.mlp = []
        for width in layers:
            self.mlp.append(tf.keras.layers.Dense(width, activation="relu"))
            if dropout > 0:
                self.mlp.append(tf.keras.layers.Dropout(dropout))
        self.out = tf.keras.layers.Dense(1, bias_initializer=tf.keras.initializers.Constant(mean))
        self.l2 = l2
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(), metrics=[tf.keras.metrics.RootMeanSquaredError()]
        )

    def _forward(self, features: dict[str, tf.Tensor], training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        users, movies = features[USER_INDEX], features[MOVIE_INDEX]
        pu, qi = self.mlp_user(users), self.mlp_movie(movies)
        x = tf.concat([pu, qi], axis=-1)
        for layer in self.mlp:
            x = layer(x, training=training)
        penalty = tf.reduce_sum(pu * pu, -1) + tf.reduce_sum(qi * qi, -1)
        if self.gmf:
            gu, gi = self.gmf_user(users), self.gmf_movie(movies)
            x = tf.concat([gu * gi, x], axis=-1)
            penalty += tf.reduce_sum(gu * gu, -1) + tf.reduce_sum(gi * gi, -1)
        return tf.squeeze(self.out(x), -1), penalty

    def call(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self._forward(features, training)[0]

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        predictions, penalty = self._forward(features, training)
        loss = self.task(labels=features[S.RATING], predictions=predictions)
        return loss + self.l2 * tf.reduce_mean(penalty)


@register
class NCFRecommender(PairRatingRecommender):
    """NeuMF for ratings (``ncf``): GMF and MLP branches, concatenated, linear rating output."""

    name = "ncf"
    gmf: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Params(RatingParams):
        layers: list[int] = field(default_factory=lambda: [64, 32, 16])
        dropout: float = 0.2
        l2: float = 0.01

        def validate(self) -> None:
            super().validate()
            check_non_negative(self, "l2")
            if not 0 <= self.dropout < 1:
                raise ValueError(f"config key 'model.params.dropout' must be in [0, 1), got {self.dropout!r}")
            if any(width < 1 for width in self.layers):
                raise ValueError(f"config key 'model.params.layers' widths must be >= 1, got {self.layers!r}")

    contract_params: ClassVar[dict[str, Any]] = {"layers": [16, 8]}

    def _build_model(self) -> NeuMFModel:
        p = self.params
        model = NeuMFModel(len(self.users), len(self.catalogue), self.config["model"]["embedding_dim"],
                           list(p.layers), p.dropout, p.l2, self.mu, gmf=self.gmf)  # fmt: skip
        model.compile(optimizer=make_optimizer(self.config))
        model({USER_INDEX: tf.zeros([1], tf.int32), MOVIE_INDEX: tf.zeros([1], tf.int32)})
        return model

    def movie_embeddings(self) -> np.ndarray:
        tables = [self.model.mlp_movie.embeddings.numpy()[1:]]
        if self.gmf:
            tables.insert(0, self.model.gmf_movie.embeddings.numpy()[1:])
        return np.concatenate(tables, axis=1)

    def serving_parts(self) -> ServingParts:
        """Scorer form: the network on every (user, catalogue movie) pair in-graph (not a dot product)."""
        return ServingParts(scorer=PairScorer(self))


@register
class CFMLPRecommender(NCFRecommender):
    """The collaborative-filtering MLP (``cf_mlp``): concatenated embeddings into ReLU layers."""

    name = "cf_mlp"
    gmf: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Params(NCFRecommender.Params):
        layers: list[int] = field(default_factory=lambda: [128, 64, 32])
