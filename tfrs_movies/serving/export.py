"""Export a trained two-tower retrieval model for serving, atomically.

``export_retrieval(model, dataset, out_dir)`` writes, into a temporary folder next to ``out_dir`` that
is then renamed onto it (a reader never sees a half-written export):

- ``query_tower/``  SavedModel; ``serving_default`` takes the raw user features the tower uses (named
  string / float32 tensors, batch first) and returns ``{"embedding": (B, d) float32}``;
- ``brute_force/`` and ``scann/``  SavedModels over a TFRS ``BruteForce`` / ``ScaNN`` index, each with
  ``serving_default(user_id: string (B,), k: int32 (), exclude: string (B, E))`` returning
  ``{"movie_ids": string (B, k), "scores": float32 (B, k)}``. ``exclude`` holds movie ids to remove
  ("" padding), e.g. a user's seen movies; any ``1 <= k <= k_max`` is answered after loading. The
  index is asked for a fixed number of candidates (the whole catalogue for brute force, ``k_max`` +
  the largest seen list for ScaNN), excluded ids are masked to -inf, and ``tf.math.top_k`` keeps ``k``;
- ``movies.csv`` (movie_id, title, year, in catalogue order) and ``movie_embeddings.npy``;
- ``seen.npz`` (users, catalogue, CSR indptr/indices of the movies each user rated in train);
- ``popularity.npy`` (catalogue order) and ``manifest.json`` (versions, config, metrics, vocabulary
  sizes, k_max, index parameters).

A model that also predicts ratings (multitask) gets ``ranking/`` inside the same export, the second
stage of two-stage serving; the attention sequence model adds ``explain/`` (attention over the watched
movies) and, with a pair head, ``pair/`` (:mod:`tfrs_movies.serving.sequence`); a ranking-only model
(see :mod:`tfrs_movies.serving.ranking_export`) gets just ``<run_dir>/export/ranking``.
"""

from __future__ import annotations

import logging
import math
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
from tfrs_movies.serving.ranking_export import export_ranking, is_ranking_model, position_table, write_ranking

log = logging.getLogger(__name__)

EXPORT_FORMAT = 1
INDEXES = ("brute_force", "scann")
# Up to this many fetched candidates, exclusion compares candidates with excluded ids pairwise.
PAIRWISE_EXCLUSION_MAX = 4096
REQUIRED_FILES = (
    "manifest.json", "movies.csv", "movie_embeddings.npy", "seen.npz", "popularity.npy",
    "query_tower/saved_model.pb", "brute_force/saved_model.pb", "scann/saved_model.pb",
)  # fmt: skip


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


class TopKModule(tf.Module):
    """user id -> raw user features (in-graph tables) -> query tower -> index -> masked top k."""

    def __init__(self, space, tower, index, catalogue: np.ndarray, fetch: int, k_max: int):
        super().__init__()
        from tfrs_movies.features.side import _tf_tables

        # Fresh tables: the space's own cache may hold graph tensors built inside a tf.data map.
        lookup, tensors = _tf_tables(space.users, space.user_table)
        self.user_lookup = lookup
        # Variables, so the tables are stored as checkpointed values rather than graph constants.
        self.user_tables = {name: tf.Variable(value, trainable=False) for name, value in tensors.items()}
        self.tower = tower
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
        rows = self.user_lookup(user_id)
        features = {name: tf.gather(table, rows) for name, table in self.user_tables.items()}
        features[S.USER_ID] = user_id
        return self._top_k(self.tower(features, training=False), k, exclude)

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
            shape = tf.stack([tf.shape(queries, out_type=tf.int64)[0], tf.constant(self.n_movies, tf.int64)])
            excluded = tf.scatter_nd(where, tf.ones(tf.shape(where)[:1], tf.int32), shape) > 0
            hit = tf.gather(excluded, self.movie_position.lookup(ids), batch_dims=1)
        scores = tf.where(hit, tf.constant(-np.inf, scores.dtype), scores)
        top, position = tf.math.top_k(scores, k=k)
        return {"movie_ids": tf.gather(ids, position, batch_dims=1), "scores": top}

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


def query_tower(model) -> tf.keras.Model | None:
    """The tower whose output, dotted with ``model.movie_embeddings()``, is the model's top-N score:
    a retrieval model's query tower, or the user tower of a multitask model that ranks by retrieval."""
    keras = getattr(model, "model", None)
    if keras is None:
        return None
    if hasattr(keras, "query_tower"):
        return keras.query_tower
    if getattr(keras, "score", None) == "retrieval" and hasattr(keras, "user_tower"):
        return keras.user_tower
    return None


