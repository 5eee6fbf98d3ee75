"""Datasets: finding them on disk, loading any supported format into the canonical schema.

``load_dataset(name, data_dir)`` is the one entry point the rest of the project uses. Which datasets
exist, their loaders and the files that mark their folders are one table,
:data:`tfrs_movies.data.registry.DATASETS`; the per-family modules (:mod:`.movielens`, :mod:`.netflix`,
:mod:`.imdb`) hold the format details.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfrs_movies.data.registry import DATASET_NAMES, DATASETS, dataset_spec
from tfrs_movies.schema import Dataset

__all__ = ["DATASETS", "DATASET_NAMES", "DatasetNotFoundError", "candidate_dirs", "find_data_dir",
           "load_dataset", "resolve_dataset"]  # fmt: skip

_REPO_ROOT = Path(__file__).resolve().parents[2]


class DatasetNotFoundError(FileNotFoundError):
    """No folder holding the dataset was found in any of the places looked at."""


def _holds(path: Path, name: str) -> bool:
    return any((path / marker).exists() for marker in DATASETS[name].markers)


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
    spec = dataset_spec(name)  # an unknown name is a ValueError listing the known ones
    if spec.generated:
        raise ValueError(f"{name} is generated, not read from a folder")
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

    ``synthetic`` (users, movies, ratings, seed) sizes the world of a generated dataset (``synthetic``).
    ``imdb_dir``, when given, enriches the movies with IMDb features (runtime, rating, directors, actors).
    """
    spec = dataset_spec(name)
    if spec.generated:
        dataset = spec.loader(None, on_bad_lines, dict(synthetic or {}))
    else:
        path = find_data_dir(name, data_dir)
        dataset = spec.loader(path, on_bad_lines, {})
        dataset.report.setdefault("path", str(path))
    if imdb_dir is not None:
        from tfrs_movies.data.imdb import enrich_with_imdb

        dataset = enrich_with_imdb(dataset, imdb_dir)
    return dataset


# What a missing dataset whose entry allows it (``offline_fallback``: the default ML-100K) is replaced by.
FALLBACK_DATASET = "synthetic"


def resolve_dataset(config: dict, say=print) -> Dataset:
    """Load the dataset a resolved config names (``data``), saying in one line which data it used.

    A generated dataset is generated (``data.synthetic`` sizes it). A missing one is downloaded when
    ``data.download`` is on and it has a download entry; when that fails too, a dataset whose entry
    allows it (``offline_fallback``, the default ML-100K only) is replaced by a generated sample
    (``config["data"]["name"]`` is updated to say so); any other is the not-found error.
    """
    data = config["data"]
    name = data["name"]
    spec = dataset_spec(name)
    if spec.generated:
        dataset = load_dataset(name, synthetic=data["synthetic"], imdb_dir=data["imdb_dir"])
        seed = data["synthetic"]["seed"]
        say(f"data: generated {name} sample ({len(dataset.ratings):,} ratings, seed {seed})")
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
        except Exception as err:  # offline, or no official archive: fall back only where allowed
            if not spec.offline_fallback:
                raise missing from err
            config["data"]["name"] = FALLBACK_DATASET
            dataset = load_dataset(FALLBACK_DATASET, synthetic=data["synthetic"])
            say(
                f"data: {name} not found and not downloadable ({type(err).__name__}); "
                f"using a generated sample of {len(dataset.ratings):,} ratings instead"
            )
            return dataset
    dataset = load_dataset(name, data["dir"], data["on_bad_lines"], imdb_dir=data["imdb_dir"])
    say(f"data: {name} from {dataset.report.get('path')} ({len(dataset.ratings):,} ratings)")
    return dataset
