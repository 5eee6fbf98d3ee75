"""A linear blend of rating models (``blend``), its weights learned on the validation ratings.

1. Every member (``model.params.members``: a list of config overrides in ``--set`` form, e.g.
   ``{"model.name": "autorec", "model.params.kind": "user"}``, applied on top of this config with the
   blend's own ``model.params`` cleared) is fitted on train, early-stopping on validation as configured,
   with any refit of its own switched off, so that its validation predictions are honest.
2. Ridge regression (``model.params.ridge``; the intercept is not penalised) of the validation ratings on
   the members' clipped validation predictions gives the weights. With ``meta`` each prediction also
   enters multiplied by ``log(1 + ratings of the user)`` and ``log(1 + ratings of the movie)`` in train
   (feature-weighted linear stacking, Sill et al. 2009): the weights may shift with support.
3. With ``refit`` every member is then fitted again on train + validation, for the epoch count it
   early-stopped at (times ``refit_epochs_scale``) where it has one, and the blend uses those refits.

A prediction is ``clip(intercept + sum_k w_k * features_k)``; test ratings are never seen. Unknown users
and movies are each member's own fallback (global mean + known bias for the rating networks).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.models.base import ModelParams, Recommender
from tfrs_movies.models.hybrid import MemberScorer, members_state, restore_members
from tfrs_movies.models.registry import build_model, get_model_class, register
from tfrs_movies.models.serving_parts import ServingParts, UserTable
from tfrs_movies.models.state import State

# The blend of configs/ml100k_u1_rating.yaml (RMSE 0.884 on ML-100K u1.test).
_AUTOREC_TRAIN = {
    "model.name": "autorec",
    "model.params.lr_decay": 0.95,
    "train.learning_rate": 0.003,
    "train.batch_size": 256,
    "train.epochs": 200,
    "train.early_stopping.patience": 20,
}
# A TFRS multitask model whose towers read ids and side features (those the dataset has; the others are
# left out); its rating head is the member (``score: rating``, so its catalogue scorer is that rating).
_SIDE_FEATURES_MULTITASK = {
    "model.name": "multitask",
    "model.embedding_dim": 64,
    "model.params.retrieval_weight": 2.0,
    "model.params.rating_weight": 1.0,
    "model.params.head_layers": [64, 32],
    "model.params.score": "rating",
    "model.user_features": ["id", "gender", "occupation", "age", "zip"],
    "model.movie_features": ["id", "genres", "year", "title"],
    "train.learning_rate": 0.001,
    "train.batch_size": 256,
    "train.epochs": 40,
    "train.early_stopping.patience": 3,
}
DEFAULT_MEMBERS: list[dict[str, Any]] = [
    {**_AUTOREC_TRAIN, "model.params.kind": "item", "model.params.input_dropout": 0.2},
    {**_AUTOREC_TRAIN, "model.params.kind": "user", "model.params.input_dropout": 0.0},
    {"model.name": "knn_baseline", "model.params.k": 10},
    _SIDE_FEATURES_MULTITASK,
]


def ridge_weights(features: np.ndarray, target: np.ndarray, ridge: float) -> tuple[float, np.ndarray]:
    """(intercept, weights) minimising ``|target - intercept - features w|^2 + ridge |w|^2``."""
    x_mean, y_mean = features.mean(0), target.mean()
    x = features - x_mean
    gram = x.T @ x + ridge * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, x.T @ (target - y_mean))
    return float(y_mean - x_mean @ weights), weights


class BlendScorer(tf.Module):
    """``user_id (B,) -> (B, N)``: ``intercept + sum_k w_k clip(member_k)`` (and, with ``meta``, the
    same predictions times the user's and the movie's log train counts), as :meth:`BlendRecommender.score`."""

    def __init__(self, blend: BlendRecommender):
        super().__init__()
        self.members = [MemberScorer(m, blend.catalogue) for m in blend.members]
        self.low, self.high = (float(x) for x in blend.rating_scale)
        self.intercept = float(blend.intercept)
        self.weights = [float(w) for w in blend.weights]
        self.meta = bool(blend.params.meta)
        if self.meta:
            self.user_log_count = UserTable(blend.users, blend.user_log_count)
            self.movie_log_count = tf.Variable(np.asarray(blend.movie_log_count, np.float32), trainable=False)

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        predictions = [tf.clip_by_value(m(user_id), self.low, self.high) for m in self.members]
        features = list(predictions)
        if self.meta:
            users = self.user_log_count(user_id)  # (B, 1)
            features += [p * users for p in predictions]
            features += [p * self.movie_log_count[None, :] for p in predictions]
        total = self.intercept
        for weight, feature in zip(self.weights, features, strict=True):
            total = total + weight * feature
        return total


@dataclass(frozen=True)
class BlendParams(ModelParams):
    members: list[dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_MEMBERS))
    ridge: float = 1.0
    meta: bool = False
    refit: bool = True
    refit_epochs_scale: float = 1.0

    def validate(self) -> None:
        if not self.members:
            raise ValueError("config key 'model.params.members' needs at least one member")
        if self.ridge < 0:
            raise ValueError(f"config key 'model.params.ridge' must be >= 0, got {self.ridge!r}")
        if self.refit_epochs_scale <= 0:
            scale = self.refit_epochs_scale
            raise ValueError(f"config key 'model.params.refit_epochs_scale' must be positive, got {scale!r}")


@register
class BlendRecommender(Recommender):
    """Ridge blend of rating models, weights from validation; see the module docstring."""

    name = "blend"
    predicts_ratings: ClassVar[bool] = True
    Params = BlendParams
    contract_params: ClassVar[dict[str, Any]] = {
        "members": [
            {"model.name": "mf", "model.embedding_dim": 8},
            {"model.name": "autorec", "model.params.hidden": 16},
        ],
    }

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.members: list[Recommender] = []
        self.intercept = 0.0
        self.weights = np.zeros(0)
        self.user_log_count = np.zeros(0)
        self.movie_log_count = np.zeros(0)

    # ----- members --------------------------------------------------------------------------------
    def member_config(self, overrides: dict[str, Any], refit_epochs: int | None = None) -> dict[str, Any]:
        from tfrs_movies.config import merge

        base = {**self.config, "model": {**self.config["model"], "params": {}}}
        config = merge(base, dict(overrides))
        name = config["model"]["name"]
        if name == self.name:
            raise ValueError("a blend cannot hold a blend")
        cls = get_model_class(name)
        if not cls.predicts_ratings:
            raise ValueError(f"blend member {name!r} does not predict ratings")
        if "refit" in cls.param_fields():
            config["model"]["params"]["refit"] = False  # the blend decides about refits
        if refit_epochs is not None:
            config["train"]["epochs"] = refit_epochs
        return config

    def features(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """(n, n_features): each member's clipped prediction (times the support terms with ``meta``)."""
        preds = np.stack([m.predict(user_ids, movie_ids).astype(np.float64) for m in self.members], axis=1)
        if not self.params.meta:
            return preds
        u = pd.Index(self.users).get_indexer(np.asarray(user_ids).astype(np.int64))
        i = pd.Index(self.catalogue).get_indexer(np.asarray(movie_ids).astype(np.int64))
        nu = np.where(u >= 0, self.user_log_count[np.maximum(u, 0)], 0.0)[:, None]
        ni = np.where(i >= 0, self.movie_log_count[np.maximum(i, 0)], 0.0)[:, None]
        return np.concatenate([preds, preds * nu, preds * ni], axis=1)

    # ----- fitting --------------------------------------------------------------------------------
    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None:
        p = self.params
        u = pd.Index(self.users).get_indexer(train[S.USER_ID].to_numpy())
        i = pd.Index(self.catalogue).get_indexer(train[S.MOVIE_ID].to_numpy())
        self.user_log_count = np.log1p(np.bincount(u[u >= 0], minlength=len(self.users)))
        self.movie_log_count = np.log1p(np.bincount(i[i >= 0], minlength=len(self.catalogue)))
        history: dict[str, list[float]] = {}
        epochs: list[int | None] = []
        self.members = []
        for k, overrides in enumerate(p.members):
            start = time.perf_counter()
            member = build_model(self.member_config(overrides)).fit(train, dataset, valid)
            best = member.history.get("best_epoch")
            epochs.append(int(best[0]) if best else None)
            history[f"member{k}_seconds"] = [time.perf_counter() - start]
            self.members.append(member)
        if valid is None or not len(valid):
            # Nothing to learn the weights from: the plain average.
            n = len(self.members)
            self.intercept, self.weights = 0.0, np.full(n * (3 if p.meta else 1), 0.0)
            self.weights[:n] = 1.0 / n
        else:
            users, movies = valid[S.USER_ID].to_numpy(), valid[S.MOVIE_ID].to_numpy()
            target = valid[S.RATING].to_numpy(np.float64)
            x = self.features(users, movies)
            self.intercept, self.weights = ridge_weights(x, target, p.ridge)
            for k in range(len(self.members)):
                history[f"member{k}_val_rmse"] = [float(np.sqrt(np.mean((x[:, k] - target) ** 2)))]
            blended = np.clip(self.intercept + x @ self.weights, *self.rating_scale)
            history["val_rmse"] = [float(np.sqrt(np.mean((blended - target) ** 2)))]
            history["val_rmse_cv"] = [self._cross_validated_rmse(x, target)]
            if p.refit:
                full = pd.concat([train, valid], ignore_index=True)
                for k, overrides in enumerate(p.members):
                    start = time.perf_counter()
                    n_epochs = None if epochs[k] is None else max(1, round(epochs[k] * p.refit_epochs_scale))
                    config = self.member_config(overrides, n_epochs)
                    self.members[k] = build_model(config).fit(full, dataset, None)
                    history[f"member{k}_refit_seconds"] = [time.perf_counter() - start]
        history["weights"] = [float(w) for w in self.weights]
        history["intercept"] = [self.intercept]
        self.history = history

    def _cross_validated_rmse(self, x: np.ndarray, target: np.ndarray, folds: int = 5) -> float:
        """RMSE of the blend on validation with out-of-fold weights (the in-sample figure flatters it)."""
        fold = np.random.default_rng(self.config["seed"]).integers(0, folds, len(target))
        out = np.zeros(len(target))
        for f in range(folds):
            held = fold == f
            if held.all() or not held.any():
                return float("nan")
            intercept, weights = ridge_weights(x[~held], target[~held], self.params.ridge)
            out[held] = intercept + x[held] @ weights
        return float(np.sqrt(np.mean((np.clip(out, *self.rating_scale) - target) ** 2)))

    # ----- prediction -----------------------------------------------------------------------------
    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        blended = self.intercept + self.features(user_ids, movie_ids) @ self.weights
        return np.clip(blended, *self.rating_scale).astype(np.float32)

    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        n = len(self.catalogue)
        users = np.repeat(self.users[np.asarray(user_index)], n)
        movies = np.tile(self.catalogue, len(user_index))
        blended = self.intercept + self.features(users, movies) @ self.weights
        return blended.reshape(len(user_index), n).astype(np.float32)

    # ----- persistence ----------------------------------------------------------------------------
    def _state(self) -> State:
        state = members_state(self.members)
        state["intercept"] = float(self.intercept)
        state["weights"] = np.asarray(self.weights, dtype=np.float64)
        state["user_log_count"] = np.asarray(self.user_log_count, dtype=np.float64)
        state["movie_log_count"] = np.asarray(self.movie_log_count, dtype=np.float64)
        return state

    def _restore(self, state: State) -> None:
        self.members = restore_members(state)
        self.intercept = float(state["intercept"])
        self.weights = state["weights"]
        self.user_log_count = state["user_log_count"]
        self.movie_log_count = state["movie_log_count"]

    # ----- serving --------------------------------------------------------------------------------
    def serving_parts(self) -> ServingParts:
        """Scorer form: every member's catalogue scorer, clipped to the rating scale as its ``predict``
        is, then the learned linear blend (with the support terms when ``meta``), in TensorFlow."""
        return ServingParts(scorer=BlendScorer(self))
