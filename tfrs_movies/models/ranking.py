"""TFRS ranking models over the two feature towers: one model, four heads (``model.params.head``).

The user and movie towers are the shared :class:`~tfrs_movies.models.towers.FeatureTower` s (ids plus
whatever ``model.user_features`` / ``model.movie_features`` the dataset has); a head turns the two tower
outputs ``u`` ``(B, d)`` and ``v`` ``(B, d')`` into one value per pair, trained with TFRS's ``Ranking`` task:

- ``cosine`` (seed 000): ``cos(u, v)`` regressed on per-user normalised ratings (centred on the user's
  mean, scaled into [-1, 1], :class:`~tfrs_movies.features.normalization.UserRatingNormalizer`) with
  ``model.params.loss`` ``mse`` or ``mae``; predictions are mapped back with the exact inverse, and
  ``extra_metrics`` adds ``rmse_normalized`` / ``mae_normalized`` (the scale seed 000 reported on).
- ``dot_sigmoid`` (seed 002, Netflix): ``low + (high - low) * sigmoid(u . v)``, MSE.
- ``concat`` (seed 003): ``[u, v]`` into a dense regression head (``model.params.head_layers``), MSE.
- ``classification``: the ``concat`` head as a logit, label ``rating >= model.params.threshold``, binary
  cross-entropy. Its output is a probability, not a rating, so it is its own registered model,
  ``rating_classifier`` (``extra_metrics``: accuracy, AUC, log-loss).

``model.params.biases`` adds a user bias, a movie bias and a global term to the head's output (inside
the sigmoid / logit for ``dot_sigmoid`` and ``classification``). ``tag_ranking`` is seed 001's ranking
model: user, movie and tag embeddings into the ``concat`` head.

Shared by every tower model here and in :mod:`tfrs_movies.models.multitask` (:class:`TowerRecommender`):

- top-N ``score`` runs the movie tower once per scoring pass (cached until the weights change) and the
  head over all (user, movie) pairs in batches; ``predict`` is clipped to the rating scale;
- unknown users and movies never fail: a user without train ratings (or a movie without any) goes
  through the towers with its id replaced by the out-of-vocabulary slot when its tower has side
  features (demographics, genres...: the cold-start path; ``model.params.id_dropout`` trains that
  slot), and otherwise gets the damped baseline (global mean + the known bias) for ratings, or the
  popularity ranking for top-N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies import schema as S
from tfrs_movies.evaluation.metrics import binary_classification, mae, rmse
from tfrs_movies.features.normalization import UserRatingNormalizer
from tfrs_movies.features.pipeline import training_dataset
from tfrs_movies.features.preprocessing import id_lookup, position_lookup
from tfrs_movies.features.side import FeatureSpace, lookup_tables
from tfrs_movies.models.base import ModelParams, Recommender
from tfrs_movies.models.mf import MeanLossModel, fit_baseline
from tfrs_movies.models.registry import register
from tfrs_movies.models.retrieval import build_towers
from tfrs_movies.models.serving_parts import ServingParts
from tfrs_movies.models.state import State, keras_weights, set_keras_weights
from tfrs_movies.models.tasks import GlobalBatchLoss, global_batch_share
from tfrs_movies.training.fit import ValidationEarlyStopping, fit_keras
from tfrs_movies.training.optimizers import make_optimizer

TARGET = "target"  # the training label of a batch: rating, normalised rating or 0/1, (B,) float32
OOV = ""  # an id no lookup knows: it lands in the out-of-vocabulary slot (index 0)
HEADS = ("cosine", "dot_sigmoid", "concat", "classification")
LOSSES = ("mse", "mae")
CLASSIFICATION_METRICS = ("auc", "accuracy", "log_loss")  # early-stopping metrics of classifiers
# How a head's raw output becomes ``predict``'s value (see TowerRecommender.output_transform).
IDENTITY, USER_NORMALIZER, SIGMOID = "identity", "user_normalizer", "sigmoid"
Codes = dict[str, tf.Tensor]  # what a tower side hands the head: "vec" (n, d), "bias" (n,)


def tower_width(config: dict[str, Any], side: str) -> int:
    """The output width of the ``side`` ("user" / "movie") tower a config describes."""
    m = config["model"]
    layers = m[f"{side}_layers"]
    return int(layers[-1]) if layers else int(m["embedding_dim"])


def check_same_width(config: dict[str, Any], why: str) -> None:
    """Dot products and cosines need towers of equal width: say which keys disagree."""
    from tfrs_movies.config import ConfigError

    user, movie = tower_width(config, "user"), tower_width(config, "movie")
    if user != movie:
        raise ConfigError(
            f"{why} needs towers of the same width: model.user_layers ends in {user}, "
            f"model.movie_layers in {movie} (or set both from model.embedding_dim)"
        )


@dataclass(frozen=True)
class TowerParams(ModelParams):
    """Settings every feature-tower model shares."""

    # Share of training ids replaced by the OOV id, so the OOV slot learns a cold-start representation.
    id_dropout: float = 0.0

    def validate(self) -> None:
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError(
                f"config key 'model.params.id_dropout' must be in [0, 1), got {self.id_dropout!r}"
            )


@dataclass(frozen=True)
class HeadParams(TowerParams):
    """The ranking heads' shared settings."""

    biases: bool = True
    head_layers: list[int] = field(default_factory=lambda: [64, 32])  # dense head (concat, classification)
    output_l2: float = 0.0  # per-example L2 on tower outputs and biases

    def validate(self) -> None:
        super().validate()
        if self.output_l2 < 0:
            raise ValueError(f"config key 'model.params.output_l2' must be >= 0, got {self.output_l2!r}")
        if any(width < 1 for width in self.head_layers):
            raise ValueError(
                f"config key 'model.params.head_layers' must hold positive widths, got {self.head_layers!r}"
            )


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"config key 'model.params.loss' must be one of {list(LOSSES)}, got {loss!r}")


