"""Load a serving export (see :mod:`tfrs_movies.serving.export`) and answer top-N questions from it.

``load_export(path, ranking=None) -> Exported``; ``Exported.recommend(user_id, k, ...)``,
``recommend_pair``, ``similar`` return a :class:`Recommendations`: a frame of movie_id, title, year,
score and ``stage`` (which stage produced ``score``: ``retrieval``, ``ranking`` or ``popularity``), plus
a one-line note where the answer needs one (cold start, two stages, pair aggregation).

Two stages (seed 001): when the export holds a ranking SavedModel (``ranking/``, or another run's given
as ``ranking``), the index proposes ``candidates`` movies and the ranking model scores them; the frame
then has ``retrieval_score`` (stage 1), ``rating`` (or ``probability``: stage 2) and ``score``, the order:
:func:`blend_stages`, ``z(retrieval_score) + rerank_weight * z(rating)`` with z standardising over the
candidates. Ordering by the predicted rating alone loses much of what retrieval knows about what a
user watches (NDCG@10 0.376 -> 0.209 on ML-100K test); a light blend gains (0.393, docs/BENCHMARKS.md).

Cold start: a user unknown to the export is answered from the features given (``features={"age": 25,
"gender": "F", "occupation": "writer"}``) through the query tower SavedModel when its user tower uses
any of them, else from popularity; the note says which. Every failure is a :class:`ServingError` with a
one-line message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_movies import schema as S
from tfrs_movies.serving.layout import EXPORT_FORMAT, REQUIRED_FILES

INDEXES = ("scann", "brute_force")
AGGREGATIONS = ("average", "least_misery")
DEFAULT_CANDIDATES = 100
# Cold-start request fields -> the query tower inputs they fill (see features/side.py).
COLD_START_FIELDS = {"gender": ("gender",), "occupation": ("occupation",), "age": ("age", "age_bucket"),
                     "zip": ("zip_prefix",)}  # fmt: skip


class ServingError(Exception):
    """A request or an export that cannot be served; the message is one line."""


@dataclass
class Recommendations:
    frame: pd.DataFrame  # movie_id, title, year, score, stage [, retrieval_score] (best first)
    cold_start: bool = False
    note: str | None = None


def blend_stages(retrieval: np.ndarray, ranking: np.ndarray, weight: float) -> np.ndarray:
    """Two-stage order score over one user's candidates (1-D arrays, same length):
    ``z(retrieval) + weight * z(ranking)``, each standardised over the candidates."""

    def z(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float64)
        return (values - values.mean()) / (values.std() or 1.0)

    return z(retrieval) + weight * z(ranking)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _parse_id(value: Any, what: str) -> int:
    try:
        if isinstance(value, (bool, np.bool_)):
            raise ValueError
        if isinstance(value, (float, np.floating)) and not float(value).is_integer():
            raise ValueError
        return int(str(value).strip()) if not isinstance(value, (int, np.integer)) else int(value)
    except (TypeError, ValueError):
        raise ServingError(f"bad {what} id {value!r}: ids are integers") from None


def read_manifest(path: Path) -> dict[str, Any]:
    """``path/manifest.json``, refused in one line when it is not JSON or its ``format`` is not the one
    this version writes (:data:`tfrs_movies.serving.layout.EXPORT_FORMAT`): an older or newer export's
    files may mean something else, so it is never served on a guess."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        why = _first_line(err)
        raise ServingError(f"export directory {path} is corrupted: manifest.json: {why}") from None
    if not isinstance(manifest, dict):
        raise ServingError(f"export directory {path} is corrupted: manifest.json does not hold a mapping")
    found = manifest.get("format")
    if found != EXPORT_FORMAT:
        versions = manifest.get("versions")
        wrote = versions.get("tfrs_movies") if isinstance(versions, dict) else None
        by = f" (written by tfrs_movies {wrote})" if wrote else ""
        what = "no format number" if found is None else f"format {found!r}"
        raise ServingError(
            f"export directory {path} has {what}{by}; this version reads export format {EXPORT_FORMAT}: "
            "train the run again, or re-export its model/ with tfrs_movies.serving.export_run"
        )
    return manifest


