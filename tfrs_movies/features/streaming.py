"""Streaming training data: the ratings written once as shards of integer indexes, read by ``tf.data``.

Why: the in-memory pipeline (:func:`tfrs_movies.features.pipeline.make_dataset`) slices whole numpy
arrays of id *strings* (about 0.9 KB per rating once TensorFlow holds them), which does not fit 100M
ratings on a 24 GB machine. Here every row is 4-byte fields only, ``user_index`` (int32, the row of the
model's user vocabulary), ``movie_index`` (int32, the catalogue column), ``rating`` (float32) and any
per-row float (a target, the sampling probability), written as fixed-length binary records (or the same
bytes as TFRecord records) in shards of about ``rows_per_shard`` rows:

- write: rows arrive in chunks (:meth:`ShardWriter.add`), each row goes to a shard drawn at random
  (seeded); :meth:`ShardWriter.close` permutes each shard in memory (one shard at a time), so the
  files hold a seeded random order and memory is one chunk plus one shard, whatever the number of rows;
- read (:func:`shard_dataset`): the shard list reshuffled each epoch, interleaved (several shards
  read at once), a bounded row shuffle buffer, batched, then *one* ``decode_raw`` per batch (no per-row
  parsing), prefetched. Seeded, so the same seed gives the same batches.

Ids reach the towers as strings only in-graph, per batch (:func:`index_to_ids`: a ``tf.gather`` of the
vocabulary tensor), so the towers, side-feature joins and saved models are unchanged.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_movies import schema as S

USER_INDEX = "user_index"
MOVIE_INDEX = "movie_index"
FORMATS = ("fixed", "tfrecord")
_INT_FIELDS = (USER_INDEX, MOVIE_INDEX)


@dataclass
class ShardSet:
    """Shards on disk and the record layout: ``fields`` in order, each 4 bytes (the first two int32)."""

    paths: list[Path]
    fields: tuple[str, ...]
    rows: int
    fmt: str = "fixed"
    owned_dir: Path | None = field(default=None, repr=False)  # removed by cleanup()
    rows_per_record: int = 1  # > 1: records hold blocks of rows, padded with user_index -1

    @property
    def record_bytes(self) -> int:
        return 4 * len(self.fields) * self.rows_per_record

    def cleanup(self) -> None:
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)
            self.owned_dir = None


def _record_dtype(fields: Sequence[str]) -> np.dtype:
    return np.dtype([(f, "<i4" if f in _INT_FIELDS else "<f4") for f in fields])


def _write_tfrecords(path: Path, records: np.ndarray) -> None:
    """One TFRecord record per row of ``records`` (``(n, rows_per_record)``), holding its raw bytes."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in records:
            writer.write(row.tobytes())


