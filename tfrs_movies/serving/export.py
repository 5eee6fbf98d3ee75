"""Export any fitted model for serving, atomically, from its :meth:`serving_parts`.

``export_model(model, dataset, out_dir)`` asks the model for its
:class:`~tfrs_movies.models.serving_parts.ServingParts` and writes, into a temporary folder next to
``out_dir`` that is then renamed onto it (a reader never sees a half-written export):

- ``brute_force/`` SavedModel, always, and ``scann/`` where the score is a dot product (parts in dot
  form), each with ``serving_default(user_id: string (B,), k: int32 (), exclude: string (B, E))``
  returning ``{"movie_ids": string (B, k), "scores": float32 (B, k)}``. ``exclude`` holds movie ids to
  remove ("" padding), e.g. a user's seen movies; any ``1 <= k <= k_max`` is answered after loading.
  Dot-form indexes add ``from_embedding(embedding (B, d), k, exclude)`` for query vectors computed
  elsewhere (a new user's features through ``query_tower/``: cold start). The index is asked for a
  fixed number of candidates (the whole catalogue for brute force, ``k_max`` + the largest seen list
  for ScaNN), excluded ids are masked to -inf, and ``tf.math.top_k`` keeps ``k``;
- ``query_tower/`` SavedModel when the model has a user tower over raw request features:
  ``serving_default(**features) -> {"embedding": (B, d)}``;
- ``ranking/`` (the second stage of two-stage serving) and the model's extras (``explain/``,
  ``pair/``) where its parts have them;
- ``movies.csv`` (movie_id, title, year, in catalogue order), ``similar.npz`` (each movie's
  ``min(k_max, N - 1)`` most similar movies by the model's own ``similar_movies``), and
  ``movie_embeddings.npy`` where the model has movie vectors;
- ``seen.npz`` (users, catalogue, CSR indptr/indices of the movies each user rated in train),
  ``popularity.npy`` (catalogue order) and ``manifest.json`` (versions, config, metrics, form,
  vocabulary sizes, k_max, index parameters, the query tower's inputs, the model's description and
  number of learned weights);
- ``MODEL_CARD.md``, written from the manifest by :func:`tfrs_movies.serving.card.model_card`: what the
  model is, data and split, figures beside baselines, limitations, how to load it.

Nothing here knows a model by name: every model exports the same way.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_movies import schema as S
from tfrs_movies.features.preprocessing import ids_as_strings
from tfrs_movies.io import atomic_directory, atomic_write_json
from tfrs_movies.models.serving_parts import ServingParts
from tfrs_movies.serving.card import CARD_FILE, first_sentence, model_card
from tfrs_movies.serving.layout import EXPORT_FORMAT
from tfrs_movies.serving.ranking_export import position_table

log = logging.getLogger(__name__)

INDEXES = ("brute_force", "scann")
# Up to this many fetched candidates, exclusion compares candidates with excluded ids pairwise.
PAIRWISE_EXCLUSION_MAX = 4096
# similar_movies is asked for this many movies at a time while writing similar.npz.
SIMILAR_CHUNK = 512


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _spec(name: str, values: np.ndarray) -> tf.TensorSpec:
    dtype = tf.string if values.dtype == object or values.dtype.kind in "US" else tf.float32
    return tf.TensorSpec([None] * max(values.ndim, 1), dtype, name=name)


class QueryTowerModule(tf.Module):
    """The user tower over raw features; ``serving_default(**features) -> {"embedding": (B, d)}``."""

    def __init__(self, tower: tf.keras.Model, specs: dict[str, tf.TensorSpec]):
        super().__init__()
        self.tower = tower
        names = sorted(specs)

        @tf.function(input_signature=[specs[n] for n in names])
        def serving_default(*tensors):
            features = dict(zip(names, tensors, strict=True))
            return {"embedding": self.tower(features, training=False)}

        self.serving_default = serving_default


class ScorerIndex(tf.Module):
    """A brute-force index for the scorer form: ``(user_id (B,), k) -> (scores (B, k), ids (B, k))``
    over ``scorer(user_id) -> (B, N)`` scores of the whole catalogue."""

    def __init__(self, scorer: tf.Module, catalogue: np.ndarray):
        super().__init__()
        self.scorer = scorer
        self.ids = tf.Variable(ids_as_strings(catalogue), trainable=False)

    def __call__(self, user_id: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
        scores, position = tf.math.top_k(self.scorer(user_id), k=k)
        return scores, tf.gather(self.ids, position)


class TopKModule(tf.Module):
    """user id -> query (dot form: the model's query module; scorer form: the id itself) -> index ->
    excluded movies masked -> top k."""

    def __init__(self, query: tf.Module | None, index, catalogue: np.ndarray, fetch: int, k_max: int):
        super().__init__()
        self.query = query
        self.index = index
        self.fetch = int(fetch)
        self.movie_position = position_table(catalogue)
        self.n_movies = len(catalogue)
        self.k_max = tf.Variable(int(k_max), dtype=tf.int32, trainable=False)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([], tf.int32, name="k"),
            tf.TensorSpec([None, None], tf.string, name="exclude"),
        ]
    )
    def serving_default(self, user_id, k, exclude):
        queries = self.query(user_id) if self.query is not None else user_id
        return self._top_k(queries, k, exclude)

    def _top_k(self, queries, k, exclude):
        tf.debugging.assert_greater_equal(k, 1, message="k must be at least 1")
        tf.debugging.assert_less_equal(k, self.k_max, message="k is above the export's k_max")
        scores, ids = self.index(queries, k=self.fetch)
        if self.fetch <= PAIRWISE_EXCLUSION_MAX:
            # Few candidates (ScaNN): compare each candidate with each excluded id, O(fetch * E) per
            # user, independent of the catalogue's size. "" padding and unknown ids match nothing.
            hit = tf.reduce_any(tf.equal(ids[:, :, None], exclude[:, None, :]), axis=-1)
        else:
            # The whole catalogue (brute force): a (B, n_movies) mask, O(n + E) per user.
            excluded_at = self.movie_position.lookup(exclude)
            rows = tf.broadcast_to(
                tf.range(tf.shape(exclude, out_type=tf.int64)[0])[:, None], tf.shape(excluded_at)
            )
            known = excluded_at >= 0
            where = tf.stack([tf.boolean_mask(rows, known), tf.boolean_mask(excluded_at, known)], axis=1)
            shape = tf.stack([tf.shape(ids, out_type=tf.int64)[0], tf.constant(self.n_movies, tf.int64)])
            excluded = tf.scatter_nd(where, tf.ones(tf.shape(where)[:1], tf.int32), shape) > 0
            hit = tf.gather(excluded, self.movie_position.lookup(ids), batch_dims=1)
        scores = tf.where(hit, tf.constant(-np.inf, scores.dtype), scores)
        top, position = tf.math.top_k(scores, k=k)
        return {"movie_ids": tf.gather(ids, position, batch_dims=1), "scores": top}

    def signatures(self) -> dict:
        return {"serving_default": self.serving_default}


class DotTopKModule(TopKModule):
    """The dot form's top-K module: also searches for query vectors computed elsewhere."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.float32, name="embedding"),
            tf.TensorSpec([], tf.int32, name="k"),
            tf.TensorSpec([None, None], tf.string, name="exclude"),
        ]
    )
    def from_embedding(self, embedding, k, exclude):
        """The same search for query embeddings computed elsewhere (e.g. the query tower SavedModel
        over a new user's features: cold start)."""
        return self._top_k(embedding, k, exclude)

    def signatures(self) -> dict:
        return {"serving_default": self.serving_default, "from_embedding": self.from_embedding}


