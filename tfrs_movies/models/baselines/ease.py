"""EASE (Steck, 2019): a closed-form item-item linear model for top-N recommendation.

With ``X`` the binary (n_users, n_movies) train matrix, EASE solves
``min_B |X - X B|_F^2 + l2 |B|_F^2`` subject to ``diag(B) = 0``, whose solution is

    P = (X^T X + l2 I)^-1,      B[i, j] = -P[i, j] / P[j, j],      B[j, j] = 0.

A user's scores are ``X_u B`` (n_movies,), where ``X_u`` is the user's current history (the seen-movies table,
so after ``update_seen`` the validation ratings count as history too). ``B`` is dense (n_movies, n_movies):
fine up to a few tens of thousands of movies (ML-1M: 3.7k, 55 MB in float32), not for ML-20M's 27k.
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
from tfrs_movies.models.serving_parts import SeenRows, ServingParts
from tfrs_movies.models.state import State

_PAIR_CHUNK = 8_192  # (user, movie) pairs per block in predict
_USER_BLOCK = 256  # users per block of whole score rows in predict
# A random read of B costs about this many sequential multiply-adds of a row product: a user with more
# than n_movies / _GATHER_COST pairs to predict is cheaper to score as a whole row.
_GATHER_COST = 16


def ease_weights(interactions: sp.spmatrix, l2: float) -> np.ndarray:
    """The EASE item-item matrix B (n_movies, n_movies), float64, for an (n_users, n_movies) matrix."""
    gram = np.asarray((interactions.T @ interactions).toarray(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += l2
    inverse = np.linalg.inv(gram)
    weights = inverse / (-np.diag(inverse))[None, :]  # column j divided by -P[j, j]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


@register
class EASERecommender(Recommender):
    """EASE on the binary train matrix; ``l2`` is the ridge strength (Steck's lambda, 400 on ML-100K)."""

    name = "ease"
    predicts_ratings: ClassVar[bool] = False
    uses_validation: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Params(ModelParams):
        l2: float = 400.0

        def validate(self) -> None:
            if self.l2 < 0:
                raise ValueError(f"config key 'model.params.l2' must be >= 0, got {self.l2!r}")

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.weights = np.zeros((0, 0), dtype=np.float32)  # B (n_movies, n_movies)

    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        # float32 halves the memory of B; scores are sums of at most a few thousand terms.
        self.weights = ease_weights(self.seen, self.params.l2).astype(np.float32)

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        return np.asarray(self.seen[user_index] @ self.weights, dtype=np.float32)

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
            scores = np.asarray(self.seen[block] @ self.weights)
            out[chosen] = scores[np.searchsorted(block, rows[chosen]), cols[chosen]]

    def _predict_by_pairs(
        self, rows: np.ndarray, cols: np.ndarray, pairs: np.ndarray, out: np.ndarray
    ) -> None:
        """Fill ``out[pairs]`` with sums of ``B[j, i]`` over each pair's history j (no score rows)."""
        indptr, indices, data = self.seen.indptr, self.seen.indices, self.seen.data
        for start in range(0, len(pairs), _PAIR_CHUNK):
            chunk = pairs[start : start + _PAIR_CHUNK]
            first, lengths = indptr[rows[chunk]], np.diff(indptr)[rows[chunk]]
            # Flatten each pair's history: positions first[p] .. first[p] + lengths[p] - 1 of the CSR arrays.
            owner = np.repeat(np.arange(len(chunk)), lengths)
            position = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            position += np.repeat(first, lengths)
            terms = data[position] * self.weights[indices[position], cols[chunk][owner]]
            out[chunk] = np.bincount(owner, weights=terms, minlength=len(chunk))

    def _state(self) -> State:
        return State.of({"weights": self.weights})

    def _restore(self, state: State) -> None:
        self.weights = state["weights"].astype(np.float32)

    def serving_parts(self) -> ServingParts:
        """Dot form: the query is the user's current row of the seen table (``update_seen`` changes it),
        movie ``j``'s candidate is ``B[:, j]``; catalogue-wide vectors, so no approximate index."""
        return ServingParts(
            query=SeenRows(self.users, self.seen),
            candidates=np.ascontiguousarray(self.weights.T, dtype=np.float32),
            approximate_index=False,
        )
