"""Joint models over shared feature towers: TFRS multitask retrieval + ranking, and seed 003's DNN.

``multitask`` (the TFRS multitask tutorial): one user tower and one movie tower feed two tasks,

- ``Retrieval`` (in-batch softmax over ``u . v``, with the ``model.temperature``,
  ``model.sampling_correction`` and ``model.remove_accidental_hits`` of the retrieval model), and
- ``Ranking`` (rating MSE through a dense head over ``[u, v]``, plus optional biases),

with ``loss = retrieval_weight * retrieval + rating_weight * rating``, both per-example means (TFRS's
retrieval loss sums over the batch by default; a mean keeps the weights independent of the batch size).
``predict`` is the rating (clipped); top-N ``score`` is the retrieval dot product ``u . v`` by default
(``model.params.score: retrieval``) or the predicted rating (``score: rating``).

``dnn_multi_embedding`` (seed 003's "DNN with multi-layer embeddings"): the towers' outputs are
projected into a joint space (``model.params.joint_dim``); a classification head over the projected
pair predicts ``rating >= threshold`` (binary cross-entropy), and a cosine-embedding loss weighted by
``gamma`` pulls liked pairs together and pushes disliked ones below ``margin`` (``1 - cos`` for a
positive, ``max(0, cos - margin)`` for a negative), so the joint embeddings support vector search.
``predict`` is the head's probability; top-N ``score`` is the cosine of the joint embeddings, in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies import schema as S
from tfrs_movies.features.side import FeatureSpace
from tfrs_movies.models.ranking import (
    TARGET,
    Codes,
    ConcatHead,
    TowerModel,
    TowerParams,
    TowerRecommender,
    check_same_width,
)
from tfrs_movies.models.registry import register
from tfrs_movies.models.retrieval import SAMPLING_PROBABILITY
from tfrs_movies.models.serving_parts import FeatureQuery, ServingParts, TowerQuery

SCORES = ("retrieval", "rating")


@dataclass(frozen=True)
class MultitaskParams(TowerParams):
    retrieval_weight: float = 1.0
    rating_weight: float = 1.0
    head_layers: list[int] = field(default_factory=lambda: [64, 32])
    biases: bool = True
    score: str = "retrieval"  # top-N: retrieval (u . v) or rating (the predicted rating)

    def validate(self) -> None:
        super().validate()
        if self.score not in SCORES:
            raise ValueError(
                f"config key 'model.params.score' must be one of {list(SCORES)}, got {self.score!r}"
            )
        for key in ("retrieval_weight", "rating_weight"):
            if getattr(self, key) < 0:
                raise ValueError(f"config key 'model.params.{key}' must be >= 0, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class DNNMultiEmbeddingParams(TowerParams):
    joint_dim: int = 64
    head_layers: list[int] = field(default_factory=lambda: [64])
    gamma: float = 1.0  # weight of the cosine-embedding loss
    margin: float = 0.0
    threshold: float = 4.0  # label: rating >= threshold

    def validate(self) -> None:
        super().validate()
        if self.joint_dim < 1:
            raise ValueError(f"config key 'model.params.joint_dim' must be >= 1, got {self.joint_dim!r}")
        if self.gamma < 0:
            raise ValueError(f"config key 'model.params.gamma' must be >= 0, got {self.gamma!r}")


class MultitaskModel(TowerModel):
    """Shared towers, a ``Retrieval`` and a ``Ranking`` task.

    ``compute_loss(features)``: raw features plus ``target`` (B,) ratings and, with sampling correction,
    ``sampling_probability`` (B,). Logs ``retrieval_loss`` and ``rating_loss`` (epoch means) besides
    the weighted total ``loss``.
    """

    def __init__(self, user_tower: tf.keras.Model, movie_tower: tf.keras.Model, space: FeatureSpace,
                 head_layers: list[int], dropout: float, biases: bool, mean: float,
                 retrieval_weight: float, rating_weight: float, temperature: float | None,
                 remove_accidental_hits: bool, sampling_correction: bool, score: str) -> None:  # fmt: skip
        super().__init__(user_tower, movie_tower, space, biases, mean)
        self.mlp = ConcatHead(head_layers, dropout, out_bias=0.0 if biases else mean, name="head")
        self.retrieval_weight, self.rating_weight = retrieval_weight, rating_weight
        self.sampling_correction, self.remove_accidental_hits = sampling_correction, remove_accidental_hits
        self.score = score
        # The per-example mean softmax loss (TFRS sums over the batch by default), so the two task
        # weights mean the same whatever the batch size: 1 and 1 weigh one rating against one retrieval.
        mean_xent = tf.keras.losses.CategoricalCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.SUM_OVER_BATCH_SIZE
        )
        self.retrieval = tfrs.tasks.Retrieval(
            loss=mean_xent, temperature=temperature, remove_accidental_hits=remove_accidental_hits
        )
        self.rating = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(), metrics=[tf.keras.metrics.RootMeanSquaredError()]
        )
        self.retrieval_tracker = tf.keras.metrics.Mean(name="retrieval_loss")
        self.rating_tracker = tf.keras.metrics.Mean(name="rating_loss")

    def predict_pairs(self, u: Codes, m: Codes, training: bool = False) -> tf.Tensor:
        """``(B,)`` predicted ratings (unclipped)."""
        return self.add_biases(self.mlp(u["vec"], m["vec"], training=training), u, m)

    def score_matrix(self, u: Codes, m: Codes) -> tf.Tensor:
        """``(n_u, n_m)``: ``u . v`` (retrieval score) or the predicted rating."""
        if self.score == "retrieval":
            return tf.matmul(u["vec"], m["vec"], transpose_b=True)
        return self.add_biases(self.mlp.matrix(u["vec"], m["vec"]), u, m, matrix=True)

    def task_losses(
        self, features: dict[str, tf.Tensor], training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(retrieval loss, rating loss) of one batch, unweighted."""
        u, m = self.encode_users(features, training), self.encode_movies(features, training)
        probability = features.get(SAMPLING_PROBABILITY) if self.sampling_correction else None
        retrieval = self.retrieval(
            u["vec"], m["vec"], candidate_sampling_probability=probability,
            candidate_ids=features[S.MOVIE_ID] if self.remove_accidental_hits else None,
            compute_metrics=False,
        )  # fmt: skip
        rating = self.rating(labels=features[TARGET], predictions=self.predict_pairs(u, m, training))
        return retrieval, rating

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        retrieval, rating = self.task_losses(features, training)
        if training:
            self.retrieval_tracker.update_state(retrieval)
            self.rating_tracker.update_state(rating)
        return self.retrieval_weight * retrieval + self.rating_weight * rating


