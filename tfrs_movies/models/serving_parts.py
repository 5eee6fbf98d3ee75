"""What a fitted model hands to export: :class:`ServingParts`, and the small TensorFlow pieces models
build theirs from.

Shapes: ``B`` users in a request, ``N`` movies in ``model.catalogue`` order, ``d`` query dimensions.
Every piece is a ``tf.Module`` whose ``__call__`` takes raw user ids (``tf.string (B,)``), so an exported
SavedModel serves ids as they are; ids unknown to a table get its row 0 (zeros, or the vector given as
``unknown``): the serving loader answers unknown users by cold start before it ever asks an index.

Two forms of top-N score:

- **dot form**: ``query(user_id) -> (B, d)`` and ``candidates (N, d)``; score = query . candidate, so
  export builds a brute-force and a ScaNN index over the candidates;
- **scorer form**: ``scorer(user_id) -> (B, N)`` scores over the whole catalogue (neural rating models,
  ranking heads, composites); export builds the brute-force index only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.features.preprocessing import position_lookup


class UserTable(tf.Module):
    """``user_id (B,) -> (B, d)``: one stored row per user (factors, biases...), ``unknown`` for others."""

    def __init__(self, users: np.ndarray, rows: np.ndarray, unknown: np.ndarray | None = None):
        super().__init__()
        rows = np.asarray(rows, np.float32)
        rows = rows[:, None] if rows.ndim == 1 else rows
        unknown = np.zeros(rows.shape[1], np.float32) if unknown is None else np.asarray(unknown, np.float32)
        self.lookup = position_lookup(users)
        # A variable, so the table is stored as a checkpointed value rather than a graph constant.
        self.table = tf.Variable(np.concatenate([unknown[None, :], rows]), trainable=False)

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.table, self.lookup(user_id))


class SeenRows(tf.Module):
    """``user_id (B,) -> (B, N)``: each user's row of a sparse (users x movies) matrix, densified in-graph
    (the seen-movies table for EASE, the rating row for user-based AutoRec); zeros for unknown users.

    Stored sparse (CSR arrays), so its size is the number of ratings, not users x movies."""

    def __init__(self, users: np.ndarray, matrix: sp.spmatrix):
        super().__init__()
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        self.lookup = position_lookup(users)
        # Row 0 is the unknown user (no entries): shift the row pointers by one empty row.
        indptr = np.concatenate([[0], matrix.indptr]).astype(np.int64)
        self.indptr = tf.Variable(indptr, trainable=False)
        self.indices = tf.Variable(matrix.indices.astype(np.int64), trainable=False)
        self.values = tf.Variable(matrix.data.astype(np.float32), trainable=False)
        self.n_columns = int(matrix.shape[1])

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        rows = self.lookup(user_id)
        starts, ends = tf.gather(self.indptr, rows), tf.gather(self.indptr, rows + 1)
        lengths = ends - starts
        # Positions in the CSR arrays of every entry of every requested row, row by row.
        owner = tf.repeat(tf.range(tf.shape(rows, out_type=tf.int64)[0]), lengths)
        offset = tf.range(tf.reduce_sum(lengths)) - tf.repeat(tf.cumsum(lengths, exclusive=True), lengths)
        position = tf.repeat(starts, lengths) + offset
        where = tf.stack([owner, tf.gather(self.indices, position)], axis=1)
        shape = tf.stack([tf.shape(rows, out_type=tf.int64)[0], tf.constant(self.n_columns, tf.int64)])
        return tf.scatter_nd(where, tf.gather(self.values, position), shape)


class TowerQuery(tf.Module):
    """``user_id (B,) -> (B, d)``: the user's side features looked up in-graph, then the user tower."""

    def __init__(self, space: Any, tower: tf.keras.Model):
        from tfrs_movies.features.side import lookup_tables

        super().__init__()
        lookup, tensors = lookup_tables(space.users, space.user_table)
        self.lookup = lookup
        self.tables = {name: tf.Variable(value, trainable=False) for name, value in tensors.items()}
        self.tower = tower

    def features(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        rows = self.lookup(user_id)
        features = {name: tf.gather(table, rows) for name, table in self.tables.items()}
        features[S.USER_ID] = user_id
        return features

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        return self.tower(self.features(user_id), training=False)


class DotScorer(tf.Module):
    """``user_id (B,) -> (B, N)``: ``query(user_id) @ candidates^T``."""

    def __init__(self, query: tf.Module, candidates: np.ndarray):
        super().__init__()
        self.query = query
        self.candidates = tf.Variable(np.asarray(candidates, np.float32), trainable=False)

    def __call__(self, user_id: tf.Tensor) -> tf.Tensor:
        return tf.matmul(self.query(user_id), self.candidates, transpose_b=True)


@dataclass
class FeatureQuery:
    """The user tower over raw request features, for users known only by their features (cold start):
    ``tower(features) -> (B, d)`` in the same space as the candidates; ``space`` names its inputs."""

    tower: tf.keras.Model
    space: Any  # tfrs_movies.features.side.FeatureSpace


@dataclass
class ServingParts:
    """What export needs from a fitted model (see the module docstring for the two forms).

    ``ranking(out_dir) -> manifest entry`` writes a ranking SavedModel (the second stage);
    ``extras[name](out_dir) -> manifest entry`` writes other SavedModels (attention explanations, the
    pair model) into ``<export>/<name>``. ``approximate_index`` False skips ScaNN for a dot form whose
    vectors are too wide for it to pay (EASE's catalogue-wide rows); ``top_n_is_ranking`` says the
    index's score is the ranking module's own prediction."""

    query: tf.Module | None = None
    candidates: np.ndarray | None = None
    scorer: tf.Module | None = None
    feature_query: FeatureQuery | None = None
    ranking: Callable[[Path], dict[str, Any]] | None = None
    extras: dict[str, Callable[[Path], dict[str, Any]]] = field(default_factory=dict)
    approximate_index: bool = True
    # The top-N score already is the ranking module's prediction (ranking heads): serving answers in one
    # stage, labelled "ranking", since a second stage would re-sort by the same number.
    top_n_is_ranking: bool = False

    def __post_init__(self) -> None:
        dot = self.query is not None and self.candidates is not None
        if dot == (self.scorer is not None):
            raise ValueError("serving parts need either query and candidates (dot form) or a scorer")

    @property
    def is_dot(self) -> bool:
        return self.scorer is None

    def catalogue_scorer(self) -> tf.Module:
        """``user_id (B,) -> (B, N)`` in either form (composites combine their members' scorers)."""
        return self.scorer if self.scorer is not None else DotScorer(self.query, self.candidates)