class ShardWriter:
    """Append rows in chunks; :meth:`close` returns the :class:`ShardSet` (rows in seeded random order)."""

    def __init__(
        self,
        out_dir: str | Path | None,
        n_rows: int,
        extra: Sequence[str] = (),
        *,
        rows_per_shard: int = 1 << 20,
        seed: int = 0,
        fmt: str = "fixed",
        rows_per_record: int = 1,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"shard format must be one of {FORMATS}, got {fmt!r}")
        owned = None
        if out_dir is None:
            out_dir = owned = Path(tempfile.mkdtemp(prefix="tfrs_movies_shards_"))
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.fields = (USER_INDEX, MOVIE_INDEX, S.RATING, *extra)
        self.dtype = _record_dtype(self.fields)
        self.n_shards = max(1, math.ceil(n_rows / rows_per_shard))
        self.rng = np.random.default_rng([seed, 0x5348])
        self.fmt = fmt
        self.block = max(1, int(rows_per_record))
        self.owned = owned
        self.rows = 0
        self.raw_paths = [self.out_dir / f"part-{i:05d}.raw" for i in range(self.n_shards)]
        self.files = [open(p, "wb") for p in self.raw_paths]  # noqa: SIM115 (closed in close())

    def add(
        self,
        user_index: np.ndarray,
        movie_index: np.ndarray,
        rating: np.ndarray,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        n = len(user_index)
        records = np.empty(n, self.dtype)
        records[USER_INDEX] = user_index
        records[MOVIE_INDEX] = movie_index
        records[S.RATING] = rating
        for name in self.fields[3:]:
            records[name] = (extra or {})[name]
        shard = self.rng.integers(0, self.n_shards, n)
        order = np.argsort(shard, kind="stable")
        bounds = np.searchsorted(shard[order], np.arange(self.n_shards + 1))
        for i in range(self.n_shards):
            if bounds[i + 1] > bounds[i]:
                self.files[i].write(records[order[bounds[i] : bounds[i + 1]]].tobytes())
        self.rows += n

    def close(self) -> ShardSet:
        for fh in self.files:
            fh.close()
        paths = []
        for raw in self.raw_paths:
            records = np.fromfile(raw, self.dtype)
            records = records[self.rng.permutation(len(records))]
            pad = -len(records) % self.block
            if pad:  # whole records only: padding rows carry user_index -1 and are dropped on decode
                filler = np.zeros(pad, self.dtype)
                filler[USER_INDEX] = -1
                records = np.concatenate([records, filler])
            if self.fmt == "fixed":
                path = raw.with_suffix(".bin")
                records.tofile(path)
            else:
                path = raw.with_suffix(".tfrecord")
                _write_tfrecords(path, records.reshape(-1, self.block))
            raw.unlink()
            if len(records):
                paths.append(path)
            else:
                path.unlink()
        return ShardSet(paths, self.fields, self.rows, self.fmt, self.owned, self.block)


def write_shards(
    out_dir: str | Path | None,
    user_index: np.ndarray,
    movie_index: np.ndarray,
    rating: np.ndarray,
    extra: Mapping[str, np.ndarray] | None = None,
    *,
    rows_per_shard: int = 1 << 20,
    seed: int = 0,
    fmt: str = "fixed",
    rows_per_record: int = 1,
    chunk: int = 1 << 22,
) -> ShardSet:
    """Write equal-length arrays as shards (``out_dir=None``: a temporary folder, removed by
    ``ShardSet.cleanup``); arrays are consumed ``chunk`` rows at a time."""
    extra = dict(extra or {})
    n = len(user_index)
    writer = ShardWriter(
        out_dir, n, tuple(extra), rows_per_shard=rows_per_shard, seed=seed, fmt=fmt,
        rows_per_record=rows_per_record,
    )  # fmt: skip
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        writer.add(
            user_index[lo:hi], movie_index[lo:hi], rating[lo:hi], {k: v[lo:hi] for k, v in extra.items()}
        )
    return writer.close()


def _decoder(fields: tuple[str, ...], block: int):
    def decode(raw: tf.Tensor) -> dict[str, tf.Tensor]:
        words = tf.io.decode_raw(raw, tf.int32)  # (records, block * n_fields): one op per batch
        words = tf.reshape(words, (-1, len(fields)))
        if block > 1:
            words = tf.boolean_mask(words, words[:, 0] >= 0)  # drop the shard-end padding rows
        out = {}
        for j, name in enumerate(fields):
            column = words[:, j]
            out[name] = column if name in _INT_FIELDS else tf.bitcast(column, tf.float32)
        return out

    return decode


def shard_dataset(
    shards: ShardSet,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 42,
    shuffle_buffer: int = 200_000,
    cycle_length: int = 4,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches ``{user_index, movie_index, rating, <extra>}`` from the shards: shard order reshuffled each
    epoch, ``cycle_length`` shards interleaved, a row shuffle buffer of ``shuffle_buffer`` rows (its
    memory is the bound: about 100 bytes a row), batched, decoded, prefetched. Same seed, same batches.

    With ``rows_per_record`` blocks the buffer shuffles blocks and a batch is ``batch_size // block``
    whole blocks (rows of a block were drawn at random when written, so they stay together)."""
    paths = [str(p) for p in shards.paths]
    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle and len(paths) > 1:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    record_bytes = shards.record_bytes
    if shards.fmt == "fixed":

        def read(path):
            return tf.data.FixedLengthRecordDataset(path, record_bytes, buffer_size=1 << 20)
    else:

        def read(path):
            return tf.data.TFRecordDataset(path, buffer_size=1 << 20)

    ds = files.interleave(
        read,
        cycle_length=max(1, min(cycle_length, len(paths))),
        block_length=16,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    block = shards.rows_per_record
    if shuffle:
        buffer = max(1, min(shuffle_buffer, shards.rows) // block)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(max(1, batch_size // block), drop_remainder=drop_remainder)
    decode = _decoder(shards.fields, block)
    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def index_to_ids(user_vocabulary: np.ndarray, movie_vocabulary: np.ndarray):
    """A ``tf.data`` map: ``user_index``/``movie_index`` -> ``user_id``/``movie_id`` strings (a gather
    of the vocabulary tensors), the other fields kept, so batches look like the in-memory pipeline's."""
    from tfrs_movies.features.preprocessing import ids_as_strings

    users = tf.constant(ids_as_strings(user_vocabulary).astype(str))
    movies = tf.constant(ids_as_strings(movie_vocabulary).astype(str))

    def to_ids(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = {k: v for k, v in batch.items() if k not in _INT_FIELDS}
        out[S.USER_ID] = tf.gather(users, batch[USER_INDEX])
        out[S.MOVIE_ID] = tf.gather(movies, batch[MOVIE_INDEX])
        return out

    return to_ids
