"""Side features: which ones a dataset has, their per-user / per-movie tables, and the in-graph join.

Ratings batches carry only ids. :meth:`FeatureSpace.join` (a ``tf.data`` map applied after batching)
looks each id up in constant tables and adds the raw side features, so a batch holds, for ``B`` rows:

user side  ``user_id`` (B,) str, ``gender``/``occupation``/``zip_prefix``/``age_bucket`` (B,) str,
           ``age`` (B,) float32, ``history`` (B, L) str movie ids watched in train ("" padding)
movie side ``movie_id`` (B,) str, ``genres`` (B, G) str, ``year`` (B,) float32, ``title`` (B,) str,
           ``tags`` (B, T) str, ``runtime``/``imdb_rating`` (B,) float32, ``people`` (B, P) str
           (directors and leading actors)

The towers take exactly these raw features, so an exported model serves raw features too. A feature the
dataset lacks (ml-latest has no demographics, Netflix no genres) is left out with one line saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.features.preprocessing import fill_missing, ids_as_strings, position_lookup

log = logging.getLogger(__name__)

USER_FEATURES = ("id", "gender", "occupation", "age", "zip", "history")
MOVIE_FEATURES = ("id", "genres", "year", "title", "tags", "imdb")

# Raw feature names in batches (ids use the schema's column names).
GENDER, OCCUPATION, AGE, AGE_BUCKET, ZIP_PREFIX, HISTORY = (
    "gender", "occupation", "age", "age_bucket", "zip_prefix", "history",
)  # fmt: skip
GENRES, YEAR, TITLE, TAGS, RUNTIME, IMDB_RATING, PEOPLE = (
    "genres", "year", "title", "tags", "runtime", "imdb_rating", "people",
)  # fmt: skip
AGE_BUCKETS = (18, 25, 35, 45, 50, 56)
# Features a request can describe for a user or movie the tables lack (cold start).
COLD_START_USER_FEATURES = frozenset({"gender", "occupation", "age", "zip"})
COLD_START_MOVIE_FEATURES = frozenset({"genres", "year", "title", "tags", "imdb"})


def _pad(rows: Sequence[Sequence[str]], width: int) -> np.ndarray:
    out = np.full((len(rows), max(width, 1)), "", dtype=object)
    for i, row in enumerate(rows):
        values = [str(v) for v in row][:width]
        out[i, : len(values)] = values
    return out


def _history_table(ratings: pd.DataFrame, users: np.ndarray, length: int) -> np.ndarray:
    """(len(users), length) movie ids: each user's ``length`` most recent ratings, "" padded."""
    ordered = ratings.sort_values([S.USER_ID, S.TIMESTAMP, S.MOVIE_ID])
    recent = ordered.groupby(S.USER_ID)[S.MOVIE_ID].apply(lambda s: s.to_numpy()[-length:])
    rows = recent.reindex(users)
    return _pad([ids_as_strings(r) if isinstance(r, np.ndarray) else [] for r in rows], length)


def age_bucket(ages: np.ndarray) -> np.ndarray:
    """Ages to ML-1M-style bucket labels ("<18", "18-24", ..., "56+"); NaN -> "" (unknown)."""
    labels = np.array(["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"], dtype=object)
    ages = np.asarray(ages, dtype=np.float64)
    out = labels[np.searchsorted(AGE_BUCKETS, np.nan_to_num(ages, nan=0.0), side="right")]
    return np.where(np.isnan(ages), "", out).astype(object)


