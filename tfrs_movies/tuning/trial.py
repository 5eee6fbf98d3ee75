"""One trial: the experiment runner evaluated on validation, plus the tuner's extra figures.

:func:`run_trial` is :func:`tfrs_movies.training.experiment.run` with ``evaluate_on="valid"`` (its rules:
a model with early stopping sees the validation ratings for that, as in a normal run; a model without
it is fitted on train alone, since validation is what is being measured). It adds the train-set
RMSE/MAE (seed 000's train curves), the parameter count and the per-epoch validation curve of the
selection metric; with a pruner it may stop after an epoch (:mod:`tfrs_movies.tuning.pruning`). The
trial folder reads like a run directory (``config.yaml``, ``metrics.json`` with ``"evaluated_on":
"validation"``, ``model/``, ``tensorboard/``), so ``python -m tfrs_movies.report`` can compare trials.

Runs in a worker process (:func:`init_worker` limits its threads) or, with one worker, in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies import schema as S
from tfrs_movies.tuning.pruning import Pruning, TrialPruned, intermediate

_DATASETS: dict[str, Any] = {}  # one loaded dataset per data config, per process


def init_worker(threads: int, verbose: bool = False) -> None:
    """Limit this worker's BLAS and TensorFlow thread pools and quiet its start-up as the command's
    (:mod:`tfrs_movies.logs`; call before TensorFlow starts)."""
    from tfrs_movies import logs

    logs.configure(verbose)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import tensorflow as tf  # this package's __init__ already selected the legacy Keras

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))


def _dataset(config: dict[str, Any]) -> S.Dataset:
    from tfrs_movies.data import resolve_dataset

    key = json.dumps(config["data"], sort_keys=True, default=str)
    if key not in _DATASETS:
        _DATASETS[key] = resolve_dataset(config, say=lambda _: None)
    return _DATASETS[key]


def train_figures(model: Any, split: Any) -> dict[str, float]:
    """RMSE/MAE on the training ratings for rating models (and the model's normalised-scale ones), else
    nothing: seed 000's train curves."""
    from tfrs_movies.evaluation.metrics import mae, rmse

    if not model.predicts_ratings:
        return {}
    predicted = model.predict(split.train[S.USER_ID].to_numpy(), split.train[S.MOVIE_ID].to_numpy())
    truth = split.train[S.RATING].to_numpy()
    scale = model.rating_scale
    train = {"rmse": rmse(truth, predicted, scale), "mae": mae(truth, predicted, scale)}
    extra = model.extra_metrics(split.train)
    train.update({k: v for k, v in extra.items() if k.endswith("_normalized") and _number(v)})
    return train


def run_trial(
    config: dict[str, Any], trial_dir: str | Path, pruning: Pruning | None = None
) -> dict[str, Any]:
    """Fit ``config`` (the whole resolved config) and measure it on the validation split.

    Writes ``trial_dir/{config.yaml, metrics.json, model/}`` and returns ``{"valid": {...}, "train":
    {...}, "train_seconds", "parameters", "best_epoch", "intermediate"}``; ``train`` holds RMSE/MAE on
    the training ratings for rating models (seed 000's train curves), else nothing; ``intermediate`` the
    per-epoch validation figure of ``pruning.metric`` (models trained by epochs). A trial the pruner
    stops returns ``{"status": "pruned", "pruned_at_epoch", "intermediate", "train_seconds"}``.
    """
    from tfrs_movies.training.experiment import run

    config = dict(config)
    dataset = _dataset(config)
    callbacks = []
    if pruning is not None:
        from tfrs_movies.tuning.epochs import ReportEpochs

        callbacks.append(ReportEpochs(pruning))
    extra: dict[str, Any] = {}

    def figures(model: Any, split: Any) -> dict[str, Any]:
        extra["train"] = train_figures(model, split)
        extra["parameters"] = model.parameter_count()
        return {"parameters": extra["parameters"], **{f"train_{k}": v for k, v in extra["train"].items()}}

    start = time.perf_counter()
    try:
        outcome = run(config, "valid", say=lambda _: None, run_dir=trial_dir, dataset=dataset,
                      extra_figures=figures, callbacks=callbacks)  # fmt: skip
    except TrialPruned as pruned:  # a pruned trial is never resumed: its checkpoints go
        shutil.rmtree(Path(trial_dir) / "checkpoints", ignore_errors=True)
        _clear_session()
        return {"status": "pruned", "pruned_at_epoch": pruned.epoch + 1, "valid": {}, "train": {},
                "intermediate": intermediate(pruning.metric, pruned.curve),
                "train_seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
    metrics = outcome.metrics
    valid = {k: v for k, v in metrics.items() if _number(v) and k not in _NOT_FIGURES}
    result: dict[str, Any] = {
        "valid": valid,
        "train": extra["train"],
        "train_seconds": metrics["train_seconds"],
        "parameters": extra["parameters"],
    }
    if "best_epoch" in metrics:
        result["best_epoch"] = metrics["best_epoch"]
    if callbacks and callbacks[0].curve:
        result["intermediate"] = intermediate(pruning.metric, callbacks[0].curve)
    _clear_session()
    return result


def _clear_session() -> None:
    if "tensorflow" in sys.modules:  # a worker runs many trials: drop this one's Keras graph state
        sys.modules["tensorflow"].keras.backend.clear_session()


# What metrics.json holds beside the validation figures.
_NOT_FIGURES = {"train_seconds", "best_epoch", "parameters"}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
