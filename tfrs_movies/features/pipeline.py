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
