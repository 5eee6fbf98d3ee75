"""Watch histories as sequences: per-user time order, training examples, and per-user history tables.

Every sequence is a user's ratings ordered by (timestamp, movie id), so ties are broken the same way as
the ``leave_last_out`` split. Sequences are **left padded** with ``""`` (movie ids) and ``0.0``
(ratings): the most recent movie is always in the last slot, so a position counted from the end means
"how many movies ago" whatever the padding.

Examples for the sequence model are :class:`SequenceExamples` (``N`` rows, window ``L``):

- ``inputs`` (N, L) str movie ids the model reads, ``input_ratings`` (N, L) float32 their ratings;
- ``targets`` (N, L) str: the movie that follows each input position ("" = no target there, no loss),
  ``target_ratings`` (N, L) float32 its rating; ``user_id`` (N,) int64.

Two ways to cut them (``model.params.mode``):

- :func:`causal_examples` (SASRec): each position's target is the next movie, so one sequence trains
  every position; the encoder must then be causal (a position sees only itself and the past).
- :func:`window_examples` (seed 004): sliding windows of ``length`` movies moved by ``step``; the last
  movie of a window is the target, the others its history; only the last position has a target.

No example's input ever holds a movie rated after (or tied later than) its target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tfrs_movies import schema as S
from tfrs_movies.features.preprocessing import ids_as_strings

PAD = ""


@dataclass
class SequenceExamples:
    """Padded training rows; see the module docstring for shapes."""

    user_id: np.ndarray
    inputs: np.ndarray
    input_ratings: np.ndarray
    targets: np.ndarray
    target_ratings: np.ndarray

    def __len__(self) -> int:
        return len(self.user_id)

    def as_features(self) -> dict[str, np.ndarray]:
        """The rows as a feature dict for ``tf.data`` (ids as strings)."""
        return {
            S.USER_ID: ids_as_strings(self.user_id),
            "inputs": self.inputs,
            "input_ratings": self.input_ratings,
            "targets": self.targets,
            "target_ratings": self.target_ratings,
        }


def ordered(ratings: pd.DataFrame) -> pd.DataFrame:
    """``ratings`` sorted by user, then (timestamp, movie id): each user's watch order, ties by movie id."""
    return ratings.sort_values([S.USER_ID, S.TIMESTAMP, S.MOVIE_ID], kind="mergesort").reset_index(drop=True)


def user_sequences(ratings: pd.DataFrame) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """user id -> (movie ids (n,) int64, ratings (n,) float32) in watch order."""
    frame = ordered(ratings)
    users = frame[S.USER_ID].to_numpy()
    movies = frame[S.MOVIE_ID].to_numpy(np.int64)
    values = frame[S.RATING].to_numpy(np.float32)
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    stops = np.r_[starts[1:], len(users)]
    return {int(users[a]): (movies[a:b], values[a:b]) for a, b in zip(starts, stops, strict=True)}


def left_pad(values: np.ndarray, width: int, fill) -> np.ndarray:
    """The last ``width`` entries of ``values``, left padded with ``fill`` to exactly ``width``."""
    values = np.asarray(values)[-width:] if width > 0 else np.asarray(values)[:0]
    out = np.full(width, fill, dtype=object if isinstance(fill, str) else np.float32)
    if len(values):
        out[width - len(values) :] = ids_as_strings(values) if isinstance(fill, str) else values
    return out


def _example(movies, ratings, width, *, all_positions: bool):
    """One row from a run of movies whose last entry is the final target."""
    inputs, targets = movies[:-1], movies[1:]
    in_r, tg_r = ratings[:-1], ratings[1:]
    row_targets = left_pad(targets, width, PAD)
    row_target_r = left_pad(tg_r, width, 0.0)
    if not all_positions:
        row_targets[:-1] = PAD
        row_target_r[:-1] = 0.0
    return left_pad(inputs, width, PAD), left_pad(in_r, width, 0.0), row_targets, row_target_r


def _stack(users, rows) -> SequenceExamples:
    if not rows:
        empty_s = np.empty((0, 0), dtype=object)
        return SequenceExamples(np.empty(0, np.int64), empty_s, np.empty((0, 0), np.float32), empty_s,
                                np.empty((0, 0), np.float32))  # fmt: skip
    cols = list(zip(*rows, strict=True))
    return SequenceExamples(
        np.asarray(users, dtype=np.int64),
        np.stack(cols[0]),
        np.stack(cols[1]).astype(np.float32),
        np.stack(cols[2]),
        np.stack(cols[3]).astype(np.float32),
    )


