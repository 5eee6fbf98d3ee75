"""Serving extras of the attention sequence model: explanations and pair ratings, as SavedModels.

``export_sequence_extras(model, out_dir)`` writes into an export folder (next to the top-K SavedModels):

- ``explain/``: ``serving_default(user_id: string (B,), movie_id: string (B,))`` ->
  ``{"history_ids": string (B, L), "weights": float32 (B, L)}``: the user's served history (left padded,
  "" for padding; the most recent movie last) and the attention each history slot gets when the model
  looks at that movie (the rating head's target attention; a retrieval-only model gives the attention
  of its query, the most recent slot, which is the same for every movie). Padding weighs 0; unknown
  users have an all-padding history.
- ``pair/`` (models trained with a pair head): ``serving_default(user_a: string (B,), user_b: string (B,),
  movie_id: string (B,))`` -> ``{"rating": float32 (B,)}``, the pair's predicted rating, clipped.

Both look the users' features and histories up in-graph, from the tables the model serves with. Readers:
:func:`explain_movies` (a DataFrame of the most-weighted watched movies per movie) and
:func:`pair_ratings`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.features.preprocessing import ids_as_strings
from tfrs_movies.features.side import lookup_tables
from tfrs_movies.io import atomic_directory
from tfrs_movies.models.sequence_net import HISTORY

EXPLAIN, PAIR = "explain", "pair"


class _UserTables(tf.Module):
    """The model's per-user raw features as variables, gathered by user id string."""

    def __init__(self, model) -> None:
        super().__init__()
        lookup, tensors = lookup_tables(model.space.users, model.space.user_table)
        self.user_lookup = lookup
        self.user_tables = {name: tf.Variable(value, trainable=False) for name, value in tensors.items()}
        self.keras = model.model
        self.low, self.high = (float(x) for x in model.rating_scale)

    def features(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        rows = self.user_lookup(user_id)
        out = {name: tf.gather(table, rows) for name, table in self.user_tables.items()}
        out[S.USER_ID] = user_id
        return out


class ExplainModule(_UserTables):
    def __init__(self, model) -> None:
        super().__init__(model)
        self.target_attention = bool(model.predicts_ratings)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None], tf.string, name="movie_id"),
        ]
    )
    def serving_default(self, user_id, movie_id):
        features = self.features(user_id)
        if self.target_attention:
            _, _, weights = self.keras.rate(features, movie_id)
        else:
            weights = self.keras.query_attention(features)
        return {"history_ids": features[HISTORY], "weights": tf.cast(weights, tf.float32)}


class PairModule(_UserTables):
    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_a"),
            tf.TensorSpec([None], tf.string, name="user_b"),
            tf.TensorSpec([None], tf.string, name="movie_id"),
        ]
    )
    def serving_default(self, user_a, user_b, movie_id):
        rating = self.keras.pair_rating(self.features(user_a), self.features(user_b), movie_id)
        return {"rating": tf.clip_by_value(rating, self.low, self.high)}


def write_explain(model, out: Path) -> dict[str, Any]:
    """The ``explain`` SavedModel into ``out`` (not atomic: used inside an atomic export); its manifest
    entry."""
    module = ExplainModule(model)
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serving_default})
    return {
        "path": EXPLAIN,
        "history_length": int(model.length),
        "weights": "target_attention" if module.target_attention else "query_attention",
        "signature": "serving_default(user_id: string (B,), movie_id: string (B,)) -> "
        "{history_ids: string (B, L), weights: float32 (B, L)}",
    }


def write_pair(model, out: Path) -> dict[str, Any]:
    """The ``pair`` SavedModel (models with a pair head) into ``out``, not atomic; its manifest entry."""
    if model.model.pair_head is None:
        raise ValueError("this sequence model has no pair head (set model.params.pair_epochs > 0)")
    module = PairModule(model)
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serving_default})
    return {
        "path": PAIR,
        "label": "average rating of the two users",
        "signature": "serving_default(user_a: string (B,), user_b: string (B,), movie_id: string (B,)) "
        "-> {rating: float32 (B,)}",
    }


