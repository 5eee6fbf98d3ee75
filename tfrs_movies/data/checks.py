"""What every loaded dataset must be, whatever its format: checked once, in one place.

:func:`check_dataset` runs on each dataset :func:`tfrs_movies.data.load_dataset` returns:

- **No ratings** (an empty ratings file, or one where every line was bad and skipped) is a
  :class:`DataError` naming the folder (and, under skip, how many lines were skipped and the first).
- **Duplicate (user, movie) pairs**: the latest rating by timestamp is kept (on equal timestamps, the
  later line of the file), the others dropped, and the count is reported (``duplicate_ratings``).
  A user who re-rates a movie changed their mind; keeping both would let a split put the same pair in
  train and test.
- **Ratings of movies the movie file does not list** (or users the user file does not list, where the
  format has one): under ``on_bad_lines: error`` a :class:`DataError` naming the first id and the count;
  under ``skip`` those ratings are dropped and counted (``unknown_movie_ratings``,
  ``unknown_user_ratings``).

Every count lands in ``dataset.report`` (so in ``python -m tfrs_movies.data info``) and in the one line
:func:`summary` gives ``python -m tfrs_movies.train``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from tfrs_movies import schema as S
from tfrs_movies.data.errors import DataError


def _pair_keys(users: np.ndarray, movies: np.ndarray) -> np.ndarray | None:
    """One int64 per (user, movie) pair, or None when the id ranges are too wide to combine."""
    if not len(users):
        return np.empty(0, np.int64)
    u0, m0 = int(users.min()), int(movies.min())
    span = int(movies.max()) - m0 + 1
    if (int(users.max()) - u0 + 1) * span >= 2**62:
        return None
    return (users.astype(np.int64) - u0) * span + (movies.astype(np.int64) - m0)


def keep_latest_ratings(ratings: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``(ratings with one row per (user, movie) pair, rows dropped)``: each pair keeps its latest
    rating by timestamp, the later row on equal timestamps. The frame is returned as is (no copy) when
    there is no duplicate, which one sort of an int64 key finds (0.3 s at 10M ratings); only the rows of
    repeated pairs are then ordered by time."""
    users, movies = ratings[S.USER_ID].to_numpy(), ratings[S.MOVIE_ID].to_numpy()

    def pair_keys() -> np.ndarray:
        key = _pair_keys(users, movies)
        if key is None:  # ids too wide to combine: number the pairs instead
            key = pd.MultiIndex.from_arrays([users, movies]).factorize()[0].astype(np.int64)
        return key

    ordered = pair_keys()
    ordered.sort()  # in place: one int64 per rating is the whole extra memory of the check
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    if not len(repeated):
        return ratings, 0
    key = pair_keys()
    # Rows of repeated pairs, in file order (a hash look-up: np.isin or searchsorted take 10x longer).
    involved = np.flatnonzero(pd.Index(repeated).get_indexer(key) >= 0)
    # lexsort is stable: by pair, then timestamp, then file order; the last row of each pair wins.
    sub = key[involved]
    order = np.lexsort((ratings[S.TIMESTAMP].to_numpy()[involved], sub))
    last = np.ones(len(order), dtype=bool)
    last[:-1] = sub[order][1:] != sub[order][:-1]
    keep = np.ones(len(key), dtype=bool)
    keep[involved[order[~last]]] = False
    return ratings.loc[keep].reset_index(drop=True), int(len(keep) - keep.sum())


def _unknown(ids: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Mask of ``ids`` not in ``known`` (a lookup table when the ids are small, else a hash set)."""
    if not len(ids):
        return np.zeros(0, dtype=bool)
    if len(known) and known.min() >= 0 and ids.min() >= 0 and max(ids.max(), known.max()) < 50_000_000:
        table = np.zeros(int(max(ids.max(), known.max())) + 1, dtype=bool)
        table[known] = True
        return ~table[ids]
    return pd.Index(np.unique(known)).get_indexer(ids) < 0


def _drop_unknown(
    dataset: S.Dataset, column: str, known: pd.DataFrame, what: str, on_bad_lines: str
) -> tuple[pd.DataFrame, int]:
    ratings = dataset.ratings
    if not len(known):  # the format has no such file (ML-25M users, Netflix users): nothing to check
        return ratings, 0
    ids = ratings[column].to_numpy()
    bad = _unknown(ids, known[column].to_numpy())
    n = int(bad.sum())
    if not n:
        return ratings, 0
    if on_bad_lines == "error":
        first = int(ids[bad][0])
        raise DataError(
            f"{dataset.report.get('path', dataset.name)}: {n:,} ratings are of {what}s its {what} file does "
            f"not list (first: {what} {first}); fix the files, or set data.on_bad_lines: skip to drop them"
        )
    return ratings.loc[~bad].reset_index(drop=True), n


def check_dataset(dataset: S.Dataset, on_bad_lines: str = "error") -> S.Dataset:
    """``dataset`` with the rules of the module docstring applied (a new object when anything changed)."""
    report = dict(dataset.report)
    ratings, dropped = keep_latest_ratings(dataset.ratings)
    if dropped:
        report["duplicate_ratings"] = dropped
    dataset = dataclasses.replace(dataset, ratings=ratings)
    for column, frame, what in ((S.MOVIE_ID, dataset.movies, "movie"), (S.USER_ID, dataset.users, "user")):
        ratings, dropped = _drop_unknown(dataset, column, frame, what, on_bad_lines)
        if dropped:
            report[f"unknown_{what}_ratings"] = dropped
            dataset = dataclasses.replace(dataset, ratings=ratings)
    if not len(dataset.ratings):
        where = report.get("path", dataset.name)
        skipped = report.get("skipped_lines", 0)
        if skipped:
            files = ", ".join(f"{name}: {n:,}" for name, n in report.get("skipped_by_file", {}).items())
            raise DataError(
                f"{where}: no usable ratings: every rating line was bad and skipped under on_bad_lines: skip "
                f"({files}); set data.on_bad_lines: error to see the first bad line"
            )
        raise DataError(f"{where}: no ratings (the ratings file is empty)")
    return dataclasses.replace(dataset, report=report)


def summary(report: dict) -> str:
    """What the loader did besides reading, for the ``data:`` line: ``""`` when nothing."""
    parts = []
    if report.get("skipped_lines"):
        files = ", ".join(f"{name}: {n:,}" for name, n in report.get("skipped_by_file", {}).items())
        parts.append(f"skipped {report['skipped_lines']:,} bad lines ({files})")
    if report.get("duplicate_ratings"):
        dropped = report["duplicate_ratings"]
        parts.append(f"{dropped:,} duplicate (user, movie) ratings dropped, the latest kept")
    for what in ("movie", "user"):
        if report.get(f"unknown_{what}_ratings"):
            parts.append(f"{report[f'unknown_{what}_ratings']:,} ratings of unlisted {what}s dropped")
    return "; ".join(parts)
