"""Baseline rating predictor: global mean + user bias + movie bias, fitted by alternating least squares.

Also home of :class:`BiasedRatingModel`, the shared base of every classic rating baseline
(``biases``, ``svd``, ``soft_impute``, ``hard_impute``): a prediction is

    r(u, i) = mu + b_u + b_i + P[u] . Q[i]            (clipped to the rating scale)

where ``P`` (n_users, k) and ``Q`` (n_movies, k) are a low-rank model of the bias-removed residuals
(``k = 0`` for plain biases). Unknown users or movies fall back to their bias being 0 and no factor term,
so the biases are the cold-start answer (as in Surprise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.models.base import ModelParams, Recommender
from tfrs_movies.models.registry import register
from tfrs_movies.models.serving_parts import DotScorer, ServingParts, UserTable
from tfrs_movies.models.state import State

_CHUNK = 65_536  # pairs per block when gathering factor rows (bounds memory on ML-1M and larger)


def rowwise_dot(left: np.ndarray, right: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``out[n] = left[rows[n]] . right[cols[n]]`` for (n,) index arrays, in blocks; returns (n,) float64."""
    out = np.zeros(len(rows), dtype=np.float64)
    if left.shape[1] == 0:
        return out
    for start in range(0, len(rows), _CHUNK):
        stop = start + _CHUNK
        out[start:stop] = np.einsum("ij,ij->i", left[rows[start:stop]], right[cols[start:stop]])
    return out


def fit_biases(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    n_users: int,
    n_movies: int,
    reg_user: float,
    reg_movie: float,
    iterations: int,
) -> tuple[float, np.ndarray, np.ndarray, list[float]]:
    """Minimise sum (r - mu - b_u - b_i)^2 + reg_user |b_u|^2 + reg_movie |b_i|^2 with mu the mean rating.

    Args: ``rows``/``cols``/``values`` (n,) user index, movie index, rating of each observed entry.
    Returns ``(mu, user_bias (n_users,), movie_bias (n_movies,), train RMSE after each alternation)``.
    Each alternation solves the movie biases exactly given the user biases, then the user biases given
    the movie biases (Surprise's order), so the objective never goes up.
    """
    values = np.asarray(values, dtype=np.float64)
    mu = float(values.mean()) if len(values) else 0.0
    user_count = np.bincount(rows, minlength=n_users).astype(np.float64)
    movie_count = np.bincount(cols, minlength=n_movies).astype(np.float64)
    user_bias = np.zeros(n_users)
    movie_bias = np.zeros(n_movies)
    history: list[float] = []

    def solve(index: np.ndarray, deviation: np.ndarray, count: np.ndarray, reg: float) -> np.ndarray:
        total = np.bincount(index, weights=deviation, minlength=len(count))
        denominator = count + reg
        # A user / movie without ratings (possible with reg 0) keeps bias 0 instead of 0 / 0.
        return np.divide(total, denominator, out=np.zeros_like(total), where=denominator > 0)

    for _ in range(iterations):
        movie_bias = solve(cols, values - mu - user_bias[rows], movie_count, reg_movie)
        user_bias = solve(rows, values - mu - movie_bias[cols], user_count, reg_user)
        error = values - mu - user_bias[rows] - movie_bias[cols]
        history.append(float(np.sqrt(np.mean(error**2))) if len(error) else 0.0)
    return mu, user_bias, movie_bias, history


def non_negative(params: ModelParams, *keys: str) -> None:
    for key in keys:
        if getattr(params, key) < 0:
            raise ValueError(f"config key 'model.params.{key}' must be >= 0, got {getattr(params, key)!r}")


@dataclass(frozen=True)
class BiasParams(ModelParams):
    """The bias regularisation every classic rating baseline shares."""

    reg_user: float = 5.0
    reg_movie: float = 2.0

    def validate(self) -> None:
        non_negative(self, "reg_user", "reg_movie")


@dataclass(frozen=True)
class FactorBiasParams(BiasParams):
    """Biases under a low-rank residual: the bias alternations are ``bias_iterations``."""

    bias_iterations: int = 10

    def validate(self) -> None:
        non_negative(self, "reg_user", "reg_movie", "bias_iterations")


class ClippedScorer(tf.Module):
    """``user_id (B,) -> (B, N)``: another scorer's scores clipped to ``[low, high]``."""

    def __init__(self, scorer: tf.Module, low: float, high: float):
        super().__init__()
        self.scorer = scorer
        self.low, self.high = float(low), float(high)

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        return tf.clip_by_value(self.scorer(user_id), self.low, self.high)


