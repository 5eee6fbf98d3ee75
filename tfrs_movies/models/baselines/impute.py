"""Iterative low-rank matrix completion of the bias-removed rating matrix: Soft-Impute and Hard-Impute.

Both complete ``R[u, i] = r(u, i) - mu - b_u - b_i`` (the residual after the regularised biases of
:mod:`.biases`, not merely the global mean, so the low-rank part only has to explain interactions) by
repeating, from ``Z = 0``:

    A = P_obs(R) + P_missing(Z)         (observed entries from the data, the rest from the current Z)
    Z = S(A)                            (a low-rank SVD step)

- Soft-Impute (Mazumder, Hastie & Tibshirani, 2010): ``S`` soft-thresholds the singular values,
  ``d_j = max(s_j - shrinkage, 0)``, keeping at most ``max_rank`` of them. It minimises
  ``1/2 |P_obs(R - Z)|_F^2 + shrinkage |Z|_*``.
- Hard-Impute: ``S`` keeps the top ``rank`` singular triplets unchanged (rank-constrained least squares).

Stopping: ``|Z_new - Z_old|_F^2 / |Z_old|_F^2 < tol`` (Mazumder et al.'s criterion) or ``max_iterations``.
Hard-Impute has no penalty, so run to convergence it overfits sparse ratings; its loose default ``tol``
is early stopping, chosen (with every other default here) by a grid on a validation split carved from
ML-100K's u1.base.

Nothing dense of size (n_users, n_movies) is ever built: with ``Z = U diag(d) V^T``,
``A = E + U diag(d) V^T`` where ``E = P_obs(R - Z)`` is sparse, so ``A @ X`` and ``A^T @ Y`` cost one sparse
product plus thin dense ones. The SVD step is a randomized subspace iteration (Halko et al., 2011)
started from the previous ``V``, so each outer iteration also refines the subspace of the last one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tfrs_movies.models.baselines.biases import (
    BiasedRatingModel,
    FactorBiasParams,
    non_negative,
    rowwise_dot,
)
from tfrs_movies.models.baselines.memory import require
from tfrs_movies.models.registry import register

_OVERSAMPLE = 10  # extra directions in the randomized range finder
_POWER_STEPS = 1  # subspace iterations per outer iteration (the warm start carries the rest)
_DENSE_BLOCK_RATIO = 30  # dense products over gathers when at least 1 entry in 30 is observed


def randomized_svd_operator(
    matmat: Callable[[np.ndarray], np.ndarray],
    rmatmat: Callable[[np.ndarray], np.ndarray],
    shape: tuple[int, int],
    k: int,
    rng: np.random.Generator,
    start: np.ndarray | None = None,
    power_steps: int = _POWER_STEPS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate top-``k`` SVD of an (n, m) operator given by ``A @ X`` and ``A^T @ Y``.

    ``start`` (m, j) seeds the first j probe directions (a warm start); the rest are Gaussian.
    Returns U (n, k), s (k,), V (m, k), largest first. With ``k + oversampling >= min(n, m)`` the probe
    spans the whole space and the result is exact.
    """
    n, m = shape
    width = min(k + _OVERSAMPLE, n, m)
    probe = rng.standard_normal((m, width))
    if start is not None and start.shape[1]:
        j = min(start.shape[1], width)
        probe[:, :j] = start[:, :j]
    sample = matmat(probe)  # (n, width)
    for _ in range(power_steps):
        # No re-orthonormalisation in between: with one or two steps (A A^T)^q A cannot lose the
        # directions that matter in float64, and a QR of a tall matrix costs more than the products.
        sample = matmat(rmatmat(sample))
    basis = np.linalg.qr(sample)[0]
    small = rmatmat(basis).T  # basis^T A, (width, m)
    u_small, s, vt = np.linalg.svd(small, full_matrices=False)
    return (basis @ u_small)[:, :k], s[:k], vt[:k].T