class Exported:
    """A loaded export; the SavedModels are loaded on first use."""

    def __init__(self, path: str | Path, ranking: str | Path | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ServingError(f"export directory {self.path} does not exist")
        missing = [name for name in REQUIRED_FILES if not (self.path / name).is_file()]
        if missing and (self.path / "export" / "manifest.json").is_file():
            raise ServingError(f"{self.path} is a run directory; its export is {self.path / 'export'}")
        if missing:
            raise ServingError(f"export directory {self.path} is incomplete: missing {missing[0]}")
        self.manifest = read_manifest(self.path)
        try:
            self.k_max = int(self.manifest["k_max"])
            self.movies = pd.read_csv(self.path / "movies.csv")
            self.catalogue = self.movies[S.MOVIE_ID].to_numpy(np.int64)
            with np.load(self.path / "similar.npz") as similar:
                self.similar_ids, self.similar_scores = similar["movie_ids"], similar["scores"]
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
        if not (len(self.catalogue) == len(self.similar_ids) == len(self.popularity)):
            raise ServingError(f"export directory {self.path} is corrupted: movie files disagree in length")
        # The indexes this export has, best first: ScaNN only where the model's score is a dot product.
        self.indexes = [name for name in INDEXES if (self.path / name / "saved_model.pb").is_file()]
        self._user_index = pd.Index(self.users)
        self._movie_index = pd.Index(self.catalogue)
        # Titles and years in catalogue order, for the answers' columns.
        self._titles = self.movies[S.TITLE].fillna("").astype(str).to_numpy(object)
        self._years = pd.to_numeric(self.movies[S.YEAR], errors="coerce").to_numpy(np.float64)
        self._models: dict[str, Any] = {}
        # (index, user_id, k, exclude) -> (movie_ids, scores): one known user's index call. The HTTP
        # server replaces it with a micro-batcher that gathers concurrent calls into one search_users.
        self.user_search: Callable[[str, int, int, list[str]], tuple[np.ndarray, np.ndarray]] = (
            lambda index, user_id, k, exclude: self.search_users(index, [user_id], k, [exclude])[0]
        )
        # (user_id, movie_ids) -> the ranking stage's predictions; the server batches it the same way.
        self.user_predict: Callable[[int, np.ndarray], np.ndarray] = self.predict
        self.ranking_path = self._find_ranking(ranking)

    def _find_ranking(self, ranking: str | Path | None) -> Path | None:
        """The ranking SavedModel: the one given, else the export's own ``ranking/``, else none."""
        if ranking is None:
            own = self.path / "ranking"
            return own if (own / "saved_model.pb").is_file() else None
        ranking = Path(ranking)
        if (ranking / "ranking" / "saved_model.pb").is_file():  # another run's export directory
            ranking = ranking / "ranking"
        if not (ranking / "saved_model.pb").is_file():
            raise ServingError(f"no ranking SavedModel in {ranking}")
        return ranking

    @property
    def has_ranking(self) -> bool:
        return self.ranking_path is not None

    @property
    def top_n_is_own_ranking(self) -> bool:
        """The index already orders by this export's own ranking model (a ranking head's export)."""
        return bool(self.manifest.get("top_n_is_ranking")) and self.ranking_path == self.path / "ranking"

    @property
    def two_stages_by_default(self) -> bool:
        """Two stages whenever a ranking model is there, unless it is what the index already orders by."""
        return self.has_ranking and not self.top_n_is_own_ranking

    @property
    def index_stage(self) -> str:
        """What produced the index's score: ``ranking`` (a ranking head's export) or ``retrieval``."""
        return "ranking" if self.manifest.get("top_n_is_ranking") else "retrieval"

    @property
    def has_pair_model(self) -> bool:
        return (self.path / "pair" / "saved_model.pb").is_file()

    @cached_property
    def ranking_info(self) -> dict[str, Any]:
        """The ranking export's ``ranking.json`` (output, rerank weight, signatures), read once."""
        info = self.ranking_path / "ranking.json" if self.ranking_path else None
        return json.loads(info.read_text()) if info is not None and info.is_file() else {}

    @property
    def ranking_output(self) -> str:
        """What the ranking model predicts: ``rating`` or ``probability``."""
        return self.ranking_info.get("output", "rating")

    def _rerank_weight(self, weight: float | None) -> float:
        from tfrs_movies.serving.ranking_export import DEFAULT_RERANK_WEIGHT

        if weight is None:
            return float(self.ranking_info.get("rerank_weight", DEFAULT_RERANK_WEIGHT))
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ServingError(f"rerank weight must be a number, got {weight!r}") from None
        if not np.isfinite(weight) or weight < 0:
            raise ServingError(f"rerank weight must be 0 or more, got {weight}")
        return weight

    # ----- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _whole_number(value: Any, what: str) -> int:
        """``value`` as an int if it is a whole number (2.0 yes, 2.5 or "x" no), else a ServingError."""
        try:
            number = int(value)
            if number != value:
                raise ValueError
        except (TypeError, ValueError):
            raise ServingError(f"{what} must be an integer, got {value!r}") from None
        return number

    def _check_k(self, k: Any, upper: int | None = None) -> int:
        upper = self.k_max if upper is None else upper
        k_int = self._whole_number(k, "k")
        if not 1 <= k_int <= upper:
            raise ServingError(f"k must be between 1 and {upper}, got {k_int}")
        return k_int

    def _load(self, name: str, path: Path):
        what = f"the {name} index" if name in INDEXES else f"the {name} SavedModel"
        if name not in self._models:
            import tensorflow as tf

            if name == "scann":
                try:
                    from scann import scann_ops  # noqa: F401  (registers the Scann ops)
                except ImportError:
                    raise ServingError(
                        "the scann index needs the scann package; use --index brute_force"
                    ) from None
            try:
                self._models[name] = tf.saved_model.load(str(path))
            except Exception as err:  # noqa: BLE001
                raise ServingError(f"cannot load {what} from {path}: {_first_line(err)}") from None
        return self._models[name]

    @property
    def saved_model_names(self) -> list[str]:
        """Every SavedModel this export serves, by folder name (``ranking`` may be another run's)."""
        names = [p.name for p in sorted(self.path.iterdir()) if (p / "saved_model.pb").is_file()]
        return names + ["ranking"] if self.ranking_path is not None and "ranking" not in names else names

    def saved_model(self, name: str):
        """The loaded SavedModel ``name`` (one of :attr:`saved_model_names`), loaded on first use."""
        if name not in self.saved_model_names:
            raise ServingError(
                f"no SavedModel named {name!r}; this export has {', '.join(self.saved_model_names)}"
            )
        return self._load(name, self.ranking_path if name == "ranking" else self.path / name)

    def _index(self, index: str | None) -> str:
        """``index``, checked against the export's; None picks the best it has (ScaNN if any)."""
        if index is None:
            return self.indexes[0]
        if index not in INDEXES:
            raise ServingError(f"unknown index {index!r}; choose scann or brute_force")
        if index not in self.indexes:
            raise ServingError(
                f"{self.path} has no {index} index (the {self.manifest.get('model')!r} model's score is "
                f"not a dot product it pays to approximate); use --index {self.indexes[0]}"
            )
        return index

    def _signature(self, index: str, name: str = "serving_default"):
        index = self._index(index)
        signatures = self._load(index, self.path / index).signatures
        if name not in signatures:
            raise ServingError(f"the {index} index of {self.path} has no {name!r} signature; export it again")
        return signatures[name]

    def _check_candidates(self, candidates: Any, k: int) -> int:
        if candidates is None:
            return max(k, min(DEFAULT_CANDIDATES, self.k_max))
        n = self._whole_number(candidates, "candidates")
        if not k <= n <= self.k_max:
            raise ServingError(f"candidates must be between k ({k}) and {self.k_max}, got {n}")
        return n

    def _frame(self, movie_ids: np.ndarray, scores: np.ndarray, stage: str) -> pd.DataFrame:
        at = self._movie_index.get_indexer(np.asarray(movie_ids, np.int64))  # -1: not in the catalogue
        return pd.DataFrame({
            S.MOVIE_ID: np.asarray(movie_ids, np.int64),
            S.TITLE: np.where(at >= 0, self._titles[at], ""),
            S.YEAR: pd.array(np.where(at >= 0, self._years[at], np.nan), dtype="Int64"),
            "score": np.asarray(scores, np.float64),
            "stage": stage,
        })  # fmt: skip

    def movie_frame(self, movie_ids: np.ndarray, scores: np.ndarray, stage: str) -> pd.DataFrame:
        """movie_id, title, year, score, stage for ``movie_ids`` (the columns of every answer)."""
        return self._frame(movie_ids, scores, stage)

    def is_known(self, user_id: Any) -> bool:
        """Whether the export knows ``user_id`` (else it gets the cold start)."""
        return bool(self._user_index.get_indexer([_parse_id(user_id, "user")])[0] >= 0)

    @staticmethod
    def parse_movie_id(movie_id: Any) -> int:
        """``movie_id`` as an int, else a ServingError naming it."""
        return _parse_id(movie_id, "movie")

    @property
    def new_user_id(self) -> int:
        """An id no user of this export has (for a cold start without an id)."""
        return int(self.users.max()) + 1 if len(self.users) else 1

    def seen_movies(self, user_id: Any) -> np.ndarray:
        row = self._user_index.get_indexer([_parse_id(user_id, "user")])[0]
        return self.catalogue[self.seen[row].indices] if row >= 0 else np.empty(0, np.int64)

    # ----- queries ---------------------------------------------------------------------------------
    def popular(self, k: int, exclude: np.ndarray | None = None) -> pd.DataFrame:
        scores = self.popularity.astype(np.float64).copy()
        if exclude is not None and len(exclude):
            scores[self._movie_index.get_indexer(exclude)] = -np.inf
        order = np.argsort(-scores, kind="stable")[:k]
        return self._frame(self.catalogue[order], scores[order], "popularity")

    def _search(self, signature, query: dict[str, Any], k: int, exclude: list[str], index: str):
        """One index call: ``(movie_ids (k',), scores (k',))`` with -inf (excluded) entries dropped."""
        import tensorflow as tf

        try:
            out = signature(
                **query, k=tf.constant(k, tf.int32),
                exclude=tf.constant([exclude], dtype=tf.string, shape=(1, len(exclude))),
            )  # fmt: skip
        except Exception as err:  # noqa: BLE001 - e.g. a tampered SavedModel
            raise ServingError(f"the {index} index failed: {_first_line(err)}") from None
        ids = out["movie_ids"].numpy()[0].astype(str).astype(np.int64)
        scores = out["scores"].numpy()[0].astype(np.float64)
        keep = np.isfinite(scores)
        return ids[keep], scores[keep]

    def search_users(
        self, index: str, user_ids: list[int], k: int, excludes: list[list[str]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """One index call for several known users: per user ``(movie_ids (k',), scores (k',))``, each
        user's ``excludes`` (movie ids as strings) removed and -inf entries dropped."""
        import tensorflow as tf

        width = max((len(e) for e in excludes), default=0)
        padded = [list(e) + [""] * (width - len(e)) for e in excludes]
        try:
            out = self._signature(index)(
                user_id=tf.constant([str(u) for u in user_ids]), k=tf.constant(k, tf.int32),
                exclude=tf.constant(padded, dtype=tf.string, shape=(len(user_ids), width)),
            )  # fmt: skip
        except ServingError:
            raise
        except Exception as err:  # noqa: BLE001 - e.g. a tampered SavedModel
            raise ServingError(f"the {index} index failed: {_first_line(err)}") from None
        ids = out["movie_ids"].numpy().astype(str).astype(np.int64)
        scores = out["scores"].numpy().astype(np.float64)
        return [(i[np.isfinite(s)], s[np.isfinite(s)]) for i, s in zip(ids, scores, strict=True)]

    def predict(self, user_id: Any, movie_ids: Any) -> np.ndarray:
        """The ranking model's prediction (``ranking_output``: rating or probability) for one user and
        each of ``movie_ids``."""
        return self.predict_many([(user_id, movie_ids)])[0]

    def predict_many(self, pairs: list[tuple[Any, Any]]) -> list[np.ndarray]:
        """:meth:`predict` for several ``(user_id, movie_ids)`` pairs in one ranking call."""
        if not self.has_ranking:
            raise ServingError(f"{self.path} has no ranking model (export a multitask run, or give one)")
        import tensorflow as tf

        users, movies, sizes = [], [], []
        for user_id, movie_ids in pairs:
            ids = [str(_parse_id(m, "movie")) for m in np.atleast_1d(movie_ids)]
            users += [str(_parse_id(user_id, "user"))] * len(ids)
            movies += ids
            sizes.append(len(ids))
        serve = self._load("ranking", self.ranking_path).signatures["serving_default"]
        try:
            out = serve(user_id=tf.constant(users, tf.string), movie_id=tf.constant(movies, tf.string))
        except Exception as err:  # noqa: BLE001
            raise ServingError(f"the ranking model failed: {_first_line(err)}") from None
        return np.split(out["score"].numpy().astype(np.float64), np.cumsum(sizes)[:-1])

    def recommend(
        self, user_id: Any, k: int = 10, index: str | None = None, include_seen: bool = False,
        candidates: int | None = None, rerank: bool | None = None, features: dict[str, Any] | None = None,
        rerank_weight: float | None = None,
    ) -> Recommendations:  # fmt: skip
        """Top ``k`` movies for a user, the movies they rated in train removed unless ``include_seen``.

        ``rerank`` (default: whenever a ranking model is there) makes it two stages: the index proposes
        ``candidates`` (default 100, between k and k_max) and they are ordered by :func:`blend_stages`
        with ``rerank_weight`` (default: the export's). A user unknown to the export gets the cold
        start (module docstring), with ``cold_start`` set.
        """
        uid = _parse_id(user_id, "user")
        k = self._check_k(k)
        index = self._index(index)
        rerank = self.two_stages_by_default if rerank is None else bool(rerank)
        if rerank and not self.has_ranking:
            raise ServingError(f"{self.path} has no ranking model to re-score with")
        if candidates is not None and not rerank:
            why = "retrieval only was asked for" if self.has_ranking else f"{self.path} has no ranking model"
            raise ServingError(f"candidates ({candidates!r}) apply to two stages only, and {why}")
        if self._user_index.get_indexer([uid])[0] < 0:
            return self._cold_start(uid, k, index, features)
        exclude = [] if include_seen else [str(m) for m in self.seen_movies(uid)]
        if not rerank:
            ids, scores = self.user_search(index, uid, k, exclude)
            return self._said_if_short(Recommendations(self._frame(ids, scores, self.index_stage)), k, uid)
        n = self._check_candidates(candidates, k)
        weight = self._rerank_weight(rerank_weight)
        ids, scores = self.user_search(index, uid, n, exclude)
        predicted = self.user_predict(uid, ids)
        blended = blend_stages(scores, predicted, weight)
        order = np.argsort(-blended, kind="stable")[:k]  # ties keep the retrieval order
        frame = self._frame(ids[order], blended[order], "ranking")
        frame["retrieval_score"], frame[self.ranking_output] = scores[order], predicted[order]
        note = (
            f"two stages: the {index} index proposed {len(ids)} candidates (retrieval_score), the ranking "
            f"model predicted their {self.ranking_output}; score = z(retrieval_score) + {weight:g} "
            f"z({self.ranking_output}) over the candidates"
        )
        return self._said_if_short(Recommendations(frame, note=note), k, uid)

    def _said_if_short(self, result: Recommendations, k: int, uid: int) -> Recommendations:
        """``result``, its note saying so when it holds fewer than ``k`` movies (the user has seen all
        the others)."""
        if len(result.frame) >= k:
            return result
        seen = len(self.seen_movies(uid))
        short = (
            f"only {len(result.frame)} movies to recommend, not {k}: user {uid} has seen {seen} of the "
            f"{len(self.catalogue)} movies"
        )
        result.note = f"{result.note}; {short}" if result.note else short
        return result

    def _cold_start(self, uid: int, k: int, index: str, features: dict[str, Any] | None) -> Recommendations:
        unknown = f"user {uid} is unknown to this model"
        inputs = self.manifest.get("user_feature_inputs", {})
        given = {name: value for name, value in (features or {}).items() if value is not None}
        usable = {name: v for name, v in given.items() if set(COLD_START_FIELDS.get(name, ())) & set(inputs)}
        if given and not usable:
            uses = ", ".join(self.manifest.get("user_features", [])) or "ids only"
            note = (f"{unknown}, and its user tower uses none of the features given ({', '.join(given)}; "
                    f"it uses: {uses}): showing the most popular movies")  # fmt: skip
            return Recommendations(self.popular(k), cold_start=True, note=note)
        if not usable:
            note = f"{unknown}: showing the most popular movies"
            return Recommendations(self.popular(k), cold_start=True, note=note)
        embedding = self.query_embedding(usable)
        import tensorflow as tf

        ids, scores = self._search(
            self._signature(index, "from_embedding"), {"embedding": tf.constant(embedding)}, k, [], index
        )
        described = ", ".join(
            f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
            for name, value in usable.items()
        )
        note = f"{unknown}: recommending from the features given ({described}) through the query tower"
        return Recommendations(self._frame(ids, scores, "retrieval"), cold_start=True, note=note)

    def query_embedding(self, features: dict[str, Any], raw: dict[str, Any] | None = None) -> np.ndarray:
        """``(1, d)`` query embedding of a new user described by ``features`` (``age``, ``gender``,
        ``occupation``, ``zip``); inputs not given take the value of an unknown user."""
        import tensorflow as tf

        from tfrs_movies.features.side import age_bucket

        inputs = self.manifest.get("user_feature_inputs", {})
        values: dict[str, Any] = dict(raw or {})  # query tower inputs given as they are (e.g. history)
        for name, value in features.items():
            if name not in COLD_START_FIELDS:
                raise ServingError(f"unknown user feature {name!r}; known: {', '.join(COLD_START_FIELDS)}")
            if name == "age":
                try:
                    age = float(value)
                except (TypeError, ValueError):
                    raise ServingError(f"age must be a number, got {value!r}") from None
                if not 0 < age < 130:
                    raise ServingError(f"age must be between 1 and 129, got {value!r}")
                values["age"], values["age_bucket"] = age, str(age_bucket(np.array([age]))[0])
            elif name == "zip":
                values["zip_prefix"] = str(value).strip()[:1]
            else:
                values[name] = str(value).strip()
        tensors = {}
        for name, spec in inputs.items():
            if name in values and "values" in spec and values[name] not in spec["values"]:
                shown = ", ".join(spec["values"][:12]) + (", ..." if len(spec["values"]) > 12 else "")
                raise ServingError(f"unknown {name} {values[name]!r}; known: {shown}")
            value = values.get(name, "" if name == S.USER_ID else spec.get("default", ""))
            dtype = tf.string if spec["dtype"] == "string" else tf.float32
            tensors[name] = tf.constant([value], dtype=dtype)
        signature = self._load("query_tower", self.path / "query_tower").signatures["serving_default"]
        try:
            return signature(**tensors)["embedding"].numpy().astype(np.float32)
        except Exception as err:  # noqa: BLE001
            raise ServingError(f"the query tower failed: {_first_line(err)}") from None

    def recommend_watched(self, watched: Any, k: int = 10, index: str | None = None) -> Recommendations:
        """Top ``k`` for a new user described by the movies they watched (oldest first; never recommended
        back): through the query tower where its user tower reads a watch history; else, where the export
        has movie vectors, from the query vector that best scores 1 on each watched movie (ridge least
        squares over their vectors: the user folded in as matrix factorisation does); else the most popular
        movies. The note says which."""
        ids = list(dict.fromkeys(_parse_id(m, "movie") for m in np.atleast_1d(watched)))
        missing = [m for m, at in zip(ids, self._movie_index.get_indexer(ids), strict=True) if at < 0]
        if missing:
            raise ServingError(f"unknown movie id {missing[0]} in watched")
        k, index = self._check_k(k), self._index(index)
        exclude = [str(m) for m in ids]
        history = self.manifest.get("user_feature_inputs", {}).get("history")
        vectors = self.path / "movie_embeddings.npy"
        if history is not None:
            width = len(history.get("default") or []) or len(ids)
            embedding = self.query_embedding({}, {"history": (exclude[-width:] + [""] * width)[:width]})
            how = "the query tower over the watched movies as its history"
        elif vectors.is_file() and self.manifest.get("form") == "dot":
            v = np.load(vectors, mmap_mode="r")[self._movie_index.get_indexer(ids)].astype(np.float64)
            ridge = 0.1 * np.eye(v.shape[1])
            embedding = np.linalg.solve(v.T @ v + ridge, v.sum(axis=0))[None, :].astype(np.float32)
            how = "the watched movies folded in (the least-squares query vector over their movie vectors)"
        else:
            note = (
                f"{len(ids)} watched movies, which this model cannot fold in: showing the most popular movies"
            )
            return Recommendations(self.popular(k, np.asarray(ids)), cold_start=True, note=note)
        import tensorflow as tf

        found, scores = self._search(
            self._signature(index, "from_embedding"), {"embedding": tf.constant(embedding)}, k, exclude, index
        )
        note = f"a new user who watched {len(ids)} movies: recommending through {how}"
        return Recommendations(self._frame(found, scores, "retrieval"), cold_start=True, note=note)

    def recommend_many(
        self, user_ids: list[Any], k: int = 10, index: str | None = None, include_seen: bool = False,
        candidates: int | None = None, rerank: bool | None = None, rerank_weight: float | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """One frame for a batch of users: user_id, rank, movie_id, title, year, score, stage[,
        retrieval_score, rating], cold_start."""
        frames = []
        for user in user_ids:
            result = self.recommend(
                user, k, index, include_seen, candidates, rerank, rerank_weight=rerank_weight
            )
            frame = result.frame.copy()
            frame.insert(0, "rank", range(1, len(frame) + 1))
            frame.insert(0, "user_id", str(user))
            frame["cold_start"] = result.cold_start
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def recommend_pair(
        self, user_a: Any, user_b: Any, k: int = 10, aggregation: str = "average", index: str | None = None,
        candidates: int | None = None, rerank: bool | None = None, rerank_weight: float | None = None,
    ) -> Recommendations:  # fmt: skip
        """Movies for two users watching together (seed 004's paired users), neither user's seen movies.

        Candidates are the union of both users' retrieval lists (``candidates`` each, default 100; k_max
        without a ranking model). Each user scores every candidate: their retrieval score (a movie
        outside their list gets their lowest listed score), standardised, and with a ranking model the
        two-stage :func:`blend_stages` of it and their predicted rating. The two users' scores are then
        combined by ``aggregation``: ``average`` (the mean) or ``least_misery`` (the lower, so neither
        viewer gets a film they would dislike). ``score_<user>`` columns hold each user's score.
        """
        if aggregation not in AGGREGATIONS:
            raise ServingError(f"unknown aggregation {aggregation!r}; choose {' or '.join(AGGREGATIONS)}")
        k = self._check_k(k)
        # The pair model is a second stage too: rerank=False (--retrieval-only) leaves it out as well.
        use_pair_model = self.has_pair_model and aggregation == "average" and rerank is not False
        rerank = self.two_stages_by_default if rerank is None else bool(rerank)
        n = self._check_candidates(candidates, k) if rerank else self.k_max
        users = (_parse_id(user_a, "user"), _parse_id(user_b, "user"))
        seen = np.union1d(self.seen_movies(users[0]), self.seen_movies(users[1]))
        lists, notes = [], []
        for user in users:
            result = self.recommend(user, n, index, rerank=False)
            lists.append(result.frame[~result.frame[S.MOVIE_ID].isin(seen)])
            if result.cold_start and result.note:
                notes.append(result.note)
        candidates_ids = np.union1d(lists[0][S.MOVIE_ID], lists[1][S.MOVIE_ID])
        weight = self._rerank_weight(rerank_weight) if rerank else 0.0
        per_user = []
        for user, frame in zip(users, lists, strict=True):
            scores = pd.Series(frame["score"].to_numpy(), index=frame[S.MOVIE_ID].to_numpy())
            filled = scores.reindex(candidates_ids).fillna(scores.min() if len(scores) else 0.0).to_numpy()
            predicted = self.predict(user, candidates_ids) if rerank else np.zeros(len(candidates_ids))
            per_user.append(blend_stages(filled, predicted, weight))
        if rerank:
            blend = f"z(retrieval) + {weight:g} z({self.ranking_output})"
            what = f"{aggregation} of each user's two-stage score ({blend})"
        else:
            what = f"{aggregation} of standardised retrieval scores"
        combined = (per_user[0] + per_user[1]) / 2 if aggregation == "average" else np.minimum(*per_user)
        pair_rating = None
        if use_pair_model:
            # Seed 004's pair model predicts the two users' average rating directly; it re-scores the
            # candidates like a ranking stage (it predicts an average, so least misery keeps per user).
            pair_rating = self.pair_model_ratings(*users, candidates_ids).astype(np.float64)
            weight = self._rerank_weight(rerank_weight)
            combined = blend_stages(combined, pair_rating, weight)
            what += f", blended with the pair model's average rating (z + {weight:g} z(pair_rating))"
        order = np.argsort(-combined, kind="stable")[:k]
        stage = "pair model" if pair_rating is not None else "ranking" if rerank else "retrieval"
        frame = self._frame(candidates_ids[order], combined[order], stage)
        frame[f"score_{users[0]}"], frame[f"score_{users[1]}"] = per_user[0][order], per_user[1][order]
        if pair_rating is not None:
            frame["pair_rating"] = pair_rating[order]
        note = "; ".join([f"pair aggregation: {what}", *notes])
        return Recommendations(frame, cold_start=bool(notes), note=note)

    def explain(self, user_id: Any, movie_ids: Any, top: int = 3) -> pd.DataFrame:
        """For each of ``movie_ids``, the ``top`` movies in the user's watch history that the attention
        weighted most (sequence model exports): movie_id, rank, watched_movie_id, watched_title, weight."""
        if not (self.path / "explain" / "saved_model.pb").is_file():
            raise ServingError(
                f"{self.path} has no attention explanations (only sequence model exports have explain/)"
            )
        from tfrs_movies.serving.sequence import explain_movies

        uid = _parse_id(user_id, "user")
        movies = [_parse_id(m, "movie") for m in np.atleast_1d(movie_ids)]
        try:
            return explain_movies(self.path, uid, movies, top)
        except Exception as err:  # noqa: BLE001
            raise ServingError(f"the explain SavedModel failed: {_first_line(err)}") from None

    def because_you_watched(self, user_id: Any, movie_ids: Any, top: int = 3) -> dict[int, list[dict]]:
        """Per movie of ``movie_ids``: the ``top`` watched movies the attention weighted most, best first,
        as ``[{"movie_id", "title", "weight"}]`` (:meth:`explain`; ``[]`` for a movie it has none for)."""
        if top < 1:
            raise ServingError(f"explanations need at least 1 watched movie, got {top}")
        explained = self.explain(user_id, movie_ids, top)
        out: dict[int, list[dict]] = {int(m): [] for m in np.atleast_1d(movie_ids)}
        for row in explained.itertuples():
            out[int(row.movie_id)].append(
                {
                    "movie_id": int(row.watched_movie_id),
                    "title": row.watched_title,
                    "weight": float(row.weight),
                }
            )
        return out

    def pair_model_ratings(self, user_a: Any, user_b: Any, movie_ids: Any) -> np.ndarray:
        """The pair model's predicted rating of each movie for the two users together (seed 004)."""
        if not self.has_pair_model:
            raise ServingError(f"{self.path} has no pair model (a sequence run with a pair head exports one)")
        from tfrs_movies.serving.sequence import pair_ratings

        try:
            return pair_ratings(self.path, _parse_id(user_a, "user"), _parse_id(user_b, "user"), movie_ids)
        except Exception as err:  # noqa: BLE001
            raise ServingError(f"the pair SavedModel failed: {_first_line(err)}") from None

    def similar(self, movie_id: Any, k: int = 10) -> Recommendations:
        """The ``k`` movies most similar to ``movie_id`` by the model's own measure (the cosine of its
        movie vectors, or co-occurrence in train for models without them), the movie itself left out."""
        mid = _parse_id(movie_id, "movie")
        col = self._movie_index.get_indexer([mid])[0]
        if col < 0:
            raise ServingError(f"unknown movie id {mid}")
        k = self._check_k(k, self.similar_ids.shape[1])
        stage = "embedding cosine" if self.manifest.get("movie_vectors") else "co-occurrence cosine"
        return Recommendations(self._frame(self.similar_ids[col, :k], self.similar_scores[col, :k], stage))


def read_user_ids(path: str | Path) -> list[str]:
    """User ids from a file: one per line, or a CSV whose header has a ``user_id`` column."""
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as err:
        raise ServingError(f"cannot read users file {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        byte = err.object[err.start]
        raise ServingError(f"users file {path} is not UTF-8 text (byte 0x{byte:02x})") from None
    if not lines:
        raise ServingError(f"users file {path} holds no user ids")
    if "user_id" in lines[0].split(","):
        return pd.read_csv(path, dtype=str)["user_id"].dropna().str.strip().tolist()
    return lines


def load_export(path: str | Path, ranking: str | Path | None = None) -> Exported:
    """Open an export directory (and optionally another run's ranking export for the second stage); a
    missing or corrupt one is a :class:`ServingError` naming the problem."""
    return Exported(path, ranking)
