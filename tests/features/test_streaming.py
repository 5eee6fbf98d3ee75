"""Index shards and the streaming tf.data pipeline: every row read back once, seeded order, same batches
as the in-memory pipeline's content, and the models train from it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrs_movies import schema as S
from tfrs_movies.config import load_config
from tfrs_movies.features.pipeline import training_dataset
from tfrs_movies.features.streaming import MOVIE_INDEX, USER_INDEX, shard_dataset, write_shards
from tfrs_movies.models.registry import build_model


def _rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 50, n).astype(np.int32),
        rng.integers(0, 30, n).astype(np.int32),
        rng.integers(1, 6, n).astype(np.float32),
        rng.random(n).astype(np.float32),
    )


def _collect(ds) -> pd.DataFrame:
    parts = [{k: v.numpy() for k, v in batch.items()} for batch in ds]
    return pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


@pytest.mark.parametrize(("fmt", "block"), [("fixed", 1), ("fixed", 32), ("tfrecord", 1), ("tfrecord", 7)])
def test_every_row_comes_back_once_with_its_fields(tmp_path, fmt, block):
    u, m, r, p = _rows(1003)
    shards = write_shards(tmp_path, u, m, r, {"p": p}, rows_per_shard=300, seed=3, fmt=fmt,
                          rows_per_record=block, chunk=250)  # fmt: skip
    assert len(shards.paths) == 4 and shards.rows == 1003
    got = _collect(shard_dataset(shards, 64, shuffle=True, seed=1, shuffle_buffer=100))
    want = pd.DataFrame({USER_INDEX: u, MOVIE_INDEX: m, S.RATING: r, "p": p})
    assert len(got) == len(want)
    key = [USER_INDEX, MOVIE_INDEX, S.RATING, "p"]
    pd.testing.assert_frame_equal(
        got[key].sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True)
    )
    assert got[USER_INDEX].dtype == np.int32 and got["p"].dtype == np.float32


def test_order_is_seeded_reproducible_and_reshuffled_each_epoch(tmp_path):
    u, m, r, p = _rows(2000)
    shards = write_shards(tmp_path, u, m, r, {"p": p}, rows_per_shard=500, seed=0, rows_per_record=8)
    first = _collect(shard_dataset(shards, 128, seed=5, shuffle_buffer=400))
    again = _collect(shard_dataset(shards, 128, seed=5, shuffle_buffer=400))
    pd.testing.assert_frame_equal(first, again)
    ds = shard_dataset(shards, 128, seed=5, shuffle_buffer=400)
    epoch1, epoch2 = _collect(ds), _collect(ds)
    pd.testing.assert_frame_equal(epoch1, first)
    assert not np.array_equal(epoch1[USER_INDEX].to_numpy(), epoch2[USER_INDEX].to_numpy())
    other = _collect(shard_dataset(shards, 128, seed=6, shuffle_buffer=400))
    assert not np.array_equal(first[USER_INDEX].to_numpy(), other[USER_INDEX].to_numpy())
    # Memory is bounded by the shard, not the total: the files hold 16 bytes a row (4 fields), padded.
    assert sum(p.stat().st_size for p in shards.paths) <= 16 * (2000 + 4 * 8)


def test_training_dataset_streams_above_the_threshold_with_the_same_rows(tiny_world):
    train = tiny_world.dataset.ratings
    users = np.unique(train[S.USER_ID].to_numpy())
    catalogue = np.unique(train[S.MOVIE_ID].to_numpy())
    extra = {"w": np.arange(len(train), dtype=np.float32)}
    small, none = training_dataset(train, users, catalogue, extra, 256, seed=1, shuffle_buffer=1000)
    assert none is None
    streamed, shards = training_dataset(
        train, users, catalogue, extra, 256, seed=1, shuffle_buffer=1000, stream_above=100
    )
    try:
        a, b = _collect(small), _collect(streamed)
    finally:
        shards.cleanup()
    assert not shards.paths[0].exists()
    for frame in (a, b):
        frame[S.USER_ID] = frame[S.USER_ID].str.decode("utf-8")
        frame[S.MOVIE_ID] = frame[S.MOVIE_ID].str.decode("utf-8")
    key = ["w"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[sorted(a)], b[sorted(b)], check_dtype=False)
    assert b[S.USER_ID].to_numpy()[:5].tolist() == train[S.USER_ID].astype(str).to_numpy()[:5].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["retrieval", "dot_sigmoid"])
def test_models_learn_as_well_from_the_stream_as_from_memory(tiny_world, tiny_split, name):
    overrides = {"train.verbose": 0, "train.epochs": 3, "train.batch_size": 256, "model.embedding_dim": 16}
    metric, better = "val_recall@20", 1
    if name == "dot_sigmoid":
        overrides.update({"model.name": "ranking", "model.params.head": "dot_sigmoid",
                          "train.optimizer": "adam", "train.learning_rate": 0.01,
                          "train.early_stopping.metric": "rmse"})  # fmt: skip
        metric, better = "val_rmse", -1
    best = {}
    for stream_above in (10**9, 100):
        model = build_model(load_config(None, {**overrides, "train.stream_above": stream_above}))
        model.fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
        assert np.isfinite(model.history["loss"]).all()
        assert np.isfinite(model.score(tiny_split.test[S.USER_ID].unique()[:3])).all()
        best[stream_above] = better * max(better * np.array(model.history[metric]))
    # Same data, other batches: the validation metric lands close to the in-memory run's.
    assert abs(best[100] - best[10**9]) < 0.05 * abs(best[10**9]), best
