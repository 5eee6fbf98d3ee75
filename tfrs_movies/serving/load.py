"""Load a serving export (see :mod:`tfrs_movies.serving.export`) and answer top-N questions from it.

``load_export(path) -> Exported``; ``Exported.recommend(user_id, k, index, include_seen)`` and
``Exported.similar(movie_id, k)`` return a :class:`Recommendations` (a frame of movie_id, title, year,
score, and whether the answer is the popularity cold start). Every failure is a :class:`ServingError`
with a one-line message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_movies import schema as S

INDEXES = ("scann", "brute_force")
AGGREGATIONS = ("average", "least_misery")


class ServingError(Exception):
    """A request or an export that cannot be served; the message is one line."""


@dataclass
class Recommendations:
    frame: pd.DataFrame  # movie_id, title, year, score (best first)
    cold_start: bool = False
    note: str | None = None


def _parse_id(value: Any, what: str) -> int:
    try:
        if isinstance(value, (bool, np.bool_)):
            raise ValueError
        if isinstance(value, (float, np.floating)) and not float(value).is_integer():
            raise ValueError
        return int(str(value).strip()) if not isinstance(value, (int, np.integer)) else int(value)
    except (TypeError, ValueError):
        raise ServingError(f"bad {what} id {value!r}: ids are integers") from None


class Exported:
    """A loaded export; the SavedModels are loaded on first use."""

    def __init__(self, path: str | Path):
        from tfrs_movies.serving.export import REQUIRED_FILES

        self.path = Path(path)
        if not self.path.is_dir():
            raise ServingError(f"export directory {self.path} does not exist")
        missing = [name for name in REQUIRED_FILES if not (self.path / name).is_file()]
        if missing:
            raise ServingError(f"export directory {self.path} is incomplete: missing {missing[0]}")
        try:
            self.manifest = json.loads((self.path / "manifest.json").read_text())
            self.k_max = int(self.manifest["k_max"])
            self.movies = pd.read_csv(self.path / "movies.csv")
            self.catalogue = self.movies[S.MOVIE_ID].to_numpy(np.int64)
            self.embeddings = np.load(self.path / "movie_embeddings.npy")
            self.popularity = np.load(self.path / "popularity.npy")
            with np.load(self.path / "seen.npz") as seen:
                self.users = seen["users"]
                indices, indptr = seen["indices"], seen["indptr"]
            self.seen = sp.csr_matrix(
                (np.ones(len(indices), np.float32), indices, indptr),
                shape=(len(self.users), len(self.catalogue)),
            )
        except Exception as err:  # noqa: BLE001 - any unreadable piece is a corrupt export
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ServingError(
                f"export directory {self.path} is corrupted: {type(err).__name__}: {first}"
            ) from None
        if not (len(self.catalogue) == len(self.embeddings) == len(self.popularity)):
            raise ServingError(f"export directory {self.path} is corrupted: movie files disagree in length")
        self._user_index = pd.Index(self.users)
        self._movie_index = pd.Index(self.catalogue)
        self._models: dict[str, Any] = {}

    # ----- helpers ---------------------------------------------------------------------------------
    def _check_k(self, k: Any, upper: int | None = None) -> int:
        upper = self.k_max if upper is None else upper
        try:
            k_int = int(k)
            if k_int != k:
                raise ValueError
        except (TypeError, ValueError):
            raise ServingError(f"k must be an integer, got {k!r}") from None
        if not 1 <= k_int <= upper:
            raise ServingError(f"k must be between 1 and {upper}, got {k_int}")
        return k_int

    def _signature(self, index: str):
        if index not in INDEXES:
            raise ServingError(f"unknown index {index!r}; choose scann or brute_force")
        if index not in self._models:
            import tensorflow as tf

            if index == "scann":
                try:
                    from scann import scann_ops  # noqa: F401  (registers the Scann ops)
                except ImportError:
                    raise ServingError(
                        "the scann index needs the scann package; use --index brute_force"
                    ) from None
            try:
                self._models[index] = tf.saved_model.load(str(self.path / index))
            except Exception as err:  # noqa: BLE001
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ServingError(f"cannot load the {index} index from {self.path}: {first}") from None
        return self._models[index].signatures["serving_default"]

    def _frame(self, movie_ids: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        rows = self.movies.set_index(S.MOVIE_ID).reindex(movie_ids)
        return pd.DataFrame({
            S.MOVIE_ID: np.asarray(movie_ids, np.int64),
            S.TITLE: rows[S.TITLE].fillna("").astype(str).to_numpy(),
            S.YEAR: pd.array(rows[S.YEAR].to_numpy(), dtype="Int64"),
            "score": np.asarray(scores, np.float64),
        })  # fmt: skip

    def seen_movies(self, user_id: Any) -> np.ndarray:
        row = self._user_index.get_indexer([_parse_id(user_id, "user")])[0]
        return self.catalogue[self.seen[row].indices] if row >= 0 else np.empty(0, np.int64)

    # ----- queries ---------------------------------------------------------------------------------
    def popular(self, k: int, exclude: np.ndarray | None = None) -> pd.DataFrame:
        scores = self.popularity.astype(np.float64).copy()
        if exclude is not None and len(exclude):
            scores[self._movie_index.get_indexer(exclude)] = -np.inf
        order = np.argsort(-scores, kind="stable")[:k]
        return self._frame(self.catalogue[order], scores[order])

    def recommend(
        self, user_id: Any, k: int = 10, index: str = "scann", include_seen: bool = False
    ) -> Recommendations:
        """Top ``k`` movies for a user (the movies they rated in train removed unless ``include_seen``);
        a user unknown to the export gets the popularity ranking, with ``cold_start`` set."""
        uid = _parse_id(user_id, "user")
        k = self._check_k(k)
        if index not in INDEXES:
            raise ServingError(f"unknown index {index!r}; choose scann or brute_force")
        if self._user_index.get_indexer([uid])[0] < 0:
            return Recommendations(
                self.popular(k), cold_start=True,
                note=f"user {uid} is unknown to this model: showing the most popular movies",
            )  # fmt: skip
        import tensorflow as tf

        exclude = [] if include_seen else [str(m) for m in self.seen_movies(uid)]
        serve = self._signature(index)
        try:
            out = serve(
                user_id=tf.constant([str(uid)]),
                k=tf.constant(k, tf.int32),
                exclude=tf.constant([exclude], dtype=tf.string, shape=(1, len(exclude))),
            )
        except Exception as err:  # noqa: BLE001 - e.g. a tampered SavedModel
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ServingError(f"the {index} index failed: {first}") from None
        ids = out["movie_ids"].numpy()[0].astype(str).astype(np.int64)
        scores = out["scores"].numpy()[0]
        keep = np.isfinite(scores)
        return Recommendations(self._frame(ids[keep], scores[keep]))

    def recommend_many(
        self, user_ids: list[Any], k: int = 10, index: str = "scann", include_seen: bool = False
    ) -> pd.DataFrame:
        """One frame for a batch of users: user_id, rank, movie_id, title, year, score, cold_start."""
        frames = []
        for user in user_ids:
            result = self.recommend(user, k, index, include_seen)
            frame = result.frame.copy()
            frame.insert(0, "rank", range(1, len(frame) + 1))
            frame.insert(0, "user_id", str(user))
            frame["cold_start"] = result.cold_start
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def recommend_pair(
        self, user_a: Any, user_b: Any, k: int = 10, aggregation: str = "average", index: str = "scann"
    ) -> Recommendations:
        """Movies for two users watching together (seed 004's paired users).

        Candidates are the union of both users' top ``k_max`` (each user's seen movies removed); each
        user's scores over the candidates are standardised (a movie outside a user's list gets that
        user's lowest listed score), then combined by ``aggregation``: ``average`` (the mean of the two)
        or ``least_misery`` (the lower of the two, so neither viewer gets a film they would dislike).
        """
        if aggregation not in AGGREGATIONS:
            raise ServingError(f"unknown aggregation {aggregation!r}; choose {' or '.join(AGGREGATIONS)}")
        k = self._check_k(k)
        seen = np.union1d(self.seen_movies(user_a), self.seen_movies(user_b))
        lists, notes = [], []
        for user in (user_a, user_b):
            result = self.recommend(user, self.k_max, index)
            lists.append(result.frame[~result.frame[S.MOVIE_ID].isin(seen)])
            if result.note:
                notes.append(result.note)
        candidates = np.union1d(lists[0][S.MOVIE_ID], lists[1][S.MOVIE_ID])
        per_user = []
        for frame in lists:
            scores = pd.Series(frame["score"].to_numpy(), index=frame[S.MOVIE_ID].to_numpy())
            filled = scores.reindex(candidates).fillna(scores.min() if len(scores) else 0.0).to_numpy()
            per_user.append((filled - filled.mean()) / (filled.std() or 1.0))
        combined = (per_user[0] + per_user[1]) / 2 if aggregation == "average" else np.minimum(*per_user)
        order = np.argsort(-combined, kind="stable")[:k]
        note = "; ".join([f"pair aggregation: {aggregation} of standardised scores", *notes])
        return Recommendations(
            self._frame(candidates[order], combined[order]), cold_start=bool(notes), note=note
        )

    def similar(self, movie_id: Any, k: int = 10) -> Recommendations:
        """The ``k`` movies whose exported embeddings are closest in cosine, the movie itself left out."""
        mid = _parse_id(movie_id, "movie")
        col = self._movie_index.get_indexer([mid])[0]
        if col < 0:
            raise ServingError(f"unknown movie id {mid}")
        k = self._check_k(k, min(self.k_max, len(self.catalogue) - 1))
        unit = self.embeddings / (np.linalg.norm(self.embeddings, axis=1, keepdims=True) + 1e-9)
        sims = (unit @ unit[col]).astype(np.float64)
        sims[col] = -np.inf
        order = np.argsort(-sims, kind="stable")[:k]
        return Recommendations(self._frame(self.catalogue[order], sims[order]))


def read_user_ids(path: str | Path) -> list[str]:
    """User ids from a file: one per line, or a CSV whose header has a ``user_id`` column."""
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as err:
        raise ServingError(f"cannot read users file {path}: {err.strerror}") from None
    if lines and "user_id" in lines[0].split(","):
        return pd.read_csv(path, dtype=str)["user_id"].dropna().str.strip().tolist()
    return lines


def load_export(path: str | Path) -> Exported:
    """Open an export directory; a missing or corrupt one is a :class:`ServingError` naming the problem."""
    return Exported(path)
