"""The full-ranking evaluator: every catalogue item is scored, seen items are removed, top K are kept.

Models plug in through a score function ``score(user_ids) -> (len(user_ids), n_items)`` float array whose
columns follow the catalogue order given to :class:`FullRankingEvaluator`. Everything else (masking the
train items, top-K, hits, averaging, coverage) is done here once, batched, for every model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_movies import schema as S
from tfrs_movies.evaluation.metrics import ranking_metrics

ScoreFn = Callable[[np.ndarray], np.ndarray]


def interaction_matrix(
    ratings: pd.DataFrame, users: np.ndarray, items: np.ndarray, threshold: float | None = None
) -> sp.csr_matrix:
    """Binary CSR matrix (len(users), len(items)) of the rows of ``ratings`` (rating >= threshold if set).

    Rows whose user or item is not in ``users`` / ``items`` are dropped.
    """
    frame = ratings if threshold is None else ratings[ratings[S.RATING] >= threshold]
    u = pd.Index(users).get_indexer(frame[S.USER_ID].to_numpy())
    i = pd.Index(items).get_indexer(frame[S.MOVIE_ID].to_numpy())
    keep = (u >= 0) & (i >= 0)
    data = np.ones(int(keep.sum()), dtype=np.float32)
    matrix = sp.csr_matrix((data, (u[keep], i[keep])), shape=(len(users), len(items)))
    matrix.data[:] = 1.0  # duplicates summed above; binary relevance
    return matrix


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best scores per row, best first (ties broken by lower index)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


class FullRankingEvaluator:
    """Full-ranking top-N evaluation of EVALUATION.md on one (train, test) pair.

    Args:
        train: ratings whose items are removed from each user's ranking (seen items).
        test: ratings that define relevance (all of them, or rating >= ``relevance_threshold``).
        catalogue: every movie id of the dataset, in the column order of the score function.
        ks: cut-offs to report.
    """

    def __init__(
        self,
        train: pd.DataFrame,
        test: pd.DataFrame,
        catalogue: Sequence[int],
        ks: Sequence[int] = (10, 20),
        relevance_threshold: float | None = None,
        exclude_seen: bool = True,
    ) -> None:
        self.catalogue = np.asarray(catalogue)
        self.ks = sorted(int(k) for k in ks)
        relevant_frame = test if relevance_threshold is None else test[test[S.RATING] >= relevance_threshold]
        self.users = np.sort(relevant_frame[S.USER_ID].unique())
        self.relevant = interaction_matrix(relevant_frame, self.users, self.catalogue)
        self.n_relevant = np.asarray(self.relevant.sum(1)).ravel()
        keep = self.n_relevant > 0  # test items outside the catalogue leave a user with nothing to find
        self.users, self.relevant, self.n_relevant = (
            self.users[keep],
            self.relevant[keep],
            self.n_relevant[keep],
        )
        self.seen = interaction_matrix(train, self.users, self.catalogue) if exclude_seen else None

    def evaluate(self, score: ScoreFn, batch_size: int = 512) -> dict[str, float]:
        """Average metrics over test users, plus ``coverage@k`` and ``users`` (how many were ranked)."""
        if len(self.users) == 0:
            raise ValueError("no test user has a relevant item in the catalogue")
        k_max = self.ks[-1]
        sums: dict[str, float] = {}
        recommended = {k: np.zeros(len(self.catalogue), dtype=bool) for k in self.ks}
        for start in range(0, len(self.users), batch_size):
            stop = min(start + batch_size, len(self.users))
            scores = np.array(score(self.users[start:stop]), dtype=np.float32, copy=True)
            if scores.shape != (stop - start, len(self.catalogue)):
                raise ValueError(
                    f"score function returned shape {scores.shape}, "
                    f"expected {(stop - start, len(self.catalogue))}"
                )
            if self.seen is not None:
                seen = self.seen[start:stop].tocoo()
                scores[seen.row, seen.col] = -np.inf
            top = top_k_indices(scores, k_max)
            hits = np.take_along_axis(self.relevant[start:stop].toarray() > 0, top, axis=1)
            for name, values in ranking_metrics(hits, self.n_relevant[start:stop], self.ks).items():
                sums[name] = sums.get(name, 0.0) + float(values.sum())
            for k in self.ks:
                recommended[k][top[:, :k].ravel()] = True
        n = len(self.users)
        out = {name: total / n for name, total in sums.items()}
        for k in self.ks:
            out[f"coverage@{k}"] = float(recommended[k].mean())
        out["users"] = n
        return out