class BiasedRatingModel(Recommender):
    """Biases plus an optional low-rank residual ``P Q^T``; subclasses fit the residual in ``_fit_factors``.

    Not registered itself. Params read here: ``reg_user``, ``reg_movie`` and the alternation count named
    by ``_iterations_param``.
    """

    predicts_ratings: ClassVar[bool] = True
    uses_validation: ClassVar[bool] = False
    Params = FactorBiasParams
    _iterations_param: ClassVar[str] = "bias_iterations"

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.global_mean = 0.0
        self.user_bias = np.zeros(0)
        self.movie_bias = np.zeros(0)
        self.user_factors = np.zeros((0, 0))  # P (n_users, k)
        self.movie_factors = np.zeros((0, 0))  # Q (n_movies, k)

    # ----- fitting -------------------------------------------------------------------------------
    def _observed(self, train: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user index, movie index, rating) of every train entry; a repeated pair keeps its mean rating."""
        rows = pd.Index(self.users).get_indexer(train[S.USER_ID].to_numpy())
        cols = pd.Index(self.catalogue).get_indexer(train[S.MOVIE_ID].to_numpy())
        values = train[S.RATING].to_numpy(dtype=np.float64)
        keys = rows.astype(np.int64) * len(self.catalogue) + cols
        unique, inverse = np.unique(keys, return_inverse=True)
        if len(unique) < len(keys):
            values = np.bincount(inverse, weights=values) / np.bincount(inverse)
            rows, cols = np.divmod(unique, len(self.catalogue))
        return rows.astype(np.int64), cols.astype(np.int64), values

    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        rows, cols, values = self._observed(train)
        mu, user_bias, movie_bias, rmse_history = fit_biases(
            rows,
            cols,
            values,
            len(self.users),
            len(self.catalogue),
            self.params.reg_user,
            self.params.reg_movie,
            getattr(self.params, self._iterations_param),
        )
        self.global_mean, self.user_bias, self.movie_bias = mu, user_bias, movie_bias
        self.history["bias_train_rmse"] = rmse_history
        residual = values - (mu + user_bias[rows] + movie_bias[cols])
        self.user_factors, self.movie_factors = self._fit_factors(rows, cols, residual)

    def _fit_factors(
        self, rows: np.ndarray, cols: np.ndarray, residual: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Low-rank model of the (n,) bias-removed residuals: ``P (n_users, k)``, ``Q (n_movies, k)``."""
        return np.zeros((len(self.users), 0)), np.zeros((len(self.catalogue), 0))

    # ----- scoring -------------------------------------------------------------------------------
    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        scores = self.global_mean + self.user_bias[user_index, None] + self.movie_bias[None, :]
        if self.user_factors.shape[1]:
            scores = scores + self.user_factors[user_index] @ self.movie_factors.T
        return np.clip(scores, *self.rating_scale).astype(np.float32)

    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """(n,) predicted ratings, computed per pair; an unknown user or movie contributes bias 0."""
        rows = pd.Index(self.users).get_indexer(np.asarray(user_ids).astype(np.int64))
        cols = pd.Index(self.catalogue).get_indexer(np.asarray(movie_ids).astype(np.int64))
        known_user, known_movie = rows >= 0, cols >= 0
        out = np.full(len(rows), self.global_mean, dtype=np.float64)
        out[known_user] += self.user_bias[rows[known_user]]
        out[known_movie] += self.movie_bias[cols[known_movie]]
        both = known_user & known_movie
        out[both] += rowwise_dot(self.user_factors, self.movie_factors, rows[both], cols[both])
        return np.clip(out, *self.rating_scale).astype(np.float32)

    def movie_embeddings(self) -> np.ndarray | None:
        return self.movie_factors if self.movie_factors.shape[1] else None

    # ----- persistence ---------------------------------------------------------------------------
    def _state(self) -> State:
        return State.of({
            "global_mean": float(self.global_mean), "user_bias": np.asarray(self.user_bias),
            "movie_bias": np.asarray(self.movie_bias), "user_factors": np.asarray(self.user_factors),
            "movie_factors": np.asarray(self.movie_factors),
        })  # fmt: skip

    def _restore(self, state: State) -> None:
        self.global_mean = float(state["global_mean"])
        self.user_bias = state["user_bias"]
        self.movie_bias = state["movie_bias"]
        self.user_factors = state["user_factors"]
        self.movie_factors = state["movie_factors"]

    # ----- serving -------------------------------------------------------------------------------
    def serving_parts(self) -> ServingParts:
        """Scorer form: the biases folded into a dot product, query ``[P_u, 1, mu + b_u]`` and candidate
        ``[Q_i, b_i, 1]``, clipped to the rating scale in-graph as :meth:`score` is.

        Not the dot form itself: the clipping makes ties at the top of the scale that the unclipped
        dot product would order, and composites (the hybrid standardises its members' scores) need the
        model's own numbers. An unknown user's row is ``[0, 1, mu]``: ``mu + b_i``, the cold-start
        prediction of :meth:`predict`.
        """
        n_users, k = self.user_factors.shape
        query = np.concatenate(
            [self.user_factors, np.ones((n_users, 1)), (self.global_mean + self.user_bias)[:, None]], axis=1
        )
        unknown = np.concatenate([np.zeros(k), [1.0, self.global_mean]])
        candidates = np.concatenate(
            [self.movie_factors, self.movie_bias[:, None], np.ones((len(self.movie_bias), 1))], axis=1
        )
        dot = DotScorer(UserTable(self.users, query, unknown=unknown), candidates.astype(np.float32))
        return ServingParts(scorer=ClippedScorer(dot, *self.rating_scale))


@register
class BiasesRecommender(BiasedRatingModel):
    """``mu + b_u + b_i``. Surprise BaselineOnly's ALS is ``reg_user=15, reg_movie=10, iterations=10``
    (RMSE 0.9599 on u1.test, reproduced exactly); the defaults are the best of a grid on a validation split
    carved from ML-100K's u1.base."""

    name = "biases"
    _iterations_param = "iterations"

    @dataclass(frozen=True)
    class Params(BiasParams):
        iterations: int = 10

        def validate(self) -> None:
            non_negative(self, "reg_user", "reg_movie", "iterations")
