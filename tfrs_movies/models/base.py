"""The one interface every recommender honours, TFRS model or classic baseline.

A model scores the whole catalogue for a batch of users (:meth:`Recommender.score`); recommending,
excluding seen movies, the cold-start fallback and evaluation are built on that one method here, so
every model behaves the same way at the edges:

- ``fit(train, dataset, valid=None)`` learns from a canonical ratings frame; ``dataset`` supplies the
  catalogue and side features.
- ``score(user_ids) -> (n_users, n_movies)`` in catalogue order (``self.catalogue``).
- ``predict(user_ids, movie_ids) -> (n,)`` a rating (rating models) or a relevance score (retrieval).
- ``recommend(user_ids, k, exclude_seen=True) -> (movie_ids (n, k), scores (n, k))``.
- ``similar_movies(movie_ids, k) -> (movie_ids (n, k), scores (n, k))``.
- ``save(path)`` / ``load(path)``.

Unknown users (not in train) get the popularity ranking, never an error (as in Surprise); unknown
movies in ``predict`` get the model's fallback (the global mean for rating models).
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from tfrs_movies import schema as S
from tfrs_movies.evaluation.ranking import interaction_matrix, top_k_indices


class Recommender(abc.ABC):
    """Base class: subclasses implement ``_fit``, ``_score_known``, ``_save_state`` and ``_load_state``."""

    name: ClassVar[str] = "base"
    predicts_ratings: ClassVar[bool] = False
    # False for models without early stopping: the experiment then fits them on train + validation,
    # so that no rating of the training files is thrown away.
    uses_validation: ClassVar[bool] = True
    # This model's own settings (config ``model.params.<key>``), with their defaults.
    param_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.params = self.resolve_params(config)
        self.catalogue: np.ndarray = np.empty(0, dtype=np.int64)
        self.users: np.ndarray = np.empty(0, dtype=np.int64)
        self.seen: sp.csr_matrix | None = None
        self.popularity: np.ndarray = np.empty(0, dtype=np.float32)
        self.rating_scale: tuple[float, float] = (1.0, 5.0)
        self.history: dict[str, list[float]] = {}

    @classmethod
    def resolve_params(cls, config: dict[str, Any]) -> dict[str, Any]:
        """``param_defaults`` overridden by ``model.params``; an unknown key is a ConfigError naming it."""
        from tfrs_movies.config import ConfigError

        given = dict(config.get("model", {}).get("params") or {})
        unknown = sorted(set(given) - set(cls.param_defaults))
        if unknown:
            known = ", ".join(sorted(cls.param_defaults)) or "none"
            raise ConfigError(
                f"unknown config key 'model.params.{unknown[0]}' for model {cls.name!r} (its params: {known})"
            )
        for key, value in given.items():
            default = cls.param_defaults[key]
            if (
                default is not None
                and not isinstance(value, type(default))
                and not (
                    isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
                )
            ):
                raise ConfigError(
                    f"config key 'model.params.{key}' must be {type(default).__name__}, got {value!r}"
                )
        return {**cls.param_defaults, **given}

    # ----- fitting -------------------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None = None, **kwargs: Any):
        """Learn from ``train``; ``valid`` (carved from train) drives early stopping where used."""
        movies = dataset.movies[S.MOVIE_ID].to_numpy() if len(dataset.movies) else np.empty(0, np.int64)
        self.catalogue = np.union1d(movies, train[S.MOVIE_ID].unique()).astype(np.int64)
        self.users = np.sort(train[S.USER_ID].unique()).astype(np.int64)
        self.seen = interaction_matrix(train, self.users, self.catalogue)
        counts = np.asarray(self.seen.sum(0)).ravel()
        self.popularity = (counts / max(counts.sum(), 1)).astype(np.float32)
        self.rating_scale = dataset.rating_scale
        self._fit(train, dataset, valid, **kwargs)
        return self

    def update_seen(self, ratings: pd.DataFrame) -> None:
        """Replace the seen-movies table (e.g. train + validation once training is over)."""
        self.seen = interaction_matrix(ratings, self.users, self.catalogue)

    @abc.abstractmethod
    def _fit(
        self, train: pd.DataFrame, dataset: S.Dataset, valid: pd.DataFrame | None, **kwargs: Any
    ) -> None: ...

    # ----- scoring -------------------------------------------------------------------------------
    @abc.abstractmethod
    def _score_known(self, user_index: np.ndarray) -> np.ndarray:
        """Scores (len(user_index), len(catalogue)) for users given by their row in ``self.users``."""

    def score(self, user_ids: np.ndarray) -> np.ndarray:
        """Scores over the catalogue for any users; users unseen in train go to :meth:`_score_unknown`."""
        user_ids = np.asarray(user_ids).astype(np.int64)
        index = pd.Index(self.users).get_indexer(user_ids)
        out = np.empty((len(user_ids), len(self.catalogue)), dtype=np.float32)
        known = index >= 0
        if known.any():
            out[known] = self._score_known(index[known])
        if (~known).any():
            out[~known] = self._score_unknown(user_ids[~known])
        return out

    def _score_unknown(self, user_ids: np.ndarray) -> np.ndarray:
        """Cold start: the popularity scores (models with user features override this)."""
        return np.tile(self.popularity, (len(user_ids), 1)).astype(np.float32)

    def predict(self, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
        """One score per (user, movie) pair; default: read it off :meth:`score` (rating models override)."""
        user_ids = np.asarray(user_ids).astype(np.int64)
        movie_ids = np.asarray(movie_ids).astype(np.int64)
        cols = pd.Index(self.catalogue).get_indexer(movie_ids)
        out = np.zeros(len(user_ids), dtype=np.float32)
        uniq, inverse = np.unique(user_ids, return_inverse=True)
        scores = self.score(uniq)
        ok = cols >= 0
        out[ok] = scores[inverse[ok], cols[ok]]
        return out

    def seen_mask(self, user_ids: np.ndarray) -> sp.csr_matrix:
        """(len(user_ids), len(catalogue)) CSR matrix of the movies each user rated in train."""
        index = pd.Index(self.users).get_indexer(np.asarray(user_ids).astype(np.int64))
        known = index >= 0
        if not known.any():
            return sp.csr_matrix((len(index), len(self.catalogue)), dtype=np.float32)
        # One fancy-indexing call instead of a per-user vstack; unknown users' rows are then zeroed.
        rows = self.seen[np.where(known, index, 0)]
        mask = (sp.diags(known.astype(np.float32)) @ rows).tocsr()
        mask.eliminate_zeros()  # unknown users must have no stored entries at all
        return mask

    def recommend(
        self, user_ids: np.ndarray, k: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` movie ids and their scores per user, best first; seen movies removed by default."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        scores = self.score(user_ids)
        if exclude_seen:
            seen = self.seen_mask(user_ids).tocoo()
            scores[seen.row, seen.col] = -np.inf
        top = top_k_indices(scores, k)
        return self.catalogue[top], np.take_along_axis(scores, top, axis=1)

    def movie_embeddings(self) -> np.ndarray | None:
        """(len(catalogue), d) movie vectors when the model has them (for similar movies and indexes)."""
        return None

    def similar_movies(self, movie_ids: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` movies with the most similar vectors (cosine), the movie itself excluded.

        Models without movie vectors fall back to item co-occurrence in train (cosine over users).
        """
        cols = pd.Index(self.catalogue).get_indexer(np.asarray(movie_ids).astype(np.int64))
        if (cols < 0).any():
            unknown = np.asarray(movie_ids)[cols < 0]
            raise KeyError(f"unknown movie id(s): {unknown.tolist()}")
        vectors = self.movie_embeddings()
        if vectors is None:
            vectors = self.seen.T.tocsr().astype(np.float32)
            norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(1)).ravel()) + 1e-9
            sims = np.asarray((vectors[cols] @ vectors.T).todense()) / norms[cols, None] / norms[None, :]
        else:
            unit = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9)
            sims = unit[cols] @ unit.T
        sims = np.asarray(sims, dtype=np.float32)
        sims[np.arange(len(cols)), cols] = -np.inf
        top = top_k_indices(sims, k)
        return self.catalogue[top], np.take_along_axis(sims, top, axis=1)

    # ----- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the config, the catalogue/user index and the model's own state under ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "model.yaml").write_text(yaml.safe_dump({"name": self.name, "config": self.config}))
        np.savez(
            path / "index.npz",
            catalogue=self.catalogue,
            users=self.users,
            popularity=self.popularity,
            seen_indptr=self.seen.indptr,
            seen_indices=self.seen.indices,
            rating_scale=np.asarray(self.rating_scale, dtype=np.float64),
        )
        (path / "history.json").write_text(json.dumps(self.history))
        self._save_state(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Rebuild a saved model (any registered class when called on :class:`Recommender`)."""
        from tfrs_movies.models.registry import get_model_class

        path = Path(path)
        meta = yaml.safe_load((path / "model.yaml").read_text())
        model_cls = get_model_class(meta["name"]) if cls is Recommender else cls
        model = model_cls(meta["config"])
        with np.load(path / "index.npz") as index:
            model.catalogue = index["catalogue"]
            model.users = index["users"]
            model.popularity = index["popularity"]
            data = np.ones(len(index["seen_indices"]), dtype=np.float32)
            model.seen = sp.csr_matrix(
                (data, index["seen_indices"], index["seen_indptr"]),
                shape=(len(model.users), len(model.catalogue)),
            )
            model.rating_scale = tuple(float(x) for x in index["rating_scale"])
        history = path / "history.json"
        model.history = json.loads(history.read_text()) if history.exists() else {}
        model._load_state(path)
        return model

    @abc.abstractmethod
    def _save_state(self, path: Path) -> None: ...

    @abc.abstractmethod
    def _load_state(self, path: Path) -> None: ...
