"""Datasets: finding them on disk, loading any supported format into the canonical schema.

``load_dataset(name, data_dir)`` is the one entry point the rest of the project uses. Which datasets
exist, their loaders and the files that mark their folders are one table,
:data:`tfrs_movies.data.registry.DATASETS`; the per-family modules (:mod:`.movielens`, :mod:`.netflix`,
:mod:`.imdb`) hold the format details.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfrs_movies.data.checks import check_dataset, summary
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
    """Where a dataset is looked for, in order. A folder the user named (``data_dir``) is the only place:
    itself or ``data_dir/name`` (never another copy found elsewhere). Else ``$TFRS_MOVIES_DATA/name``,
    ``./data/name``, the repo's ``data/name``, and ``../shared/data/name``."""
    if data_dir is not None:
        return [Path(data_dir), Path(data_dir) / name]
    out: list[Path] = []
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
    if data_dir is not None:
        raise DatasetNotFoundError(
            f"{name} not found in the folder given, {data_dir} (looked in {looked} for "
            f"{' or '.join(spec.markers)}); fix --data-dir / data.dir, or fetch it with "
            f"`python -m tfrs_movies.data download {name} --data-dir {data_dir}`"
        )
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
    dataset = check_dataset(dataset, on_bad_lines)  # empty, duplicates, unlisted movies (data/checks.py)
    if imdb_dir is not None:
        from tfrs_movies.data.imdb import enrich_with_imdb

        dataset = enrich_with_imdb(dataset, imdb_dir)
    return dataset


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# What a missing dataset whose entry allows it (``offline_fallback``: the default ML-100K) is replaced by.
FALLBACK_DATASET = "synthetic"


def resolve_dataset(config: dict, say=print) -> Dataset:
    """Load the dataset a resolved config names (``data``), saying in one line which data it used.

    A generated dataset is generated (``data.synthetic`` sizes it). A folder the user named
    (``data.dir``) is used, or refused with :class:`DatasetNotFoundError` when it does not hold the
    dataset: nothing is downloaded into it and nothing else is used instead. With no folder named, a
    missing dataset is downloaded into ``data/`` when ``data.download`` is on and it has a download
    entry; when that fails too, a dataset whose entry allows it (``offline_fallback``, the default
    ML-100K only) is replaced by a generated sample (``config["data"]["name"]`` is updated to say so,
    and the line says where it looked and how to supply the real files); any other is the not-found
    error.
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
        if not data["download"] or data["dir"] is not None:
            raise
        try:
            from tfrs_movies.data.download import download

            download(name, Path("data"))
        except Exception as err:  # offline, or no official archive: fall back only where allowed
            if not spec.offline_fallback:
                raise missing from err
            config["data"]["name"] = FALLBACK_DATASET
            dataset = load_dataset(FALLBACK_DATASET, synthetic=data["synthetic"])
            looked = ", ".join(str(p) for p in candidate_dirs(name))
            say(
                f"data: {name} not found (looked in {looked}) and not downloadable "
                f"({type(err).__name__}: {_first_line(err)}); using a generated sample of "
                f"{len(dataset.ratings):,} ratings instead. For the real data: "
                f"`python -m tfrs_movies.data download {name}`, or unpack it into data/{name} and pass "
                f"--data-dir data/{name}"
            )
            return dataset
    dataset = load_dataset(name, data["dir"], data["on_bad_lines"], imdb_dir=data["imdb_dir"])
    handled = summary(dataset.report)
    say(f"data: {name} from {dataset.report.get('path')} ({len(dataset.ratings):,} ratings)"
        + (f"; {handled}" if handled else ""))  # fmt: skip
    return dataset
