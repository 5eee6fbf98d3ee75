"""Item-based neighbourhood model on baseline residuals (``knn_baseline``; Koren 2008, Surprise's
KNNBaseline with ``pearson_baseline`` similarities between movies).

With ``b_ui = mu + b_u + b_i`` the biases of :mod:`.biases` and ``e_uj = r_uj - b_uj`` the residuals of
the train ratings, a prediction is

    r(u, i) = b_ui + sum_{j in N(i; u)} s_ij e_uj / sum_{j in N(i; u)} s_ij      (clipped to the scale)

where ``N(i; u)`` are the ``k`` movies rated by ``u`` most similar to ``i``, of which only those with
``s_ij > 0`` count (as in Surprise). With fewer than ``min_k`` such neighbours, or none, the prediction is
the baseline ``b_ui``. The similarity is the shrunk Pearson correlation of the residuals over the ``n_ij``
users who rated both movies:

    s_ij = sum_u e_ui e_uj / sqrt(sum_u e_ui^2 * sum_u e_uj^2) * (n_ij - 1) / (n_ij - 1 + shrinkage)

(0 for ``n_ij < 2`` and on the diagonal: a movie is not its own neighbour). Unknown users and movies
fall back to the biases (``mu + b_i``, ``mu + b_u``, ``mu``), as every classic rating baseline here.

Shapes: the similarity is a dense ``(N, N)`` float32 matrix over the catalogue, built from sparse
products (``E^T E``, ``(E*E)^T M``, ``M^T M`` with ``E`` the residual and ``M`` the rated
``(users, N)`` matrices); its memory is stated against the budget before it is allocated. Scoring loops
over users (never over ratings): for each user, the similarities of the wanted movies to the movies they
rated, the top ``k`` by ``argpartition``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import tensorflow as tf

from tfrs_movies.models.baselines.biases import (
    BiasedRatingModel,
    ClippedScorer,
    FactorBiasParams,
    non_negative,
)
from tfrs_movies.models.baselines.memory import require
from tfrs_movies.models.registry import register
from tfrs_movies.models.serving_parts import SeenRows, ServingParts, UserTable
from tfrs_movies.models.state import State


def similarity_bytes(n_movies: int) -> int:
    """Peak memory of :func:`pearson_baseline`: about five (N, N) float32 matrices (three dense ones, and
    a sparse product on its way to dense)."""
    return 5 * 4 * n_movies * n_movies


def rated_of(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The rated matrix of ``matrix`` (users, N): the same stored entries (explicit zeros included), each 1,
    in ``matrix``'s dtype."""
    rated = matrix.copy()
    rated.data = np.ones_like(rated.data)
    return rated


def pearson_baseline(residual: sp.csr_matrix, shrinkage: float) -> np.ndarray:
    """Shrunk Pearson-baseline similarities between the columns of ``residual`` (users, N), whose
    stored entries are the rated pairs (explicit zeros included); returns (N, N) float32, diagonal 0.

    Computed in float32 and in place, so that at most three dense (N, N) arrays live at once."""
    residual = sp.csr_matrix(residual, dtype=np.float32, copy=True)
    rated = rated_of(residual)
    squares = residual.multiply(residual).tocsr()
    common_squares = (squares.T @ rated).toarray()  # [i, j]: sum over common users of e_ui^2
    denominator = common_squares * common_squares.T
    del common_squares
    np.sqrt(denominator, out=denominator)
    similarity = (residual.T @ residual).toarray()  # sum over common users of e_ui e_uj
    defined = denominator > 0
    np.divide(similarity, denominator, out=similarity, where=defined)
    similarity[~defined] = 0.0
    del denominator, defined
    shrunk = (rated.T @ rated).toarray()  # n_ij
    shrunk -= 1.0
    np.maximum(shrunk, 0.0, out=shrunk)
    denominator = shrunk + shrinkage
    np.maximum(denominator, 1e-12, out=denominator)
    shrunk /= denominator  # (n_ij - 1) / (n_ij - 1 + shrinkage)
    del denominator
    similarity *= shrunk
    del shrunk
    np.fill_diagonal(similarity, 0.0)
    return similarity


