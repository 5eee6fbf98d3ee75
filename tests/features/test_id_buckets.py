"""``model.id_buckets``: id embeddings sized from the vocabulary (0) or hashed into a fixed number of rows."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_movies import schema as S
from tfrs_movies.config import load_config
from tfrs_movies.features.side import FeatureSpace
from tfrs_movies.models.registry import build_model
from tfrs_movies.models.towers import FeatureTower


@pytest.fixture(scope="module")
def space(tiny_world):
    ds = tiny_world.dataset
    users, movies = ds.users[S.USER_ID].to_numpy(), ds.movies[S.MOVIE_ID].to_numpy()
    return FeatureSpace.build(ds, ds.ratings, users, movies, ["id"], ["id"], 10)


def _id_rows(tower: FeatureTower) -> int:
    return int(tower.parts[S.USER_ID].layers[-1].embeddings.shape[0])


def test_vocabulary_table_has_a_row_per_id_and_hashed_table_the_bucket_count(space):
    vocab = FeatureTower(space, "user", embedding_dim=4, name="u")
    vocab(np.array(["1", "2"], dtype=object))
    assert _id_rows(vocab) == len(space.users) + 1  # + the OOV row
    hashed = FeatureTower(space, "user", embedding_dim=4, id_buckets=13, name="h")
    out = hashed(np.array(["1", "2", "1", "no such user"], dtype=object)).numpy()
    assert _id_rows(hashed) == 13 and out.shape == (4, 4)
    np.testing.assert_array_equal(out[0], out[2])  # the same id, the same bucket
    with pytest.raises(ValueError, match="id_buckets"):
        FeatureTower(space, "user", embedding_dim=4, id_buckets=-1)


@pytest.mark.slow
def test_retrieval_trains_with_hashed_ids(tiny_world, tiny_split):
    config = load_config(None, {"train.verbose": 0, "train.epochs": 2, "train.batch_size": 256,
                                "model.embedding_dim": 16, "model.id_buckets": 64})  # fmt: skip
    model = build_model(config)
    model.fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
    assert _id_rows(model.model.query_tower) == 64
    assert np.isfinite(model.score(tiny_split.test[S.USER_ID].unique()[:3])).all()
    assert max(model.history["val_recall@20"]) > 0.3
