"""The full-ranking evaluator: every catalogue item is scored, seen items are removed, top K are kept.

Models plug in through a score function ``score(user_ids) -> (len(user_ids), n_items)`` float array whose
columns follow the catalogue order given to :class:`FullRankingEvaluator`. Everything else (masking the
train items, top-K, hits, averaging, coverage) is done here once, batched, for every model.

Memory is bounded whatever the size of the problem: users are scored a batch at a time, the batch sized
from the catalogue so that one batch's (users x items) float32 score block stays under
:data:`SCORE_BLOCK_BYTES` (256 MiB; at ML-25M's 59,047 movies that is 1,136 users, so the configured 512
decides); the top K is taken a few rows at a time, relevance is looked up in the sparse test matrix
(never densified) and only the (users, K) hits and one boolean per catalogue item (coverage) are kept.
The seen and relevant tables are CSR matrices over the evaluated users (size: their number of ratings).

A long evaluation shows its progress over the user batches (:class:`~tfrs_movies.progress.Progress`: a
bar on a terminal, a line per tenth elsewhere), only when it has at least :data:`PROGRESS_MIN_BATCHES`
batches and only once it has run :data:`PROGRESS_DELAY_S` seconds, so short ones (tests, ML-100K's two
batches) print nothing; ``evaluate(..., progress=False)`` never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_movies import schema as S
from tfrs_movies.evaluation.metrics import (
    gini_index,
    item_coverage,
    novelty_at_k,
    ranking_metrics,
    self_information,
)
from tfrs_movies.progress import Progress

ScoreFn = Callable[[np.ndarray], np.ndarray]

SCORE_BLOCK_BYTES = 256 * 2**20  # most bytes of one batch's float32 (users x items) score block
_TOP_K_BLOCK_BYTES = 32 * 2**20  # argpartition's temporaries (int64 indexes, negated scores) per block
PROGRESS_MIN_BATCHES = 10  # fewer user batches: no progress shown
PROGRESS_DELAY_S = 2.0  # nothing shown before an evaluation has run this long


def rows_per_block(n_items: int, limit: int | None = None, block_bytes: int = SCORE_BLOCK_BYTES) -> int:
    """Users per batch so that a (batch, n_items) float32 block holds at most ``block_bytes`` (at least 1
    row), capped at ``limit`` when given."""
    rows = max(1, int(block_bytes) // (4 * max(int(n_items), 1)))
    return rows if limit is None else max(1, min(rows, int(limit)))


def interaction_matrix(
    ratings: pd.DataFrame, users: np.ndarray, items: np.ndarray, threshold: float | None = None
) -> sp.csr_matrix:
    """Binary CSR matrix (len(users), len(items)) of the rows of ``ratings`` (rating >= threshold if set).

    Rows whose user or item is not in ``users`` / ``items`` are dropped. Canonical: sorted indices, no
    duplicates (a repeated pair is one entry).
    """
    frame = ratings if threshold is None else ratings[ratings[S.RATING] >= threshold]
    u = pd.Index(users).get_indexer(frame[S.USER_ID].to_numpy())
    i = pd.Index(items).get_indexer(frame[S.MOVIE_ID].to_numpy())
    keep = (u >= 0) & (i >= 0)
    index_type = np.int32 if max(len(users), len(items)) < 2**31 else np.int64
    u, i = u[keep].astype(index_type), i[keep].astype(index_type)
    data = np.ones(len(u), dtype=np.float32)
    matrix = sp.csr_matrix((data, (u, i)), shape=(len(users), len(items)))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # duplicates summed above; binary relevance
    return matrix


def _top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best scores per row, best first (ties broken by lower index).

    A few rows at a time, so argpartition's temporaries (int64 indexes of the whole rows) stay small
    however wide the catalogue is.
    """
    n, m = scores.shape
    k = min(k, m)
    out = np.empty((n, k), dtype=np.int64)
    step = max(1, _TOP_K_BLOCK_BYTES // (8 * max(m, 1)))
    for start in range(0, n, step):
        out[start : start + step] = _top_k_rows(scores[start : start + step], k)
    return out


def sparse_hits(matrix: sp.csr_matrix, columns: np.ndarray) -> np.ndarray:
    """``(n, K)`` booleans: whether ``columns[r, j]`` is stored in row ``r`` of ``matrix`` (n rows,
    canonical CSR), looked up without densifying the rows."""
    n, m = matrix.shape
    owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(matrix.indptr))
    stored = owner * m + matrix.indices  # ascending: rows in order, sorted indices within a row
    wanted = np.arange(n, dtype=np.int64)[:, None] * m + columns
    if len(stored) == 0:
        return np.zeros(wanted.shape, dtype=bool)
    position = np.minimum(np.searchsorted(stored, wanted), len(stored) - 1)
    return stored[position] == wanted


def sample_users(users: np.ndarray, max_users: int, seed: int) -> np.ndarray:
    """``users`` when ``max_users`` is 0 or at least their number; else a seeded sample of ``max_users``
    of them, in ascending order (the same sample for the same users, number and seed)."""
    if max_users < 0:
        raise ValueError(f"max_users must be >= 0, got {max_users}")
    if max_users == 0 or max_users >= len(users):
        return users
    chosen = np.random.default_rng(seed).choice(len(users), size=max_users, replace=False)
    return users[np.sort(chosen)]


def _id_counts(ids: np.ndarray) -> pd.Series:
    """How often each id occurs (ids that occur only): one ``np.bincount`` when the ids are small
    non-negative integers, as every dataset's are (20M movie ids: 0.05 s, against 1.84 s for pandas'
    hash count on the loaded 2-core machine), else pandas' ``value_counts``."""
    if len(ids) and np.issubdtype(ids.dtype, np.integer) and ids.min() >= 0 and ids.max() < 2**26:
        counts = np.bincount(ids)
        present = np.flatnonzero(counts)
        return pd.Series(counts[present], index=present)
    return pd.Series(ids).value_counts()


