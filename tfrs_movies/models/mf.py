"""Matrix factorisation as a network, and the machinery every rating network here shares.

:class:`RatingRecommender` is the base of the rating models (``mf``, ``ncf``, ``cf_mlp``, ``autorec``):

- users and movies are integer positions (``self.users`` / ``self.catalogue``), computed in NumPy;
- a damped baseline (global mean + user bias + movie bias, fitted by a few alternating least-squares
  sweeps as Surprise's ``BaselineOnly`` does) answers every pair whose user is unknown or whose movie
  had no train rating: global mean + whichever bias is known, never an error;
- ``predict`` is clipped to the rating scale; ``score`` (for ranking) is the unclipped predicted rating;
- the Keras weights are saved as NumPy arrays, so a save/load round trip is exact.

:class:`MFRecommender` (``mf``): ``rating = mu + b_u + b_i + p_u . q_i``, trained with TFRS's ``Ranking``
task (MSE) inside ``tfrs.Model.compute_loss``, with per-example L2 on the factors (``model.params.l2``)
and on the biases (``model.params.bias_l2``), as in Funk/Koren SVD. Embedding size: ``model.embedding_dim``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies import schema as S
from tfrs_movies.features.pipeline import make_dataset
from tfrs_movies.features.preprocessing import position_lookup
from tfrs_movies.models.base import ModelParams, Recommender
from tfrs_movies.models.registry import register
from tfrs_movies.models.serving_parts import ServingParts, UserTable
from tfrs_movies.models.state import State, keras_weights, set_keras_weights

USER_INDEX = "user_index"
MOVIE_INDEX = "movie_index"


def fit_baseline(
    users: np.ndarray, movies: np.ndarray, ratings: np.ndarray, n_users: int, n_movies: int,
    reg_user: float = 15.0, reg_movie: float = 10.0, sweeps: int = 10,
) -> tuple[float, np.ndarray, np.ndarray]:  # fmt: skip
    """Global mean and damped user / movie biases by alternating least squares (positions as input)."""
    mu = float(ratings.mean()) if len(ratings) else 0.0
    b_user = np.zeros(n_users)
    b_movie = np.zeros(n_movies)
    user_count = np.bincount(users, minlength=n_users)
    movie_count = np.bincount(movies, minlength=n_movies)
    for _ in range(sweeps):
        b_movie = np.bincount(movies, ratings - mu - b_user[users], n_movies) / (movie_count + reg_movie)
        b_user = np.bincount(users, ratings - mu - b_movie[movies], n_users) / (user_count + reg_user)
    return mu, b_user, b_movie


def make_optimizer(config: dict[str, Any]) -> tf.keras.optimizers.Optimizer:
    from tfrs_movies.training.optimizers import make_optimizer as by_name

    train = config["train"]
    return by_name(train["optimizer"], train["learning_rate"])


@dataclass(frozen=True)
class RatingParams(ModelParams):
    """Settings every rating network shares: after early stopping, train afresh on train + validation
    (``refit``) for the best epoch count times ``refit_epochs_scale``."""

    refit: bool = True
    refit_epochs_scale: float = 1.0

    def validate(self) -> None:
        if self.refit_epochs_scale <= 0:
            scale = self.refit_epochs_scale
            raise ValueError(f"config key 'model.params.refit_epochs_scale' must be positive, got {scale!r}")


def check_non_negative(params: ModelParams, *keys: str) -> None:
    """ValueError naming the first of ``keys`` whose value is negative."""
    for key in keys:
        if getattr(params, key) < 0:
            raise ValueError(f"config key 'model.params.{key}' must be >= 0, got {getattr(params, key)!r}")


class RatingRecommender(Recommender):
    """Shared base of the rating networks (see the module docstring). Subclasses implement
    ``_fit_model`` and ``_predict_known(user_pos, movie_pos)`` (both known and trained)."""

    predicts_ratings: ClassVar[bool] = True
    Params = RatingParams

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.model: tfrs.Model | None = None
        self.mu = 0.0
        self.b_user = np.zeros(0)
        self.b_movie = np.zeros(0)
        self.trained_movies = np.zeros(0, dtype=bool)  # catalogue movies with at least one train rating

    # ----- positions and the baseline -----------------------------------------------------------
    def positions(self, ratings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``self.users`` / ``self.catalogue`` of each row (-1 when unknown)."""
        return (
            pd.Index(self.users).get_indexer(ratings[S.USER_ID].to_numpy()),
            pd.Index(self.catalogue).get_indexer(ratings[S.MOVIE_ID].to_numpy()),
        )

    def known_rows(self, ratings: pd.DataFrame) -> pd.DataFrame:
        """The rows whose user and movie are both in the index (all of train; most of validation)."""
        u, m = self.positions(ratings)
        return ratings[(u >= 0) & (m >= 0)]

    def _fit_baseline(self, train: pd.DataFrame) -> None:
        u, m = self.positions(train)
        self.mu, self.b_user, self.b_movie = fit_baseline(
            u, m, train[S.RATING].to_numpy(np.float64), len(self.users), len(self.catalogue)
        )
        self.trained_movies = np.bincount(m, minlength=len(self.catalogue)) > 0

    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        tf.keras.utils.set_random_seed(self.config["seed"])
        self._fit_baseline(train)
        self._fit_model(train, valid, **kwargs)
        best = self.history.get("best_epoch")
        if self.params.refit and valid is not None and len(valid) and best:
            # Train afresh on all of train (this split's train + validation) for the chosen epoch count.
            full = pd.concat([train, valid], ignore_index=True)
            epochs = max(1, round(best[0] * self.params.refit_epochs_scale))
            first = self.history
            tf.keras.utils.set_random_seed(self.config["seed"])
            self._fit_baseline(full)
            self._fit_model(full, None, epochs=epochs)
            self.history = {**first, **{f"refit_{k}": v for k, v in self.history.items()}}

    def _fit_model(
        self, train: pd.DataFrame, valid: pd.DataFrame | None, epochs: int | None = None, **kwargs: Any
    ) -> None:
        """Build ``self.model`` and train it (``epochs`` overrides ``train.epochs``); sets ``history``."""
        raise NotImplementedError

    def on_weights_changed(self) -> None:
        """Forget any cached predictions (the training loop calls this after each epoch)."""

    # ----- prediction ---------------------------------------------------------------------------
    def _predict_known(self, user_pos: np.ndarray, movie_pos: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_positions(self, user_pos: np.ndarray, movie_pos: np.ndarray) -> np.ndarray:
        """Unclipped predicted ratings for positions (-1 = unknown); the baseline answers unknowns."""
        user_pos = np.asarray(user_pos, dtype=np.int64)
        movie_pos = np.asarray(movie_pos, dtype=np.int64)
        known_user = user_pos >= 0
        known_movie = movie_pos >= 0
        known_movie[known_movie] = self.trained_movies[movie_pos[known_movie]]
        out = np.full(len(user_pos), self.mu, dtype=np.float64)
        out[known_user] += self.b_user[user_pos[known_user]]
        out[known_movie] += self.b_movie[movie_pos[known_movie]]
        both = known_user & known_movie
        if both.any():
            out[both] = self._predict_known(user_pos[both], movie_pos[both])
        return out.astype(np.float32)

    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """Predicted ratings, clipped to the rating scale; unknown users/movies get the baseline."""
        user_pos = pd.Index(self.users).get_indexer(np.asarray(user_ids).astype(np.int64))
        movie_pos = pd.Index(self.catalogue).get_indexer(np.asarray(movie_ids).astype(np.int64))
        return np.clip(self.predict_positions(user_pos, movie_pos), *self.rating_scale).astype(np.float32)

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        n = len(self.catalogue)
        users = np.repeat(np.asarray(user_index, dtype=np.int64), n)
        movies = np.tile(np.arange(n), len(user_index))
        return self.predict_positions(users, movies).reshape(len(user_index), n)

    # ----- persistence --------------------------------------------------------------------------
    def _build_model(self) -> tfrs.Model:
        """A fresh, compiled Keras model with its weights built."""
        raise NotImplementedError

    def _state(self) -> State:
        state = State.of({
            "mu": float(self.mu), "b_user": np.asarray(self.b_user), "b_movie": np.asarray(self.b_movie),
            "trained_movies": np.asarray(self.trained_movies, dtype=bool),
        })  # fmt: skip
        if self.model is not None:
            state.nest("network", State.of(keras_weights(self.model)))
        return state

    def _restore(self, state: State) -> None:
        self.mu = float(state["mu"])
        self.b_user, self.b_movie = state["b_user"], state["b_movie"]
        self.trained_movies = state["trained_movies"].astype(bool)
        network = state.child("network")
        if network.arrays:
            self.model = self._build_model()
            set_keras_weights(self.model, network)
        self.on_weights_changed()

    # ----- serving ------------------------------------------------------------------------------
    def baseline_dot_parts(
        self, user_rows: np.ndarray, movie_rows: np.ndarray, unknown: np.ndarray | None = None
    ) -> ServingParts:
        """Dot form of a network whose known-pair prediction is ``user_rows[u] . movie_rows[i]``, with
        the baseline folded in for movies without train ratings (as :meth:`predict_positions`):
        query ``[user_rows[u], mu + b_u, 1]``, candidate ``[movie_rows[i], 0, 0]`` for a trained
        movie, ``[0, 1, b_i]`` for an untrained one. ``unknown`` is the unknown user's ``user_rows``
        part (its baseline part is ``[mu, 1]``)."""
        user_rows = np.asarray(user_rows, np.float64)
        movie_rows = np.where(self.trained_movies[:, None], np.asarray(movie_rows, np.float64), 0.0)
        untrained = (~self.trained_movies).astype(np.float64)
        query = np.concatenate(
            [user_rows, (self.mu + self.b_user)[:, None], np.ones((len(user_rows), 1))], axis=1
        )
        unknown = np.zeros(user_rows.shape[1]) if unknown is None else np.asarray(unknown, np.float64)
        candidates = np.concatenate(
            [movie_rows, untrained[:, None], (untrained * self.b_movie)[:, None]], axis=1
        )
        return ServingParts(
            query=UserTable(self.users, query, unknown=np.concatenate([unknown, [self.mu, 1.0]])),
            candidates=candidates.astype(np.float32),
        )


class PairRatingRecommender(RatingRecommender):
    """A rating network over (user, movie) pairs, trained on shuffled batches of train ratings."""

    def _features(self, ratings: pd.DataFrame) -> dict[str, np.ndarray]:
        u, m = self.positions(ratings)
        # Index 0 of every embedding table is the unknown slot; positions shift by one.
        return {
            USER_INDEX: (u + 1).astype(np.int32),
            MOVIE_INDEX: (m + 1).astype(np.int32),
            S.RATING: ratings[S.RATING].to_numpy(np.float32),
        }

    def _fit_model(
        self, train: pd.DataFrame, valid: pd.DataFrame | None, epochs: int | None = None, **kwargs: Any
    ) -> None:
        from tfrs_movies.training.fit import fit_keras

        self.model = self._build_model()
        self.on_weights_changed()
        cfg = self.config["train"]
        data = make_dataset(
            self._features(self.known_rows(train)), cfg["batch_size"], shuffle=True,
            seed=self.config["seed"], shuffle_buffer=cfg["shuffle_buffer"],
        )  # fmt: skip
        self.history = fit_keras(self, data, train, valid, epochs=epochs, **kwargs)

    def _predict_known(self, user_pos: np.ndarray, movie_pos: np.ndarray, batch: int = 65536) -> np.ndarray:
        out = []
        for start in range(0, len(user_pos), batch):
            features = {
                USER_INDEX: tf.constant(user_pos[start : start + batch] + 1, tf.int32),
                MOVIE_INDEX: tf.constant(movie_pos[start : start + batch] + 1, tf.int32),
            }
            out.append(self.model(features, training=False).numpy().reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, np.float32)


class PairScorer(tf.Module):
    """``user_id (B,) -> (B, N)``: a pair network evaluated in-graph on every (user, catalogue movie)
    pair, the baseline ``mu + b_u + b_i`` for movies without train ratings (as ``predict_positions``).
    Unknown users get the network's unknown slot (index 0), never an error."""

    def __init__(self, recommender: PairRatingRecommender):
        super().__init__()
        self.lookup = position_lookup(recommender.users)
        self.network = recommender.model
        self.trained = tf.Variable(np.asarray(recommender.trained_movies, bool), trainable=False)
        baseline = np.concatenate([[recommender.mu], recommender.mu + recommender.b_user])
        self.user_baseline = tf.Variable(baseline.astype(np.float32), trainable=False)
        self.movie_baseline = tf.Variable(np.asarray(recommender.b_movie, np.float32), trainable=False)
        self.n_movies = len(recommender.catalogue)

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        rows = self.lookup(user_id)
        batch = tf.shape(rows)[0]
        users = tf.repeat(tf.cast(rows, tf.int32), self.n_movies)
        movies = tf.tile(tf.range(1, self.n_movies + 1, dtype=tf.int32), [batch])
        scores = self.network({USER_INDEX: users, MOVIE_INDEX: movies}, training=False)
        scores = tf.reshape(tf.cast(scores, tf.float32), [batch, self.n_movies])
        baseline = tf.gather(self.user_baseline, rows)[:, None] + self.movie_baseline[None, :]
        return tf.where(self.trained[None, :], scores, baseline)


class MeanLossModel(tfrs.Model):
    """A ``tfrs.Model`` whose logged ``loss`` is the epoch's mean (``tfrs.Model`` logs the last batch's)."""

    def __init__(self) -> None:
        super().__init__()
        self.loss_tracker = tf.keras.metrics.Mean(name="mean_loss")

    def train_step(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        logs = super().train_step(inputs)
        # Each replica's loss is its share of the global-batch mean: weighted so that the tracker's
        # sums across replicas give the mean itself, one step counted once.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.loss_tracker.update_state(logs["total_loss"] * replicas, sample_weight=1.0 / replicas)
        logs = {k: v for k, v in logs.items() if k != self.loss_tracker.name}
        logs["loss"] = self.loss_tracker.result()
        return logs


class MFModel(MeanLossModel):
    """``mu + b_u + b_i + p_u . q_i``; features hold ``user_index`` / ``movie_index`` (batch,) int32
    (0 = unknown) and ``rating`` (batch,) float32."""

    def __init__(self, n_users: int, n_movies: int, dim: int, mean: float, l2: float, bias_l2: float,
                 init_std: float = 0.05) -> None:  # fmt: skip
        super().__init__()

        def init() -> tf.keras.initializers.Initializer:
            return tf.keras.initializers.RandomNormal(stddev=init_std)

        self.user_factors = tf.keras.layers.Embedding(n_users + 1, dim, embeddings_initializer=init())
        self.movie_factors = tf.keras.layers.Embedding(n_movies + 1, dim, embeddings_initializer=init())
        self.user_bias = tf.keras.layers.Embedding(n_users + 1, 1, embeddings_initializer="zeros")
        self.movie_bias = tf.keras.layers.Embedding(n_movies + 1, 1, embeddings_initializer="zeros")
        self.mean = tf.Variable(mean, dtype=tf.float32, name="global_mean")
        self.l2 = l2
        self.bias_l2 = bias_l2
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(), metrics=[tf.keras.metrics.RootMeanSquaredError()]
        )

    def _parts(self, features: dict[str, tf.Tensor]):
        p = self.user_factors(features[USER_INDEX])
        q = self.movie_factors(features[MOVIE_INDEX])
        bu = tf.squeeze(self.user_bias(features[USER_INDEX]), -1)
        bi = tf.squeeze(self.movie_bias(features[MOVIE_INDEX]), -1)
        return p, q, bu, bi

    def call(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        p, q, bu, bi = self._parts(features)
        return self.mean + bu + bi + tf.reduce_sum(p * q, axis=-1)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        p, q, bu, bi = self._parts(features)
        predictions = self.mean + bu + bi + tf.reduce_sum(p * q, axis=-1)
        loss = self.task(labels=features[S.RATING], predictions=predictions)
        # Per-example L2 (each rating regularises the vectors it touches), as in SGD matrix factorisation.
        factors = tf.reduce_sum(p * p, -1) + tf.reduce_sum(q * q, -1)
        return loss + self.l2 * tf.reduce_mean(factors) + self.bias_l2 * tf.reduce_mean(bu * bu + bi * bi)


@register
class MFRecommender(PairRatingRecommender):
    """Biased matrix factorisation (``mf``); see the module docstring."""

    name = "mf"

    @dataclass(frozen=True)
    class Params(RatingParams):
        l2: float = 0.1
        bias_l2: float = 0.001
        init_std: float = 0.05

        def validate(self) -> None:
            super().validate()
            check_non_negative(self, "l2", "bias_l2", "init_std")

    def _build_model(self) -> MFModel:
        p = self.params
        model = MFModel(len(self.users), len(self.catalogue), self.config["model"]["embedding_dim"],
                        self.mu, p.l2, p.bias_l2, p.init_std)  # fmt: skip
        model.compile(optimizer=make_optimizer(self.config))
        model({USER_INDEX: tf.zeros([1], tf.int32), MOVIE_INDEX: tf.zeros([1], tf.int32)})
        return model

    def _vectors(self):
        m = self.model
        return (
            m.user_factors.embeddings.numpy()[1:], m.movie_factors.embeddings.numpy()[1:],
            m.user_bias.embeddings.numpy()[1:, 0], m.movie_bias.embeddings.numpy()[1:, 0],
            float(m.mean.numpy()),
        )  # fmt: skip

    def _predict_known(self, user_pos: np.ndarray, movie_pos: np.ndarray) -> np.ndarray:
        p, q, bu, bi, mean = self._vectors()
        return mean + bu[user_pos] + bi[movie_pos] + np.einsum("ij,ij->i", p[user_pos], q[movie_pos])

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        p, q, bu, bi, mean = self._vectors()
        scores = mean + bu[user_index, None] + bi[None, :] + p[user_index] @ q.T
        untrained = ~self.trained_movies
        scores[:, untrained] = self.mu + self.b_user[user_index, None] + self.b_movie[None, untrained]
        return scores.astype(np.float32)

    def movie_embeddings(self) -> np.ndarray:
        return self.model.movie_factors.embeddings.numpy()[1:]

    def serving_parts(self) -> ServingParts:
        """Dot form: query ``[p_u, 1, mean + b_u]``, candidate ``[q_i, b_i, 1]`` (the network's factors and
        biases), the baseline folded in for movies without train ratings."""
        p, q, bu, bi, mean = self._vectors()
        users = np.concatenate([p, np.ones((len(p), 1)), (mean + bu)[:, None]], axis=1)
        movies = np.concatenate([q, bi[:, None], np.ones((len(q), 1))], axis=1)
        m = self.model
        unknown = np.concatenate([
            m.user_factors.embeddings.numpy()[0], [1.0, mean + m.user_bias.embeddings.numpy()[0, 0]]
        ])  # fmt: skip
        return self.baseline_dot_parts(users, movies, unknown)
