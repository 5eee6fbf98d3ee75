"""A hybrid top-N ranker: a weighted sum of several models' per-user standardised scores.

Each component (any registered model, with its own config overrides) is fitted on train; the weights
are chosen on the validation ratings by a grid over the simplex, maximising ``model.params.metric``
with the same full-ranking evaluator as the headline figures (seen movies removed). Then components
without early stopping (EASE, the baselines) are refitted on train + validation. Test data is never
looked at. Standardising each user's score row (zero mean, unit variance over the catalogue) puts
scores of different scales (a two-tower dot product, an EASE score) on one footing.

Options (defaults: the above): ``fusion: rank`` sums reciprocal ranks instead of standardised
scores; ``cross_fit`` chooses on both validation halves; with ``model.params.weight_buckets`` B > 1
the weights depend on how much a user has rated (a feature-weighted stack): users fall into B
quantile buckets of their history length (ratings in train plus the early-stopping half of
validation; edges from the weight-validation users), and each bucket's weights are chosen on its own
weight-validation users from the same grid; a bucket with fewer than ``model.params.bucket_min_users``
of them keeps the weights chosen on everyone. B = 1 is one set of weights for all. On the five
ML-100K folds none of these beat the defaults (docs/BENCHMARKS.md).

The weight search holds every component's (users x catalogue) score rows of the weight-validation users
at once: where they would not fit in memory (90 % of MemAvailable; ML-25M's 162k users x 59k movies
would need tens of GB), it ranks a seeded sample of as many users as fit, decided before any
component is fitted.

Typical use: the TFRS two-tower model beside EASE, so that the learned towers add what the linear
item-item model misses (measured in docs/BENCHMARKS.md).
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError, merge
from tfrs_movies.data.splits import per_user_random_mask
from tfrs_movies.evaluation.metrics import ranking_metrics
from tfrs_movies.evaluation.ranking import (
    SCORE_BLOCK_BYTES,
    FullRankingEvaluator,
    rows_per_block,
    sparse_hits,
)
from tfrs_movies.models.base import ModelParams, Recommender
from tfrs_movies.models.registry import build_model, get_model_class, register
from tfrs_movies.models.serving_parts import ServingParts, UserTable
from tfrs_movies.models.state import State


def standardise_rows(scores: np.ndarray) -> np.ndarray:
    """(users, items) scores -> each row with zero mean and unit variance (constant rows become 0)."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


# Reciprocal-rank fusion's offset (Cormack et al. 2009): a row's item at rank r (0 = best) counts
# 1 / (RANK_OFFSET + 1 + r).
RANK_OFFSET = 60.0


def reciprocal_ranks(scores: np.ndarray) -> np.ndarray:
    """(users, items) scores -> 1 / (RANK_OFFSET + 1 + each item's rank in its row), ties by position."""
    ranks = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1, kind="stable")
    return 1.0 / (RANK_OFFSET + 1.0 + ranks)


def _tf_standardise_rows(scores: tf.Tensor) -> tf.Tensor:
    mean = tf.reduce_mean(scores, axis=1, keepdims=True)
    std = tf.math.reduce_std(scores, axis=1, keepdims=True)
    return (scores - mean) / tf.where(std > 0, std, tf.ones_like(std))


def _tf_reciprocal_ranks(scores: tf.Tensor) -> tf.Tensor:
    ranks = tf.argsort(tf.argsort(-scores, axis=1, stable=True), axis=1, stable=True)
    return 1.0 / (RANK_OFFSET + 1.0 + tf.cast(ranks, tf.float32))


# model.params.fusion -> what each component's score row becomes before the weighted sum (numpy, TensorFlow).
ROW_TRANSFORMS = {"zscore": standardise_rows, "rank": reciprocal_ranks}
TF_ROW_TRANSFORMS = {"zscore": _tf_standardise_rows, "rank": _tf_reciprocal_ranks}


def simplex_grid(n: int, step: float) -> list[tuple[float, ...]]:
    """All weight vectors of ``n`` non-negative multiples of ``step`` that sum to 1."""
    units = int(round(1 / step))
    return [
        tuple(c / units for c in combo)
        for combo in itertools.product(range(units + 1), repeat=n)
        if sum(combo) == units
    ]


