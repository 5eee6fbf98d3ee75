"""One trial: fit on train, measure on validation only, save the model into the trial's folder.

This is :func:`tfrs_movies.training.experiment.run_experiment` without the test set: a model with early
stopping sees the validation ratings for that (as in a normal run), a model without it is fitted on
train alone (a normal run would refit it on train + validation, which would leave nothing to select
on). The trial folder reads like a run directory (``config.yaml``, ``metrics.json`` with
``"evaluated_on": "validation"``, ``model/``, ``tensorboard/``), so ``python -m tfrs_movies.report``
can compare trials.

Runs in a worker process (:func:`init_worker` limits its threads) or, with one worker, in-process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies import config as C
from tfrs_movies import schema as S
from tfrs_movies.io import atomic_write_json, atomic_write_text

_DATASETS: dict[str, Any] = {}  # one loaded dataset per data config, per process


def init_worker(threads: int) -> None:
    """Limit this worker's BLAS and TensorFlow thread pools (call before TensorFlow starts)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import tensorflow as tf  # this package's __init__ already selected the legacy Keras

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))


def _dataset(config: dict[str, Any]) -> S.Dataset:
    from tfrs_movies.training.experiment import resolve_dataset

    key = json.dumps(config["data"], sort_keys=True, default=str)
    if key not in _DATASETS:
        _DATASETS[key] = resolve_dataset(config, say=lambda _: None)
    return _DATASETS[key]


def parameter_count(model: Any) -> int | None:
    """Trainable numbers of a fitted recommender: Keras weights plus float NumPy arrays it holds
    (biases, factors, EASE's matrix), members of blends included; None when it holds none."""
    seen: set[int] = set()

    def count(obj: Any, depth: int) -> int:
        if id(obj) in seen or depth > 2:
            return 0
        seen.add(id(obj))
        total = 0
        keras = getattr(obj, "model", None)
        if keras is not None and hasattr(keras, "trainable_weights"):
            # Not count_params(): a subclassed Keras model that was called but never build() has none.
            total += sum(int(np.prod(w.shape)) for w in keras.trainable_weights)
        for name, value in vars(obj).items():
            if name in {"catalogue", "users", "popularity", "seen"}:
                continue  # the index every model keeps, not learned
            if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
                total += int(value.size)
            elif isinstance(value, (list, tuple)):
                total += sum(count(v, depth + 1) for v in value if hasattr(v, "catalogue"))
            elif hasattr(value, "catalogue") and hasattr(value, "score"):
                total += count(value, depth + 1)
        return total

    total = count(model, 0)
    return total or None


def run_trial(config: dict[str, Any], trial_dir: str | Path) -> dict[str, Any]:
    """Fit ``config`` (the whole resolved config) and measure it on the validation split.

    Writes ``trial_dir/{config.yaml, metrics.json, model/}`` and returns ``{"valid": {...}, "train":
    {...}, "train_seconds", "parameters", "best_epoch"}``; ``train`` holds RMSE/MAE on the training
    ratings for rating models (seed 000's train curves), else nothing.
    """
    from tfrs_movies.evaluation.metrics import mae, rmse
    from tfrs_movies.models.registry import build_model
    from tfrs_movies.training.experiment import build_split, evaluate

    trial_dir = Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    config = dict(config, run_dir=str(trial_dir))
    np.random.seed(config["seed"])
    dataset = _dataset(config)
    atomic_write_text(trial_dir / "config.yaml", C.dump(config))
    split = build_split(config, dataset)
    if split.valid is None or not len(split.valid):
        raise C.ConfigError("tuning needs a validation split: set data.split.validation_fraction > 0")
    model = build_model(config)
    start = time.perf_counter()
    model.fit(split.train, dataset, split.valid if model.uses_validation else None, run_dir=trial_dir)
    seconds = time.perf_counter() - start

    valid = {k: v for k, v in evaluate(model, split, config, on="valid").items() if _number(v)}
    train: dict[str, float] = {}
    if model.predicts_ratings:
        predicted = model.predict(split.train[S.USER_ID].to_numpy(), split.train[S.MOVIE_ID].to_numpy())
        truth = split.train[S.RATING].to_numpy()
        train = {
            "rmse": rmse(truth, predicted, model.rating_scale),
            "mae": mae(truth, predicted, model.rating_scale),
        }
        if hasattr(model, "extra_metrics"):
            extra = model.extra_metrics(split.train)
            train.update({k: v for k, v in extra.items() if k.endswith("_normalized") and _number(v)})
    result: dict[str, Any] = {
        "valid": valid,
        "train": train,
        "train_seconds": round(seconds, 2),
        "parameters": parameter_count(model),
    }
    if "best_epoch" in model.history:
        result["best_epoch"] = int(model.history["best_epoch"][0])
    figures = {**valid, "train_seconds": result["train_seconds"], "parameters": result["parameters"],
               "dataset": dataset.name, "model": model.name, "split": split.kind, "sizes": split.sizes(),
               "evaluated_on": "validation", **{f"train_{k}": v for k, v in train.items()}}  # fmt: skip
    atomic_write_json(trial_dir / "metrics.json", figures)
    model.save(trial_dir / "model")
    if "tensorflow" in sys.modules:  # a worker runs many trials: drop this one's Keras graph state
        sys.modules["tensorflow"].keras.backend.clear_session()
    return result


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