@dataclass
class FeatureSpace:
    """The side features in use and their tables, aligned with ``users`` and ``movies`` (sorted ids)."""

    users: np.ndarray
    movies: np.ndarray
    user_table: dict[str, np.ndarray] = field(default_factory=dict)
    movie_table: dict[str, np.ndarray] = field(default_factory=dict)
    user_features: tuple[str, ...] = ("id",)
    movie_features: tuple[str, ...] = ("id",)
    notes: list[str] = field(default_factory=list)
    # Users with an id embedding (those in train). ``users`` also holds users known only by their
    # features (e.g. user_holdout test users), so cold-start users are scored from their features.
    id_users: np.ndarray | None = None
    # In-graph lookup tables, built on first use (TensorFlow objects: never part of the saved state).
    _user_cache: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _movie_cache: tuple | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        dataset: S.Dataset,
        train: pd.DataFrame,
        users: np.ndarray,
        movies: np.ndarray,
        user_features: Sequence[str] = ("id",),
        movie_features: Sequence[str] = ("id",),
        history_length: int = 50,
    ) -> FeatureSpace:
        """Tables for the requested features that ``dataset`` has; ``history`` is built from ``train``
        (the ``history_length`` most recent movies per user, so no test rating ever leaks in)."""
        for name in user_features:
            if name not in USER_FEATURES:
                raise ValueError(f"unknown user feature {name!r}; known: {', '.join(USER_FEATURES)}")
        for name in movie_features:
            if name not in MOVIE_FEATURES:
                raise ValueError(f"unknown movie feature {name!r}; known: {', '.join(MOVIE_FEATURES)}")
        known = dataset.users[S.USER_ID].to_numpy() if len(dataset.users) else np.empty(0, np.int64)
        space = cls(
            users=np.union1d(np.asarray(users), known).astype(np.asarray(users).dtype),
            movies=np.asarray(movies),
            id_users=np.asarray(users),
        )
        space._build_users(dataset, train, tuple(user_features), history_length)
        space._build_movies(dataset, tuple(movie_features))
        for note in space.notes:
            log.warning(note)
        return space

    def _build_users(
        self, dataset: S.Dataset, train: pd.DataFrame, wanted: tuple[str, ...], length: int
    ) -> None:
        frame = dataset.users.set_index(S.USER_ID).reindex(self.users) if len(dataset.users) else None
        used = ["id"] if "id" in wanted else []
        for name, column in (("gender", S.GENDER), ("occupation", S.OCCUPATION), ("zip", S.ZIP_CODE)):
            if name not in wanted:
                continue
            if frame is None or frame[column].fillna("").astype(str).str.len().eq(0).all():
                self.notes.append(f"user feature {name!r}: {dataset.name} has none, left out")
                continue
            values = frame[column].fillna("").astype(str).to_numpy(object)
            if name == "zip":
                # The first digit is a US region; non-numeric (e.g. Canadian "T8H1N") keep their letter.
                values = np.array([v[:1] for v in values], dtype=object)
                self.user_table[ZIP_PREFIX] = values
            else:
                self.user_table[{"gender": GENDER, "occupation": OCCUPATION}[name]] = values
            used.append(name)
        if "age" in wanted:
            if frame is None or frame[S.AGE].isna().all():
                self.notes.append(f"user feature 'age': {dataset.name} has none, left out")
            else:
                ages = frame[S.AGE].to_numpy(np.float32)
                self.user_table[AGE] = fill_missing(ages)[0]
                self.user_table[AGE_BUCKET] = age_bucket(ages)
                used.append("age")
        if "history" in wanted:
            self.user_table[HISTORY] = _history_table(train, self.users, length)
            used.append("history")
        self.user_features = tuple(used)

    def _build_movies(self, dataset: S.Dataset, wanted: tuple[str, ...]) -> None:
        frame = dataset.movies.set_index(S.MOVIE_ID).reindex(self.movies)
        used = ["id"] if "id" in wanted else []

        def has(column: str) -> bool:
            return column in frame.columns and frame[column].notna().any()

        def tuples(column: str) -> list:
            return [v if isinstance(v, (tuple, list, np.ndarray)) else () for v in frame[column]]

        # name -> (does the dataset have it, the table columns it adds)
        simple = {
            "genres": (
                lambda: has(S.GENRES) and any(len(g) for g in tuples(S.GENRES)),
                lambda: {GENRES: _pad(tuples(S.GENRES), 6)},
            ),
            "year": (
                lambda: has(S.YEAR),
                lambda: {YEAR: fill_missing(frame[S.YEAR].to_numpy(np.float32))[0]},
            ),
            "title": (
                lambda: has(S.TITLE),
                lambda: {TITLE: frame[S.TITLE].fillna("").astype(str).to_numpy(object)},
            ),
            "tags": (
                lambda: has(S.TAGS) and any(len(t) for t in tuples(S.TAGS)),
                lambda: {TAGS: _pad(tuples(S.TAGS), 10)},
            ),
        }
        for name, (available, columns) in simple.items():
            if name not in wanted:
                continue
            if available():
                self.movie_table.update(columns())
                used.append(name)
            else:
                self.notes.append(f"movie feature {name!r}: {dataset.name} has none, left out")
        if "imdb" in wanted:
            if has(S.RUNTIME) or has(S.DIRECTORS):
                for column, key in ((S.RUNTIME, RUNTIME), (S.IMDB_RATING, IMDB_RATING)):
                    values = (
                        frame[column].to_numpy(np.float32) if column in frame else np.full(len(frame), np.nan)
                    )
                    self.movie_table[key] = fill_missing(values)[0]
                people = [
                    tuple(d)[:2] + tuple(a)[:3]
                    for d, a in zip(
                        tuples(S.DIRECTORS) if S.DIRECTORS in frame else [()] * len(frame),
                        tuples(S.ACTORS) if S.ACTORS in frame else [()] * len(frame),
                        strict=True,
                    )
                ]
                self.movie_table[PEOPLE] = _pad(people, 5)
                used.append("imdb")
            else:
                self.notes.append(f"movie feature 'imdb': {dataset.name} has no IMDb columns, left out")
        self.movie_features = tuple(used)

    def with_history(self, ratings: pd.DataFrame, length: int | None = None) -> FeatureSpace:
        """A copy whose ``history`` table is rebuilt from ``ratings`` (e.g. train + validation)."""
        import copy

        out = copy.copy(self)
        out.user_table = dict(self.user_table)
        if HISTORY in self.user_table:
            width = length or self.user_table[HISTORY].shape[1]
            out.user_table[HISTORY] = _history_table(ratings, self.users, width)
        out._user_cache = None
        return out

    @property
    def has_cold_start_user_features(self) -> bool:
        """Whether the user side uses a feature a request can give for a new user."""
        return bool(COLD_START_USER_FEATURES & set(self.user_features))

    @property
    def has_cold_start_movie_features(self) -> bool:
        return bool(COLD_START_MOVIE_FEATURES & set(self.movie_features))

    # ----- state (arrays and JSON values, see tfrs_movies.models.state) ---------------------------
    def state(self) -> dict[str, Any]:
        """Flat ``{name: array or JSON value}``: the id arrays, every table column, the feature names."""
        out: dict[str, Any] = {
            "users": self.users, "movies": self.movies,
            "id_users": self.id_users if self.id_users is not None else np.empty(0, np.int64),
            "has_id_users": self.id_users is not None,
            "user_features": list(self.user_features), "movie_features": list(self.movie_features),
            "notes": list(self.notes),
            "user_columns": sorted(self.user_table), "movie_columns": sorted(self.movie_table),
        }  # fmt: skip
        out.update({f"user_table/{name}": values for name, values in self.user_table.items()})
        out.update({f"movie_table/{name}": values for name, values in self.movie_table.items()})
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeatureSpace:
        """The inverse of :meth:`state`."""
        return cls(
            users=state["users"],
            movies=state["movies"],
            user_table={name: state[f"user_table/{name}"] for name in state["user_columns"]},
            movie_table={name: state[f"movie_table/{name}"] for name in state["movie_columns"]},
            user_features=tuple(state["user_features"]),
            movie_features=tuple(state["movie_features"]),
            notes=list(state["notes"]),
            id_users=state["id_users"] if state["has_id_users"] else None,
        )

    # ----- lookups ---------------------------------------------------------------------------------
    def user_rows(self, user_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Raw user features for ``user_ids`` (numpy); unknown users get empty / mean values."""
        return _rows(self.users, self.user_table, user_ids, S.USER_ID)

    def movie_rows(self, movie_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Raw movie features for ``movie_ids`` (numpy); unknown movies get empty / mean values."""
        return _rows(self.movies, self.movie_table, movie_ids, S.MOVIE_ID)

    def join(
        self, batch: dict[str, tf.Tensor], sides: Sequence[str] = ("user", "movie")
    ) -> dict[str, tf.Tensor]:
        """``tf.data`` map: add the side features of the batch's ``user_id`` / ``movie_id`` in-graph."""
        out = dict(batch)
        if "user" in sides and self.user_table:
            out.update(_gather(self._user_tf(), batch[S.USER_ID]))
            if HISTORY in out and S.MOVIE_ID in batch:
                # The target movie is never part of its own history: otherwise the model learns to
                # recommend what the user already watched, which serving removes anyway.
                target = tf.expand_dims(batch[S.MOVIE_ID], -1)
                out[HISTORY] = tf.where(tf.equal(out[HISTORY], target), "", out[HISTORY])
        if "movie" in sides and self.movie_table:
            out.update(_gather(self._movie_tf(), batch[S.MOVIE_ID]))
        return out

    # The tables are built eagerly (init_scope) even when the first join is traced by a tf.data map:
    # built inside that trace they would be its graph's tensors, unusable by any later map or call.
    def _user_tf(self):
        if self._user_cache is None:
            with tf.init_scope():
                self._user_cache = lookup_tables(self.users, self.user_table)
        return self._user_cache

    def _movie_tf(self):
        if self._movie_cache is None:
            with tf.init_scope():
                self._movie_cache = lookup_tables(self.movies, self.movie_table)
        return self._movie_cache


def unknown_defaults(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The row an unknown id gets: "" for strings, the column mean for numbers."""
    out = {}
    for name, values in table.items():
        if values.dtype == object:
            out[name] = np.full(values.shape[1:], "", dtype=object)
        else:
            # Full row shape, so 2-D numeric tables (e.g. per-slot ratings) pad like 1-D ones.
            out[name] = np.full(values.shape[1:], values.mean() if len(values) else 0.0, dtype=values.dtype)
    return out


def _rows(ids: np.ndarray, table: dict[str, np.ndarray], wanted: np.ndarray, id_name: str) -> dict:
    index = pd.Index(ids).get_indexer(np.asarray(wanted).astype(ids.dtype))
    out = {id_name: ids_as_strings(np.asarray(wanted))}
    defaults = unknown_defaults(table)
    for name, values in table.items():
        padded = np.concatenate([values, defaults[name][None, ...]])
        out[name] = padded[np.where(index >= 0, index, len(values))]
    return out


def lookup_tables(ids: np.ndarray, table: dict[str, np.ndarray]):
    """``(StringLookup over ids, {column: tensor})``: row 0 of each tensor is the unknown-id default.

    Build fresh ones for a SavedModel (it tracks what its functions capture)."""
    lookup = position_lookup(ids)
    defaults = unknown_defaults(table)
    # Row 0 is the unknown-id default (StringLookup's OOV index), rows 1.. follow ``ids``.
    tensors = {
        name: tf.constant(np.concatenate([defaults[name][None, ...], values]))
        for name, values in table.items()
    }
    return lookup, tensors


def _gather(tables, ids: tf.Tensor) -> dict[str, tf.Tensor]:
    lookup, tensors = tables
    rows = lookup(ids)
    return {name: tf.gather(values, rows) for name, values in tensors.items()}