def _observed_values(
    left: np.ndarray, right: np.ndarray, rows: np.ndarray, cols: np.ndarray, indptr: np.ndarray
) -> np.ndarray:
    """``(left @ right.T)[rows, cols]`` for entries in CSR order (``indptr`` (n + 1,)); returns (nnz,).

    Dense enough (ML-100K, ML-1M: a few % observed), whole blocks of ``left @ right.T`` are cheaper than
    gathering a factor row per entry; sparse ones (Netflix, ~1 %) gather.
    """
    n, m = len(left), len(right)
    if left.shape[1] == 0 or n * m > _DENSE_BLOCK_RATIO * len(rows):
        return rowwise_dot(left, right, rows, cols)
    out = np.empty(len(rows), dtype=np.float64)
    block = max(1, 2**22 // max(m, 1))  # about 32 MB of float64 per block
    for start in range(0, n, block):
        stop = min(start + block, n)
        lo, hi = indptr[start], indptr[stop]
        out[lo:hi] = (left[start:stop] @ right.T)[rows[lo:hi] - start, cols[lo:hi]]
    return out


def _change_ratio(old: tuple[np.ndarray, ...], new: tuple[np.ndarray, ...]) -> float:
    """``|Z_new - Z_old|_F^2 / |Z_old|_F^2`` for Z = U diag(d) V^T (orthonormal U, V), from thin products."""
    u0, d0, v0 = old
    u1, d1, v1 = new
    norm0, norm1 = float(d0 @ d0), float(d1 @ d1)
    inner = 0.0
    if len(d0) and len(d1):  # <Z_old, Z_new> = tr(D0 U0^T U1 D1 V1^T V0)
        inner = float(np.sum(((u0.T @ u1) * d0[:, None] * d1[None, :]) * (v0.T @ v1)))
    diff = max(norm0 + norm1 - 2.0 * inner, 0.0)
    if norm0 == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / norm0


def complete_matrix(
    rows: np.ndarray,
    cols: np.ndarray,
    values: np.ndarray,
    shape: tuple[int, int],
    rank: int,
    shrinkage: float = 0.0,
    tol: float = 1e-4,
    max_iterations: int = 100,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, list[float]]]:
    """Complete an (n, m) matrix known at ``(rows[t], cols[t]) = values[t]`` (one entry per pair).

    ``shrinkage > 0`` is Soft-Impute with at most ``rank`` singular values kept; ``shrinkage == 0`` is
    Hard-Impute at rank ``rank``. Returns ``P = U diag(d)`` (n, r), ``Q = V`` (m, r) with r <= rank, and a
    history: ``train_rmse`` on the observed entries, ``relative_change`` and ``rank`` per iteration.
    """
    n, m = shape
    values = np.asarray(values, dtype=np.float64)
    # CSR order once, so that each iteration's sparse residual is built without sorting.
    order = np.lexsort((cols, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    indices = cols.astype(np.int32) if m < 2**31 else cols

    rng = np.random.default_rng(seed)
    u, d, v = np.zeros((n, 0)), np.zeros(0), np.zeros((m, 0))
    history: dict[str, list[float]] = {"train_rmse": [], "relative_change": [], "rank": []}
    k = max(0, min(rank, n, m))
    for _ in range(max_iterations if k > 0 else 0):
        error = values - _observed_values(u * d, v, rows, cols, indptr)
        sparse_error = sp.csr_matrix((error, indices, indptr), shape=shape)
        history["train_rmse"].append(float(np.sqrt(np.mean(error**2))) if len(error) else 0.0)

        def matmat(x: np.ndarray, e=sparse_error, u=u, d=d, v=v) -> np.ndarray:
            return e @ x + u @ (d[:, None] * (v.T @ x))

        def rmatmat(y: np.ndarray, e=sparse_error, u=u, d=d, v=v) -> np.ndarray:
            return e.T @ y + v @ (d[:, None] * (u.T @ y))

        u_new, s, v_new = randomized_svd_operator(matmat, rmatmat, shape, k, rng, start=v)
        d_new = np.maximum(s - shrinkage, 0.0)
        keep = d_new > 0  # soft-thresholding may zero out the tail; drop those directions
        new = (u_new[:, keep], d_new[keep], v_new[:, keep])
        change = _change_ratio((u, d, v), new)
        u, d, v = new
        history["relative_change"].append(change)
        history["rank"].append(float(len(d)))
        if change < tol:
            break
    # The RMSE of the returned Z on the observed entries.
    final = values - _observed_values(u * d, v, rows, cols, indptr)
    history["train_rmse"].append(float(np.sqrt(np.mean(final**2))) if len(final) else 0.0)
    return u * d, v, history


class _ImputeRecommender(BiasedRatingModel):
    """Biases + a completed low-rank residual; subclasses say how the singular values are treated."""

    def _rank_and_shrinkage(self) -> tuple[int, float]:
        raise NotImplementedError

    def _fit_factors(
        self, rows: np.ndarray, cols: np.ndarray, residual: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        rank, shrinkage = self._rank_and_shrinkage()
        n, m = len(self.users), len(self.catalogue)
        # About eight (n + m) x (rank + oversampling) float64 blocks live at once (probe, samples, basis,
        # factors old and new), beside the sparse residual.
        need = 64 * (n + m) * (min(rank, n, m) + _OVERSAMPLE)
        advice = "lower its rank (model.params.rank or max_rank)"
        require(need, f"{self.name} of rank {rank} on {n:,} x {m:,}", advice)
        user_factors, movie_factors, history = complete_matrix(
            rows,
            cols,
            residual,
            (len(self.users), len(self.catalogue)),
            rank=rank,
            shrinkage=shrinkage,
            tol=self.params.tol,
            max_iterations=self.params.max_iterations,
            seed=self.config.get("seed", 0),
        )
        self.history.update(history)
        return user_factors, movie_factors


@register
class SoftImputeRecommender(_ImputeRecommender):
    """Soft-Impute on the bias-removed matrix: singular values soft-thresholded by ``shrinkage``."""

    name = "soft_impute"

    @dataclass(frozen=True)
    class Params(FactorBiasParams):
        shrinkage: float = 14.0
        max_rank: int = 100
        tol: float = 1e-5
        max_iterations: int = 100

        def validate(self) -> None:
            non_negative(self, "shrinkage", "max_rank", "tol", "max_iterations", "reg_user", "reg_movie",
                          "bias_iterations")  # fmt: skip

    # On the contract suite's tiny data the default shrinkage leaves no factor at all; keep some.
    contract_params: ClassVar[dict[str, Any]] = {"shrinkage": 4.0}

    def _rank_and_shrinkage(self) -> tuple[int, float]:
        return self.params.max_rank, self.params.shrinkage


@register
class HardImputeRecommender(_ImputeRecommender):
    """Hard-Impute on the bias-removed matrix: the top ``rank`` singular triplets, unshrunk."""

    name = "hard_impute"

    @dataclass(frozen=True)
    class Params(FactorBiasParams):
        rank: int = 2
        tol: float = 1e-2
        max_iterations: int = 100

        def validate(self) -> None:
            non_negative(self, "rank", "tol", "max_iterations", "reg_user", "reg_movie", "bias_iterations")

    def _rank_and_shrinkage(self) -> tuple[int, float]:
        return self.params.rank, 0.0
