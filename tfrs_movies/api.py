"""The Python API on one page: config, data, model, run, export.

    from tfrs_movies import load_config, load_dataset, build_model, run, load_export

    config = load_config("configs/ml100k_retrieval.yaml", {"train.epochs": 3})
    result = run(config)                      # train, evaluate on test, save, export
    print(result.metrics["ndcg@10"])
    exported = load_export(result.run_dir / "export")
    print(exported.recommend(42, k=10).frame)

Each name is re-exported by ``tfrs_movies`` and imported on first use, so ``import tfrs_movies`` stays
light (it only selects the legacy Keras TFRS needs); TensorFlow loads when a model is built or run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tfrs_movies  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

if TYPE_CHECKING:
    from tfrs_movies.models.base import Recommender
    from tfrs_movies.schema import Dataset
    from tfrs_movies.serving.load import Exported
    from tfrs_movies.training.experiment import ExperimentResult

__all__ = ["build_model", "load_config", "load_dataset", "load_export", "run"]


def load_config(
    path: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] = ()
) -> dict[str, Any]:
    """The resolved config: the built-in defaults, then the YAML file at ``path``, then ``overrides``
    ("key=value" strings or a mapping of dotted keys). A wrong key or value is a ``ConfigError``.

    >>> config = load_config("configs/ml100k_retrieval.yaml", {"train.epochs": 3, "model.name": "ease"})
    >>> config["train"]["epochs"]
    3
    """
    from tfrs_movies.config import load_config as load

    return load(path, overrides)


def load_dataset(name: str = "ml-100k", data_dir: str | Path | None = None, **options: Any) -> Dataset:
    """A dataset in the project's schema (``.ratings``: user_id, movie_id, rating, timestamp; ``.movies``:
    movie_id, title, year, genres; ``.users`` where the dataset has them). ``data_dir`` holds its files
    (default: ``$TFRS_MOVIES_DATA``, ``data/``, ``../shared/data``); ``"synthetic"`` needs none.

    >>> dataset = load_dataset("ml-100k", "../shared/data")
    >>> len(dataset.ratings), len(dataset.movies)
    (100000, 1682)
    """
    from tfrs_movies.data import load_dataset as load

    return load(name, data_dir, **options)


def build_model(config: Mapping[str, Any] | str) -> Recommender:
    """An unfitted model: ``config["model"]["name"]`` with its ``model.params``, or a model name with the
    default config. ``model.fit(train_ratings, dataset, valid_ratings)`` fits it, ``model.recommend(user_ids,
    k)`` answers (the contract: docs/MODEL_CONTRACT.md).

    >>> model = build_model("ease").fit(dataset.ratings, dataset)
    >>> movie_ids, scores = model.recommend([1, 2], k=10)      # (2, 10) each
    """
    from tfrs_movies.models.registry import build_model as build

    if isinstance(config, str):
        config = load_config(None, {"model.name": config})
    return build(dict(config))


def run(
    config: Mapping[str, Any],
    *,
    evaluate_on: str = "test",
    run_dir: str | Path | None = None,
    say: Callable[[str], None] = print,
) -> ExperimentResult:
    """Train, evaluate and save one model as ``config`` says (what ``tfrs-movies train`` does): the data,
    the split with validation carved from train, the fit, the figures on ``evaluate_on`` ("test" or
    "valid"), the run directory (config.yaml, metrics.json, model/, export/, tensorboard/). Returns
    ``.metrics``, ``.model``, ``.run_dir``, ``.dataset`` and ``.split``.

    >>> result = run(load_config(None, {"model.name": "ease"}), say=lambda line: None)
    >>> round(result.metrics["recall@20"], 3)
    """
    from tfrs_movies.training.experiment import run as run_one

    return run_one(dict(config), evaluate_on, say, run_dir)


def load_export(path: str | Path, ranking: str | Path | None = None) -> Exported:
    """Open a run's serving export (``<run_dir>/export``; ``ranking``: another run's export for the second
    stage). ``.recommend(user_id, k)``, ``.similar(movie_id, k)``, ``.recommend_pair(a, b, k)`` return
    recommendations whose ``.frame`` has movie_id, title, year and score, best first.

    >>> exported = load_export("runs/ml100k_retrieval/export")
    >>> exported.recommend(42, k=5).frame[["title", "score"]]
    """
    from tfrs_movies.serving.load import load_export as load

    return load(path, ranking)
