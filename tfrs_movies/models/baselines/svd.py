"""Truncated SVD of the bias-removed rating matrix (missing entries = 0 residual), one shot.

``R[u, i] = r(u, i) - mu - b_u - b_i`` on the observed entries and 0 elsewhere, a sparse (n_users, n_movies)
matrix; its top ``rank`` singular triplets give ``P = U S`` and ``Q = V``, so a prediction is
``mu + b_u + b_i + (U S V^T)[u, i]``, clipped. Treating the missing entries as 0 shrinks the residual
towards the biases where a user or movie has few ratings, which is all the regularisation it has:
``rank`` is the one knob (plus the bias regularisation). Defaults: the best of a grid on a validation
split carved from ML-100K's u1.base.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from tfrs_movies.models.baselines.biases import BiasedRatingModel, FactorBiasParams, non_negative
from tfrs_movies.models.baselines.memory import require
from tfrs_movies.models.registry import register


def truncated_svd(
    matrix: sp.csr_matrix, rank: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``rank`` singular triplets of an (n, m) sparse matrix, largest first: U (n, k), s (k,), V (m, k).

    ``rank`` is capped at min(n, m). ARPACK (``svds``) cannot return all of them, so a rank that close to
    full uses a dense SVD (only ever the case for small matrices).
    """
    n, m = matrix.shape
    k = max(0, min(rank, n, m))
    if k == 0:
        return np.zeros((n, 0)), np.zeros(0), np.zeros((m, 0))
    if k >= min(n, m) - 1:
        u, s, vt = np.linalg.svd(matrix.toarray(), full_matrices=False)
        return u[:, :k], s[:k], vt[:k].T
    # A fixed start vector makes ARPACK (and so the model) deterministic for a given seed.
    v0 = np.random.default_rng(seed).standard_normal(min(n, m))
    u, s, vt = svds(matrix.astype(np.float64), k=k, v0=v0)
    order = np.argsort(-s)  # svds returns ascending singular values
    return u[:, order], s[order], vt[order].T


def svd_bytes(n: int, m: int, rank: int) -> int:
    """Peak memory of :func:`truncated_svd` beyond the sparse matrix: the dense matrix, U and V^T (and
    LAPACK's as much again) on the dense path; else ARPACK's 2k + 1 Lanczos vectors, U and V."""
    k = max(0, min(rank, n, m))
    if k >= min(n, m) - 1:
        return 16 * (n * m + (n + m) * min(n, m))
    return 8 * (2 * k + 1 + k) * (n + m)


@register
class SVDRecommender(BiasedRatingModel):
    """Biases + rank-``rank`` truncated SVD of the residual matrix (``mu + b_u + b_i + U S V^T``)."""

    name = "svd"

    @dataclass(frozen=True)
    class Params(FactorBiasParams):
        rank: int = 10

        def validate(self) -> None:
            non_negative(self, "rank", "reg_user", "reg_movie", "bias_iterations")

    def _fit_factors(
        self, rows: np.ndarray, cols: np.ndarray, residual: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n, m = len(self.users), len(self.catalogue)
        require(svd_bytes(n, m, self.params.rank), f"SVD of rank {self.params.rank} on {n:,} x {m:,}",
                "lower model.params.rank")  # fmt: skip
        matrix = sp.csr_matrix((residual, (rows, cols)), shape=(len(self.users), len(self.catalogue)))
        u, s, v = truncated_svd(matrix, self.params.rank, self.config.get("seed", 0))
        self.history["singular_values"] = s.tolist()
        return u * s, v