def causal_examples(ratings: pd.DataFrame, length: int) -> SequenceExamples:
    """SASRec rows: each user's sequence cut (from its end) into chunks of ``length + 1`` movies that
    overlap by one, so every movie after the first is a target exactly once. Row width ``length``."""
    if length < 1:
        raise ValueError(f"sequence length must be at least 1, got {length}")
    users, rows = [], []
    for user, (movies, values) in user_sequences(ratings).items():
        stop = len(movies)
        while stop >= 2:
            start = max(0, stop - length - 1)
            rows.append(_example(movies[start:stop], values[start:stop], length, all_positions=True))
            users.append(user)
            stop = start + 1
    return _stack(users, rows)


def window_examples(ratings: pd.DataFrame, length: int, step: int) -> SequenceExamples:
    """Seed 004's windows: ``movies[s : s + length]`` for ``s = 0, step, 2 step, ...`` (the last, shorter
    windows too, left padded); the window's last movie is the target. Row width ``length - 1``."""
    if length < 2 or step < 1:
        raise ValueError(f"windows need length >= 2 and step >= 1, got {length} and {step}")
    users, rows = [], []
    for user, (movies, values) in user_sequences(ratings).items():
        for start in range(0, max(len(movies) - 1, 0), step):
            window = slice(start, min(start + length, len(movies)))
            if window.stop - window.start < 2:
                continue
            rows.append(_example(movies[window], values[window], length - 1, all_positions=False))
            users.append(user)
    return _stack(users, rows)


def history_tables(ratings: pd.DataFrame, users: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's ``length`` most recent movies: ids (len(users), length) str and their ratings
    (len(users), length) float32, left padded; users without ratings get an all-padding row."""
    sequences = user_sequences(ratings)
    ids = np.full((len(users), length), PAD, dtype=object)
    values = np.zeros((len(users), length), dtype=np.float32)
    for row, user in enumerate(np.asarray(users)):
        found = sequences.get(int(user))
        if found is not None:
            ids[row] = left_pad(found[0], length, PAD)
            values[row] = left_pad(found[1], length, 0.0)
    return ids, values


@dataclass
class PairExamples:
    """Two users who rated the same movie: their histories before that rating, the movie, and the
    pair's average rating (seed 004's label). Histories (N, L) left padded as above."""

    user_a: np.ndarray
    user_b: np.ndarray
    history_a: np.ndarray
    ratings_a: np.ndarray
    history_b: np.ndarray
    ratings_b: np.ndarray
    movie_id: np.ndarray
    rating: np.ndarray

    def __len__(self) -> int:
        return len(self.movie_id)


def pair_examples(
    ratings: pd.DataFrame, length: int, pairs_per_movie: int = 10, seed: int = 42
) -> PairExamples:
    """Up to ``pairs_per_movie`` random pairs of distinct users per movie, each user's history cut just
    before their own rating of that movie (so the target never leaks into either history)."""
    frame = ordered(ratings)
    sequences = user_sequences(frame)
    # Position of every rating inside its user's sequence (frame is in sequence order).
    users = frame[S.USER_ID].to_numpy()
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    position = np.arange(len(frame)) - np.repeat(starts, np.diff(np.r_[starts, len(frame)]))
    frame = frame.assign(_pos=position)
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in PairExamples.__dataclass_fields__}
    for movie, group in frame.groupby(S.MOVIE_ID, sort=True):
        if len(group) < 2:
            continue
        for _ in range(pairs_per_movie):
            a, b = rng.choice(len(group), 2, replace=False)
            for tag, i in (("a", a), ("b", b)):
                user, pos = int(group[S.USER_ID].iat[i]), int(group["_pos"].iat[i])
                movies, values = sequences[user]
                rows[f"user_{tag}"].append(user)
                rows[f"history_{tag}"].append(left_pad(movies[:pos], length, PAD))
                rows[f"ratings_{tag}"].append(left_pad(values[:pos], length, 0.0))
            rows["movie_id"].append(str(movie))
            pair = (group[S.RATING].iat[a] + group[S.RATING].iat[b]) / 2.0
            rows["rating"].append(np.float32(pair))
    if not rows["movie_id"]:
        raise ValueError("no movie was rated by two users: no pair examples")
    return PairExamples(
        np.asarray(rows["user_a"], np.int64), np.asarray(rows["user_b"], np.int64),
        np.stack(rows["history_a"]), np.stack(rows["ratings_a"]).astype(np.float32),
        np.stack(rows["history_b"]), np.stack(rows["ratings_b"]).astype(np.float32),
        np.asarray(rows["movie_id"], dtype=object), np.asarray(rows["rating"], np.float32),
    )  # fmt: skip