def export_retrieval(
    model,
    dataset: S.Dataset | None,
    out_dir: str | Path,
    k_max: int = 100,
    scann_params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write the serving export of a fitted retrieval model into ``out_dir`` (atomic); a model that also
    predicts ratings (multitask) adds its ranking SavedModel as ``ranking/``."""
    if query_tower(model) is None:
        raise ValueError(
            f"export_retrieval needs a fitted two-tower retrieval model, got {type(model).__name__}"
        )
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        manifest = _write_export(model, dataset, tmp, k_max, scann_params, metrics)
        atomic_write_json(tmp / "manifest.json", manifest)
    return out_dir


def _write_export(model, dataset, out: Path, k_max: int, scann_params, metrics) -> dict[str, Any]:
    space, tower = model.space, query_tower(model)
    catalogue = model.catalogue.astype(np.int64)
    n_movies = len(catalogue)
    k_max = int(min(k_max, n_movies))
    if k_max < 1:
        raise ValueError("cannot export a model with an empty catalogue")
    vectors = model.movie_embeddings().astype(np.float32)
    seen = model.seen.tocsr()
    max_seen = int(np.diff(seen.indptr).max()) if seen.shape[0] else 0
    ids = tf.constant(ids_as_strings(catalogue))

    # Query tower over raw features.
    sample = space.user_rows(model.users[:1])
    specs = {name: _spec(name, np.asarray(values)) for name, values in sample.items()}
    module = QueryTowerModule(tower, specs)
    tf.saved_model.save(
        module, str(out / "query_tower"), signatures={"serving_default": module.serving_default}
    )
    ranking = write_ranking(model, out / "ranking") if is_ranking_model(model) else None
    sequence = None
    if getattr(model, "name", None) == "sequence":  # attention explanations and the pair model
        from tfrs_movies.serving.sequence import export_sequence_extras

        sequence = export_sequence_extras(model, out)

    # Brute force: asks for the whole catalogue, so exclusion is always exact.
    brute = tfrs.layers.factorized_top_k.BruteForce(k=n_movies)
    brute.index(tf.constant(vectors), ids)
    module = TopKModule(space, tower, brute, catalogue, n_movies, k_max)
    tf.saved_model.save(module, str(out / "brute_force"), signatures=module.signatures())

    # ScaNN: k_max plus the longest seen list, so that excluding seen movies still leaves k_max.
    fetch = int(min(n_movies, k_max + max_seen))
    params = {**default_scann_params(n_movies, fetch), **(scann_params or {})}
    params["num_leaves_to_search"] = min(params["num_leaves_to_search"], params["num_leaves"])
    scann = tfrs.layers.factorized_top_k.ScaNN(k=fetch, distance_measure="dot_product", **params)
    scann.index(tf.constant(vectors), ids)
    module = TopKModule(space, tower, scann, catalogue, fetch, k_max)
    tf.saved_model.save(
        module, str(out / "scann"), signatures=module.signatures(),
        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]),
    )  # fmt: skip

    _movie_frame(model, dataset).to_csv(out / "movies.csv", index=False)
    np.save(out / "movie_embeddings.npy", vectors)
    np.savez(
        out / "seen.npz", users=model.users.astype(np.int64), catalogue=catalogue,
        indptr=seen.indptr.astype(np.int64), indices=seen.indices.astype(np.int64),
    )  # fmt: skip
    np.save(out / "popularity.npy", model.popularity.astype(np.float32))
    import tfrs_movies

    return {
        "format": EXPORT_FORMAT,
        "model": model.name,
        "versions": {
            "tfrs_movies": getattr(tfrs_movies, "__version__", None) or _version("tfrs_movies"),
            "tensorflow": tf.__version__,
            "tensorflow_recommenders": tfrs.__version__,
            "scann": _version("scann"),
            "numpy": np.__version__,
        },
        "config": model.config,
        "metrics": metrics or {},
        "vocabulary": {
            "users": int(len(model.users)),
            "movies": int(n_movies),
            "feature_users": int(len(space.users)),
        },  # fmt: skip
        "embedding_dim": int(vectors.shape[1]),
        "user_features": sorted(specs),
        "user_feature_inputs": _feature_inputs(space, specs),
        "ranking": ranking,
        "sequence": sequence,
        "k_max": k_max,
        "max_seen": max_seen,
        "indexes": {
            "brute_force": {"candidates_fetched": n_movies, "exact": True},
            "scann": {
                "candidates_fetched": fetch,
                "exact": False,
                "distance_measure": "dot_product",
                **params,
            },
        },
    }


def export_run(result_or_model, dataset: S.Dataset | None = None, run_dir: str | Path | None = None,
               k_max: int = 100) -> Path | None:  # fmt: skip
    """Export a run into ``<run_dir>/export``; takes an ``ExperimentResult`` or a fitted model.

    Retrieval models get the full export (:func:`export_retrieval`, with ``ranking/`` inside when the
    model also predicts ratings: multitask); two-tower ranking models get their SavedModel in
    ``<run_dir>/export/ranking`` (:func:`export_ranking`). Returns the path written, or ``None`` (with
    one log line) for other models.
    """
    metrics = None
    model = result_or_model
    if hasattr(result_or_model, "run_dir") and hasattr(result_or_model, "model"):
        model = result_or_model.model
        dataset = dataset if dataset is not None else result_or_model.dataset
        run_dir = run_dir if run_dir is not None else result_or_model.run_dir
        metrics = result_or_model.metrics
    if run_dir is None:
        raise ValueError("export_run needs a run directory")
    if query_tower(model) is None:
        if is_ranking_model(model):
            return export_ranking(model, Path(run_dir) / "export" / "ranking")
        log.info(
            "export: model %r has no query tower; no serving export written", getattr(model, "name", model)
        )
        return None
    return export_retrieval(model, dataset, Path(run_dir) / "export", k_max=k_max, metrics=metrics)


# Categorical user features with at most this many values list them in the manifest (for checking
# the features a cold-start request gives).
MAX_LISTED_VALUES = 1000


def _feature_inputs(space, specs: dict[str, tf.TensorSpec]) -> dict[str, dict[str, Any]]:
    """What the query tower SavedModel takes, per input: dtype, rank, the value an unknown user gets,
    and (small categorical features) the known values."""
    from tfrs_movies.features.side import _defaults

    defaults = _defaults(space.user_table)
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
