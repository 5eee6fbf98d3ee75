"""The one interface every recommender honours, TFRS model or classic baseline: the model contract.

A model implements a few declared methods and gets everything else from here and the framework:

implements
    ``Params``: a dataclass of its own settings (config ``model.params``), validated with one-line
    errors naming the key; ``_fit(train, dataset, valid)``; ``_score_known(user_index) -> (n, N)``;
    ``_state() -> State`` and ``_restore(state)`` (arrays and JSON values, never pickle);
    ``serving_parts() -> ServingParts`` (what the SavedModel export needs).
may override
    ``predict`` (rating models), ``_score_unknown`` (cold start from features), ``movie_embeddings``,
    ``update_seen``, ``on_weights_changed`` (the training loop calls it after each epoch and on
    restoring the best one), ``extra_metrics`` (figures beyond the headline ones), ``parameter_count``.
gets
    ``fit`` (catalogue, users, seen table, popularity), ``score`` for any users (unknown users get the
    cold start: popularity unless overridden, never an error, as in Surprise), ``recommend`` with seen
    movies excluded, ``similar_movies``, ``save`` / ``load`` (atomic, format-versioned, see
    :mod:`tfrs_movies.models.state`), evaluation, early stopping, export and serving.

Shapes: ``score(user_ids (n,)) -> (n, N)`` over ``self.catalogue`` (N movies); ``predict(user_ids (n,),
movie_ids (n,)) -> (n,)``; ``recommend(user_ids (n,), k) -> (movie_ids (n, k), scores (n, k))``.
"""

from __future__ import annotations

import abc
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrs_movies import schema as S
from tfrs_movies.evaluation.ranking import interaction_matrix, rows_per_block, top_k_indices
from tfrs_movies.models.state import State, read_state, write_state

if typing.TYPE_CHECKING:
    from tfrs_movies.models.serving_parts import ServingParts


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """Base of every model's ``Params`` dataclass (frozen, every field with a default)."""

    def validate(self) -> None:
        """Raise ValueError (one line naming the key) for values of the right type but out of range."""


@dataclasses.dataclass(frozen=True)
class NoParams(ModelParams):
    """A model without settings of its own."""