def default_scann_params(n_movies: int, fetch: int) -> dict[str, Any]:
    """Leaves ~ sqrt(catalogue), half of them (at least 10) searched, and an exact re-ordering of the
    candidates."""
    leaves = int(min(1000, max(2, round(math.sqrt(n_movies)))))
    return {
        "num_leaves": leaves,
        "num_leaves_to_search": min(leaves, max(10, math.ceil(leaves / 2))),
        "training_iterations": 12,
        "dimensions_per_block": 2,
        "num_reordering_candidates": int(min(n_movies, max(fetch, 100))),
    }


def _movie_frame(model, dataset) -> pd.DataFrame:
    movies = dataset.movies.drop_duplicates(S.MOVIE_ID).set_index(S.MOVIE_ID) if dataset is not None else None
    frame = pd.DataFrame({S.MOVIE_ID: model.catalogue.astype(np.int64)})
    if movies is not None and len(movies):
        for column in (S.TITLE, S.YEAR):
            frame[column] = movies[column].reindex(model.catalogue).to_numpy() if column in movies else None
    else:
        frame[S.TITLE], frame[S.YEAR] = None, None
    frame[S.TITLE] = frame[S.TITLE].fillna("").astype(str)
    frame[S.YEAR] = pd.to_numeric(frame[S.YEAR], errors="coerce").astype("Int64")
    return frame