class FullRankingEvaluator:
    """Full-ranking top-N evaluation of EVALUATION.md on one (train, test) pair.

    Args:
        train: ratings whose items are removed from each user's ranking (seen items).
        test: ratings that define relevance (all of them, or rating >= ``relevance_threshold``).
        catalogue: every movie id of the dataset, in the column order of the score function.
        ks: cut-offs to report.
        max_users: 0 ranks every test user with a relevant item; N ranks a seeded sample of N of them
            (``seed``), for catalogues and user counts where ranking everyone takes too long.
    """

    def __init__(
        self,
        train: pd.DataFrame,
        test: pd.DataFrame,
        catalogue: Sequence[int],
        ks: Sequence[int] = (10, 20),
        relevance_threshold: float | None = None,
        exclude_seen: bool = True,
        max_users: int = 0,
        seed: int = 0,
    ) -> None:
        self.catalogue = np.asarray(catalogue)
        self.ks = sorted(int(k) for k in ks)
        relevant_frame = test if relevance_threshold is None else test[test[S.RATING] >= relevance_threshold]
        users = np.sort(relevant_frame[S.USER_ID].unique())
        relevant = interaction_matrix(relevant_frame, users, self.catalogue)
        # Test items outside the catalogue leave a user with nothing to find: not ranked.
        users = users[np.diff(relevant.indptr) > 0]
        self.candidate_users = len(users)  # test users with a relevant item, before any sample
        self.users = sample_users(users, int(max_users), seed)
        self.relevant = interaction_matrix(relevant_frame, self.users, self.catalogue)
        self.n_relevant = np.diff(self.relevant.indptr).astype(np.float64)
        self.seen = interaction_matrix(train, self.users, self.catalogue) if exclude_seen else None
        # novelty@K: each catalogue item's self-information from its share of the training users
        rated_by = _id_counts(train[S.MOVIE_ID].to_numpy())
        counts = np.zeros(len(self.catalogue), dtype=np.int64)
        position = pd.Index(self.catalogue).get_indexer(rated_by.index)
        counts[position[position >= 0]] = rated_by.to_numpy()[position >= 0]
        self.information = self_information(counts, len(_id_counts(train[S.USER_ID].to_numpy())))

    def ranked_blocks(self, score: ScoreFn, k: int, step: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, top)`` for each block of ``step`` users in :attr:`users` order: ``top``
        (stop - start, k) holds the positions in :attr:`catalogue` of the k highest float32 scores, seen
        movies removed."""
        n_items = len(self.catalogue)
        for start in range(0, len(self.users), step):
            stop = min(start + step, len(self.users))
            scores = np.array(score(self.users[start:stop]), dtype=np.float32, copy=True)
            if scores.shape != (stop - start, n_items):
                raise ValueError(
                    f"score function returned shape {scores.shape}, expected {(stop - start, n_items)}"
                )
            if self.seen is not None:
                seen = self.seen[start:stop]
                rows = np.repeat(np.arange(stop - start), np.diff(seen.indptr))
                scores[rows, seen.indices] = -np.inf
            top = top_k_indices(scores, k)
            del scores
            yield start, stop, top

    def evaluate(
        self, score: ScoreFn, batch_size: int = 512, block_bytes: int = SCORE_BLOCK_BYTES,
        progress: bool = True,
    ) -> dict[str, float]:  # fmt: skip
        """Average metrics over test users (``novelty@k`` among them), plus the catalogue-wide
        ``coverage@k`` (share of items in someone's top k) and ``gini@k`` (how unequally the top-k slots
        are spread over the items), and ``users`` (how many were ranked).

        Users go to ``score`` at most ``batch_size`` at a time, fewer where the catalogue is so wide
        that a batch's float32 score block would pass ``block_bytes``. ``progress``: show a long
        evaluation's progress on standard error (see the module docstring).
        """
        if len(self.users) == 0:
            raise ValueError("no test user has a relevant item in the catalogue")
        k_max = self.ks[-1]
        n_items = len(self.catalogue)
        step = rows_per_block(n_items, batch_size, block_bytes)
        sums: dict[str, float] = {}
        times_recommended = {k: np.zeros(n_items, dtype=np.int64) for k in self.ks}
        batches = -(-len(self.users) // step)
        shown = Progress(
            f"ranking {len(self.users):,} users", batches, unit="batches", leave=False,
            delay=PROGRESS_DELAY_S, enabled=progress and batches >= PROGRESS_MIN_BATCHES,
        )  # fmt: skip
        with shown:
            for start, stop, top in self.ranked_blocks(score, k_max, step):
                hits = sparse_hits(self.relevant[start:stop], top)
                for name, values in ranking_metrics(hits, self.n_relevant[start:stop], self.ks).items():
                    sums[name] = sums.get(name, 0.0) + float(values.sum())
                for k in self.ks:
                    times_recommended[k] += np.bincount(top[:, :k].ravel(), minlength=n_items)
                    novelty = float(novelty_at_k(top, self.information, k).sum())
                    sums[f"novelty@{k}"] = sums.get(f"novelty@{k}", 0.0) + novelty
                shown.update(1)
        n = len(self.users)
        out = {name: total / n for name, total in sums.items()}
        for k in self.ks:
            out[f"coverage@{k}"] = item_coverage(times_recommended[k])
            out[f"gini@{k}"] = gini_index(times_recommended[k])
        out["users"] = n
        return out
