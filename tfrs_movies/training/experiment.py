"""The one experiment runner: resolve the data, split, fit, evaluate, write the run directory.

:func:`run` is used by ``python -m tfrs_movies.train`` (through :func:`run_experiment`, evaluated on
test) and by every tuning trial (:func:`tfrs_movies.tuning.trial.run_trial`, evaluated on validation),
so the rules below live here only.

The run directory holds ``config.yaml`` (the resolved config), ``metrics.json`` (the figures of
EVALUATION.md on the evaluated set, ``"evaluated_on"``, timing, sizes) and ``model/`` (the saved
recommender); a test run adds ``tensorboard/test`` scalars, the movie projector where the model has
movie vectors, and ``export/`` when ``export.enabled``. While it is written it also holds ``RUNNING``
(removed once the last artifact is in place: :mod:`tfrs_movies.training.status`) and, for the Keras
models, ``checkpoints/`` (removed once complete); the same config run again into a killed run's
directory resumes from its last checkpoint (:mod:`tfrs_movies.training.fit`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfrs_movies import config as C
from tfrs_movies import schema as S
from tfrs_movies.data import resolve_dataset
from tfrs_movies.data.splits import Split, build_split
from tfrs_movies.evaluation.metrics import mae, rmse
from tfrs_movies.evaluation.ranking import FullRankingEvaluator
from tfrs_movies.io import atomic_write_json, atomic_write_text, remove_stale_temporaries
from tfrs_movies.training import status
from tfrs_movies.training.guards import check_finite_losses

__all__ = ["EVALUATED_ON", "ExperimentResult", "build_split", "default_run_dir", "evaluate",
           "resolve_dataset", "run", "run_experiment"]  # fmt: skip

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"  # <run_dir>/checkpoints (tfrs_movies.training.fit.CHECKPOINTS)

# ``evaluate_on`` -> the word recorded as ``metrics.json["evaluated_on"]`` (what the report compares).
EVALUATED_ON = {"test": "test", "valid": "validation"}


@dataclass
class ExperimentResult:
    run_dir: Path
    metrics: dict[str, Any]
    model: Any
    dataset: S.Dataset
    split: Split
    evaluated_on: str = "test"  # "test" or "valid"


def evaluate(model: Any, split: Split, config: dict[str, Any], on: str = "test") -> dict[str, float]:
    """Full-ranking top-N metrics (seen movies removed) and, for rating models, RMSE/MAE, plus the
    model's :meth:`extra_metrics` (e.g. normalised-scale RMSE, a classifier's AUC).

    ``on="test"``: the test ratings, train + validation counted as seen; else the validation ratings,
    train counted as seen.
    """
    frame = split.test if on == "test" else split.valid
    # For test, the validation ratings are part of what the user has seen (they come from train). The
    # evaluator reads only the ids: a copy of those alone (1.6 GB less at 100M ratings).
    ids = [S.USER_ID, S.MOVIE_ID]
    with_valid = on == "test" and split.valid is not None
    seen = pd.concat([split.train[ids], split.valid[ids]]) if with_valid else split.train
    ev = config["eval"]
    evaluator = FullRankingEvaluator(
        seen, frame, model.catalogue, ev["ks"], ev["relevance_threshold"], ev["exclude_seen"],
        max_users=ev.get("max_users", 0), seed=config.get("seed", 0),
    )
    metrics = evaluator.evaluate(model.score, ev["batch_size"])
    if model.predicts_ratings:
        predicted = model.predict(frame[S.USER_ID].to_numpy(), frame[S.MOVIE_ID].to_numpy())
        metrics["rmse"] = rmse(frame[S.RATING].to_numpy(), predicted, clip=model.rating_scale)
        metrics["mae"] = mae(frame[S.RATING].to_numpy(), predicted, clip=model.rating_scale)
    metrics.update(model.extra_metrics(frame))
    return metrics


def default_run_dir(config: dict[str, Any]) -> Path:
    """``runs/<data>-<model>-<time>``; or, when a run of the same config was killed (its ``RUNNING``
    marker left, its process gone), that run's directory, so that the same command resumes it."""
    prefix = f"{config['data']['name']}-{config['model']['name']}-"
    interrupted = status.resumable_run("runs", prefix, config)
    if interrupted is not None:
        return interrupted
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{prefix}{stamp}"