def export_model(
    model,
    dataset: S.Dataset | None,
    out_dir: str | Path,
    k_max: int = 100,
    scann_params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write the serving export of any fitted model into ``out_dir`` (atomic); see the module doc."""
    parts = model.serving_parts()
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        manifest = _write_export(model, parts, dataset, tmp, k_max, scann_params, metrics)
        atomic_write_json(tmp / "manifest.json", manifest)
        written = json.loads((tmp / "manifest.json").read_text(encoding="utf-8"))  # the card reads the file
        (tmp / CARD_FILE).write_text(model_card(written, str(out_dir)), encoding="utf-8")
    return out_dir


def export_run(
    model, dataset: S.Dataset | None, run_dir: str | Path, k_max: int = 100,
    metrics: dict[str, Any] | None = None,
) -> Path:  # fmt: skip
    """Export a run's model into ``<run_dir>/export``."""
    return export_model(model, dataset, Path(run_dir) / "export", k_max=k_max, metrics=metrics)


def _write_export(model, parts: ServingParts, dataset, out: Path, k_max: int, scann_params,
                  metrics) -> dict[str, Any]:  # fmt: skip
    catalogue = model.catalogue.astype(np.int64)
    n_movies = len(catalogue)
    k_max = int(min(k_max, n_movies))
    if k_max < 1:
        raise ValueError("cannot export a model with an empty catalogue")
    seen = model.seen.tocsr()
    max_seen = int(np.diff(seen.indptr).max()) if seen.shape[0] else 0
    manifest: dict[str, Any] = {"user_features": [], "user_feature_inputs": {}}

    if parts.feature_query is not None and parts.is_dot:  # the user tower over raw features (cold start)
        space, tower = parts.feature_query.space, parts.feature_query.tower
        sample = space.user_rows(model.users[:1])
        specs = {name: _spec(name, np.asarray(values)) for name, values in sample.items()}
        module = QueryTowerModule(tower, specs)
        tf.saved_model.save(
            module, str(out / "query_tower"), signatures={"serving_default": module.serving_default}
        )
        manifest["user_features"] = sorted(specs)
        manifest["user_feature_inputs"] = _feature_inputs(space, specs)
    manifest["ranking"] = parts.ranking(out / "ranking") if parts.ranking is not None else None
    manifest["extras"] = {name: write(out / name) for name, write in sorted(parts.extras.items())}

    indexes: dict[str, dict[str, Any]] = {"brute_force": {"candidates_fetched": n_movies, "exact": True}}
    if parts.is_dot:
        vectors = np.asarray(parts.candidates, np.float32)
        ids = tf.constant(ids_as_strings(catalogue))
        # Brute force asks for the whole catalogue, so exclusion is always exact.
        brute = tfrs.layers.factorized_top_k.BruteForce(k=n_movies)
        brute.index(tf.constant(vectors), ids)
        module = DotTopKModule(parts.query, brute, catalogue, n_movies, k_max)
        manifest["query_dim"] = int(vectors.shape[1])
    else:
        module = TopKModule(None, ScorerIndex(parts.scorer, catalogue), catalogue, n_movies, k_max)
    tf.saved_model.save(module, str(out / "brute_force"), signatures=module.signatures())
    if parts.is_dot and parts.approximate_index:
        # ScaNN: k_max plus the longest seen list, so that excluding seen movies still leaves k_max.
        fetch = int(min(n_movies, k_max + max_seen))
        params = {**default_scann_params(n_movies, fetch), **(scann_params or {})}
        params["num_leaves_to_search"] = min(params["num_leaves_to_search"], params["num_leaves"])
        scann = tfrs.layers.factorized_top_k.ScaNN(k=fetch, distance_measure="dot_product", **params)
        scann.index(tf.constant(vectors), ids)
        module = DotTopKModule(parts.query, scann, catalogue, fetch, k_max)
        tf.saved_model.save(
            module, str(out / "scann"), signatures=module.signatures(),
            options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]),
        )  # fmt: skip
        indexes["scann"] = {"candidates_fetched": fetch, "exact": False, "distance_measure": "dot_product",
                            **params}  # fmt: skip

    _movie_frame(model, dataset).to_csv(out / "movies.csv", index=False)
    _write_similar(model, out / "similar.npz", min(k_max, n_movies - 1))
    embeddings = model.movie_embeddings()
    if embeddings is not None:
        np.save(out / "movie_embeddings.npy", np.asarray(embeddings, np.float32))
    np.savez(
        out / "seen.npz", users=model.users.astype(np.int64), catalogue=catalogue,
        indptr=seen.indptr.astype(np.int64), indices=seen.indices.astype(np.int64),
    )  # fmt: skip
    np.save(out / "popularity.npy", model.popularity.astype(np.float32))
    import tfrs_movies

    return {
        "format": EXPORT_FORMAT,
        "model": model.name,
        "description": _description(model),
        "exported_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "parameters": model.parameter_count(),
        "form": "dot" if parts.is_dot else "scorer",
        "top_n_is_ranking": parts.top_n_is_ranking,
        "movie_vectors": embeddings is not None,
        "versions": {
            "tfrs_movies": tfrs_movies.__version__,
            "tensorflow": tf.__version__,
            "tensorflow_recommenders": tfrs.__version__,
            "scann": _version("scann"),
            "numpy": np.__version__,
        },
        "config": model.config,
        "metrics": metrics or {},
        "vocabulary": {"users": int(len(model.users)), "movies": int(n_movies)},
        **manifest,
        "k_max": k_max,
        "max_seen": max_seen,
        "indexes": indexes,
    }