def neighbour_terms(similarity: np.ndarray, residuals: np.ndarray, k: int, min_k: int) -> np.ndarray:
    """``(m, r)`` similarities of ``m`` wanted movies to a user's ``r`` rated movies, and their ``(r,)``
    residuals -> ``(m,)`` neighbourhood terms ``sum s e / sum s`` over the top ``k`` positive ones (0 with
    fewer than ``min_k``)."""
    if similarity.shape[1] > k:
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        similarity, residuals = np.take_along_axis(similarity, top, axis=1), residuals[top]
    else:
        residuals = np.broadcast_to(residuals, similarity.shape)
    weights = np.maximum(similarity, 0.0).astype(np.float64)
    total = weights.sum(1)
    enough = (total > 0) & ((weights > 0).sum(1) >= min_k)
    weighted = (weights * residuals).sum(1)
    return np.divide(weighted, total, out=np.zeros_like(total), where=enough)


class NeighbourScorer(tf.Module):
    """``user_id (B,) -> (B, N)``: baseline plus the neighbourhood term (clipped by :class:`ClippedScorer`
    to give :meth:`KNNBaselineRecommender.score`); one user at a time (an (N, N) masked similarity each)."""

    def __init__(self, model: KNNBaselineRecommender):
        super().__init__()
        self.residuals = SeenRows(model.users, model.residual)
        self.rated = SeenRows(model.users, rated_of(model.residual))
        self.baseline = UserTable(
            model.users, model.global_mean + model.user_bias, np.array([model.global_mean])
        )
        self.movie_bias = tf.Variable(np.asarray(model.movie_bias, np.float32), trainable=False)
        self.similarity = tf.Variable(model.similarity, trainable=False)
        self.k = min(int(model.params.k), len(model.catalogue))
        self.min_k = float(model.params.min_k)

    def neighbours(self, row: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        residual, rated = row  # (N,), (N,)
        masked = tf.where(rated[None, :] > 0, self.similarity, -np.inf)
        values, top = tf.math.top_k(masked, self.k)  # (N, k)
        weights = tf.maximum(values, 0.0)
        total = tf.reduce_sum(weights, 1)
        count = tf.reduce_sum(tf.cast(weights > 0, tf.float32), 1)
        weighted = tf.reduce_sum(weights * tf.gather(residual, top), 1)
        enough = (total > 0) & (count >= self.min_k)
        return tf.where(enough, weighted / tf.where(enough, total, 1.0), 0.0)

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        rows = (self.residuals(user_id), self.rated(user_id))
        terms = tf.map_fn(self.neighbours, rows, fn_output_signature=tf.float32)
        return self.baseline(user_id) + self.movie_bias[None, :] + terms


@register
class KNNBaselineRecommender(BiasedRatingModel):
    """Item-based KNN on baseline residuals with shrunk Pearson-baseline similarities; see the module
    docstring. Surprise's KNNBaseline is ``k=40, min_k=1, shrinkage=100`` over biases ``reg_user=15,
    reg_movie=10``."""

    name = "knn_baseline"
    data_state: ClassVar[tuple[str, ...]] = ("residual/",)  # the train ratings less their baseline

    @dataclass(frozen=True)
    class Params(FactorBiasParams):
        k: int = 40
        min_k: int = 1
        shrinkage: float = 100.0
        memory_gb: float = 0.0  # the memory it may take (0: 90 % of MemAvailable)

        def validate(self) -> None:
            non_negative(self, "reg_user", "reg_movie", "bias_iterations", "shrinkage", "memory_gb", "min_k")
            if self.k < 1:
                raise ValueError(f"config key 'model.params.k' must be at least 1, got {self.k!r}")

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.similarity = np.zeros((0, 0), np.float32)
        self.residual = sp.csr_matrix((0, 0))

    # ----- fitting -------------------------------------------------------------------------------
    def _fit_factors(
        self, rows: np.ndarray, cols: np.ndarray, residual: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The (n,) bias-removed train residuals at (user, movie) ``rows``/``cols`` -> ``self.residual``
        (users, N) and ``self.similarity`` (N, N); no factors (the base's zero-width ``P``, ``Q``)."""
        n = len(self.catalogue)
        require(similarity_bytes(n), f"knn_baseline's {n:,} x {n:,} movie similarities",
                "fit a factor model instead, or set model.params.memory_gb if more is free",
                self.params.memory_gb)  # fmt: skip
        # Built from COO without summing anything away: explicit zero residuals stay stored (rated).
        self.residual = sp.csr_matrix((residual, (rows, cols)), shape=(len(self.users), n))
        self.similarity = pearson_baseline(self.residual, self.params.shrinkage)
        return super()._fit_factors(rows, cols, residual)

    # ----- scoring -------------------------------------------------------------------------------
    def _terms(self, user: int, movies: np.ndarray) -> np.ndarray:
        """(m,) neighbourhood terms of one known user (row of ``self.users``) for ``movies`` (columns)."""
        start, stop = self.residual.indptr[user], self.residual.indptr[user + 1]
        rated, residuals = self.residual.indices[start:stop], self.residual.data[start:stop]
        if not len(rated):
            return np.zeros(len(movies))
        return neighbour_terms(
            self.similarity[np.ix_(movies, rated)], residuals, self.params.k, self.params.min_k
        )

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        every = np.arange(len(self.catalogue))
        terms = np.stack([self._terms(int(u), every) for u in user_index]) if len(user_index) else 0.0
        scores = self.global_mean + self.user_bias[user_index, None] + self.movie_bias[None, :] + terms
        return np.clip(scores, *self.rating_scale).astype(np.float32)

    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """(n,) predicted ratings: the biases' prediction plus, for a known user and movie, the
        neighbourhood term; pairs are grouped by user."""
        out = super().predict(user_ids, movie_ids).astype(np.float64)  # clipped biases (no factors)
        rows = pd.Index(self.users).get_indexer(np.asarray(user_ids).astype(np.int64))
        cols = pd.Index(self.catalogue).get_indexer(np.asarray(movie_ids).astype(np.int64))
        both = np.flatnonzero((rows >= 0) & (cols >= 0))
        if not len(both):
            return out.astype(np.float32)
        order = both[np.argsort(rows[both], kind="stable")]  # the known pairs, grouped by user
        base = self.global_mean + self.user_bias[rows[order]] + self.movie_bias[cols[order]]
        users, starts = np.unique(rows[order], return_index=True)
        terms = np.concatenate([
            self._terms(int(u), cols[order[a:b]])
            for u, a, b in zip(users, starts, [*starts[1:], len(order)], strict=True)
        ])  # fmt: skip
        out[order] = np.clip(base + terms, *self.rating_scale)
        return out.astype(np.float32)

    # ----- persistence ---------------------------------------------------------------------------
    def _state(self) -> State:
        state = super()._state()
        state["similarity"] = np.asarray(self.similarity, np.float32)
        residual = self.residual
        return state.nest("residual", State.of({
            "indptr": residual.indptr.astype(np.int64), "indices": residual.indices.astype(np.int64),
            "data": residual.data.astype(np.float64),
        }))  # fmt: skip

    def _restore(self, state: State) -> None:
        super()._restore(state)
        self.similarity = state["similarity"].astype(np.float32)
        residual = state.child("residual")
        shape = (len(self.users), len(self.catalogue))
        self.residual = sp.csr_matrix(
            (residual["data"], residual["indices"], residual["indptr"]), shape=shape
        )

    # ----- serving -------------------------------------------------------------------------------
    def serving_parts(self) -> ServingParts:
        """Scorer form: each user's residual and rated rows (sparse, densified in-graph), the top ``k``
        rated neighbours of every movie by ``tf.math.top_k`` over the masked similarities, plus the
        biases, clipped as :meth:`score` is. An unknown user has no rated movies: ``mu + b_i``."""
        return ServingParts(scorer=ClippedScorer(NeighbourScorer(self), *self.rating_scale))
