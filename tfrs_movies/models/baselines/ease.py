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

Dropout emphasis (EDLAE, Steck 2020, "Autoencoders that don't overfit towards the identity"): training a
linear autoencoder with dropout probability ``p`` on its input and the loss emphasised on the dropped
entries has the closed form of EASE with the ridge ``l2 I`` replaced by

    Lambda = l2 I + p / (1 - p) diagMat(diag(X^T X)),      P = (X^T X + Lambda)^-1,

then ``B = I - P diagMat(1 / diag(P))`` under the zero-diagonal constraint (``full_rank: false``, EASE's
form) or ``B = I - P Lambda`` without it (``full_rank: true``, the paper's full-rank EDLAE).

Choosing on validation (``l2: auto`` or a list, ``dropout: auto`` or a list): the model carves a per-user
random ``validation_fraction`` of the ratings it is given (seeded by ``seed``), fits every candidate on
the rest, ranks the held-out ratings with the evaluator of the headline figures (seen movies removed)
and keeps the best on ``select_metric``; then it refits on everything it was given. The ``auto`` grid
of ``l2`` is scaled by the data: multiples ``4^k`` (k = -2..3) of the mean diagonal of ``X^T X`` (the
mean number of ratings of a rated movie), then the best one's neighbours at half and twice it; the
useful l2 grows with how often movies are rated, so no constant tuned to one dataset is needed. The
``auto`` dropout candidates are 0, 0.1, 0.25, 0.5 (a probability: scale-free). l2 and dropout are chosen
by coordinate search (each in turn over its candidates, the other held, until neither changes).

Fewer users than movies (a small release with a large catalogue): every plain-ridge l2 shares one
eigendecomposition of the (n_users, n_users) ``X X^T`` (:class:`UserGramSpectrum`, Woodbury) and costs
a few products with the validation users' rows instead of an (n_movies, n_movies) inverse; the final
fit uses it too. On 610 users x 10,000 movies ``l2: auto`` fell from 392 s to 11 s with the same choice
(docs/BENCHMARKS.md, "EASE's l2 grid from one eigendecomposition").
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


def ease_weights(
    interactions: sp.spmatrix, l2: float, dropout: float = 0.0, full_rank: bool = False
) -> np.ndarray:
    """The EASE / EDLAE item-item matrix B (n_movies, n_movies), float32, for an (n_users, n_movies)
    matrix: ``Lambda = l2 + dropout / (1 - dropout) diag(X^T X)`` on the diagonal, ``P = (X^T X +
    Lambda)^-1``; ``B = -P / diag(P)`` column-wise with a zero diagonal, or ``B = I - P Lambda`` when
    ``full_rank`` (no diagonal constraint). ``dropout = 0`` and not ``full_rank`` is plain EASE.

    Plain ridge (``dropout = 0``, ``l2 > 0``) with clearly fewer users than movies (where
    :func:`spectrum_fits`) goes through :class:`UserGramSpectrum`: an eigendecomposition of the small
    ``X X^T``, then B a block of rows at a time. Otherwise the float64 Gram matrix is inverted in place
    (LAPACK getrf + getri on its buffer; Cholesky's potri measured no faster here) and B is written into
    a float32 array a block of rows at a time. Peak ``12 n_movies^2`` bytes either way."""
    from scipy.linalg import inv

    rows = sp.csr_matrix(interactions)
    if uses_spectrum(rows.shape, l2, dropout):
        return UserGramSpectrum(rows).weights(l2, full_rank)
    gram = gram_matrix(rows)
    ridge = l2 + dropout / (1.0 - dropout) * np.diag(gram)  # (n_movies,) the diagonal of Lambda
    gram[np.diag_indices_from(gram)] += ridge
    # Symmetric, so its transpose (a Fortran-ordered view of the same buffer) is the same matrix and
    # LAPACK can overwrite it: no second float64 copy.
    inverse = inv(gram.T, overwrite_a=True, check_finite=False)
    del gram
    # Column j of B is column j of P times -1 / P[j, j] (zero diagonal) or times -Lambda[j] (full rank).
    scale = -ridge if full_rank else -1.0 / np.diag(inverse)
    m = len(scale)
    weights = np.empty((m, m), dtype=np.float32)
    step = max(1, _GRAM_BLOCK_BYTES // (8 * max(m, 1)))
    for start in range(0, m, step):
        weights[start : start + step] = inverse[start : start + step] * scale[None, :]
    del inverse
    weights[np.diag_indices_from(weights)] = (1.0 + np.diag(weights)) if full_rank else 0.0
    return weights


def spectrum_fits(n_users: int, n_movies: int) -> bool:
    """Whether :class:`UserGramSpectrum` fits where the dense path does (:func:`ease_bytes`): its peaks
    are the eigendecomposition (``X X^T``, its vectors and LAPACK's work: about ``18 n_users^2`` bytes),
    the vectors beside ``W`` (``8 n_users^2 + 8 n_movies n_users``) and ``W`` beside B (``8 n_movies
    n_users + 4 n_movies^2``); true up to about 0.8 users per movie, so the memory check holds."""
    n, m = int(n_users), int(n_movies)
    return 0 < n < m and max(18 * n * n, 8 * n * (n + m), 8 * n * m + 4 * m * m) <= ease_bytes(m)


def uses_spectrum(shape: tuple[int, int], l2: float, dropout: float) -> bool:
    """Whether an (n_users, n_movies) fit at ``l2`` and ``dropout`` goes through
    :class:`UserGramSpectrum`: plain ridge (no dropout, ``l2 > 0``) where :func:`spectrum_fits`."""
    return dropout == 0 and l2 > 0 and spectrum_fits(*shape)


class UserGramSpectrum:
    """``P(l2) = (X^T X + l2 I)^-1`` (n_movies, n_movies) for every ``l2 > 0`` from one eigendecomposition
    of the (n_users, n_users) ``X X^T = U diag(e) U^T``, for an (n_users, n_movies) ``X`` with fewer
    users than movies. By the push-through (Woodbury) identity

        P(l2) = (I - X^T (X X^T + l2 I)^-1 X) / l2 = I / l2 - W diag(1 / (l2 (e + l2))) W^T,   W = X^T U,

    so a new l2 costs products with the (n_movies, n_users) ``W`` instead of an inverse of an (n_movies,
    n_movies) matrix; ``diag(P) = 1 / l2 - (W * W) (1 / (l2 (e + l2)))`` and the scores of a few users'
    rows ``R P = R / l2 - (R W) diag(..) W^T`` need no (n_movies, n_movies) matrix at all. Everything is
    float64 (``diag(P)`` subtracts from ``1 / l2``). Memory: ``8 n_movies n_users`` bytes for ``W``, after
    about ``18 n_users^2`` for the eigendecomposition (see :func:`spectrum_fits`)."""

    def __init__(self, interactions: sp.spmatrix):
        from scipy.linalg import eigh

        rows = sp.csr_matrix(interactions, dtype=np.float64)
        values, vectors = eigh((rows @ rows.T).toarray(), overwrite_a=True, check_finite=False)
        self.values = np.maximum(values, 0.0)  # (n_users,) e, >= 0 up to rounding
        self.projection = np.asarray(rows.T @ vectors)  # (n_movies, n_users) W = X^T U
        self._step = max(1, _GRAM_BLOCK_BYTES // (8 * max(len(values), 1)))  # rows of W per block

    def coefficients(self, l2: float) -> np.ndarray:
        """(n_users,) ``1 / (l2 (e + l2))``: ``P(l2) = I / l2 - W diag(coefficients) W^T``."""
        if not l2 > 0:
            raise ValueError(f"UserGramSpectrum needs l2 > 0, got {l2!r}")
        return 1.0 / (l2 * (self.values + l2))

    def diagonal(self, l2: float) -> np.ndarray:
        """(n_movies,) ``diag(P(l2))``, a block of rows of ``W`` at a time."""
        coefficients = self.coefficients(l2)
        out = np.empty(len(self.projection))
        for start in range(0, len(out), self._step):
            out[start : start + self._step] = (
                1.0 / l2 - self.projection[start : start + self._step] ** 2 @ coefficients
            )
        return out

    def project(self, rows: sp.spmatrix) -> np.ndarray:
        """(k, n_users) ``R W`` for (k, n_movies) rows ``R``: computed once, used for every l2."""
        return np.asarray(sp.csr_matrix(rows, dtype=np.float64) @ self.projection)

    def scores(
        self, rows: sp.spmatrix, projected: np.ndarray, l2: float, full_rank: bool = False
    ) -> np.ndarray:
        """(k, n_movies) float64 EASE scores ``R B(l2)`` of (k, n_movies) rows ``R`` (``projected`` is
        :meth:`project` of them): ``R - (R P) / diag(P)`` column-wise (``R B`` with ``B = I - P /
        diag(P)``, whose diagonal is 0), or ``R - l2 R P`` when ``full_rank`` (``B = I - l2 P``)."""
        dense = sp.csr_matrix(rows, dtype=np.float64).toarray()
        times_p = dense / l2 - (projected * self.coefficients(l2)) @ self.projection.T
        return dense - (l2 * times_p if full_rank else times_p / self.diagonal(l2)[None, :])

    def weights(self, l2: float, full_rank: bool = False) -> np.ndarray:
        """(n_movies, n_movies) float32 B (as :func:`ease_weights`), a block of rows of P at a time."""
        coefficients = self.coefficients(l2)
        scale = np.full(len(self.projection), -l2) if full_rank else -1.0 / self.diagonal(l2)
        m = len(scale)
        weights = np.empty((m, m), dtype=np.float32)
        step = max(1, _GRAM_BLOCK_BYTES // (8 * max(m, 1)))
        for start in range(0, m, step):
            block = -(self.projection[start : start + step] * coefficients) @ self.projection.T
            block[np.arange(len(block)), start + np.arange(len(block))] += 1.0 / l2
            weights[start : start + step] = block * scale[None, :]
        weights[np.diag_indices_from(weights)] = (1.0 + np.diag(weights)) if full_rank else 0.0
        return weights


AUTO_L2_MULTIPLES = (1 / 16, 1 / 4, 1.0, 4.0, 16.0, 64.0)  # of the mean diagonal of X^T X
AUTO_DROPOUT = (0.0, 0.1, 0.25, 0.5)


def l2_grid(interactions: sp.spmatrix) -> list[float]:
    """The ``l2: auto`` candidates: ``AUTO_L2_MULTIPLES`` times the mean diagonal of ``X^T X`` over movies
    with a rating (the mean number of ratings of a rated movie)."""
    counts = np.bincount(sp.csr_matrix(interactions).indices, minlength=interactions.shape[1])
    base = float(counts[counts > 0].mean()) if (counts > 0).any() else 1.0
    return [base * m for m in AUTO_L2_MULTIPLES]


def select_on_validation(
    evaluate: Any, l2s: list[float], dropouts: list[float], refine_l2: bool
) -> tuple[float, float, dict[str, float]]:
    """Coordinate search over (l2, dropout): each in turn over its candidates with the other held, until
    neither changes; then, when ``refine_l2``, the best l2's neighbours at half and twice it.
    ``evaluate(l2, dropout) -> validation metric`` (higher is better), each pair evaluated once.
    Returns (l2, dropout, {"l2=..,dropout=..": metric} for every pair tried)."""
    tried: dict[tuple[float, float], float] = {}

    def value(pair: tuple[float, float]) -> float:
        if pair not in tried:
            tried[pair] = evaluate(*pair)
        return tried[pair]

    best = (l2s[len(l2s) // 2], dropouts[0])
    for _ in range(4):
        before = best
        best = max(((l2, best[1]) for l2 in l2s), key=value)
        best = max(((best[0], p) for p in dropouts), key=value)
        if best == before:
            break
    if refine_l2:
        best = max([best, (best[0] / 2, best[1]), (best[0] * 2, best[1])], key=value)
    grid = {f"l2={l2:.6g},dropout={p:g}": v for (l2, p), v in tried.items()}
    return best[0], best[1], grid


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
        # A ridge strength, "auto" (a grid scaled by the data, chosen on validation) or a list of them.
        l2: float | str | list[float] = 400.0
        # EDLAE's dropout probability in [0, 1), "auto" (0, 0.1, 0.25, 0.5 on validation) or a list.
        dropout: float | str | list[float] = 0.0
        full_rank: bool = False  # EDLAE without the zero-diagonal constraint
        select_metric: str = "ndcg@10"  # what validation chooses l2 / dropout by
        validation_fraction: float = 0.1  # per user, of the ratings the model is fitted on
        max_movies: int | str = 0
        memory_gb: float = 0.0

        def validate(self) -> None:
            for key, low, high in (("l2", 0.0, np.inf), ("dropout", 0.0, 1.0)):
                value = getattr(self, key)
                values = value if isinstance(value, list) else [value]
                if value == [] or any(
                    isinstance(v, str) and v != "auto" or not isinstance(v, str) and not low <= v < high
                    for v in values
                ):
                    raise ValueError(
                        f"config key 'model.params.{key}' must be a number in [{low:g}, {high:g}), 'auto' "
                        f"or a non-empty list of such numbers, got {value!r}"
                    )
            name, _, k = self.select_metric.partition("@")
            if not name or not k.isdigit():
                raise ValueError(
                    "config key 'model.params.select_metric' must look like ndcg@10, "
                    f"got {self.select_metric!r}"
                )
            if not 0 < self.validation_fraction < 1:
                raise ValueError(
                    f"config key 'model.params.validation_fraction' must be in (0, 1), "
                    f"got {self.validation_fraction!r}"
                )
            if (
                isinstance(self.max_movies, str)
                and self.max_movies != "auto"
                or (isinstance(self.max_movies, int) and self.max_movies < 0)
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
        # The l2 and dropout B was fitted with, and (when chosen on validation) every candidate's figure.
        self.chosen: dict[str, Any] = {}

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
        l2, dropout = self.params.l2, self.params.dropout
        self.chosen = {}
        if isinstance(l2, (str, list)) or isinstance(dropout, (str, list)):
            l2, dropout, grid = self._choose(train)
            self.chosen = {"metric": self.params.select_metric, "grid": grid}
        self.chosen.update({"l2": float(l2), "dropout": float(dropout)})
        # float32 B halves its memory; scores are sums of at most a few thousand terms.
        self.weights = ease_weights(self._history(self.seen), l2, dropout, self.params.full_rank)

    def _choose(self, train: pd.DataFrame) -> tuple[float, float, dict[str, float]]:
        """(l2, dropout) chosen on a per-user random validation share of ``train`` (see the module
        docstring), every candidate fitted on the rest."""
        from tfrs_movies.data.splits import per_user_random_mask
        from tfrs_movies.evaluation.ranking import FullRankingEvaluator, interaction_matrix

        held = per_user_random_mask(
            train, self.params.validation_fraction, self.config["seed"], min_ratings=2
        )
        rest, valid = train[~held], train[held]
        history = self._history(interaction_matrix(rest, self.users, self.catalogue))
        evaluator = FullRankingEvaluator(
            rest, valid, self.catalogue, ks=[int(self.params.select_metric.split("@")[1])]
        )
        rows = pd.Index(self.users).get_indexer(evaluator.users)
        valid_rows = history[rows]
        full = np.zeros((len(rows), len(self.catalogue)), dtype=np.float32)
        # Plain ridge candidates share one eigendecomposition (built at the first of them) and score
        # the validation users' rows without forming B; the others (EDLAE's dropout) fit B each.
        shared: tuple[UserGramSpectrum, np.ndarray] | None = None

        def evaluate(l2: float, dropout: float) -> float:
            nonlocal shared
            if uses_spectrum(history.shape, l2, dropout):
                if shared is None:
                    spectrum = UserGramSpectrum(history)
                    shared = (spectrum, spectrum.project(valid_rows))
                spectrum, projected = shared
                full[:, self.kept] = spectrum.scores(valid_rows, projected, l2, self.params.full_rank)
            else:
                weights = ease_weights(history, l2, dropout, self.params.full_rank)
                full[:, self.kept] = np.asarray(valid_rows @ weights)
            figures = evaluator.evaluate(lambda users: full[np.searchsorted(evaluator.users, users)])
            return float(figures[self.params.select_metric])

        l2, dropout = self.params.l2, self.params.dropout
        l2s = l2_grid(history) if l2 == "auto" else list(l2) if isinstance(l2, list) else [l2]
        dropouts = (
            list(AUTO_DROPOUT)
            if dropout == "auto"
            else list(dropout)
            if isinstance(dropout, list)
            else [dropout]
        )
        return select_on_validation(
            evaluate, [float(v) for v in l2s], [float(v) for v in dropouts], l2 == "auto"
        )

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
        return State.of({"weights": self.weights, "kept": self.kept, "chosen": self.chosen})

    def _restore(self, state: State) -> None:
        self.weights = state["weights"].astype(np.float32)
        self.chosen = dict(state["chosen"]) if "chosen" in state else {}
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
