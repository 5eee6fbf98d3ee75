"""One experiment end to end: resolve the data, split, fit, evaluate, write the run directory.

The run directory holds ``config.yaml`` (the resolved config), ``metrics.json`` (the test figures of
EVALUATION.md, plus validation and timing), ``tensorboard/`` and ``model/`` (the saved recommender).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfrs_movies import config as C
from tfrs_movies import schema as S
from tfrs_movies.data import DatasetNotFoundError, find_data_dir, load_dataset
from tfrs_movies.data.splits import (
    Split,
    files_split,
    leave_last_out_split,
    probe_split,
    random_split,
    user_holdout_split,
    with_validation,
)
from tfrs_movies.evaluation.metrics import mae, rmse
from tfrs_movies.evaluation.ranking import FullRankingEvaluator
from tfrs_movies.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class ExperimentResult:
    run_dir: Path
    metrics: dict[str, Any]
    model: Any
    dataset: S.Dataset
    split: Split


def resolve_dataset(config: dict[str, Any], say=print) -> S.Dataset:
    """Load ``data.name``; for the default ML-100K, download it or else fall back to a generated sample.

    Says in one line which data it used.
    """
    data = config["data"]
    name = data["name"]
    if name == "synthetic":
        dataset = load_dataset("synthetic", synthetic=data["synthetic"], imdb_dir=data["imdb_dir"])
        seed = data["synthetic"]["seed"]
        say(f"data: generated synthetic sample ({len(dataset.ratings):,} ratings, seed {seed})")
        return dataset
    try:
        find_data_dir(name, data["dir"])
    except DatasetNotFoundError as missing:
        if not data["download"]:
            raise
        try:
            from tfrs_movies.data.download import download

            target = Path(data["dir"]) if data["dir"] else Path("data")
            download(name, target)
        except Exception as err:  # offline, or no official archive: fall back only for the default job
            if name != "ml-100k":
                raise missing from err
            config["data"]["name"] = "synthetic"
            dataset = load_dataset("synthetic", synthetic=data["synthetic"])
            say(
                f"data: MovieLens 100K not found and not downloadable ({type(err).__name__}); "
                f"using a generated sample of {len(dataset.ratings):,} ratings instead"
            )
            return dataset
    dataset = load_dataset(name, data["dir"], data["on_bad_lines"], imdb_dir=data["imdb_dir"])
    say(f"data: {name} from {dataset.report.get('path')} ({len(dataset.ratings):,} ratings)")
    return dataset


def _resolve_file(name: str, base: str | None) -> Path:
    path = Path(name)
    return path if path.is_absolute() or base is None else Path(base) / path


def build_split(config: dict[str, Any], dataset: S.Dataset) -> Split:
    """The split named by ``data.split.kind``, with validation carved from train."""
    cfg = config["data"]["split"]
    kind = cfg["kind"]
    if kind == "files":
        if not cfg["train"] or not cfg["test"]:
            raise C.ConfigError("data.split.kind 'files' needs data.split.train and data.split.test")
        from tfrs_movies.data.movielens import ratings_layout, read_ratings_file

        base = dataset.report.get("path")
        layout = ratings_layout(dataset.name)
        split = files_split(
            read_ratings_file(_resolve_file(cfg["train"], base), layout, config["data"]["on_bad_lines"]),
            read_ratings_file(_resolve_file(cfg["test"], base), layout, config["data"]["on_bad_lines"]),
        )
    elif kind == "random":
        split = random_split(dataset.ratings, cfg["test_fraction"], cfg["seed"], cfg["min_ratings"])
    elif kind == "user_holdout":
        split = user_holdout_split(dataset.ratings, cfg["test_fraction"], cfg["seed"])
    elif kind == "leave_last_out":
        split = leave_last_out_split(dataset.ratings)
    elif kind == "probe":
        if dataset.name != "netflix":
            raise C.ConfigError(f"data.split.kind 'probe' is for netflix, not {dataset.name}")
        from tfrs_movies.data.netflix import load_probe

        split = probe_split(dataset.ratings, load_probe(dataset.report["path"]))
    else:  # the config validator already refused anything else
        raise C.ConfigError(f"unknown data.split.kind {kind!r}")
    return with_validation(split, cfg["validation_fraction"], cfg["seed"], cfg["min_ratings"])


def evaluate(model: Any, split: Split, config: dict[str, Any], on: str = "test") -> dict[str, float]:
    """Full-ranking top-N metrics (seen movies removed) and, for rating models, RMSE/MAE."""
    frame = split.test if on == "test" else split.valid
    # For test, the validation ratings are part of what the user has seen (they come from train).
    seen = split.train if on != "test" or split.valid is None else pd.concat([split.train, split.valid])
    ev = config["eval"]
    evaluator = FullRankingEvaluator(
        seen, frame, model.catalogue, ev["ks"], ev["relevance_threshold"], ev["exclude_seen"]
    )
    metrics = evaluator.evaluate(model.score, ev["batch_size"])
    if model.predicts_ratings:
        predicted = model.predict(frame[S.USER_ID].to_numpy(), frame[S.MOVIE_ID].to_numpy())
        metrics["rmse"] = rmse(frame[S.RATING].to_numpy(), predicted, clip=model.rating_scale)
        metrics["mae"] = mae(frame[S.RATING].to_numpy(), predicted, clip=model.rating_scale)
    if hasattr(model, "extra_metrics"):  # e.g. normalised-scale RMSE, or classification accuracy/AUC
        metrics.update(model.extra_metrics(frame))
    return metrics


def default_run_dir(config: dict[str, Any]) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config['data']['name']}-{config['model']['name']}-{stamp}"


def run_experiment(config: dict[str, Any], say=print) -> ExperimentResult:
    """Train, evaluate and save one model as configured; returns the run's figures and objects."""
    import tensorflow as tf

    from tfrs_movies.models.registry import build_model

    np.random.seed(config["seed"])
    dataset = resolve_dataset(config, say)
    run_dir = Path(config["run_dir"]) if config["run_dir"] else default_run_dir(config)
    config["run_dir"] = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", C.dump(config))

    split = build_split(config, dataset)
    say(f"split: {split.kind} " + ", ".join(f"{k} {v:,}" for k, v in split.sizes().items()))
    model = build_model(config)
    start = time.perf_counter()
    if model.uses_validation or split.valid is None:
        model.fit(split.train, dataset, split.valid, run_dir=run_dir)
        if split.valid is not None:
            model.update_seen(pd.concat([split.train, split.valid]))  # served recommendations skip both
    else:  # nothing to early-stop: learn from every training rating
        model.fit(pd.concat([split.train, split.valid], ignore_index=True), dataset, None, run_dir=run_dir)
    train_seconds = time.perf_counter() - start

    metrics: dict[str, Any] = evaluate(model, split, config, "test")
    metrics["train_seconds"] = round(train_seconds, 2)
    if "best_epoch" in model.history:
        metrics["best_epoch"] = int(model.history["best_epoch"][0])
    metrics.update({"dataset": dataset.name, "model": model.name, "split": split.kind})
    metrics["sizes"] = split.sizes()
    atomic_write_json(run_dir / "metrics.json", metrics)
    model.save(run_dir / "model")

    vectors = model.movie_embeddings()
    if vectors is not None:
        from tfrs_movies.training.projector import write_movie_projector

        write_movie_projector(run_dir / "tensorboard", model.catalogue, vectors, dataset.movies)
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard" / "test"))
    with writer.as_default():
        for name, value in metrics.items():
            if isinstance(value, float):
                tf.summary.scalar(f"test/{name}", value, step=0)
    writer.flush()
    result = ExperimentResult(run_dir, metrics, model, dataset, split)
    if config["export"]["enabled"]:
        from tfrs_movies.serving.export import export_run

        exported = export_run(result, k_max=config["export"]["k_max"])
        if exported is not None:
            say(f"export: {exported}")
    return result
