"""The fit loop for the TFRS models: Keras ``fit`` plus full-ranking early stopping and TensorBoard.

Early stopping watches a full-ranking metric (``train.early_stopping.metric``, e.g. ``recall@20``) on
the validation ratings carved out of train, computed by the same evaluator as the headline figures
(seen movies removed), and restores the best epoch's weights at the end.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_movies.evaluation.ranking import FullRankingEvaluator


def metric_k(metric: str) -> int:
    """``"recall@20"`` -> 20."""
    try:
        return int(metric.split("@", 1)[1])
    except (IndexError, ValueError) as err:
        raise ValueError(f"early-stopping metric must look like 'recall@20', got {metric!r}") from err


class FullRankingEarlyStopping(tf.keras.callbacks.Callback):
    """After each epoch: rank every catalogue movie for the validation users, log ``val_<metric>`` for
    every metric, stop after ``patience`` epochs without improvement, restore the best weights at the end."""

    def __init__(self, recommender: Any, evaluator: FullRankingEvaluator, metric: str, patience: int,
                 min_delta: float = 0.0, batch_size: int = 512) -> None:  # fmt: skip
        super().__init__()
        self.recommender = recommender
        self.evaluator = evaluator
        self.metric = metric
        self.patience = patience
        self.min_delta = min_delta
        self.batch_size = batch_size
        self.best = -math.inf
        self.best_epoch = -1
        self.best_weights: list[np.ndarray] | None = None
        self.wait = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        self.recommender.on_weights_changed()
        metrics = self.evaluator.evaluate(self.recommender.score, batch_size=self.batch_size)
        for name, value in metrics.items():
            if name != "users":
                logs[f"val_{name}"] = value
        current = metrics[self.metric]
        if current > self.best + self.min_delta:
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


def fit_keras(
    recommender: Any,
    data: tf.data.Dataset,
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    run_dir: str | Path | None = None,
    extra_callbacks: list[tf.keras.callbacks.Callback] | None = None,
) -> dict[str, list[float]]:
    """Train ``recommender.model`` on ``data``; returns the Keras history (plus ``best_epoch``)."""
    config = recommender.config
    cfg = config["train"]
    callbacks: list[tf.keras.callbacks.Callback] = []
    stopper = None
    if valid is not None and len(valid):
        stop_cfg = cfg["early_stopping"]
        ks = sorted(set(config["eval"]["ks"]) | {metric_k(stop_cfg["metric"])})
        evaluator = FullRankingEvaluator(train, valid, recommender.catalogue, ks=ks)
        stopper = FullRankingEarlyStopping(
            recommender, evaluator, stop_cfg["metric"], stop_cfg["patience"], stop_cfg["min_delta"],
            config["eval"]["batch_size"],
        )  # fmt: skip
        callbacks.append(stopper)  # first, so the val_ metrics are in the logs TensorBoard writes
    if run_dir is not None:
        callbacks.append(
            tf.keras.callbacks.TensorBoard(log_dir=str(Path(run_dir) / "tensorboard"), update_freq="epoch")
        )
    callbacks += extra_callbacks or []
    start = time.perf_counter()
    history = recommender.model.fit(data, epochs=cfg["epochs"], callbacks=callbacks, verbose=cfg["verbose"])
    out = {k: [float(v) for v in values] for k, values in history.history.items()}
    out["train_seconds"] = [time.perf_counter() - start]
    if stopper is not None and stopper.best_epoch >= 0:
        out["best_epoch"] = [stopper.best_epoch + 1]
    return out
