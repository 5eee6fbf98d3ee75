"""The splits of EVALUATION.md, as plain functions over the canonical ratings frame.

Each returns a :class:`Split`. Validation (for early stopping and tuning) is always carved out of train,
never out of test. :func:`build_split` picks the one a config names (``data.split``), checking that the
dataset supports it (its entry in :mod:`tfrs_movies.data.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfrs_movies import schema as S
from tfrs_movies.data.registry import DATASETS, SPLIT_KINDS, unsupported_split

__all__ = ["SPLIT_KINDS", "Split", "build_split", "files_split", "leave_last_out_split",
           "per_user_random_mask", "probe_split", "random_split", "user_holdout_split",
           "with_validation"]  # fmt: skip


@dataclass
class Split:
    """Train / validation / test ratings frames (canonical columns); ``valid`` is carved from train."""

    kind: str
    train: pd.DataFrame
    test: pd.DataFrame
    valid: pd.DataFrame | None = None

    def sizes(self) -> dict[str, int]:
        out = {"train": len(self.train), "test": len(self.test)}
        if self.valid is not None:
            out["valid"] = len(self.valid)
        return out


def _rank_within_user(ratings: pd.DataFrame, key: np.ndarray) -> np.ndarray:
    """0-based position of each row inside its user's rows when ordered by ``key`` (vectorised)."""
    order = np.lexsort((key, ratings[S.USER_ID].to_numpy()))
    ranks = np.empty(len(ratings), dtype=np.int64)
    users_sorted = ratings[S.USER_ID].to_numpy()[order]
    starts = np.r_[0, np.flatnonzero(users_sorted[1:] != users_sorted[:-1]) + 1]
    lengths = np.diff(np.r_[starts, len(order)])
    ranks[order] = np.arange(len(order)) - np.repeat(starts, lengths)
    return ranks


def per_user_random_mask(
    ratings: pd.DataFrame, fraction: float, seed: int, min_ratings: int = 5
) -> np.ndarray:
    """Boolean mask of the held-out rows: per user, a random ``round(fraction * n)`` of their ratings.

    Users with fewer than ``min_ratings`` ratings keep all of them (mask False).
    """
    rng = np.random.default_rng(seed)
    ranks = _rank_within_user(ratings, rng.random(len(ratings)))
    counts = ratings.groupby(S.USER_ID)[S.USER_ID].transform("size").to_numpy()
    n_out = np.rint(counts * fraction).astype(np.int64)
    return (counts >= min_ratings) & (ranks < n_out)


def random_split(
    ratings: pd.DataFrame, test_fraction: float = 0.2, seed: int = 42, min_ratings: int = 5
) -> Split:
    """Per user, a random ``test_fraction`` of ratings to test; users with < ``min_ratings`` all in train."""
    mask = per_user_random_mask(ratings, test_fraction, seed, min_ratings)
    return Split("random", ratings[~mask].reset_index(drop=True), ratings[mask].reset_index(drop=True))


def user_holdout_split(ratings: pd.DataFrame, test_fraction: float = 0.2, seed: int = 42) -> Split:
    """A random ``test_fraction`` of users go to test with all their ratings (cold-start users)."""
    users = np.sort(ratings[S.USER_ID].unique())
    rng = np.random.default_rng(seed)
    n_test = int(round(len(users) * test_fraction))
    test_users = rng.choice(users, n_test, replace=False)
    mask = ratings[S.USER_ID].isin(test_users).to_numpy()
    return Split("user_holdout", ratings[~mask].reset_index(drop=True), ratings[mask].reset_index(drop=True))


def leave_last_out_split(ratings: pd.DataFrame) -> Split:
    """Per user, by (timestamp, movie id): the last rating is test, the one before validation, the rest train.

    Users with two ratings give one to test and none to validation; users with one keep it in train.
    """
    ts = ratings[S.TIMESTAMP].to_numpy()
    movie = ratings[S.MOVIE_ID].to_numpy()
    # Reverse rank: 0 = last. lexsort sorts by the last key first, so (movie, ts) orders by ts then movie.
    order = np.lexsort((-movie, -ts, ratings[S.USER_ID].to_numpy()))
    rank_from_end = np.empty(len(ratings), dtype=np.int64)
    users_sorted = ratings[S.USER_ID].to_numpy()[order]
    starts = np.r_[0, np.flatnonzero(users_sorted[1:] != users_sorted[:-1]) + 1]
    lengths = np.diff(np.r_[starts, len(order)])
    rank_from_end[order] = np.arange(len(order)) - np.repeat(starts, lengths)
    counts = ratings.groupby(S.USER_ID)[S.USER_ID].transform("size").to_numpy()
    test = (rank_from_end == 0) & (counts >= 2)
    valid = (rank_from_end == 1) & (counts >= 3)
    train = ~(test | valid)
    return Split(
        "leave_last_out",
        ratings[train].reset_index(drop=True),
        ratings[test].reset_index(drop=True),
        ratings[valid].reset_index(drop=True),
    )