@register
class MultitaskRecommender(TowerRecommender):
    """TFRS multitask: retrieval + rating on shared towers (module docstring). ``predict`` = the rating;
    ``score`` (top-N) = the retrieval dot product ``u . v`` unless ``model.params.score: rating``."""

    name = "multitask"
    predicts_ratings: ClassVar[bool] = True
    Params = MultitaskParams
    # Settings that keep the contract tests fast on tiny data (tests/models/test_contract.py).
    contract_params: ClassVar[dict[str, Any]] = {"head_layers": [16]}

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        check_same_width(config, "multitask's retrieval task")
        self.score_is_prediction = self.params.score == "rating"

    def _targets(self, train: pd.DataFrame) -> dict[str, np.ndarray]:
        probability = pd.Series(self.popularity, index=self.catalogue).reindex(train[S.MOVIE_ID].to_numpy())
        return {
            TARGET: train[S.RATING].to_numpy(np.float32),
            SAMPLING_PROBABILITY: np.maximum(probability.to_numpy(np.float32), 1e-8),
        }

    def _build_model(self) -> MultitaskModel:
        user_tower, movie_tower = self._towers()
        m, p = self.config["model"], self.params
        model = MultitaskModel(
            user_tower, movie_tower, self.space, list(p.head_layers), m["dropout"], p.biases, self.mu,
            p.retrieval_weight, p.rating_weight, m["temperature"], m["remove_accidental_hits"],
            m["sampling_correction"], p.score,
        )  # fmt: skip
        return self._compile_and_build(model)

    @property
    def serves_dot_product(self) -> bool:
        return not self.score_is_prediction

    def serving_parts(self) -> ServingParts:
        """Ranking by retrieval: dot form (the user tower over in-graph features, the movie tower's
        vectors; request features too when the user tower reads a cold-start feature). Ranking by
        rating: the scorer form of every tower model. Either way the rating head is the ranking module."""
        if not self.serves_dot_product:
            return super().serving_parts()
        tower = self.model.user_tower
        cold = FeatureQuery(tower, self.space) if self.space.has_cold_start_user_features else None
        return ServingParts(
            query=TowerQuery(self.space, tower), candidates=self.movie_embeddings(), feature_query=cold,
            ranking=self.write_ranking,
        )  # fmt: skip


