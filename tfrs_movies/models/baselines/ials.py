"""iALS as Rendle et al. (2021) tune it ("Revisiting the Performance of iALS on Item Recommendation
Benchmarks"): implicit matrix factorisation by alternating exact least squares.

With ``X`` the binary (n_users, n_movies) train matrix, user factors ``W`` (n_users, d) and movie factors
``H`` (n_movies, d), iALS minimises

    sum_{(u,i) observed} (w_u . h_i - 1)^2  +  alpha0 sum_{all (u,i)} (w_u . h_i)^2
    + lambda sum_u (|I_u| + alpha0 |I|)^nu |w_u|^2  +  lambda sum_i (|U_i| + alpha0 |U|)^nu |h_i|^2,

every (user, movie) pair weighing ``alpha0`` as an unobserved zero and the observed ones pulled to 1.
With ``H`` fixed, each user's factor is one ridge solve; the sum over all movies is folded into the
d x d Gramian ``H^T H`` (the "Gramian trick"), so a user costs ``O(|I_u| d^2 + d^3)`` however large the
catalogue:

    w_u = (H_u^T H_u + alpha0 H^T H + lambda (|I_u| + alpha0 |I|)^nu I)^-1 H_u^T 1,

``H_u`` the rows of the user's movies; movies are solved the same way with ``W`` fixed. Each epoch solves
every user, then every movie (exactly, ``numpy.linalg.solve`` on blocks of stacked d x d systems).

Settings without a scale of their own: ``unobserved_weight`` is ``alpha0`` relative to the data's
density (``alpha0 = unobserved_weight * nnz / (n_users n_movies)``), so ``1`` means an average user's
unobserved movies weigh as much in total as their observed ones, on any dataset; ``reg`` is ``lambda``,
whose frequency scaling (``nu = reg_exponent``, 1 in the paper) already follows each row's size.

Fold-in: a user's factor from a list of watched movies is the same one solve with ``H`` fixed
(:meth:`IALSRecommender.fold_in`); :meth:`~IALSRecommender.update_seen` folds every user in again from
their new history (e.g. train + validation), as EASE scores from its current seen rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_movies import schema as S
from tfrs_movies.models.base import ModelParams, Recommender
from tfrs_movies.models.registry import register
from tfrs_movies.models.serving_parts import ServingParts, UserTable
from tfrs_movies.models.state import State

_BLOCK_BYTES = 128 * 2**20  # one block of stacked d x d systems, and one slice of outer products


def solve_side(
    matrix: sp.csr_matrix, fixed: np.ndarray, alpha0: float, reg: float, exponent: float
) -> np.ndarray:
    """One half-step of iALS: the factors (n_rows, d) of every row of a binary (n_rows, n_cols) matrix
    with the other side's factors ``fixed`` (n_cols, d) held, each row the exact solution of

        (F_r^T F_r + alpha0 F^T F + reg (n_r + alpha0 n_cols)^exponent I) x_r = F_r^T 1,

    ``F_r`` the rows of ``fixed`` at the row's columns and ``n_r`` how many there are. A row without
    entries gets zeros.

    Vectorised: a block of rows' ``F_r^T F_r`` is the sparse product of their rows with the columns'
    outer products ``f_c f_c^T`` (the d (d + 1) / 2 entries on and above the diagonal, mirrored after),
    built a slice at a time so that neither the stacked systems nor the outer products pass
    ``_BLOCK_BYTES``; then one batched solve per block."""
    n_rows, n_cols = matrix.shape
    d = fixed.shape[1]
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    gramian = alpha0 * (fixed.T @ fixed)
    counts = np.diff(matrix.indptr)
    ridge = reg * (counts + alpha0 * n_cols) ** exponent
    out = np.zeros((n_rows, d), dtype=np.float64)
    rows = np.flatnonzero(counts > 0)
    first, second = np.triu_indices(d)
    rows_per_block = max(1, _BLOCK_BYTES // (8 * d * d))
    pairs_per_slice = max(1, _BLOCK_BYTES // (8 * max(n_cols, 1)))
    diagonal = np.arange(d)
    for start in range(0, len(rows), rows_per_block):
        block = rows[start : start + rows_per_block]
        part = matrix[block]
        lhs = np.empty((len(block), d, d))
        for p in range(0, len(first), pairs_per_slice):
            a, b = first[p : p + pairs_per_slice], second[p : p + pairs_per_slice]
            products = np.asarray(part @ (fixed[:, a] * fixed[:, b]))  # (rows, pairs)
            lhs[:, a, b] = products
            lhs[:, b, a] = products
        lhs += gramian
        lhs[:, diagonal, diagonal] += ridge[block, None]
        rhs = np.asarray(part @ fixed)
        out[block] = np.linalg.solve(lhs, rhs[:, :, None])[:, :, 0]
    return out


def ials_loss(
    matrix: sp.csr_matrix, users: np.ndarray, movies: np.ndarray, alpha0: float, reg: float, exponent: float
) -> float:
    """The iALS objective (module docstring) of factors ``users`` (n_users, d) and ``movies`` (n_movies, d)
    on a binary (n_users, n_movies) matrix; the all-pairs sum through the two Gramians."""
    coo = matrix.tocoo()
    observed = np.einsum("ij,ij->i", users[coo.row], movies[coo.col])
    all_pairs = float(np.sum((users.T @ users) * (movies.T @ movies)))
    n_users, n_movies = matrix.shape
    user_ridge = reg * (np.diff(matrix.indptr) + alpha0 * n_movies) ** exponent
    movie_ridge = reg * (np.diff(matrix.tocsc().indptr) + alpha0 * n_users) ** exponent
    return float(
        np.sum((observed - 1.0) ** 2)
        + alpha0 * all_pairs
        + user_ridge @ np.sum(users**2, axis=1)
        + movie_ridge @ np.sum(movies**2, axis=1)
    )


@register
class IALSRecommender(Recommender):
    """iALS with the Gramian trick and frequency-scaled regularisation (Rendle et al. 2021).

    ``dim`` factors; ``unobserved_weight`` alpha0 relative to the density (module docstring); ``reg``
    lambda; ``reg_exponent`` nu; ``epochs`` alternations (users, then movies); ``init_std`` the Gaussian
    initialisation's standard deviation times sqrt(dim)."""

    name = "ials"
    predicts_ratings: ClassVar[bool] = False
    uses_validation: ClassVar[bool] = False
    contract_params: ClassVar[dict[str, Any]] = {"dim": 8, "epochs": 4}

    @dataclass(frozen=True)
    class Params(ModelParams):
        dim: int = 64
        unobserved_weight: float = 1.0
        reg: float = 0.01
        reg_exponent: float = 1.0
        epochs: int = 16
        init_std: float = 0.1

        def validate(self) -> None:
            checks = {
                "dim": self.dim >= 1, "unobserved_weight": self.unobserved_weight >= 0,
                "reg": self.reg >= 0, "reg_exponent": self.reg_exponent >= 0, "epochs": self.epochs >= 1,
                "init_std": self.init_std > 0,
            }  # fmt: skip
            for key, ok in checks.items():
                if not ok:
                    raise ValueError(
                        f"config key 'model.params.{key}' is out of range: {getattr(self, key)!r}"
                    )

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.user_factors = np.zeros((0, self.params.dim), dtype=np.float32)  # (n_users, d)
        self.movie_factors = np.zeros((0, self.params.dim), dtype=np.float32)  # (n_movies, d)
        self.alpha0 = 0.0  # the absolute unobserved weight, fixed by the training data's density

    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        p = self.params
        matrix = self.seen.astype(np.float64)
        n_users, n_movies = matrix.shape
        self.alpha0 = p.unobserved_weight * matrix.nnz / max(n_users * n_movies, 1)
        rng = np.random.default_rng(self.config.get("seed", 0))
        std = p.init_std / np.sqrt(p.dim)
        users = rng.normal(0.0, std, (n_users, p.dim))
        movies = rng.normal(0.0, std, (n_movies, p.dim))
        by_movie = matrix.T.tocsr()
        losses = []
        for _ in range(p.epochs):
            users = solve_side(matrix, movies, self.alpha0, p.reg, p.reg_exponent)
            movies = solve_side(by_movie, users, self.alpha0, p.reg, p.reg_exponent)
            losses.append(ials_loss(matrix, users, movies, self.alpha0, p.reg, p.reg_exponent))
        self.history["loss"] = losses
        self.user_factors = users.astype(np.float32)
        self.movie_factors = movies.astype(np.float32)

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """User factors (n, d) for rows of a binary (n, n_movies) history matrix over the catalogue, each
        one least-squares solve with the movie factors held (the user step of training)."""
        p = self.params
        return solve_side(
            sp.csr_matrix(history, dtype=np.float64), self.movie_factors.astype(np.float64),
            self.alpha0, p.reg, p.reg_exponent,
        ).astype(np.float32)  # fmt: skip

    def update_seen(self, ratings: pd.DataFrame) -> None:
        """The new seen table, and every user folded in again from it."""
        super().update_seen(ratings)
        self.user_factors = self.fold_in(self.seen)

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        return self.user_factors[user_index] @ self.movie_factors.T

    def movie_embeddings(self) -> np.ndarray | None:
        return self.movie_factors

    def _state(self) -> State:
        return State.of({"users": self.user_factors, "movies": self.movie_factors, "alpha0": self.alpha0})

    def _restore(self, state: State) -> None:
        self.user_factors = state["users"].astype(np.float32)
        self.movie_factors = state["movies"].astype(np.float32)
        self.alpha0 = float(state["alpha0"])

    def serving_parts(self) -> ServingParts:
        """Dot form: the user's factor row (zeros for an unknown user, whom serving answers by cold start
        first) and the movie factors; a ScaNN index as well as brute force."""
        return ServingParts(query=UserTable(self.users, self.user_factors), candidates=self.movie_factors)