def export_sequence_extras(model, out_dir: Path) -> dict[str, Any]:
    """Write ``explain/`` (and ``pair/`` when the model has a pair head) into ``out_dir``, each atomically;
    returns the manifest entries describing them (``{"explain": {...}, "pair": {...}}``)."""
    from tfrs_movies.models.sequence import SequenceRecommender

    if not isinstance(model, SequenceRecommender) or model.model is None:
        raise ValueError(f"export_sequence_extras needs a fitted sequence model, got {type(model).__name__}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    writers = {EXPLAIN: write_explain}
    if model.model.pair_head is not None:
        writers[PAIR] = write_pair
    entries: dict[str, Any] = {}
    for name, write in writers.items():
        with atomic_directory(out_dir / name) as tmp:
            entries[name] = write(model, tmp)
    return entries


@lru_cache(maxsize=8)
def _signature(path: str):
    return tf.saved_model.load(path).signatures["serving_default"]


def _titles(export_dir: Path) -> dict[str, str]:
    movies = export_dir / "movies.csv"
    if not movies.is_file():
        return {}
    frame = pd.read_csv(movies, dtype={S.MOVIE_ID: str}, keep_default_na=False)
    return dict(zip(frame[S.MOVIE_ID], frame[S.TITLE], strict=True)) if S.TITLE in frame else {}


def explain_movies(export_dir: str | Path, user_id, movie_ids, top: int = 3) -> pd.DataFrame:
    """For each of ``movie_ids``, the ``top`` watched movies the attention weighted most for ``user_id``.

    Columns: ``movie_id``, ``rank`` (1 = most weight), ``watched_movie_id``, ``watched_title`` (when the
    export has ``movies.csv``), ``weight``. Padding slots never appear; a user without history gets no rows.
    """
    export_dir = Path(export_dir)
    path = export_dir / EXPLAIN
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{export_dir} has no explain/ SavedModel (not a sequence model export?)")
    movies = ids_as_strings(np.atleast_1d(np.asarray(movie_ids)))
    users = np.full(len(movies), str(user_id), dtype=object)
    out = _signature(str(path))(
        user_id=tf.constant(users, tf.string), movie_id=tf.constant(movies, tf.string)
    )
    history = out["history_ids"].numpy().astype(str)
    weights = out["weights"].numpy()
    titles = _titles(export_dir)
    rows = []
    for movie, ids, w in zip(movies, history, weights, strict=True):
        valid = np.flatnonzero(ids != "")
        order = valid[np.argsort(-w[valid], kind="stable")][:top]
        for rank, slot in enumerate(order, start=1):
            rows.append((movie, rank, ids[slot], titles.get(ids[slot], ""), float(w[slot])))
    return pd.DataFrame(rows, columns=[S.MOVIE_ID, "rank", "watched_movie_id", "watched_title", "weight"])


def pair_ratings(export_dir: str | Path, user_a, user_b, movie_ids) -> np.ndarray:
    """The pair model's predicted rating of each of ``movie_ids`` for users ``user_a`` and ``user_b``
    (float32 (len(movie_ids),))."""
    path = Path(export_dir) / PAIR
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(
            f"{export_dir} has no pair/ SavedModel (train with model.params.pair_epochs > 0)"
        )
    movies = ids_as_strings(np.atleast_1d(np.asarray(movie_ids)))
    n = len(movies)
    out = _signature(str(path))(
        user_a=tf.constant(np.full(n, str(user_a), dtype=object), tf.string),
        user_b=tf.constant(np.full(n, str(user_b), dtype=object), tf.string),
        movie_id=tf.constant(movies, tf.string),
    )
    return out["rating"].numpy().astype(np.float32)