class DNNMultiEmbeddingModel(TowerModel):
    """Towers -> per-side projection to ``joint_dim`` -> classification head over ``[p_u, p_v]``, plus
    ``gamma`` x the cosine-embedding loss between ``p_u`` and ``p_v``.

    Codes carry ``vec`` = the projected (joint) embedding. ``compute_loss(features)``: raw features plus
    ``target`` (B,) 0/1 labels. ``predict_pairs`` -> logits (B,); ``score_matrix`` -> cosines (n_u, n_m).
    """

    def __init__(self, user_tower: tf.keras.Model, movie_tower: tf.keras.Model, space: FeatureSpace,
                 joint_dim: int, head_layers: list[int], dropout: float, positive_rate: float,
                 gamma: float, margin: float) -> None:  # fmt: skip
        super().__init__(user_tower, movie_tower, space, biases=False)
        self.user_projection = tf.keras.layers.Dense(joint_dim, name="user_projection")
        self.movie_projection = tf.keras.layers.Dense(joint_dim, name="movie_projection")
        logit = float(np.log(max(positive_rate, 1e-4) / max(1 - positive_rate, 1e-4)))
        self.mlp = ConcatHead(head_layers, dropout, out_bias=logit, name="head")
        self.gamma, self.margin = gamma, margin
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
            metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")],
        )
        self.cosine_tracker = tf.keras.metrics.Mean(name="cosine_loss")

    def encode_users(self, features: dict[str, tf.Tensor], training: bool = False) -> Codes:
        codes = super().encode_users(features, training)
        return {**codes, "vec": self.user_projection(codes["vec"])}

    def encode_movies(self, features: dict[str, tf.Tensor], training: bool = False) -> Codes:
        codes = super().encode_movies(features, training)
        return {**codes, "vec": self.movie_projection(codes["vec"])}

    def predict_pairs(self, u: Codes, m: Codes, training: bool = False) -> tf.Tensor:
        return self.mlp(u["vec"], m["vec"], training=training)

    def score_matrix(self, u: Codes, m: Codes) -> tf.Tensor:
        a, b = tf.math.l2_normalize(u["vec"], -1), tf.math.l2_normalize(m["vec"], -1)
        return tf.matmul(a, b, transpose_b=True)

    def cosine_loss(self, u: Codes, m: Codes, labels: tf.Tensor) -> tf.Tensor:
        """Mean of ``1 - cos`` over liked pairs and ``max(0, cos - margin)`` over the others."""
        cos = tf.reduce_sum(tf.math.l2_normalize(u["vec"], -1) * tf.math.l2_normalize(m["vec"], -1), -1)
        return tf.reduce_mean(labels * (1.0 - cos) + (1.0 - labels) * tf.nn.relu(cos - self.margin))

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        u, m = self.encode_users(features, training), self.encode_movies(features, training)
        labels = features[TARGET]
        bce = self.task(labels=labels, predictions=self.predict_pairs(u, m, training))
        cosine = self.cosine_loss(u, m, labels)
        if training:
            self.cosine_tracker.update_state(cosine)
        return bce + self.gamma * cosine


@register
class DNNMultiEmbeddingRecommender(TowerRecommender):
    """Seed 003's DNN with multi-layer embeddings (module docstring): ``predict`` = P(rating >= threshold)
    from the classification head; ``score`` (top-N, vector search) = cosine of the joint embeddings."""

    name = "dnn_multi_embedding"
    predicts_ratings: ClassVar[bool] = False
    output: ClassVar[str] = "probability"
    score_is_prediction: ClassVar[bool] = False
    Params = DNNMultiEmbeddingParams
    contract_params: ClassVar[dict[str, Any]] = {"joint_dim": 16, "head_layers": [16]}

    def _targets(self, train: pd.DataFrame) -> dict[str, np.ndarray]:
        return {TARGET: (train[S.RATING].to_numpy() >= self.threshold).astype(np.float32)}

    @property
    def threshold(self) -> float:
        return float(self.params.threshold)

    def _build_model(self) -> DNNMultiEmbeddingModel:
        user_tower, movie_tower = self._towers()
        m, p = self.config["model"], self.params
        model = DNNMultiEmbeddingModel(
            user_tower, movie_tower, self.space, p.joint_dim, list(p.head_layers), m["dropout"],
            self.positive_rate, p.gamma, p.margin,
        )  # fmt: skip
        return self._compile_and_build(model)

    def _to_output(self, user_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))  # logit -> probability

    def extra_metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        """Accuracy (threshold 0.5), ROC AUC and log-loss of the head's probability."""
        return self.classification_metrics(frame)
