"""The fit loop for the TFRS models: Keras ``fit`` plus validation early stopping and TensorBoard.

Early stopping watches ``train.early_stopping.metric`` on the validation ratings carved out of train
and restores the best epoch's weights at the end. Two kinds of metric:

- a full-ranking metric (``recall@20``, ``ndcg@10``, ...), computed by the same evaluator as the
  headline figures (seen movies removed) from the model's ``score``;
- a rating metric (``rmse`` or ``mae``), computed from the model's ``predict`` on the validation
  (user, movie) pairs, predictions clipped to the rating scale as in the headline figures.

Which way is better comes from the metric table (:mod:`tfrs_movies.evaluation.metrics_table`).

Under a distribution strategy (``train.strategy``, :mod:`tfrs_movies.training.distribute`) the model
was built in the strategy's scope; ``fit_keras`` shards the data per worker, the early-stopping figures
are computed on the chief and broadcast, and only the chief writes into the run directory.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError
from tfrs_movies.evaluation import metrics_table as M
from tfrs_movies.evaluation.metrics import mae, rmse
from tfrs_movies.evaluation.ranking import FullRankingEvaluator
from tfrs_movies.models.tasks import GlobalBatchLoss
from tfrs_movies.training import distribute as D

# Rating metrics ``predict``-based early stopping can watch (from the metric table).
RATING_METRICS = M.RATING_METRICS


def is_rating_metric(metric: str) -> bool:
    return metric in RATING_METRICS


def metric_k(metric: str) -> int:
    """``"recall@20"`` -> 20 (a ValueError naming the known metrics for anything else)."""
    return M.cutoff(metric)


class ValidationEarlyStopping(tf.keras.callbacks.Callback):
    """After each epoch: compute the validation metrics (``_validation_metrics``), log them as
    ``val_<name>``, stop after ``patience`` epochs without improvement of ``metric`` (by more than
    ``min_delta``, in the metric's direction from the metric table), restore the best weights at the end.
    """

    def __init__(self, recommender: Any, metric: str, patience: int, min_delta: float = 0.0) -> None:
        super().__init__()
        self.higher_is_better = M.higher_is_better(metric)  # an unknown name: one line naming the known
        self.recommender = recommender
        self.metric = metric
        self.patience = patience
        self.min_delta = min_delta
        self.best = -math.inf if self.higher_is_better else math.inf
        self.best_epoch = -1
        self.best_weights: list[np.ndarray] | None = None
        self.wait = 0

    def _validation_metrics(self) -> dict[str, float]:
        raise NotImplementedError

    def _improved(self, current: float) -> bool:
        if self.higher_is_better:
            return current > self.best + self.min_delta
        return current < self.best - self.min_delta

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        self.recommender.on_weights_changed()
        # Multi-worker: the chief evaluates, every worker gets its figure (same stop, same best weights).
        strategy = self.model.distribute_strategy
        metrics = self._validation_metrics() if D.is_chief(strategy) else {}
        for name, value in metrics.items():
            if name != "users":
                logs[f"val_{name}"] = value
        current = D.from_chief(strategy, metrics.get(self.metric))
        if self._improved(current):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self.recommender.on_weights_changed()


class FullRankingEarlyStopping(ValidationEarlyStopping):
    """Full-ranking metrics of the validation users (every catalogue movie scored)."""

    def __init__(self, recommender: Any, evaluator: FullRankingEvaluator, metric: str, patience: int,
                 min_delta: float = 0.0, batch_size: int = 512) -> None:  # fmt: skip
        super().__init__(recommender, metric, patience, min_delta)
        self.evaluator = evaluator
        self.batch_size = batch_size

    def _validation_metrics(self) -> dict[str, float]:
        return self.evaluator.evaluate(self.recommender.score, batch_size=self.batch_size)


class RatingEarlyStopping(ValidationEarlyStopping):
    """RMSE and MAE of ``recommender.predict`` on the validation pairs (clipped)."""

    def __init__(self, recommender: Any, valid: pd.DataFrame, metric: str, patience: int,
                 min_delta: float = 0.0) -> None:  # fmt: skip
        if not is_rating_metric(metric):
            raise ValueError(f"rating early stopping watches one of {list(RATING_METRICS)}, got {metric!r}")
        super().__init__(recommender, metric, patience, min_delta)
        self.users = valid[S.USER_ID].to_numpy()
        self.movies = valid[S.MOVIE_ID].to_numpy()
        self.ratings = valid[S.RATING].to_numpy()

    def _validation_metrics(self) -> dict[str, float]:
        predicted = self.recommender.predict(self.users, self.movies)
        clip = self.recommender.rating_scale
        return {"rmse": rmse(self.ratings, predicted, clip), "mae": mae(self.ratings, predicted, clip)}


def make_early_stopping(
    recommender: Any, train: pd.DataFrame, valid: pd.DataFrame
) -> ValidationEarlyStopping:
    """The callback ``train.early_stopping`` asks for (a rating metric needs a rating model)."""
    config = recommender.config
    stop_cfg = config["train"]["early_stopping"]
    metric = stop_cfg["metric"]
    kind = M.metric(metric).kind  # an unknown name: one line naming the known metrics
    if kind != M.TOP_N and not is_rating_metric(metric):
        raise ValueError(
            f"train.early_stopping.metric {metric!r} is not computed by early stopping here; use a top-N "
            f"metric (e.g. recall@20) or one of {list(RATING_METRICS)}"
        )
    if is_rating_metric(metric):
        if not recommender.predicts_ratings:
            raise ValueError(
                f"train.early_stopping.metric {metric!r} needs a rating model; "
                f"{recommender.name!r} does not predict ratings"
            )
        return RatingEarlyStopping(recommender, valid, metric, stop_cfg["patience"], stop_cfg["min_delta"])
    ks = sorted(set(config["eval"]["ks"]) | {metric_k(metric)})
    evaluator = FullRankingEvaluator(train, valid, recommender.catalogue, ks=ks)
    return FullRankingEarlyStopping(
        recommender, evaluator, metric, stop_cfg["patience"], stop_cfg["min_delta"],
        config["eval"]["batch_size"],
    )  # fmt: skip


def fit_keras(
    recommender: Any,
    data: tf.data.Dataset,
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    run_dir: str | Path | None = None,
    extra_callbacks: list[tf.keras.callbacks.Callback] | None = None,
    epochs: int | None = None,
) -> dict[str, list[float]]:
    """Train ``recommender.model`` on ``data``; returns the Keras history (plus ``best_epoch``).

    ``epochs`` overrides ``train.epochs`` (e.g. a refit on train + validation for the best epoch count).
    ``data`` is batched by the global batch (``train.batch_size``); under a strategy each worker keeps its
    part of every batch (auto-shard by data) and a non-chief worker writes into a temporary directory.
    """
    config = recommender.config
    cfg = config["train"]
    callbacks: list[tf.keras.callbacks.Callback] = []
    stopper = None
    if valid is not None and len(valid):
        stopper = make_early_stopping(recommender, train, valid)
        callbacks.append(stopper)  # first, so the val_ metrics are in the logs TensorBoard writes
    strategy = recommender.model.distribute_strategy
    if cfg.get("strategy", "default") != "default" and not isinstance(recommender.model, GlobalBatchLoss):
        raise ConfigError(
            f"config key 'train.strategy' {cfg['strategy']!r} is not supported by model {recommender.name!r} "
            "(its loss is not split over replicas); use train.strategy=default"
        )
    with contextlib.ExitStack() as stack:
        if run_dir is not None:
            out = stack.enter_context(D.write_dir(run_dir, strategy))
            callbacks.append(
                tf.keras.callbacks.TensorBoard(log_dir=str(Path(out) / "tensorboard"), update_freq="epoch")
            )
        callbacks += extra_callbacks or []
        start = time.perf_counter()
        history = recommender.model.fit(
            D.shard_by_data(data), epochs=epochs or cfg["epochs"], callbacks=callbacks, verbose=cfg["verbose"]
        )
    out = {k: [float(v) for v in values] for k, values in history.history.items()}
    out["train_seconds"] = [time.perf_counter() - start]
    if stopper is not None and stopper.best_epoch >= 0:
        out["best_epoch"] = [stopper.best_epoch + 1]
    return out