def fit(model: Any, split: Split, dataset: S.Dataset, evaluate_on: str, run_dir: Path,
        callbacks: list[Any] | None = None) -> float:  # fmt: skip
    """Fit ``model`` by the rules of :func:`run`; returns the seconds it took."""
    start = time.perf_counter()
    if model.uses_validation or split.valid is None:
        model.fit(split.train, dataset, split.valid, run_dir=run_dir, extra_callbacks=callbacks or [])
        if split.valid is not None and evaluate_on == "test":
            model.update_seen(pd.concat([split.train, split.valid]))  # served recommendations skip both
    elif evaluate_on == "test":  # nothing to early-stop: learn from every training rating
        model.fit(pd.concat([split.train, split.valid], ignore_index=True), dataset, None, run_dir=run_dir)
    else:  # measured on validation: it must not have seen it
        model.fit(split.train, dataset, None, run_dir=run_dir)
    return time.perf_counter() - start


def run(
    config: dict[str, Any],
    evaluate_on: str = "test",
    say: Callable[[str], None] = print,
    run_dir: str | Path | None = None,
    *,
    dataset: S.Dataset | None = None,
    extra_figures: Callable[[Any, Split], dict[str, Any]] | None = None,
    callbacks: list[Any] | None = None,
) -> ExperimentResult:
    """Train, evaluate and save one model as ``config`` says; returns the run's figures and objects.

    The rules, for every caller:

    - Seeds: NumPy's global seed is ``config["seed"]`` before anything is drawn (models seed their own
      generators from the same key).
    - Data: ``data`` is resolved by :func:`tfrs_movies.data.resolve_dataset` (download, or the generated
      fallback for the default dataset) unless ``dataset`` (already resolved from the same config, e.g.
      a tuning worker's cached copy) is given.
    - Split: ``data.split`` by :func:`tfrs_movies.data.splits.build_split`; validation is always carved
      out of train, never out of test.
    - Fit: a model that ``uses_validation`` (early stopping) is fitted on train with the validation set;
      when evaluating on test, its seen movies then become train + validation. A model without it is
      refitted on train + validation when evaluating on test (nothing to early-stop, so it learns from
      every training rating); when evaluating on ``"valid"`` it is fitted on train only, since
      validation is what is being measured.
    - Evaluate: :func:`evaluate` on ``evaluate_on`` (``"test"`` or ``"valid"``; the latter needs a
      validation set).
    - Write into ``run_dir`` (else ``config["run_dir"]``, else ``runs/<data>-<model>-<time>``):
      ``config.yaml``, ``metrics.json`` (with ``"evaluated_on"``: ``"test"`` or ``"validation"``, and
      ``extra_figures(model, split)`` if given), ``model/``; on test only, the ``tensorboard/test``
      scalars and movie projector, and ``export/`` when ``export.enabled``.
    - ``callbacks``: Keras callbacks added to the fit of a model that trains by epochs with the
      validation set (e.g. the tuner's per-epoch report, :mod:`tfrs_movies.tuning.pruning`).
    """
    if evaluate_on not in EVALUATED_ON:
        raise ValueError(f"evaluate_on must be one of {sorted(EVALUATED_ON)}, got {evaluate_on!r}")
    from tfrs_movies.models.registry import build_model

    C.check_names(config)  # an unknown model, model.params key or metric: before any data or folder
    np.random.seed(config["seed"])
    owns_dataset = dataset is None
    if owns_dataset:
        dataset = resolve_dataset(config, say)
    if run_dir is None:
        run_dir = config["run_dir"] or default_run_dir(config)
    run_dir = Path(run_dir)
    # Multi-worker training: only the chief writes the run directory; every other worker writes into a
    # temporary one (it still must write: TensorBoard and saving take part in collectives), removed at
    # the end.
    with _run_directory(run_dir, config) as run_dir:
        config["run_dir"] = str(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        _start_writing(run_dir, config)
        atomic_write_text(run_dir / "config.yaml", C.dump(config))

        split = build_split(config, dataset)
        if owns_dataset:
            # The split holds copies of the ratings it keeps: drop the dataset's own frame (2.8 GB at
            # 100M ratings). A copy, since an empty slice would be a view keeping the whole frame alive.
            dataset = dataclasses.replace(dataset, ratings=dataset.ratings.iloc[:0].copy())
        if evaluate_on == "valid" and (split.valid is None or not len(split.valid)):
            raise C.ConfigError(
                "evaluating on validation needs a validation split: set data.split.validation_fraction > 0"
            )
        say(f"split: {split.kind} " + ", ".join(f"{k} {v:,}" for k, v in split.sizes().items()))
        model = build_model(config)
        train_seconds = fit(model, split, dataset, evaluate_on, run_dir, callbacks)
        check_finite_losses(model.history, model.name)  # a NaN loss: an error, and no metrics written

        metrics: dict[str, Any] = evaluate(model, split, config, evaluate_on)
        metrics["train_seconds"] = round(train_seconds, 2)
        if "best_epoch" in model.history:
            metrics["best_epoch"] = int(model.history["best_epoch"][0])
        metrics.update({"dataset": dataset.name, "model": model.name, "split": split.kind})
        metrics["sizes"] = split.sizes()
        metrics["evaluated_on"] = EVALUATED_ON[evaluate_on]
        if extra_figures is not None:
            metrics.update(extra_figures(model, split))
        atomic_write_json(run_dir / "metrics.json", metrics)
        model.save(run_dir / "model")
        result = ExperimentResult(run_dir, metrics, model, dataset, split, evaluate_on)
        if evaluate_on == "test":
            _write_tensorboard(result)
            if config["export"]["enabled"]:
                from tfrs_movies.serving.export import export_run

                k_max = config["export"]["k_max"]
                exported = export_run(model, dataset, run_dir, k_max=k_max, metrics=metrics)
                say(f"export: {exported}")
        status.mark_complete(run_dir)  # the last artifact is in place
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
        return result


def _start_writing(run_dir: Path, config: dict[str, Any]) -> None:
    """Before a run writes ``run_dir``: refuse a folder another live run is writing, remove what a killed
    writer left half-done (temporaries), keep the checkpoints only when this is the same config resumed
    (:func:`tfrs_movies.training.status.interrupted`), and mark the run as running."""
    if not status.is_complete(run_dir) and status.writer_running(run_dir):
        marker = run_dir / status.RUNNING
        raise C.ConfigError(f"run directory {run_dir} is being written by another process (see {marker})")
    remove_stale_temporaries(run_dir, recursive=True)
    if not status.interrupted(run_dir, config):
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)  # a finished run's or another config's
    status.mark_running(run_dir)