def _matches(value: Any, hint: Any) -> bool:
    """Whether a config value fits a dataclass field's type (ints pass for floats, bools never for
    numbers; list/tuple/dict element types are checked one level deep)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value if args)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


class Recommender(abc.ABC):
    """Base class of every model; see the module docstring for what a subclass implements."""

    name: ClassVar[str] = "base"
    predicts_ratings: ClassVar[bool] = False
    # False for models without early stopping: the experiment then fits them on train + validation,
    # so that no rating of the training files is thrown away.
    uses_validation: ClassVar[bool] = True
    # This model's own settings (config ``model.params.<field>``): a dataclass with defaults.
    Params: ClassVar[type[ModelParams]] = NoParams
    # ``model.params`` overrides for the contract test suite's tiny data (smaller layers, fewer steps),
    # for a model that is slow or unstable there at its defaults.
    contract_params: ClassVar[dict[str, Any]] = {}
    # Prefixes of ``_state`` keys that hold data rather than learned numbers (e.g. AutoRec's inputs).
    data_state: ClassVar[tuple[str, ...]] = ()

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
    def param_fields(cls) -> dict[str, Any]:
        """``{name: default}`` of this model's settings."""
        return {
            f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
            for f in dataclasses.fields(cls.Params)
        }

    @classmethod
    def resolve_params(cls, config: dict[str, Any]) -> Any:
        """``cls.Params`` from ``model.params``; an unknown key or a value of the wrong type is a
        ConfigError naming the key."""
        from tfrs_movies.config import ConfigError

        given = dict(config.get("model", {}).get("params") or {})
        hints = typing.get_type_hints(cls.Params)
        unknown = sorted(set(given) - set(hints))
        if unknown:
            known = ", ".join(sorted(hints)) or "none"
            raise ConfigError(
                f"unknown config key 'model.params.{unknown[0]}' for model {cls.name!r} (its params: {known})"
            )
        for key, value in given.items():
            if not _matches(value, hints[key]):
                raise ConfigError(
                    f"config key 'model.params.{key}' must be {_type_name(hints[key])}, got {value!r}"
                )
        params = cls.Params(**given)
        try:
            params.validate()
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return params

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

    def on_weights_changed(self) -> None:
        """Called by the training loop after each epoch and after restoring the best weights: drop
        anything cached from the weights (e.g. movie vectors). Nothing to do by default."""
        return None

    def extra_metrics(self, frame: pd.DataFrame) -> dict[str, float]:
        """Figures beyond the headline ones on ``frame`` (test or validation ratings), e.g. the
        normalised-scale RMSE or a classifier's AUC; none by default."""
        return {}

    def parameter_count(self) -> int | None:
        """Learned numbers: the float arrays of :meth:`_state` (weights, factors, biases, EASE's matrix,
        members' included), less those under ``data_state`` prefixes; None when there are none."""
        total = sum(
            int(v.size) for k, v in self._state().arrays.items()
            if np.issubdtype(v.dtype, np.floating) and not k.startswith(self.data_state)
        )  # fmt: skip
        return total or None

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
        ok = np.flatnonzero(cols >= 0)
        ok = ok[np.argsort(inverse[ok], kind="stable")]
        # Score rows a block of users at a time (bounded memory whatever the catalogue).
        step = rows_per_block(len(self.catalogue))
        bounds = np.searchsorted(inverse[ok], np.arange(0, len(uniq) + step, step))
        for block, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            if hi > lo:
                scores = self.score(uniq[block * step : (block + 1) * step])
                out[ok[lo:hi]] = scores[inverse[ok[lo:hi]] - block * step, cols[ok[lo:hi]]]
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
        user_ids = np.asarray(user_ids)
        k = min(k, len(self.catalogue))
        movies = np.empty((len(user_ids), k), dtype=self.catalogue.dtype)
        values = np.empty((len(user_ids), k), dtype=np.float32)
        step = rows_per_block(len(self.catalogue))  # bounded score blocks whatever the catalogue
        for start in range(0, len(user_ids), step):
            chunk = user_ids[start : start + step]
            scores = self.score(chunk)
            if exclude_seen:
                seen = self.seen_mask(chunk).tocoo()
                scores[seen.row, seen.col] = -np.inf
            top = top_k_indices(scores, k)
            movies[start : start + step] = self.catalogue[top]
            values[start : start + step] = np.take_along_axis(scores, top, axis=1)
        return movies, values

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

    # ----- persistence (the framework alone writes and reads; see tfrs_movies.models.state) -------
    def state(self) -> State:
        """Everything needed to rebuild this fitted model: the index every model keeps, plus
        :meth:`_state`. Arrays and JSON values only."""
        seen = self.seen if self.seen is not None else sp.csr_matrix((len(self.users), len(self.catalogue)))
        state = State.of({
            "catalogue": self.catalogue, "users": self.users, "popularity": self.popularity,
            "seen/indptr": seen.indptr.astype(np.int64), "seen/indices": seen.indices.astype(np.int64),
            "rating_scale": list(self.rating_scale), "history": self.history,
        })  # fmt: skip
        return state.nest("model", self._state())

    @classmethod
    def from_state(cls, config: dict[str, Any], state: State) -> Recommender:
        """The inverse of :meth:`state`: a model of this class, ready to score."""
        model = cls(config)
        model.catalogue = state["catalogue"].astype(np.int64)
        model.users = state["users"].astype(np.int64)
        model.popularity = state["popularity"].astype(np.float32)
        indices = state["seen/indices"]
        model.seen = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, state["seen/indptr"]),
            shape=(len(model.users), len(model.catalogue)),
        )
        model.rating_scale = tuple(float(x) for x in state["rating_scale"])
        model.history = dict(state["history"])
        model._restore(state.child("model"))
        return model

    def save(self, path: str | Path) -> Path:
        """Write this model into the folder ``path``, atomically (``model.json`` + ``arrays.npz``)."""
        return write_state(path, self.name, self.config, self.state())

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Rebuild a saved model (any registered class when called on :class:`Recommender`); a folder of
        another format version is a :class:`~tfrs_movies.models.state.ModelFormatError`."""
        from tfrs_movies.models.registry import get_model_class

        name, config, state = read_state(path)
        model_cls = get_model_class(name) if cls is Recommender else cls
        return model_cls.from_state(config, state)

    @abc.abstractmethod
    def _state(self) -> State:
        """This model's own learned state (weights, factors, feature tables...)."""

    @abc.abstractmethod
    def _restore(self, state: State) -> None:
        """Rebuild from :meth:`_state`'s output; the index (catalogue, users, seen...) is already set."""

    # ----- serving -------------------------------------------------------------------------------
    @abc.abstractmethod
    def serving_parts(self) -> ServingParts:
        """What the SavedModel export needs (:class:`~tfrs_movies.models.serving_parts.ServingParts`):
        a query over user ids and candidate vectors (dot product), or a scorer over the catalogue; an
        optional feature tower (cold start), ranking module and extras."""
