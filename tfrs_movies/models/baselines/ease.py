"""EASE (Steck, 2019): a closed-form item-item linear model for top-N recommendation.

With ``X`` the binary (n_users, n_movies) train matrix, EASE solves
``min_B |X - X B|_F^2 + l2 |B|_F^2`` subject to ``diag(B) = 0``, whose solution is

    P = (X^T X + l2 I)^-1,      B[i, j] = -P[i, j] / P[j, j],      B[j, j] = 0.

A user's scores are ``X_u B`` (n_movies,), where ``X_u`` is the user's current history (the seen-movies table,
so after ``update_seen`` the validation ratings count as history too).

Memory: ``B`` is dense. Fitting M movies takes about ``12 M^2`` bytes at its peak (the float64 Gram matrix,
inverted in place, and the float32 ``B``): ML-1M's 3.7k movies 0.16 GB, ML-20M's 27k 8.7 GB, ML-25M's 59k
41.8 GB. Before it allocates anything, the model compares that with its budget (``params.memory_gb``, else
90 % of ``MemAvailable``, see :mod:`.memory`) and, when it would not fit, refuses with one line
(:class:`~tfrs_movies.models.baselines.memory.TooLargeError`) naming the ``max_movies`` that would.

Approximation (``params.max_movies``): EASE on the ``max_movies`` most-rated train movies only (ties: the
lower catalogue position), ``X`` and ``B`` restricted to those columns; every other movie scores 0 (as a
movie without train ratings does in plain EASE), so it is recommended only after every kept movie with
a positive score. ``max_movies: auto`` takes the whole catalogue when it fits and otherwise the most
movies that do; ``max_movies`` at least the catalogue is plain EASE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_movies import schema as S
from tfrs_movies.models.base import ModelParams, Recommender
from tfrs_movies.models.baselines.memory import TooLargeError, gigabytes, memory_budget
from tfrs_movies.models.registry import register
from tfrs_movies.models.serving_parts import SeenRows, ServingParts
from tfrs_movies.models.state import State

_PAIR_CHUNK = 8_192  # (user, movie) pairs per block in predict
_USER_BLOCK = 256  # users per block of whole score rows in predict
# A random read of B costs about this many sequential multiply-adds of a row product: a user with more
# than n_movies / _GATHER_COST pairs to predict is cheaper to score as a whole row.
_GATHER_COST = 16
_GRAM_BLOCK_BYTES = 128 * 2**20  # one column block of the Gram matrix (its sparse product, densified)
BYTES_PER_ENTRY = 12  # peak bytes per entry of the (M, M) matrices: float64 Gram/inverse + float32 B


def ease_bytes(n_movies: int) -> int:
    """Peak memory of fitting EASE on ``n_movies`` movies (the dense matrices; the sparse data aside)."""
    return BYTES_PER_ENTRY * int(n_movies) ** 2


def gram_matrix(interactions: sp.spmatrix) -> np.ndarray:
    """``X^T X`` (n_movies, n_movies) float64 for a sparse (n_users, n_movies) ``X``, a block of columns at
    a time, so the sparse product never holds more than a block."""
    columns = sp.csc_matrix(interactions, dtype=np.float32)
    rows_t = columns.T.tocsr()
    m = columns.shape[1]
    gram = np.empty((m, m), dtype=np.float64)
    step = max(1, _GRAM_BLOCK_BYTES // (12 * max(m, 1)))
    for start in range(0, m, step):
        gram[:, start : start + step] = (rows_t @ columns[:, start : start + step]).toarray()
    return gram


def ease_weights(interactions: sp.spmatrix, l2: float) -> np.ndarray:
    """The EASE item-item matrix B (n_movies, n_movies), float32, for an (n_users, n_movies) matrix.

    Peak memory ``12 n_movies^2`` bytes: the float64 Gram matrix is inverted in place (LAPACK getrf +
    getri on its buffer) and B is written into a float32 array a block of rows at a time."""
    from scipy.linalg import inv

    gram = gram_matrix(interactions)
    gram[np.diag_indices_from(gram)] += l2
    # Symmetric, so its transpose (a Fortran-ordered view of the same buffer) is the same matrix and
    # LAPACK can overwrite it: no second float64 copy.
    inverse = inv(gram.T, overwrite_a=True, check_finite=False)
    del gram
    scale = -1.0 / np.diag(inverse)  # column j divided by -P[j, j]
    m = len(scale)
    weights = np.empty((m, m), dtype=np.float32)
    step = max(1, _GRAM_BLOCK_BYTES // (8 * max(m, 1)))
    for start in range(0, m, step):
        weights[start : start + step] = inverse[start : start + step] * scale[None, :]
    del inverse
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


@register
class EASERecommender(Recommender):
    """EASE on the binary train matrix; ``l2`` is the ridge strength (Steck's lambda, 400 on ML-100K).

    ``max_movies``: 0 for every movie (refused with one line when it would not fit), N for EASE on the N
    most-rated movies, ``"auto"`` for every movie when it fits, else the most that do; ``memory_gb``:
    the memory it may take (0: 90 % of MemAvailable)."""

    name = "ease"
    predicts_ratings: ClassVar[bool] = False
    uses_validation: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Params(ModelParams):
        l2: float = 400.0
        max_movies: int | str = 0
        memory_gb: float = 0.0

        def validate(self) -> None:
            if self.l2 < 0:
                raise ValueError(f"config key 'model.params.l2' must be >= 0, got {self.l2!r}")
            if isinstance(self.max_movies, str) and self.max_movies != "auto" or (
                isinstance(self.max_movies, int) and self.max_movies < 0
            ):
                raise ValueError(
                    f"config key 'model.params.max_movies' must be an integer >= 0 or 'auto', "
                    f"got {self.max_movies!r}"
                )
            if self.memory_gb < 0:
                raise ValueError(f"config key 'model.params.memory_gb' must be >= 0, got {self.memory_gb!r}")

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.weights = np.zeros((0, 0), dtype=np.float32)  # B (M, M) over the kept movies
        self.kept = np.zeros(0, dtype=np.int64)  # catalogue positions of the M kept movies, ascending

    def movies_to_keep(self) -> int:
        """How many movies EASE is fitted on (``params.max_movies`` against the memory budget); raises
        :class:`TooLargeError` (one line) when that many would not fit. Allocates nothing."""
        n = len(self.catalogue)
        wanted = self.params.max_movies
        budget, source = memory_budget(self.params.memory_gb)
        fits = n if budget is None else int(np.sqrt(budget / BYTES_PER_ENTRY))
        if wanted == "auto" and (fits >= 1 or n == 0):
            return min(n, fits)
        m = n if wanted in (0, "auto") else min(n, wanted)
        if budget is not None and ease_bytes(m) > budget:
            raise TooLargeError(
                f"EASE on {m:,} movies needs about {gigabytes(ease_bytes(m))} ({m:,}^2 x {BYTES_PER_ENTRY} "
                f"bytes: the float64 Gram matrix inverted in place + the float32 weights) but the budget is "
                f"{gigabytes(budget)} ({source}); set model.params.max_movies to at most {fits:,} (EASE on "
                f"the most-rated movies) or to 'auto'"
            )
        return m

    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        m = self.movies_to_keep()  # before anything large is allocated
        counts = np.bincount(self.seen.indices, minlength=len(self.catalogue))
        self.kept = np.sort(np.argsort(-counts, kind="stable")[:m]).astype(np.int64)
        # float32 B halves its memory; scores are sums of at most a few thousand terms.
        self.weights = ease_weights(self._history(self.seen), self.params.l2)

    @property
    def restricted(self) -> bool:
        return len(self.kept) < len(self.catalogue)

    def _history(self, rows: sp.csr_matrix) -> sp.csr_matrix:
        """Rows of the seen table over the kept movies' columns."""
        return rows[:, self.kept] if self.restricted else rows

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        kept_scores = np.asarray(self._history(self.seen[user_index]) @ self.weights, dtype=np.float32)
        if not self.restricted:
            return kept_scores
        scores = np.zeros((len(user_index), len(self.catalogue)), dtype=np.float32)
        scores[:, self.kept] = kept_scores
        return scores

    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """(n,) scores ``X_u B[:, i]`` per pair.

        A user asked about many movies gets a whole score row (one sparse-dense product); a user asked
        about a few gets just those sums over their history, so a handful of pairs never scores rows.
        Unknown users get the movie's popularity (as :meth:`score` gives them), unknown movies 0.
        """
        rows = pd.Index(self.users).get_indexer(np.asarray(user_ids).astype(np.int64))
        cols = pd.Index(self.catalogue).get_indexer(np.asarray(movie_ids).astype(np.int64))
        out = np.zeros(len(rows), dtype=np.float32)
        cold = (rows < 0) & (cols >= 0)
        out[cold] = self.popularity[cols[cold]]
        both = np.flatnonzero((rows >= 0) & (cols >= 0))
        users, inverse, counts = np.unique(rows[both], return_inverse=True, return_counts=True)
        whole_row = (counts * _GATHER_COST >= len(self.catalogue))[inverse]
        self._predict_by_rows(rows, cols, both[whole_row], out)
        self._predict_by_pairs(rows, cols, both[~whole_row], out)
        return out

    def _predict_by_rows(
        self, rows: np.ndarray, cols: np.ndarray, pairs: np.ndarray, out: np.ndarray
    ) -> None:
        """Fill ``out[pairs]`` from whole score rows, a block of users at a time."""
        pairs = pairs[np.argsort(rows[pairs], kind="stable")]
        users = np.unique(rows[pairs])
        for start in range(0, len(users), _USER_BLOCK):
            block = users[start : start + _USER_BLOCK]
            lo, hi = np.searchsorted(rows[pairs], [block[0], block[-1] + 1])
            chosen = pairs[lo:hi]
            scores = self._score_known(block)
            out[chosen] = scores[np.searchsorted(block, rows[chosen]), cols[chosen]]

    def _predict_by_pairs(
        self, rows: np.ndarray, cols: np.ndarray, pairs: np.ndarray, out: np.ndarray
    ) -> None:
        """Fill ``out[pairs]`` with sums of ``B[j, i]`` over each pair's history j (no score rows)."""
        history = self._history(self.seen)
        # A movie outside the kept ones scores 0: only pairs of kept movies are summed.
        column = np.full(len(self.catalogue), -1, dtype=np.int64)
        column[self.kept] = np.arange(len(self.kept))
        pairs = pairs[column[cols[pairs]] >= 0]
        indptr, indices, data = history.indptr, history.indices, history.data
        for start in range(0, len(pairs), _PAIR_CHUNK):
            chunk = pairs[start : start + _PAIR_CHUNK]
            first, lengths = indptr[rows[chunk]], np.diff(indptr)[rows[chunk]]
            # Flatten each pair's history: positions first[p] .. first[p] + lengths[p] - 1 of the CSR arrays.
            owner = np.repeat(np.arange(len(chunk)), lengths)
            position = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            position += np.repeat(first, lengths)
            terms = data[position] * self.weights[indices[position], column[cols[chunk]][owner]]
            out[chunk] = np.bincount(owner, weights=terms, minlength=len(chunk))

    def _state(self) -> State:
        return State.of({"weights": self.weights, "kept": self.kept})

    def _restore(self, state: State) -> None:
        self.weights = state["weights"].astype(np.float32)
        # Folders saved before the approximation hold B over the whole catalogue and no "kept".
        self.kept = state["kept"].astype(np.int64) if "kept" in state else np.arange(len(self.weights))

    def serving_parts(self) -> ServingParts:
        """Dot form: the query is the user's current row of the seen table (``update_seen`` changes it)
        over the kept movies, movie ``j``'s candidate is ``B[:, j]`` (zeros for a movie outside the kept
        ones, which :meth:`score` scores 0); catalogue-wide vectors, so no approximate index."""
        candidates = np.zeros((len(self.catalogue), len(self.kept)), dtype=np.float32)
        candidates[self.kept] = self.weights.T
        return ServingParts(
            query=SeenRows(self.users, self._history(self.seen)),
            candidates=candidates,
            approximate_index=False,
        )
