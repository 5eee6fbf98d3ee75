"""``tf.data`` pipelines of feature dictionaries built from the canonical frames.

A batch is a dict of tensors, one entry per feature, each of shape ``(batch,)`` (or ``(batch, width)``
for padded multi-valued features such as genres): ``user_id`` and ``movie_id`` as strings, ``rating``
as float32, plus whatever side features the caller joins in.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.features.preprocessing import ids_as_strings
from tfrs_movies.features.streaming import ShardSet, ShardWriter, index_to_ids, shard_dataset

# Above this many training rows the models read shards of integer indexes (features/streaming.py) instead
# of slicing in-memory string arrays: measured on this machine (docs/BENCHMARKS.md, "One machine, big
# data"), the in-memory path costs about 0.9 KB per rating in TensorFlow, so 1M rows are ~1 GB and 10M do
# not fit beside the model; below it (MovieLens sizes) the shipped figures keep their exact batches.
STREAM_ABOVE = 1_000_000
# Rows per fixed-length record of the shards: blocks of 32 read at about 6M rows/s against 0.3M/s for
# single-row records (one tf.data element per row), measured on this machine.
ROWS_PER_RECORD = 32


def ratings_features(ratings: pd.DataFrame, extra: Mapping[str, np.ndarray] | None = None) -> dict:
    """Columns of a ratings frame as the numpy feature dict the models read (ids as strings)."""
    features = {
        S.USER_ID: ids_as_strings(ratings[S.USER_ID].to_numpy()),
        S.MOVIE_ID: ids_as_strings(ratings[S.MOVIE_ID].to_numpy()),
        S.RATING: ratings[S.RATING].to_numpy(np.float32),
    }
    features.update(extra or {})
    return features


def make_dataset(
    features: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 42,
    shuffle_buffer: int = 200_000,
    cache: bool = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Slice a dict of equal-length arrays into a shuffled (seeded), batched, cached, prefetched dataset.

    Caching happens before shuffling so each epoch reshuffles; the seed makes the order reproducible.
    """
    lengths = {len(v) for v in features.values()}
    if len(lengths) != 1:
        raise ValueError(f"features must have equal lengths, got {sorted(lengths)}")
    n = lengths.pop()
    ds = tf.data.Dataset.from_tensor_slices(dict(features))
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(shuffle_buffer, n), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def movies_dataset(movie_ids: np.ndarray, batch_size: int = 4096) -> tf.data.Dataset:
    """The catalogue as a dataset of ``{movie_id: (batch,) string}`` batches (for indexes, FactorizedTopK)."""
    return tf.data.Dataset.from_tensor_slices({S.MOVIE_ID: ids_as_strings(movie_ids)}).batch(batch_size)


def training_dataset(
    train: pd.DataFrame,
    users: np.ndarray,
    catalogue: np.ndarray,
    extra: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    seed: int,
    shuffle_buffer: int,
    stream_above: int = STREAM_ABOVE,
) -> tuple[tf.data.Dataset, ShardSet | None]:
    """The shuffled training batches of ``train`` (``user_id``/``movie_id`` strings, ``rating``, ``extra``).

    Up to ``stream_above`` rows: :func:`make_dataset` over in-memory arrays (unchanged behaviour). Above
    it: ids mapped to indexes of ``users``/``catalogue`` once, rows written as shards, batches streamed
    (:func:`~tfrs_movies.features.streaming.shard_dataset`) and mapped back to id strings in-graph. The
    second value is the :class:`ShardSet` to ``cleanup()`` after training (None in memory).
    """
    if len(train) <= stream_above:
        features = ratings_features(train, extra)
        data = make_dataset(features, batch_size, shuffle=True, seed=seed, shuffle_buffer=shuffle_buffer)
        return data, None
    shards = write_index_shards(train, users, catalogue, extra, seed=seed)
    data = shard_dataset(shards, batch_size, shuffle=True, seed=seed, shuffle_buffer=shuffle_buffer)
    return data.map(index_to_ids(users, catalogue), num_parallel_calls=tf.data.AUTOTUNE), shards


def write_index_shards(
    train: pd.DataFrame,
    users: np.ndarray,
    catalogue: np.ndarray,
    extra: Mapping[str, np.ndarray],
    *,
    seed: int,
    out_dir=None,
    chunk: int = 1 << 22,
) -> ShardSet:
    """``train``'s rows as index shards: ids looked up in ``users``/``catalogue`` a chunk at a time."""
    user_index, movie_index = pd.Index(users), pd.Index(catalogue)
    u_col, m_col = train[S.USER_ID].to_numpy(), train[S.MOVIE_ID].to_numpy()
    r_col = train[S.RATING].to_numpy()
    writer = ShardWriter(out_dir, len(train), tuple(extra), seed=seed, rows_per_record=ROWS_PER_RECORD)
    for lo in range(0, len(train), chunk):
        hi = min(lo + chunk, len(train))
        u = user_index.get_indexer(u_col[lo:hi])
        m = movie_index.get_indexer(m_col[lo:hi])
        if (u < 0).any() or (m < 0).any():
            raise ValueError("training rows hold ids outside the model's user or movie vocabulary")
        writer.add(u, m, r_col[lo:hi], {k: np.asarray(v[lo:hi], np.float32) for k, v in extra.items()})
    return writer.close()