def per_user_metric(
    evaluator: FullRankingEvaluator, scores: np.ndarray, metric: str
) -> tuple[np.ndarray, float]:
    """``scores`` (len(evaluator.users), N) -> (each evaluator user's ``metric`` (users,), their mean).

    The users are ranked by :meth:`FullRankingEvaluator.ranked_blocks` in the blocks ``evaluate`` uses
    and the mean summed block by block as it sums it (the same figure to the last digit, so a grid
    search over it picks what ``evaluate`` would)."""
    k = int(metric.split("@")[1])
    step = rows_per_block(len(evaluator.catalogue), 512, SCORE_BLOCK_BYTES)
    values, total = [], 0.0

    def by_user(users: np.ndarray) -> np.ndarray:
        return scores[np.searchsorted(evaluator.users, users)]  # evaluator.users is sorted

    for start, stop, top in evaluator.ranked_blocks(by_user, k, step):
        hits = sparse_hits(evaluator.relevant[start:stop], top)
        value = ranking_metrics(hits, evaluator.n_relevant[start:stop], [k])[metric]
        values.append(value)
        total += float(value.sum())
    return np.concatenate(values), total / len(evaluator.users)


def history_buckets(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Users' history lengths (n,) -> their bucket 0..len(edges): how many edges each count reaches."""
    return np.searchsorted(edges, counts, side="right").astype(np.int64)


def quantile_edges(counts: np.ndarray, buckets: int) -> np.ndarray:
    """The ``buckets - 1`` inner quantiles of ``counts`` (ascending, repeats dropped): B equal-sized
    buckets of users by history length where the counts allow it."""
    if buckets <= 1 or not len(counts):
        return np.empty(0)
    return np.unique(np.quantile(counts, np.arange(1, buckets) / buckets))


# ----- composites: members' states and scorers ------------------------------------------------------
def members_state(members: list[Recommender]) -> State:
    """Every member's full state under ``members/<k>/``, with its model name and config (JSON)."""
    state = State.of({
        "member_names": [m.name for m in members], "member_configs": [m.config for m in members],
    })  # fmt: skip
    for k, member in enumerate(members):
        state.nest(f"members/{k}", member.state())
    return state


def restore_members(state: State) -> list[Recommender]:
    """The inverse of :func:`members_state`: each member rebuilt by its own class."""
    return [
        get_model_class(name).from_state(config, state.child(f"members/{k}"))
        for k, (name, config) in enumerate(zip(state["member_names"], state["member_configs"], strict=True))
    ]


class MemberScorer(tf.Module):
    """``user_id (B,) -> (B, N)``: a member's catalogue scorer, its columns put in the composite's
    catalogue order (a member refitted on train + validation may know more movies)."""

    def __init__(self, member: Recommender, catalogue: np.ndarray):
        super().__init__()
        self.scorer = member.serving_parts().catalogue_scorer()
        self.columns = None
        if not np.array_equal(member.catalogue, catalogue):
            columns = pd.Index(member.catalogue).get_indexer(catalogue)
            if (columns < 0).any():
                raise ValueError(f"member {member.name!r} does not score every movie of the catalogue")
            self.columns = tf.constant(columns.astype(np.int32))

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        scores = tf.cast(self.scorer(user_id), tf.float32)
        return scores if self.columns is None else tf.gather(scores, self.columns, axis=1)


class StandardisedSum(tf.Module):
    """``user_id (B,) -> (B, N)``: ``sum_k w_k standardise_rows(member_k(user_id))``, in TensorFlow
    (``fusion`` "rank": ``reciprocal_ranks`` in place of ``standardise_rows``).

    ``user_weights``: a :class:`UserTable` ``user_id (B,) -> (B, K)`` of per-user weights (its unknown
    row the global ``weights``), or None for the global ``weights`` alone."""

    def __init__(
        self, members: list[Recommender], weights: np.ndarray, catalogue: np.ndarray,
        user_weights: UserTable | None = None, fusion: str = "zscore",
    ):  # fmt: skip
        super().__init__()
        self.members = [MemberScorer(m, catalogue) for m in members]
        self.weights = [float(w) for w in weights]
        self.user_weights = user_weights
        self.transform = TF_ROW_TRANSFORMS[fusion]

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        per_user = None if self.user_weights is None else self.user_weights(user_id)
        total = None
        for k, (weight, member) in enumerate(zip(self.weights, self.members, strict=True)):
            factor = weight if per_user is None else per_user[:, k : k + 1]
            term = factor * self.transform(member(user_id))
            total = term if total is None else total + term
        return total


@dataclass(frozen=True)
class HybridParams(ModelParams):
    # Each component: {"model": <registered name>, "set": {<config key>: value, ...}}.
    components: list[dict[str, Any]] = field(
        default_factory=lambda: [{"model": "retrieval", "set": {}}, {"model": "ease", "set": {}}]
    )
    metric: str = "ndcg@10"
    grid_step: float = 0.1
    weights: list[float] = field(default_factory=list)  # fixed weights instead of the validation search
    # Share of the validation ratings (per user) kept apart for choosing the weights; the rest is
    # what components early-stop on. Disjoint, so a component that early-stopped on its half does
    # not look better than it is when the weights are chosen.
    weight_fraction: float = 0.5
    # Users split into this many quantile buckets of history length, each bucket's weights chosen on
    # its own weight-validation users (1: one set of weights for everyone).
    weight_buckets: int = 1
    # A bucket with fewer weight-validation users than this keeps the weights chosen on everyone.
    bucket_min_users: int = 50
    # Also rank the early-stopping half (history: train + the weight half) and choose on both halves'
    # (user, half) values together: twice the validation ratings behind each choice, at the price of
    # a slight lean towards components that early-stopped on that half.
    cross_fit: bool = False
    # How component rows are put on one footing: "zscore" (standardised per user) or "rank"
    # (reciprocal ranks, 1 / (61 + rank)).
    fusion: str = "zscore"

    def validate(self) -> None:
        for spec in self.components:
            if "model" not in spec:
                raise ValueError(f"config key 'model.params.components' entries need 'model', got {spec!r}")
        if self.weights and len(self.weights) != len(self.components):
            raise ValueError("config key 'model.params.weights' needs one weight per component")
        name, _, k = self.metric.partition("@")
        if not name or not k.isdigit():
            raise ValueError(f"config key 'model.params.metric' must look like ndcg@10, got {self.metric!r}")
        if not 0 < self.grid_step <= 1:
            raise ValueError(f"config key 'model.params.grid_step' must be in (0, 1], got {self.grid_step!r}")
        if self.fusion not in ROW_TRANSFORMS:
            raise ValueError(
                f"config key 'model.params.fusion' must be one of {sorted(ROW_TRANSFORMS)}, "
                f"got {self.fusion!r}"
            )
        if self.weight_buckets < 1:
            raise ValueError(
                f"config key 'model.params.weight_buckets' must be at least 1, got {self.weight_buckets!r}"
            )
        if not 0 <= self.weight_fraction <= 1:
            raise ValueError(
                f"config key 'model.params.weight_fraction' must be in [0, 1], got {self.weight_fraction!r}"
            )


@register
class HybridRecommender(Recommender):
    """Weighted sum of standardised component scores, weights chosen on validation."""

    name = "hybrid"
    Params = HybridParams
    contract_params: ClassVar[dict[str, Any]] = {
        "components": [
            {"model": "popularity", "set": {}},
            {"model": "ease", "set": {"model.params.l2": 10.0}},
        ],
    }

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.components: list[Recommender] = []
        self.weights: np.ndarray = np.empty(0)
        # Per-bucket weights (buckets, components), the inner edges of history length between buckets,
        # and each known user's bucket (``self.users`` order).
        self.bucket_weights: np.ndarray = np.empty((0, 0))
        self.bucket_edges: np.ndarray = np.empty(0)
        self.user_buckets: np.ndarray = np.empty(0, dtype=np.int64)
        self.validation: dict[str, Any] = {}

    def component_config(self, spec: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(spec, dict) or "model" not in spec:
            raise ConfigError(f"model.params.components entries need a 'model' key, got {spec!r}")
        base = copy.deepcopy(self.config)
        base["model"]["params"] = {}
        overrides = {"model": {"name": spec["model"]}}
        config = merge(base, overrides)
        for key, value in (spec.get("set") or {}).items():
            config = merge(config, _nest(key, value))
        return config

    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        specs = self.params.components
        stop_valid, weight_valid = valid, valid
        if valid is not None and len(valid) and 0 < self.params.weight_fraction < 1:
            held = per_user_random_mask(
                valid, self.params.weight_fraction, self.config["seed"], min_ratings=1
            )
            stop_valid, weight_valid = valid[~held], valid[held]
        search_users = self._search_users(0 if weight_valid is None else weight_valid[S.USER_ID].nunique())
        self.components = [
            build_model(self.component_config(spec)).fit(train, dataset, stop_valid, **kwargs)
            for spec in specs
        ]
        history = pd.concat([train, stop_valid]) if stop_valid is not None else train
        fixed = self.params.weights
        if fixed:
            if len(fixed) != len(specs):
                raise ConfigError("model.params.weights needs one weight per component")
            self._set_weights(np.asarray(fixed, dtype=np.float64))
            return
        if valid is None or not len(valid):
            self._set_weights(np.full(len(specs), 1.0 / len(specs)))
            return
        k = int(self.params.metric.split("@")[1])
        # The early-stopping half counts as seen history when ranking the weight half.
        evaluator = FullRankingEvaluator(
            history, weight_valid, self.catalogue, ks=[k], max_users=search_users, seed=self.config["seed"],
        )  # fmt: skip
        for component in self.components:
            component.update_seen(history)
        grid = simplex_grid(len(self.components), self.params.grid_step)
        per_user, results = self._grid_values(evaluator, grid)
        users = evaluator.users
        if self.params.cross_fit and stop_valid is not None and len(stop_valid):
            other_history = pd.concat([train, weight_valid])
            other = FullRankingEvaluator(
                other_history, stop_valid, self.catalogue, ks=[k], max_users=search_users,
                seed=self.config["seed"],
            )  # fmt: skip
            for component in self.components:
                component.update_seen(other_history)
            other_values, _ = self._grid_values(other, grid)
            per_user = np.concatenate([per_user, other_values], axis=1)
            users = np.concatenate([users, other.users])
            results = {key: float(per_user[i].mean()) for i, key in enumerate(results)}
        means = np.asarray(list(results.values()))
        best = int(np.argmax(means))  # the first best, as a strict '>' scan would keep
        self.validation = {"metric": self.params.metric, "best": float(means[best]), "grid": results}
        counts = history[S.USER_ID].value_counts()
        self._choose_bucket_weights(np.asarray(grid), best, per_user, users, counts)
        # With the weights fixed, components that do not early-stop learn from every training rating.
        everything = pd.concat([train, valid], ignore_index=True)
        for i, spec in enumerate(specs):
            if not self.components[i].uses_validation:
                self.components[i] = build_model(self.component_config(spec)).fit(everything, dataset, None)

    def _grid_values(
        self, evaluator: FullRankingEvaluator, grid: list[tuple[float, ...]]
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Every grid point's blend ranked for the evaluator's users (components' seen set already):
        per-user values (grid points, users) and each point's mean, keyed by its JSON weights."""
        transform = ROW_TRANSFORMS[self.params.fusion]
        rows = [transform(c.score(evaluator.users)) for c in self.components]
        per_user, results = [], {}
        for weights in grid:
            blended = sum(w * r for w, r in zip(weights, rows, strict=True))
            values, mean = per_user_metric(evaluator, blended, self.params.metric)
            per_user.append(values)
            results[json.dumps(weights)] = mean
        return np.stack(per_user), results

    def _set_weights(self, weights: np.ndarray, bucket_weights: np.ndarray | None = None) -> None:
        """The global weights (K,) and, per bucket, (buckets, K); without bucket weights every user is in
        the one bucket of the global weights."""
        self.weights = weights
        if bucket_weights is not None:
            self.bucket_weights = bucket_weights
            return
        self.bucket_weights = weights[None, :]
        self.bucket_edges = np.empty(0)
        self.user_buckets = np.zeros(len(self.users), dtype=np.int64)

    def _choose_bucket_weights(
        self, grid: np.ndarray, best: int, per_user: np.ndarray, users: np.ndarray, counts: pd.Series
    ) -> None:
        """From the grid's per-user validation values (grid points, search users): the global weights
        (``grid[best]``) and each history-length bucket's (its own users' best grid point; the global
        weights for a bucket with too few users)."""
        user_counts = counts.reindex(users, fill_value=0).to_numpy()
        self.bucket_edges = quantile_edges(user_counts, self.params.weight_buckets)
        search_buckets = history_buckets(user_counts, self.bucket_edges)
        known_counts = counts.reindex(self.users, fill_value=0).to_numpy()
        self.user_buckets = history_buckets(known_counts, self.bucket_edges)
        chosen, report = [], []
        for bucket in range(len(self.bucket_edges) + 1):
            members = search_buckets == bucket
            point = best
            if members.sum() >= self.params.bucket_min_users:
                point = int(np.argmax(per_user[:, members].mean(axis=1)))
            chosen.append(grid[point])
            report.append({
                "users": int(members.sum()), "weights": grid[point].tolist(),
                "value": float(per_user[point, members].mean()) if members.any() else None,
            })  # fmt: skip
        self._set_weights(grid[best], np.asarray(chosen))
        self.validation["buckets"] = {"edges": self.bucket_edges.tolist(), "chosen": report}

    def user_weights(self, user_index: np.ndarray) -> np.ndarray:
        """Known users (rows of ``self.users``) -> their component weights (users, K)."""
        return self.bucket_weights[self.user_buckets[user_index]]

    def _search_users(self, n_users: int) -> int:
        """0 (every weight-validation user) when the search's score rows fit in memory, else how many
        users do: the components' rows, their blend and the evaluator's copy, float32."""
        from tfrs_movies.models.baselines.memory import memory_budget

        budget, _ = memory_budget()
        row_bytes = 4 * max(len(self.catalogue), 1) * (len(self.params.components) + 2)
        if budget is None or self.params.weights or n_users * row_bytes <= budget:
            return 0
        return max(1, budget // row_bytes)

    def update_seen(self, ratings: pd.DataFrame) -> None:
        super().update_seen(ratings)
        for component in self.components:
            component.update_seen(ratings)

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        users = self.users[user_index]
        weights = self.user_weights(user_index)
        return sum(
            weights[:, k : k + 1] * ROW_TRANSFORMS[self.params.fusion](c.score(users))
            for k, c in enumerate(self.components)
        ).astype(np.float32)

    def _state(self) -> State:
        state = members_state(self.components)
        state["weights"] = np.asarray(self.weights, dtype=np.float64)
        state["bucket_weights"] = np.asarray(self.bucket_weights, dtype=np.float64)
        state["bucket_edges"] = np.asarray(self.bucket_edges, dtype=np.float64)
        state["user_buckets"] = np.asarray(self.user_buckets, dtype=np.int64)
        state["validation"] = self.validation
        return state

    def _restore(self, state: State) -> None:
        self.weights = state["weights"]
        self.validation = dict(state["validation"])
        self.components = restore_members(state)
        if "bucket_weights" not in state:  # saved before weight_buckets: one set of weights for all
            self._set_weights(np.asarray(self.weights))
            return
        self.bucket_weights = state["bucket_weights"]
        self.bucket_edges = state["bucket_edges"]
        self.user_buckets = state["user_buckets"]

    def serving_parts(self) -> ServingParts:
        """Scorer form: each component's catalogue scorer, standardised per user and summed with the
        learned weights in TensorFlow (as :meth:`_score_known`); with history-length buckets, each
        known user's weights from a table (unknown users: the global weights)."""
        table = None
        if len(self.bucket_weights) > 1:
            table = UserTable(self.users, self.user_weights(np.arange(len(self.users))), unknown=self.weights)
        return ServingParts(
            scorer=StandardisedSum(self.components, self.weights, self.catalogue, table, self.params.fusion)
        )


def _nest(key: str, value: Any) -> dict[str, Any]:
    """``"model.params.l2", 10`` -> ``{"model": {"params": {"l2": 10}}}``."""
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out
