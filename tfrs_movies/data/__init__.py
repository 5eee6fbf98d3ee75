"""Datasets: finding them on disk, loading any supported format into the canonical schema.

``load_dataset(name, data_dir)`` is the one entry point the rest of the project uses; the per-family
modules (:mod:`.movielens`, :mod:`.netflix`, :mod:`.imdb`) hold the format details.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfrs_movies.schema import DATASET_NAMES, Dataset

_REPO_ROOT = Path(__file__).resolve().parents[2]

# A file whose presence says "this folder holds that dataset".
_MARKERS: dict[str, tuple[str, ...]] = {
    "ml-100k": ("u.data",),
    "ml-1m": ("ratings.dat",),
    "ml-20m": ("ratings.csv",),
    "ml-25m": ("ratings.csv",),
    "ml-latest": ("ratings.csv",),
    "ml-latest-small": ("ratings.csv",),
    "netflix": ("combined_data_1.txt", "combined_data_2.txt", "training_set", "movie_titles.csv"),
}


class DatasetNotFoundError(FileNotFoundError):
    """No folder holding the dataset was found in any of the places looked at."""


def _holds(path: Path, name: str) -> bool:
    return any((path / marker).exists() for marker in _MARKERS.get(name, ()))


def candidate_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Where a dataset is looked for, in order: ``data_dir`` (itself or ``data_dir/name``),
    ``$TFRS_MOVIES_DATA/name``, ``./data/name``, the repo's ``data/name``, and ``../shared/data/name``."""
    out: list[Path] = []
    if data_dir is not None:
        out += [Path(data_dir), Path(data_dir) / name]
    if os.environ.get("TFRS_MOVIES_DATA"):
        env = Path(os.environ["TFRS_MOVIES_DATA"])
        out += [env / name, env]
    out += [Path.cwd() / "data" / name, _REPO_ROOT / "data" / name]
    out += [Path.cwd().parent / "shared" / "data" / name, _REPO_ROOT.parent / "shared" / "data" / name]
    seen, unique = set(), []
    for path in out:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def find_data_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The first candidate folder holding ``name``; :class:`DatasetNotFoundError` names all it tried."""
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    candidates = candidate_dirs(name, data_dir)
    for path in candidates:
        if _holds(path, name):
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise DatasetNotFoundError(
        f"{name} not found (looked in {looked}); run `python -m tfrs_movies.data download {name}` "
        "or pass --data-dir"
    )


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    on_bad_lines: str = "error",
    *,
    synthetic: dict | None = None,
    imdb_dir: str | Path | None = None,
) -> Dataset:
    """Load dataset ``name`` into the canonical schema.

    ``synthetic`` (users, movies, ratings, seed) sizes the generated world when ``name == "synthetic"``.
    ``imdb_dir``, when given, enriches the movies with IMDb features (runtime, rating, directors, actors).
    """
    if name == "synthetic":
        from tfrs_movies.data.synthetic import generate_world

        opts = {"users": 300, "movies": 400, "ratings": 20000, "seed": 0, **(synthetic or {})}
        dataset = generate_world(
            n_users=opts["users"], n_movies=opts["movies"], n_ratings=opts["ratings"], seed=opts["seed"]
        ).dataset
    else:
        path = find_data_dir(name, data_dir)
        if name == "ml-100k":
            from tfrs_movies.data.movielens import load_ml100k

            dataset = load_ml100k(path, on_bad_lines=on_bad_lines)
        elif name == "ml-1m":
            from tfrs_movies.data.movielens import load_ml1m

            dataset = load_ml1m(path, on_bad_lines=on_bad_lines)
        elif name == "netflix":
            from tfrs_movies.data.netflix import load_netflix

            dataset = load_netflix(path, on_bad_lines=on_bad_lines)
        else:
            from tfrs_movies.data.movielens import load_ml_csv

            dataset = load_ml_csv(path, name=name, on_bad_lines=on_bad_lines)
        dataset.report.setdefault("path", str(path))
    if imdb_dir is not None:
        from tfrs_movies.data.imdb import enrich_with_imdb

        dataset = enrich_with_imdb(dataset, imdb_dir)
    return dataset
