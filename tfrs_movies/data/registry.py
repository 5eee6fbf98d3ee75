"""The one table of datasets: what each is called, how it is loaded, found, downloaded, split and faked.

Everything that used to name datasets one by one reads :data:`DATASETS` instead: the config's
``data.name`` choices (``schema.DATASET_NAMES``), :func:`tfrs_movies.data.load_dataset` and
:func:`~tfrs_movies.data.find_data_dir` (loader and layout markers), ``download.DATASETS`` (the
archive to fetch), ``python -m tfrs_movies.data synth`` (the format writer),
:func:`~tfrs_movies.data.splits.build_split` (the split kinds a dataset supports, its official
held-out pairs, its ratings-file layout) and the experiment runner (generated data, the offline
fallback). Adding a dataset is one :class:`DatasetSpec` entry below plus its loader.

This module imports nothing heavy: loaders and writers import their format module when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from tfrs_movies.schema import Dataset

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"

# Every split kind the project knows (``data.split.kind``). Which ones a dataset supports is in its spec.
SPLIT_KINDS = ("files", "random", "user_holdout", "leave_last_out", "probe")
# Kinds that work on any ratings frame.
GENERIC_SPLIT_KINDS = ("random", "user_holdout", "leave_last_out")
# Ratings-file layouts (``movielens.read_ratings_file`` / ``write_ratings_file``) and their file suffix.
LAYOUT_SUFFIX = {"ml-100k": "", "ml-1m": ".dat", "csv": ".csv"}


@dataclass(frozen=True)
class DatasetSource:
    """Where one dataset comes from.

    ``files`` are fetched from ``<base>/<file>``. A single ``.zip`` is verified and extracted into
    ``data_dir/<name>``; other files (IMDb's ``.tsv.gz``) are stored there as they are.
    ``sha256``/``md5`` pin the archive; when both are ``None`` and ``md5_sidecar`` is true, the MD5 is read
    from ``<url>.md5``. ``size`` (bytes) is informational, for the progress line.
    """

    name: str
    files: tuple[str, ...]
    base_url: str = GROUPLENS_URL
    sha256: str | None = None
    md5: str | None = None
    md5_sidecar: bool = True
    size: int | None = None
    note: str = ""


@dataclass(frozen=True)
class SynthFormat:
    """How ``python -m tfrs_movies.data synth --format NAME`` writes a generated world in this layout.

    ``writer(dataset, out_dir, seed)``; ``half_stars`` for 0.5-step ratings; ``genres`` names the genre
    vocabulary of the format ("ml-100k": the 19 ML-100K genres, "ml-csv": the ML-25M CSV names).
    """

    writer: Callable[[Dataset, Path, int], None]
    half_stars: bool = False
    genres: str = "ml-100k"


# loader(path, on_bad_lines, options) -> Dataset. ``path`` is the folder found by its markers (None for a
# generated dataset); ``options`` is ``data.synthetic`` for a generated one, else empty.
Loader = Callable[..., "Dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset.

    name
        ``data.name`` and the folder name it is looked for under (``data/<name>``).
    loader
        ``loader(path, on_bad_lines, options) -> Dataset`` in the canonical schema.
    markers
        files (or folders) whose presence says "this folder holds the dataset"; empty for a generated
        dataset, which is never looked for on disk.
    ratings_layout
        the layout of its ratings files ("ml-100k", "ml-1m" or "csv"): how ``files`` splits read
        ``data.split.train``/``test`` and how ``python -m tfrs_movies.data split`` writes them.
    split_kinds
        the ``data.split.kind`` values it supports.
    download
        the archive to fetch, or None; then ``not_downloadable`` says why and where to get it.
    held_out
        ``held_out(path, on_bad_lines) -> frame of (user_id, movie_id)``: the official held-out pairs of
        the ``probe`` split (Netflix's probe.txt), or None.
    synth
        how to write a generated world in this dataset's files, or None.
    offline_fallback
        when it is missing and cannot be downloaded, the runner uses a generated sample instead of
        failing (only the default dataset: an explicit other dataset is never silently replaced).
    """

    name: str
    loader: Loader
    markers: tuple[str, ...] = ()
    ratings_layout: str = "csv"
    split_kinds: tuple[str, ...] = ("files", *GENERIC_SPLIT_KINDS)
    download: DatasetSource | None = None
    not_downloadable: str = ""
    held_out: Callable[[Path, str], pd.DataFrame] | None = None
    synth: SynthFormat | None = None
    offline_fallback: bool = False

    def __post_init__(self) -> None:
        unknown = [k for k in self.split_kinds if k not in SPLIT_KINDS]
        if unknown:
            raise ValueError(f"dataset {self.name}: unknown split kinds {unknown}; known: {SPLIT_KINDS}")
        if ("probe" in self.split_kinds) != (self.held_out is not None):
            raise ValueError(f"dataset {self.name}: the 'probe' split kind needs held_out, and only it")
        if self.ratings_layout not in LAYOUT_SUFFIX:
            raise ValueError(f"dataset {self.name}: ratings_layout must be one of {tuple(LAYOUT_SUFFIX)}")
        if self.download is None and not self.not_downloadable:
            raise ValueError(f"dataset {self.name}: without a download entry, say why (not_downloadable)")

    @property
    def generated(self) -> bool:
        """Made by code, not read from files (no markers, no folder, no ``files`` split)."""
        return not self.markers


# --- loaders and writers (each imports its format module when called) ---------------------------------


def _load_ml100k(path: Path | None, on_bad_lines: str, options: dict[str, Any]) -> Dataset:
    from tfrs_movies.data.movielens import load_ml100k

    return load_ml100k(path, on_bad_lines=on_bad_lines)


def _load_ml1m(path: Path | None, on_bad_lines: str, options: dict[str, Any]) -> Dataset:
    from tfrs_movies.data.movielens import load_ml1m

    return load_ml1m(path, on_bad_lines=on_bad_lines)


def _ml_csv(name: str) -> Loader:
    def load(path: Path | None, on_bad_lines: str, options: dict[str, Any]) -> Dataset:
        from tfrs_movies.data.movielens import load_ml_csv

        return load_ml_csv(path, name=name, on_bad_lines=on_bad_lines)

    load.__name__ = f"load_{name.replace('-', '_')}"
    return load


def _load_netflix(path: Path | None, on_bad_lines: str, options: dict[str, Any]) -> Dataset:
    from tfrs_movies.data.netflix import load_netflix

    return load_netflix(path, on_bad_lines=on_bad_lines)


def _netflix_probe(path: Path, on_bad_lines: str = "error") -> pd.DataFrame:
    from tfrs_movies.data.netflix import load_probe

    return load_probe(path, on_bad_lines=on_bad_lines)


SYNTHETIC_DEFAULTS = {"users": 300, "movies": 400, "ratings": 20000, "seed": 0}


def _load_synthetic(path: Path | None, on_bad_lines: str, options: dict[str, Any]) -> Dataset:
    from tfrs_movies.data.synthetic import generate_world

    opts = {**SYNTHETIC_DEFAULTS, **(options or {})}
    return generate_world(
        n_users=opts["users"], n_movies=opts["movies"], n_ratings=opts["ratings"], seed=opts["seed"]
    ).dataset


def _write_ml100k(dataset: Dataset, out: Path, seed: int) -> None:
    from tfrs_movies.data.movielens import write_ml100k

    write_ml100k(dataset, out)


def _write_ml1m(dataset: Dataset, out: Path, seed: int) -> None:
    from tfrs_movies.data.movielens import write_ml1m

    write_ml1m(dataset, out)


def _write_ml_csv(dataset: Dataset, out: Path, seed: int) -> None:
    from tfrs_movies.data.movielens import write_ml_csv

    write_ml_csv(dataset, out, name=dataset.name)


def _write_netflix(dataset: Dataset, out: Path, seed: int) -> None:
    from tfrs_movies.data.netflix import write_netflix

    write_netflix(dataset, out, seed=seed)


def _grouplens(name: str, sha256: str | None = None, size: int | None = None) -> DatasetSource:
    return DatasetSource(name, (f"{name}.zip",), sha256=sha256, size=size)


_CSV_SYNTH = SynthFormat(_write_ml_csv, half_stars=True, genres="ml-csv")

# SHA-256 and sizes of the stable archives as recorded by TensorFlow Datasets
# (tensorflow_datasets/url_checksums/movielens.txt). The "latest" archives are regenerated by GroupLens
# from time to time, so they are verified against the MD5 published beside them instead of a pin.
_SPECS = (
    DatasetSpec(
        "ml-100k", _load_ml100k, markers=("u.data",), ratings_layout="ml-100k",
        download=_grouplens("ml-100k", "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                            4_924_029),
        synth=SynthFormat(_write_ml100k), offline_fallback=True,
    ),
    DatasetSpec(
        "ml-1m", _load_ml1m, markers=("ratings.dat",), ratings_layout="ml-1m",
        download=_grouplens("ml-1m", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                            5_917_549),
        synth=SynthFormat(_write_ml1m),
    ),
    DatasetSpec(
        "ml-20m", _ml_csv("ml-20m"), markers=("ratings.csv",),
        download=_grouplens("ml-20m", "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
                            198_702_078),
    ),
    DatasetSpec(
        "ml-25m", _ml_csv("ml-25m"), markers=("ratings.csv",),
        download=_grouplens("ml-25m", "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
                            261_978_986),
        synth=_CSV_SYNTH,
    ),
    DatasetSpec(
        "ml-latest", _ml_csv("ml-latest"), markers=("ratings.csv",), download=_grouplens("ml-latest")
    ),
    DatasetSpec(
        "ml-latest-small", _ml_csv("ml-latest-small"), markers=("ratings.csv",),
        download=_grouplens("ml-latest-small"), synth=_CSV_SYNTH,
    ),
    DatasetSpec(
        "netflix", _load_netflix,
        markers=("combined_data_1.txt", "combined_data_2.txt", "training_set", "movie_titles.csv"),
        split_kinds=("files", *GENERIC_SPLIT_KINDS, "probe"), held_out=_netflix_probe,
        not_downloadable=(
            "the Netflix Prize data is not distributed by GroupLens and needs a Kaggle account: download "
            "'netflix-prize-data' from https://www.kaggle.com/datasets/netflix-inc/netflix-prize-data and "
            "unpack it into <data_dir>/netflix/ "
            "(combined_data_1.txt ... combined_data_4.txt, movie_titles.csv, probe.txt)"
        ),
        synth=SynthFormat(_write_netflix),
    ),
    DatasetSpec(
        "synthetic", _load_synthetic, split_kinds=GENERIC_SPLIT_KINDS,
        not_downloadable="generated locally by tfrs_movies.data.synthetic; there is nothing to download",
    ),
)  # fmt: skip

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)


def dataset_spec(name: str) -> DatasetSpec:
    """The entry of ``name``; a ValueError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}") from None


def unsupported_split(name: str, kind: str) -> str | None:
    """None when dataset ``name`` supports split ``kind``; else the one-line reason. A frame built in
    code under a name outside the table (a test's) supports the kinds any ratings frame supports."""
    spec = DATASETS.get(name)
    kinds = spec.split_kinds if spec is not None else GENERIC_SPLIT_KINDS
    if kind in kinds:
        return None
    return (f"data.split.kind {kind!r} is not supported by dataset {name} "
            f"(it supports: {', '.join(kinds)})")  # fmt: skip
