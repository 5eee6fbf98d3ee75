"""A hybrid top-N ranker: a weighted sum of several models' per-user standardised scores.

Each component (any registered model, with its own config overrides) is fitted on train; the weights
are chosen on the validation ratings by a grid over the simplex, maximising ``model.params.metric``
with the same full-ranking evaluator as the headline figures (seen movies removed). Then components
without early stopping (EASE, the baselines) are refitted on train + validation. Test data is never
looked at. Standardising each user's score row (zero mean, unit variance over the catalogue) puts
scores of different scales (a two-tower dot product, an EASE score) on one footing.

Typical use: the TFRS two-tower model beside EASE, so that the learned towers add what the linear
item-item model misses (measured in docs/BENCHMARKS.md).
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError, merge
from tfrs_movies.data.splits import per_user_random_mask
from tfrs_movies.evaluation.ranking import FullRankingEvaluator
from tfrs_movies.models.base import Recommender
from tfrs_movies.models.registry import build_model, register


def standardise_rows(scores: np.ndarray) -> np.ndarray:
    """(users, items) scores -> each row with zero mean and unit variance (constant rows become 0)."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


def simplex_grid(n: int, step: float) -> list[tuple[float, ...]]:
    """All weight vectors of ``n`` non-negative multiples of ``step`` that sum to 1."""
    units = int(round(1 / step))
    return [
        tuple(c / units for c in combo)
        for combo in itertools.product(range(units + 1), repeat=n)
        if sum(combo) == units
    ]


@register
class HybridRecommender(Recommender):
    """Weighted sum of standardised component scores, weights chosen on validation."""

    name = "hybrid"
    param_defaults: ClassVar[dict[str, Any]] = {
        # Each component: {"model": <registered name>, "set": {<config key>: value, ...}}.
        "components": [{"model": "retrieval", "set": {}}, {"model": "ease", "set": {}}],
        "metric": "ndcg@10",
        "grid_step": 0.1,
        "weights": [],  # fixed weights instead of the validation search
        # Share of the validation ratings (per user) kept apart for choosing the weights; the rest is
        # what components early-stop on. Disjoint, so a component that early-stopped on its half does
        # not look better than it is when the weights are chosen.
        "weight_fraction": 0.5,
    }
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
        specs = self.params["components"]
        stop_valid, weight_valid = valid, valid
        if valid is not None and len(valid) and 0 < self.params["weight_fraction"] < 1:
            held = per_user_random_mask(
                valid, self.params["weight_fraction"], self.config["seed"], min_ratings=1
            )
            stop_valid, weight_valid = valid[~held], valid[held]
        self.components = [
            build_model(self.component_config(spec)).fit(train, dataset, stop_valid, **kwargs)
            for spec in specs
        ]
        fixed = self.params["weights"]
        if fixed:
            if len(fixed) != len(specs):
                raise ConfigError("model.params.weights needs one weight per component")
            self.weights = np.asarray(fixed, dtype=np.float64)
            return
        if valid is None or not len(valid):
            self.weights = np.full(len(specs), 1.0 / len(specs))
            return
        k = int(self.params["metric"].split("@")[1])
        # The early-stopping half counts as seen history when ranking the weight half.
        evaluator = FullRankingEvaluator(pd.concat([train, stop_valid]), weight_valid, self.catalogue, ks=[k])
        for component in self.components:
            component.update_seen(pd.concat([train, stop_valid]))
        rows = [standardise_rows(c.score(evaluator.users)) for c in self.components]
        best = (-np.inf, None)
        results = {}
        for weights in simplex_grid(len(rows), self.params["grid_step"]):
            blended = sum(w * r for w, r in zip(weights, rows, strict=True))
            value = evaluator.evaluate(lambda users, b=blended: b[np.searchsorted(evaluator.users, users)])[
                self.params["metric"]
            ]
            results[json.dumps(weights)] = value
            if value > best[0]:
                best = (value, weights)
        self.weights = np.asarray(best[1])
        self.validation = {"metric": self.params["metric"], "best": best[0], "grid": results}
        # With the weights fixed, components that do not early-stop learn from every training rating.
        everything = pd.concat([train, valid], ignore_index=True)
        for i, spec in enumerate(specs):
            if not self.components[i].uses_validation:
                self.components[i] = build_model(self.component_config(spec)).fit(everything, dataset, None)

    def update_seen(self, ratings: pd.DataFrame) -> None:
        super().update_seen(ratings)
        for component in self.components:
            component.update_seen(ratings)

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        users = self.users[user_index]
        return sum(
            w * standardise_rows(c.score(users)) for w, c in zip(self.weights, self.components, strict=True)
        ).astype(np.float32)

    def _save_state(self, path: Path) -> None:
        for i, component in enumerate(self.components):
            component.save(path / f"component_{i}")
        np.save(path / "weights.npy", self.weights)
        (path / "validation.json").write_text(json.dumps(self.validation))

    def _load_state(self, path: Path) -> None:
        self.weights = np.load(path / "weights.npy")
        self.components = [
            Recommender.load(path / f"component_{i}") for i in range(len(self.params["components"]))
        ]
        self.validation = json.loads((path / "validation.json").read_text())


def _nest(key: str, value: Any) -> dict[str, Any]:
    """``"model.params.l2", 10`` -> ``{"model": {"params": {"l2": 10}}}``."""
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out