def _description(model) -> str:
    """The first sentence of the model class's docstring, as prose (the model card's "what it is")."""
    return first_sentence(type(model).__doc__ or "")


def _write_similar(model, path: Path, k: int) -> None:
    """Each movie's ``k`` most similar movies by the model's own ``similar_movies`` (catalogue order)."""
    catalogue = model.catalogue
    ids = np.zeros((len(catalogue), k), np.int64)
    scores = np.zeros((len(catalogue), k), np.float32)
    for start in range(0, len(catalogue) if k > 0 else 0, SIMILAR_CHUNK):
        chunk = catalogue[start : start + SIMILAR_CHUNK]
        ids[start : start + len(chunk)], scores[start : start + len(chunk)] = model.similar_movies(chunk, k)
    np.savez(path, movie_ids=ids, scores=scores)


# Categorical user features with at most this many values list them in the manifest (for checking
# the features a cold-start request gives).
MAX_LISTED_VALUES = 1000


def _feature_inputs(space, specs: dict[str, tf.TensorSpec]) -> dict[str, dict[str, Any]]:
    """What the query tower SavedModel takes, per input: dtype, rank, the value an unknown user gets,
    and (small categorical features) the known values."""
    from tfrs_movies.features.side import unknown_defaults

    defaults = unknown_defaults(space.user_table)
    out: dict[str, dict[str, Any]] = {}
    for name, spec in specs.items():
        entry: dict[str, Any] = {"dtype": spec.dtype.name, "rank": len(spec.shape)}
        if name in space.user_table:
            values = space.user_table[name]
            default = defaults[name]
            entry["default"] = np.asarray(default).tolist()  # a scalar, or a row for sequence inputs
            if spec.dtype == tf.string and values.ndim == 1:
                known = sorted({str(v) for v in values} - {""})
                if len(known) <= MAX_LISTED_VALUES:
                    entry["values"] = known
        out[name] = entry
    return out