@contextlib.contextmanager
def _run_directory(run_dir: Path, config: dict[str, Any]) -> Iterator[Path]:
    """``run_dir`` on the chief (or a single process), a removed-at-exit temporary folder elsewhere."""
    from tfrs_movies.training.distribute import strategy_for, write_dir

    with write_dir(run_dir, strategy_for(config)) as path:
        yield path


def _write_tensorboard(result: ExperimentResult) -> None:
    """The test figures as ``test/<name>`` scalars with the run's HParams session, and the movie vectors
    in the projector (:mod:`tfrs_movies.training.tensorboard`)."""
    from tfrs_movies.training.tensorboard import write_run_hparams

    run_dir, model = result.run_dir, result.model
    vectors = model.movie_embeddings()
    if vectors is not None:
        from tfrs_movies.training.projector import write_movie_projector

        write_movie_projector(run_dir / "tensorboard", model.catalogue, vectors, result.dataset.movies)
    shutil.rmtree(run_dir / "tensorboard" / "test", ignore_errors=True)  # a killed try's, resumed
    write_run_hparams(run_dir / "tensorboard" / "test", model.config, result.metrics, run_dir.name)


def run_experiment(config: dict[str, Any], say: Callable[[str], None] = print) -> ExperimentResult:
    """:func:`run` evaluated on test: what ``python -m tfrs_movies.train`` does."""
    return run(config, "test", say)