def probe_split(ratings: pd.DataFrame, probe: pd.DataFrame) -> Split:
    """Netflix: the probe (user, movie) pairs are the test set and are removed from train.

    Pairs are compared as one int64 key each (user * (largest movie + 1) + movie), a chunk of ratings
    at a time against a hash of the probe's keys: no MultiIndex of every rating (gigabytes at 100M)."""
    probe_u = probe[S.USER_ID].to_numpy(np.int64)
    probe_m = probe[S.MOVIE_ID].to_numpy(np.int64)
    u, m = ratings[S.USER_ID].to_numpy(), ratings[S.MOVIE_ID].to_numpy()
    width = int(max(m.max(initial=0), probe_m.max(initial=0))) + 1
    probe_keys = pd.Index(probe_u * width + probe_m).unique()
    mask = np.zeros(len(ratings), bool)
    step = 1 << 22
    for lo in range(0, len(ratings), step):
        hi = min(lo + step, len(ratings))
        mask[lo:hi] = probe_keys.get_indexer(u[lo:hi].astype(np.int64) * width + m[lo:hi]) >= 0
    return Split("probe", _select(ratings, ~mask), _select(ratings, mask))


def _select(frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """``frame[keep]`` with a fresh RangeIndex, one column at a time: no int64 row indexer and no
    consolidation copy (``frame[keep].reset_index()`` peaks at about twice the kept rows' bytes)."""
    out = pd.DataFrame({c: frame[c].to_numpy()[keep] for c in frame.columns}, copy=False)
    out.attrs = dict(frame.attrs)
    return out


def files_split(train: pd.DataFrame, test: pd.DataFrame) -> Split:
    """Given train and test frames (read from the dataset's own files, e.g. u1.base / u1.test)."""
    return Split("files", S.canonical_ratings(train), S.canonical_ratings(test))


def with_validation(split: Split, fraction: float = 0.1, seed: int = 42, min_ratings: int = 5) -> Split:
    """Carve a per-user random validation set out of train (a no-op when the split already has one)."""
    if split.valid is not None or fraction <= 0:
        return split
    mask = per_user_random_mask(split.train, fraction, seed + 1, min_ratings)
    return Split(split.kind, _select(split.train, ~mask), split.test, _select(split.train, mask))


def _resolve_file(name: str, base: str | None) -> Path:
    path = Path(name)
    return path if path.is_absolute() or base is None else Path(base) / path


def _ratings_part(path: Path, layout: str, on_bad_lines: str) -> pd.DataFrame:
    """One file of a ``files`` split, by the rules of :mod:`tfrs_movies.data.checks`: an empty one is a
    DataError, duplicate pairs keep their latest rating (counted in ``attrs["report"]``)."""
    from tfrs_movies.data.checks import keep_latest_ratings
    from tfrs_movies.data.errors import DataError
    from tfrs_movies.data.movielens import read_ratings_file

    frame = read_ratings_file(path, layout, on_bad_lines)
    report = dict(frame.attrs.get("report", {}))
    if not len(frame):
        raise DataError(f"{path}: no usable ratings (the file is empty or every line was skipped)")
    frame, dropped = keep_latest_ratings(frame)
    if dropped:
        report["duplicate_ratings"] = dropped
    if report:
        frame.attrs["report"] = report
    return frame


def build_split(config: dict[str, Any], dataset: S.Dataset) -> Split:
    """The split named by ``data.split.kind``, with validation carved from train.

    A kind the dataset does not support is a one-line :class:`~tfrs_movies.config.ConfigError` naming
    the dataset and the kinds it supports.
    """
    from tfrs_movies.config import ConfigError

    cfg = config["data"]["split"]
    kind = cfg["kind"]
    if kind not in SPLIT_KINDS:  # the config validator already refused anything else
        raise ConfigError(f"unknown data.split.kind {kind!r}; known: {', '.join(SPLIT_KINDS)}")
    spec = DATASETS.get(dataset.name)
    problem = unsupported_split(dataset.name, kind)
    if problem:
        raise ConfigError(problem)
    on_bad_lines = config["data"]["on_bad_lines"]
    if kind == "files":
        if not cfg["train"] or not cfg["test"]:
            raise ConfigError("data.split.kind 'files' needs data.split.train and data.split.test")
        base = dataset.report.get("path")
        split = files_split(
            _ratings_part(_resolve_file(cfg["train"], base), spec.ratings_layout, on_bad_lines),
            _ratings_part(_resolve_file(cfg["test"], base), spec.ratings_layout, on_bad_lines),
        )
    elif kind == "random":
        split = random_split(dataset.ratings, cfg["test_fraction"], cfg["seed"], cfg["min_ratings"])
    elif kind == "user_holdout":
        split = user_holdout_split(dataset.ratings, cfg["test_fraction"], cfg["seed"])
    elif kind == "leave_last_out":
        split = leave_last_out_split(dataset.ratings)
    else:  # "probe": the dataset's official held-out pairs (the registry guarantees held_out is set)
        split = probe_split(dataset.ratings, spec.held_out(Path(dataset.report["path"]), on_bad_lines))
    return with_validation(split, cfg["validation_fraction"], cfg["seed"], cfg["min_ratings"])