@dataclass(frozen=True)
class RankingParams(HeadParams):
    head: str = "concat"  # cosine | dot_sigmoid | concat
    loss: str = "mse"  # mse | mae

    def validate(self) -> None:
        super().validate()
        if self.head == "classification":
            raise ValueError(
                "config key 'model.params.head': 'classification' predicts a probability, not a rating: "
                "use model.name: rating_classifier"
            )
        if self.head not in HEADS[:3]:
            raise ValueError(
                f"config key 'model.params.head' must be one of {list(HEADS[:3])}, got {self.head!r}"
            )
        _check_loss(self.loss)


@dataclass(frozen=True)
class ClassifierParams(HeadParams):
    threshold: float = 4.0  # label: rating >= threshold


@dataclass(frozen=True)
class TagRankingParams(HeadParams):
    loss: str = "mse"

    def validate(self) -> None:
        super().validate()
        _check_loss(self.loss)


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


class ConcatHead(tf.keras.layers.Layer):
    """``[u, v]`` -> ReLU layers ``widths`` (dropout between) -> one linear unit.

    ``call(u, v)``: aligned pairs ``(B, du)``, ``(B, dv)`` -> ``(B,)``. ``matrix(u, v)``: every pair
    ``(n_u, du)`` x ``(n_m, dv)`` -> ``(n_u, n_m)``, without materialising the concatenation: the first
    layer splits into ``u W_u`` and ``v W_v + b``, so its cost is paid once per user and per movie.
    """

    def __init__(self, widths: list[int], dropout: float = 0.0, out_bias: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = [tf.keras.layers.Dense(w, activation="relu") for w in widths]
        self.dropout = tf.keras.layers.Dropout(dropout) if dropout > 0 else None
        self.out = tf.keras.layers.Dense(1, bias_initializer=tf.keras.initializers.Constant(out_bias))

    def call(self, u: tf.Tensor, v: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = tf.concat([u, v], axis=-1)
        for layer in self.hidden:
            x = layer(x)
            if self.dropout is not None:
                x = self.dropout(x, training=training)
        return tf.squeeze(self.out(x), -1)

    def matrix(self, u: tf.Tensor, v: tf.Tensor, chunk: int = 64) -> tf.Tensor:
        first = self.hidden[0] if self.hidden else self.out
        du = u.shape[-1]
        a = tf.matmul(u, first.kernel[:du])  # (n_u, h)
        b = tf.matmul(v, first.kernel[du:]) + first.bias  # (n_m, h)
        if not self.hidden:
            return a + tf.transpose(b)
        n_m = tf.shape(v)[0]

        def block(part: tf.Tensor) -> tf.Tensor:  # (n, h) users' first-layer halves -> (n, n_m)
            x = first.activation(part[:, None, :] + b[None, :, :])
            n = tf.shape(x)[0]
            x = tf.reshape(x, (-1, x.shape[-1]))
            for layer in self.hidden[1:]:
                x = layer(x)
            return tf.reshape(self.out(x), (n, n_m))

        if u.shape[0] is None:  # traced with an unknown batch (a SavedModel): one user at a time
            return tf.map_fn(lambda row: block(row[None, :])[0], a,
                             fn_output_signature=tf.TensorSpec([None], a.dtype))  # fmt: skip
        rows = [block(a[start : start + chunk]) for start in range(0, int(u.shape[0]), chunk)]
        return tf.concat(rows, 0) if rows else tf.zeros((0, n_m))


class BiasTerms(tf.keras.layers.Layer):
    """One learned scalar per id (``(B,)`` strings -> ``(B,)``), zero-initialised; OOV ids share slot 0."""

    def __init__(self, vocabulary: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lookup = id_lookup(vocabulary)
        self.table = tf.keras.layers.Embedding(
            self.lookup.vocabulary_size(), 1, embeddings_initializer="zeros"
        )

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        return tf.squeeze(self.table(self.lookup(ids)), -1)


class TowerModel(MeanLossModel):
    """Base of the Keras models: two towers and optional biases; subclasses add heads and losses.

    ``encode_users(features)`` / ``encode_movies(features)``: raw features -> :data:`Codes`;
    ``predict_pairs(u, m)`` -> ``(B,)`` and ``score_matrix(u, m)`` -> ``(n_u, n_m)`` in the serving
    space the recommender maps to its output (rating, normalised rating, logit...).
    """

    def __init__(self, user_tower: tf.keras.Model, movie_tower: tf.keras.Model, space: FeatureSpace,
                 biases: bool, global_init: float = 0.0, output_l2: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.user_tower, self.movie_tower = user_tower, movie_tower
        self.biases = biases
        if biases:
            self.user_bias = BiasTerms(space.users, name="user_bias")
            self.movie_bias = BiasTerms(space.movies, name="movie_bias")
            self.global_term = tf.Variable(global_init, dtype=tf.float32, name="global_term")
        self.output_l2 = output_l2

    def encode_users(self, features: dict[str, tf.Tensor], training: bool = False) -> Codes:
        vec = self.user_tower(features, training=training)
        bias = self.user_bias(features[S.USER_ID]) if self.biases else tf.zeros(tf.shape(vec)[:1])
        return {"vec": vec, "bias": bias}

    def encode_movies(self, features: dict[str, tf.Tensor], training: bool = False) -> Codes:
        vec = self.movie_tower(features, training=training)
        bias = self.movie_bias(features[S.MOVIE_ID]) if self.biases else tf.zeros(tf.shape(vec)[:1])
        return {"vec": vec, "bias": bias}

    def add_biases(self, out: tf.Tensor, u: Codes, m: Codes, matrix: bool = False) -> tf.Tensor:
        if not self.biases:
            return out
        if matrix:
            return out + u["bias"][:, None] + m["bias"][None, :] + self.global_term
        return out + u["bias"] + m["bias"] + self.global_term

    def penalty(self, u: Codes, m: Codes) -> tf.Tensor:
        """Per-example L2 of the tower outputs and biases (each rating shrinks what it touches)."""
        if self.output_l2 <= 0:
            return tf.constant(0.0)
        total = tf.reduce_sum(u["vec"] ** 2, -1) + tf.reduce_sum(m["vec"] ** 2, -1)
        total += u["bias"] ** 2 + m["bias"] ** 2
        return self.output_l2 * tf.reduce_mean(total)

    def predict_pairs(self, u: Codes, m: Codes, training: bool = False) -> tf.Tensor:
        raise NotImplementedError

    def score_matrix(self, u: Codes, m: Codes) -> tf.Tensor:
        raise NotImplementedError


# The batch mean of (batch,) targets and predictions: Keras losses take the mean over the last axis, so
# no reduction is left (and Keras refuses AUTO / SUM_OVER_BATCH_SIZE under a distribution strategy).
_BATCH_MEAN = tf.keras.losses.Reduction.NONE


class RankingModel(GlobalBatchLoss, TowerModel):
    """A TFRS ranking model: one head (see the module docstring) and the ``Ranking`` task.

    ``compute_loss(features)``: a batch of raw features plus ``target`` ``(B,)`` float32 (the rating,
    the normalised rating for ``cosine``, or the 0/1 label for ``classification``).
    """

    def __init__(self, user_tower: tf.keras.Model, movie_tower: tf.keras.Model, space: FeatureSpace,
                 head: str, loss: str, biases: bool, head_layers: list[int], dropout: float,
                 rating_scale: tuple[float, float], target_mean: float,
                 output_l2: float = 0.0) -> None:  # fmt: skip
        low, high = rating_scale
        if head == "dot_sigmoid":  # the global term lives inside the sigmoid: start at the mean rating
            init = _logit((target_mean - low) / (high - low))
        elif head == "classification":
            init = _logit(target_mean)
        else:
            init = target_mean
        super().__init__(user_tower, movie_tower, space, biases, init, output_l2)
        self.head, self.low, self.high = head, low, high
        if head in ("concat", "classification"):
            self.mlp = ConcatHead(head_layers, dropout, out_bias=0.0 if biases else init, name="head")
        if head == "classification":
            task_loss = tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=_BATCH_MEAN)
            metrics = [tf.keras.metrics.AUC(from_logits=True, name="auc")]
        else:
            task_loss = (
                tf.keras.losses.MeanSquaredError(reduction=_BATCH_MEAN)
                if loss == "mse"
                else tf.keras.losses.MeanAbsoluteError(reduction=_BATCH_MEAN)
            )
            metrics = [tf.keras.metrics.RootMeanSquaredError()]
        self.task = tfrs.tasks.Ranking(loss=task_loss, metrics=metrics)

    def _raw(self, u: Codes, m: Codes, matrix: bool, training: bool = False) -> tf.Tensor:
        if self.head == "cosine":
            a, b = tf.math.l2_normalize(u["vec"], -1), tf.math.l2_normalize(m["vec"], -1)
            out = tf.matmul(a, b, transpose_b=True) if matrix else tf.reduce_sum(a * b, -1)
        elif self.head == "dot_sigmoid":
            out = (
                tf.matmul(u["vec"], m["vec"], transpose_b=True)
                if matrix
                else tf.reduce_sum(u["vec"] * m["vec"], -1)
            )
        else:
            out = (
                self.mlp.matrix(u["vec"], m["vec"])
                if matrix
                else self.mlp(u["vec"], m["vec"], training=training)
            )
        out = self.add_biases(out, u, m, matrix)
        if self.head == "dot_sigmoid":
            out = self.low + (self.high - self.low) * tf.sigmoid(out)
        return out

    def predict_pairs(self, u: Codes, m: Codes, training: bool = False) -> tf.Tensor:
        """``(B,)``: rating (dot_sigmoid, concat), normalised rating (cosine) or logit (classification)."""
        return self._raw(u, m, matrix=False, training=training)

    def score_matrix(self, u: Codes, m: Codes) -> tf.Tensor:
        return self._raw(u, m, matrix=True)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        u, m = self.encode_users(features, training), self.encode_movies(features, training)
        predictions = self.predict_pairs(u, m, training=training)
        loss = self.task(labels=features[TARGET], predictions=predictions) + self.penalty(u, m)
        # Under N replicas: this replica's share of the global batch's mean (one device: the mean).
        return global_batch_share(loss, tf.shape(predictions)[0], self.losses)


class ClassificationEarlyStopping(ValidationEarlyStopping):
    """Accuracy, AUC and log-loss of the predicted probability on the validation pairs
    (label ``rating >= threshold``); the metric table gives each one's direction."""

    def __init__(self, recommender: Any, valid: pd.DataFrame, metric: str, patience: int,
                 min_delta: float = 0.0) -> None:  # fmt: skip
        super().__init__(recommender, metric, patience, min_delta)
        self.valid = valid

    def _validation_metrics(self) -> dict[str, float]:
        return self.recommender.extra_metrics(self.valid)


class TowerRecommender(Recommender):
    """Shared machinery of the feature-tower models (see the module docstring).

    Subclasses implement ``_build_model() -> TowerModel`` and ``_targets(train) -> dict`` (the extra
    per-row training features, e.g. ``target``), and may override ``_to_output`` (serving space ->
    ``predict`` output) and ``_fallback`` (the answer for pairs the towers cannot represent).
    """

    Params = TowerParams
    # What predict returns: "rating" (clipped to the scale) or "probability".
    output: ClassVar[str] = "rating"
    # Whether score (top-N) is predict over the catalogue (else e.g. a retrieval dot product / cosine).
    score_is_prediction: ClassVar[bool] = True

    @property
    def serves_dot_product(self) -> bool:
        """Whether :meth:`serving_parts` is in dot form (its index scores every movie by the towers)."""
        return False

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.model: TowerModel | None = None
        self.space: FeatureSpace | None = None
        self.normalizer: UserRatingNormalizer | None = None
        self.mu, self.positive_rate = 0.0, 0.5
        self.b_user, self.b_movie = np.zeros(0), np.zeros(0)
        self.trained_movies = np.zeros(0, dtype=bool)
        self._movie_cache: dict[str, np.ndarray] | None = None

    # ----- features ------------------------------------------------------------------------------
    def _feature_lists(self) -> tuple[list[str], list[str]]:
        m = self.config["model"]
        return list(m["user_features"]), list(m["movie_features"])

    def _cold_users(self) -> bool:
        """Whether the user tower sees anything but the id (so a new user still has a representation)."""
        return self.space.has_cold_start_user_features

    def _cold_movies(self) -> bool:
        return self.space.has_cold_start_movie_features

    def _user_rows(self, user_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Raw user features; ids of users without train ratings go to the OOV slot."""
        rows = self.space.user_rows(user_ids)
        known = pd.Index(self.users).get_indexer(np.asarray(user_ids).astype(np.int64)) >= 0
        rows[S.USER_ID] = np.where(known, rows[S.USER_ID], OOV).astype(object)
        return rows

    def _movie_rows(self, cols: np.ndarray) -> dict[str, np.ndarray]:
        """Raw features of catalogue columns ``cols``; ids of movies without train ratings go to OOV."""
        rows = self.space.movie_rows(self.catalogue[cols])
        rows[S.MOVIE_ID] = np.where(self.trained_movies[cols], rows[S.MOVIE_ID], OOV).astype(object)
        return rows

    # ----- fitting -------------------------------------------------------------------------------
    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        m, cfg = self.config["model"], self.config["train"]
        tf.keras.utils.set_random_seed(self.config["seed"])
        # int32 positions: half the memory of get_indexer's int64 at 100M ratings, the same biases.
        u = pd.Index(self.users).get_indexer(train[S.USER_ID].to_numpy()).astype(np.int32)
        i = pd.Index(self.catalogue).get_indexer(train[S.MOVIE_ID].to_numpy()).astype(np.int32)
        ratings = train[S.RATING].to_numpy(np.float64)
        # The damped baseline answers whatever the towers cannot represent (see the module docstring).
        self.mu, self.b_user, self.b_movie = fit_baseline(u, i, ratings, len(self.users), len(self.catalogue))
        self.trained_movies = np.bincount(i, minlength=len(self.catalogue)) > 0
        self.positive_rate = float(np.mean(ratings >= self.threshold))
        del u, i, ratings  # per-rating arrays: not held through training (2 GB at 100M ratings)
        # Every user of the dataset is in the feature space, so a user absent from train (user_holdout)
        # still brings its demographics; its id is masked to OOV (see _user_rows).
        known_users = dataset.users[S.USER_ID].to_numpy() if len(dataset.users) else np.empty(0, np.int64)
        user_features, movie_features = self._feature_lists()
        self.space = FeatureSpace.build(
            dataset, train, np.union1d(self.users, known_users).astype(np.int64), self.catalogue,
            user_features, movie_features, m["history_length"],
        )  # fmt: skip
        from tfrs_movies.training.distribute import strategy_for

        with strategy_for(self.config).scope():  # train.strategy: variables mirrored over the replicas
            self.model = self._build_model()
        # In memory up to train.stream_above rows, else streamed from index shards (features/pipeline.py).
        data, shards = training_dataset(
            train, self.users, self.catalogue, self._targets(train), cfg["batch_size"],
            seed=self.config["seed"], shuffle_buffer=cfg["shuffle_buffer"], stream_above=cfg["stream_above"],
        )  # fmt: skip
        data = data.map(self.space.join, num_parallel_calls=tf.data.AUTOTUNE)
        rate = float(self.params.id_dropout)
        if rate > 0:
            data = data.map(lambda batch: _drop_ids(batch, rate), num_parallel_calls=tf.data.AUTOTUNE)
        try:
            self.history = self._fit_keras(data, train, valid, **kwargs)
        finally:
            if shards is not None:
                shards.cleanup()

    def _fit_keras(self, data: tf.data.Dataset, train: pd.DataFrame, valid: pd.DataFrame | None,
                   extra_callbacks: list[tf.keras.callbacks.Callback] | None = None,
                   **kwargs: Any) -> dict[str, list[float]]:  # fmt: skip
        """``fit_keras``; classifiers may early-stop on auc / accuracy / log_loss of the validation pairs
        (their stopper first among the callbacks, so that the others read its ``val_`` figures)."""
        stop = self.config["train"]["early_stopping"]
        extra = list(extra_callbacks or [])
        if self.output == "probability" and stop["metric"] in CLASSIFICATION_METRICS and valid is not None:
            stopper = ClassificationEarlyStopping(
                self, valid, stop["metric"], stop["patience"], stop["min_delta"]
            )
            history = fit_keras(self, data, train, None, extra_callbacks=[stopper, *extra], **kwargs)
            if stopper.best_epoch >= 0:
                history["best_epoch"] = [stopper.best_epoch + 1]
            return history
        return fit_keras(self, data, train, valid, extra_callbacks=extra, **kwargs)

    def _targets(self, train: pd.DataFrame) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _build_model(self) -> TowerModel:
        raise NotImplementedError

    def _towers(self) -> tuple[tf.keras.Model, tf.keras.Model]:
        return build_towers(self.config, self.space)

    def _compile_and_build(self, model: TowerModel) -> TowerModel:
        """Compile, then create every weight (same order on fit and on load, so weights round-trip)."""
        train = self.config["train"]
        model.compile(optimizer=make_optimizer(train["optimizer"], train["learning_rate"]))
        u = model.encode_users(self.space.user_rows(self.space.users[:1]))
        m = model.encode_movies(self.space.movie_rows(self.catalogue[:1]))
        model.predict_pairs(u, m)
        return model

    # ----- towers at serving time ----------------------------------------------------------------
    def update_seen(self, ratings: pd.DataFrame) -> None:
        """Seen movies and the watch-history feature both come from ``ratings`` from now on."""
        super().update_seen(ratings)
        self.space = self.space.with_history(ratings)
        self.on_weights_changed()

    def on_weights_changed(self) -> None:
        """Forget the cached movie codes (the training loop calls this after each epoch and on restore)."""
        self._movie_cache = None

    def _movie_codes(self) -> dict[str, np.ndarray]:
        """The movie side of every catalogue movie, ``{"vec": (n_movies, d), "bias": (n_movies,)}``."""
        if self._movie_cache is None:
            parts = [
                self.model.encode_movies(self._movie_rows(np.arange(s, min(s + 4096, len(self.catalogue)))))
                for s in range(0, len(self.catalogue), 4096)
            ]
            self._movie_cache = {k: np.concatenate([p[k].numpy() for p in parts]) for k in parts[0]}
        return self._movie_cache

    def _user_codes(self, user_ids: np.ndarray) -> dict[str, np.ndarray]:
        parts = [
            self.model.encode_users(self._user_rows(user_ids[s : s + 4096]))
            for s in range(0, len(user_ids), 4096)
        ]
        return {k: np.concatenate([p[k].numpy() for p in parts]) for k in parts[0]}

    def _to_output(self, user_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Serving-space values -> the model's output (identity; the cosine head inverts normalisation)."""
        return values

    def _fallback(self, user_pos: np.ndarray, movie_cols: np.ndarray) -> np.ndarray:
        """Output for pairs the towers cannot represent: global mean + known biases, or the positive rate."""
        if self.output == "probability":
            return np.full(len(user_pos), self.positive_rate)
        out = np.full(len(user_pos), self.mu)
        ok = user_pos >= 0
        out[ok] += self.b_user[user_pos[ok]]
        ok = movie_cols >= 0
        out[ok] += np.where(self.trained_movies[movie_cols[ok]], self.b_movie[movie_cols[ok]], 0.0)
        return out

    def _representable(self, user_ids: np.ndarray, movie_cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(user ok, movie ok): trained, or untrained with side features the towers can use."""
        user_pos = pd.Index(self.users).get_indexer(user_ids)
        in_space = pd.Index(self.space.users).get_indexer(user_ids) >= 0
        user_ok = (user_pos >= 0) | (in_space & self._cold_users())
        movie_ok = movie_cols >= 0
        movie_ok[movie_ok] = self.trained_movies[movie_cols[movie_ok]] | self._cold_movies()
        return user_ok, movie_ok

    def _serving_predictions(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """Unclipped outputs per pair: towers where possible, :meth:`_fallback` elsewhere."""
        user_ids = np.asarray(user_ids).astype(np.int64)
        cols = pd.Index(self.catalogue).get_indexer(np.asarray(movie_ids).astype(np.int64))
        user_ok, movie_ok = self._representable(user_ids, cols)
        out = self._fallback(pd.Index(self.users).get_indexer(user_ids), cols).astype(np.float64)
        both = user_ok & movie_ok
        if both.any():
            uniq, inverse = np.unique(user_ids[both], return_inverse=True)
            ucodes, mcodes = self._user_codes(uniq), self._movie_codes()
            values = []
            for s in range(0, int(both.sum()), 65536):
                sl = slice(s, s + 65536)
                u = {k: tf.constant(v[inverse[sl]]) for k, v in ucodes.items()}
                m = {k: tf.constant(v[cols[both][sl]]) for k, v in mcodes.items()}
                values.append(self.model.predict_pairs(u, m).numpy())
            out[both] = self._to_output(user_ids[both], np.concatenate(values))
        return out

    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """The rating (clipped to the rating scale) or the probability, one per (user, movie) pair."""
        out = self._serving_predictions(user_ids, movie_ids)
        out = np.clip(out, *self.rating_scale) if self.output == "rating" else out
        return out.astype(np.float32)

    def _score_rows(self, user_ids: np.ndarray) -> np.ndarray:
        """``(n_users, n_movies)`` scores through the towers, batched; unusable movie columns patched."""
        mcodes = {k: tf.constant(v) for k, v in self._movie_codes().items()}
        out = np.empty((len(user_ids), len(self.catalogue)), dtype=np.float32)
        for s in range(0, len(user_ids), 256):
            ids = user_ids[s : s + 256]
            u = {k: tf.constant(v) for k, v in self._user_codes(ids).items()}
            values = self.model.score_matrix(u, mcodes).numpy()
            if self.score_is_prediction:
                values = self._to_output(np.repeat(ids, values.shape[1]), values.ravel()).reshape(
                    values.shape
                )
            out[s : s + 256] = values
        _, movie_ok = self._representable(user_ids[:1], np.arange(len(self.catalogue)))
        if (~movie_ok).any() and len(user_ids) and not self.serves_dot_product:
            # Movies without train ratings or features. (A score served as a dot product keeps the
            # towers' out-of-vocabulary vector instead, as two-tower retrieval and its index do.)
            bad = np.flatnonzero(~movie_ok)
            if self.score_is_prediction:  # the fallback prediction (global mean + the user's bias)
                pos = pd.Index(self.users).get_indexer(user_ids)
                fallback = self._fallback(np.repeat(pos, len(bad)), np.tile(bad, len(user_ids)))
                out[:, bad] = fallback.reshape(len(user_ids), len(bad))
            else:  # tied with the user's worst representable movie: last place, in the score's range
                worst = out[:, movie_ok].min(axis=1, keepdims=True) if movie_ok.any() else 0.0
                out[:, bad] = worst
        return out

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        """Top-N scores of train users: :meth:`predict` over the catalogue (unclipped), or the model's
        own ranking score (see ``score_is_prediction``)."""
        return self._score_rows(self.users[user_index])

    def _score_unknown(self, user_ids: np.ndarray) -> np.ndarray:
        """Cold start: through the towers when the user tower has side features, else popularity."""
        user_ok, _ = self._representable(np.asarray(user_ids, dtype=np.int64), np.zeros(0, np.int64))
        out = super()._score_unknown(user_ids)
        if user_ok.any():
            out[user_ok] = self._score_rows(np.asarray(user_ids, dtype=np.int64)[user_ok])
        return out

    def movie_embeddings(self) -> np.ndarray:
        return self._movie_codes()["vec"]

    # ----- metrics and persistence ---------------------------------------------------------------
    def classification_metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        """Accuracy / AUC / log-loss of :meth:`predict` (a probability) against ``rating >= threshold``."""
        probability = self.predict(frame[S.USER_ID].to_numpy(), frame[S.MOVIE_ID].to_numpy())
        labels = frame[S.RATING].to_numpy() >= self.threshold
        return binary_classification(labels, probability)

    def _state(self) -> State:
        state = State.of({
            "mu": float(self.mu), "positive_rate": float(self.positive_rate),
            "b_user": np.asarray(self.b_user, np.float64), "b_movie": np.asarray(self.b_movie, np.float64),
            "trained_movies": np.asarray(self.trained_movies, bool),
            "has_normalizer": self.normalizer is not None, **keras_weights(self.model),
        })  # fmt: skip
        if self.normalizer is not None:
            norm = self.normalizer
            state.nest("normalizer", State.of({
                "users": norm.means.index.to_numpy(np.int64), "means": norm.means.to_numpy(np.float64),
                "scales": norm.scales.reindex(norm.means.index).to_numpy(np.float64),
                "global_mean": float(norm.global_mean), "global_scale": float(norm.global_scale),
            }))  # fmt: skip
        return state.nest("space", State.of(self.space.state()))

    def _restore(self, state: State) -> None:
        self.space = FeatureSpace.from_state(state.child("space").flat())
        self.mu, self.positive_rate = float(state["mu"]), float(state["positive_rate"])
        self.b_user, self.b_movie = state["b_user"], state["b_movie"]
        self.trained_movies = state["trained_movies"].astype(bool)
        self.normalizer = None
        if state["has_normalizer"]:
            saved = state.child("normalizer")
            users = pd.Index(saved["users"], name=S.USER_ID)
            self.normalizer = UserRatingNormalizer()
            self.normalizer.means = pd.Series(saved["means"], index=users, name=S.RATING)
            self.normalizer.scales = pd.Series(saved["scales"], index=users, name=S.RATING)
            self.normalizer.global_mean = float(saved["global_mean"])
            self.normalizer.global_scale = float(saved["global_scale"])
        self.model = self._build_model()
        set_keras_weights(self.model, state)
        self.on_weights_changed()

    # ----- serving ---------------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        """The ``rating >= threshold`` label of classifiers (and of the positive rate)."""
        return 4.0

    def output_transform(self) -> str:
        """How the head's raw output becomes :meth:`predict`'s value: IDENTITY, USER_NORMALIZER (the
        cosine head) or SIGMOID (probability outputs)."""
        return SIGMOID if self.output == "probability" else IDENTITY

    def write_ranking(self, out_dir) -> dict[str, Any]:
        """The ranking SavedModel (two-stage serving's second stage) into ``out_dir``; its manifest entry."""
        from tfrs_movies.serving.ranking_export import write_ranking

        return write_ranking(self, out_dir)

    def serving_parts(self) -> ServingParts:
        """Scorer form: the towers and the head over every (user, catalogue movie) pair in-graph, as
        :meth:`score`; the ranking SavedModel as the second stage."""
        return ServingParts(scorer=TowerScorer(self), ranking=self.write_ranking,
                            top_n_is_ranking=self.score_is_prediction)


class TowerScorer(tf.Module):
    """``user_id (B,) -> (B, N)``: :meth:`TowerRecommender.score` in TensorFlow, for known users.

    The user's side features are looked up in-graph (ids without train ratings go to the OOV slot), the
    catalogue's movie codes are stored, the head scores every pair, the output transform applies (the
    per-user normaliser's inverse for the cosine head, a sigmoid for probabilities) and movies the towers
    cannot represent get the model's fallback, as in :meth:`TowerRecommender._score_rows`."""

    def __init__(self, model: TowerRecommender) -> None:
        super().__init__()
        space = model.space
        self.keras = model.model
        lookup, tensors = lookup_tables(space.users, space.user_table)
        self.feature_lookup = lookup
        self.user_tables = {name: tf.Variable(value, trainable=False) for name, value in tensors.items()}
        self.slot = position_lookup(model.users)  # 0: not a train user; else 1 + its row in model.users
        codes = model._movie_codes()
        self.movie_vec = tf.Variable(codes["vec"].astype(np.float32), trainable=False)
        self.movie_bias = tf.Variable(codes["bias"].astype(np.float32), trainable=False)
        self.prediction = bool(model.score_is_prediction)
        self.transform = model.output_transform() if self.prediction else IDENTITY
        if self.transform == USER_NORMALIZER:
            norm = model.normalizer
            users = pd.Index(model.users)
            means = norm.means.reindex(users).fillna(norm.global_mean).to_numpy(np.float64)
            scales = norm.scales.reindex(users).fillna(norm.global_scale).to_numpy(np.float64)
            self.user_mean = tf.Variable(np.append(norm.global_mean, means).astype(np.float32),
                                         trainable=False)  # fmt: skip
            self.user_scale = tf.Variable(np.append(norm.global_scale, scales).astype(np.float32),
                                          trainable=False)  # fmt: skip
        _, movie_ok = model._representable(model.users[:1], np.arange(len(model.catalogue)))
        self.movie_ok = tf.constant(np.asarray(movie_ok, bool))
        self.all_ok = bool(np.all(movie_ok))
        # The fallback of an unrepresentable movie (never trained, so no movie bias): the positive rate,
        # or the global mean plus the user's bias.
        self.probability = model.output == "probability"
        self.positive_rate = float(model.positive_rate)
        self.fallback = tf.Variable(
            np.append(model.mu, model.mu + np.asarray(model.b_user, np.float64)).astype(np.float32),
            trainable=False,
        )

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        rows = self.feature_lookup(user_id)
        features = {name: tf.gather(table, rows) for name, table in self.user_tables.items()}
        slot = self.slot(user_id)
        features[S.USER_ID] = tf.where(slot > 0, user_id, OOV)
        users = self.keras.encode_users(features)
        out = tf.cast(self.keras.score_matrix(users, {"vec": self.movie_vec, "bias": self.movie_bias}),
                      tf.float32)  # fmt: skip
        if self.transform == USER_NORMALIZER:
            out = out * tf.gather(self.user_scale, slot)[:, None] + tf.gather(self.user_mean, slot)[:, None]
        elif self.transform == SIGMOID:
            out = tf.sigmoid(out)
        if self.all_ok:
            return out
        if self.prediction:
            fallback = (
                tf.fill(tf.shape(out), self.positive_rate)
                if self.probability
                else tf.broadcast_to(tf.gather(self.fallback, slot)[:, None], tf.shape(out))
            )
        else:  # tied with the user's worst representable movie
            worst = tf.reduce_min(tf.where(self.movie_ok[None, :], out, np.inf), axis=1, keepdims=True)
            fallback = tf.broadcast_to(worst, tf.shape(out))
        return tf.where(self.movie_ok[None, :], out, fallback)


def _drop_ids(batch: dict[str, tf.Tensor], rate: float) -> dict[str, tf.Tensor]:
    """Replace a ``rate`` share of user and movie ids by the OOV id (after the side features were joined),
    so the OOV slot learns the average user/movie and the side features learn to stand in for the id."""
    out = dict(batch)
    for key in (S.USER_ID, S.MOVIE_ID):
        drop = tf.random.uniform(tf.shape(batch[key])) < rate
        out[key] = tf.where(drop, OOV, batch[key])
    return out


@register
class RankingRecommender(TowerRecommender):
    """Rating prediction with a TFRS ranking model; ``model.params.head`` picks the head (module docstring).

    Params: ``head`` (cosine | dot_sigmoid | concat), ``loss`` (mse | mae), ``biases``, ``head_layers``
    (concat head), ``output_l2`` (per-example L2 on tower outputs and biases), ``id_dropout``.
    Tower layers, embedding size, dropout, batch norm, l2 and side features are the shared ``model.*`` keys.
    """

    name = "ranking"
    predicts_ratings: ClassVar[bool] = True
    Params = RankingParams
    # Settings that keep the contract tests fast on tiny data (tests/models/test_contract.py).
    contract_params: ClassVar[dict[str, Any]] = {"head_layers": [16]}

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.head = self._head()
        if self.head in ("cosine", "dot_sigmoid"):
            check_same_width(config, f"the {self.head} head")

    def _head(self) -> str:
        """The head in use (``model.params.head``; fixed by the subclasses)."""
        return self.params.head

    def _loss(self) -> str:
        return self.params.loss

    def _targets(self, train: pd.DataFrame) -> dict[str, np.ndarray]:
        ratings = train[S.RATING].to_numpy(np.float64)
        if self.head == "cosine":
            self.normalizer = UserRatingNormalizer().fit(train)
            target = self.normalizer.transform(train[S.USER_ID].to_numpy(), ratings)
        elif self.head == "classification":
            target = (ratings >= self.threshold).astype(np.float64)
        else:
            target = ratings
        return {TARGET: target.astype(np.float32)}

    def _target_mean(self) -> float:
        return {"cosine": 0.0, "classification": self.positive_rate}.get(self.head, self.mu)

    def _build_model(self) -> RankingModel:
        user_tower, movie_tower = self._towers()
        m = self.config["model"]
        model = RankingModel(
            user_tower, movie_tower, self.space, self.head, self._loss(), self.params.biases,
            list(self.params.head_layers), m["dropout"], self.rating_scale, self._target_mean(),
            self.params.output_l2,
        )  # fmt: skip
        return self._compile_and_build(model)

    def output_transform(self) -> str:
        return USER_NORMALIZER if self.head == "cosine" else super().output_transform()

    def _to_output(self, user_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        if self.head == "cosine":  # back from the per-user normalised scale, exactly
            return self.normalizer.inverse(user_ids, values)
        if self.head == "classification":
            return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))
        return values

    def extra_metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        """Cosine head: RMSE / MAE on the per-user normalised scale (seed 000's figure), where the
        prediction is the clipped rating mapped through the normaliser."""
        if self.head != "cosine" or self.normalizer is None:
            return {}
        users = frame[S.USER_ID].to_numpy()
        truth = self.normalizer.transform(users, frame[S.RATING].to_numpy())
        predicted = self.normalizer.transform(users, self.predict(users, frame[S.MOVIE_ID].to_numpy()))
        return {"rmse_normalized": rmse(truth, predicted), "mae_normalized": mae(truth, predicted)}


@register
class RatingClassifier(RankingRecommender):
    """``rating >= threshold`` as a binary label, BCE through the concat head; ``predict`` and ``score``
    are the probability. Early stopping may watch ``auc``, ``accuracy`` or ``log_loss`` (validation)."""

    name = "rating_classifier"
    predicts_ratings: ClassVar[bool] = False
    output: ClassVar[str] = "probability"
    Params = ClassifierParams

    def _head(self) -> str:
        return "classification"

    def _loss(self) -> str:
        return "mse"  # unused: the classification head trains with binary cross-entropy

    @property
    def threshold(self) -> float:
        return float(self.params.threshold)

    def extra_metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        """Accuracy (threshold 0.5), ROC AUC and log-loss of the probability."""
        return self.classification_metrics(frame)


@register
class TagRankingRecommender(RankingRecommender):
    """Seed 001's ranking model: user, movie and tag embeddings into a dense rating head.

    The movie tower always gets ``id`` and ``tags`` (the mean of the movie's tag embeddings); on a
    dataset without tags the feature space says so in one line and the model runs on ids.
    """

    name = "tag_ranking"
    Params = TagRankingParams

    def _head(self) -> str:
        return "concat"

    def _feature_lists(self) -> tuple[list[str], list[str]]:
        users, movies = super()._feature_lists()
        return users, list(dict.fromkeys(["id", *movies, "tags"]))
