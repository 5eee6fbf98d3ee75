import numpy as np
import pandas as pd
import pytest

from tfrs_movies import schema as S
from tfrs_movies.data.splits import (
    leave_last_out_split,
    probe_split,
    random_split,
    user_holdout_split,
    with_validation,
)


def _keys(frame):
    return set(zip(frame[S.USER_ID], frame[S.MOVIE_ID], strict=True))


@pytest.fixture(scope="module")
def ratings(tiny_world):
    frame = tiny_world.dataset.ratings.copy()
    # Two users below the 5-rating minimum, to check that they stay in train.
    extra = pd.DataFrame({S.USER_ID: [9001, 9001, 9002], S.MOVIE_ID: [1, 2, 3], S.RATING: [4.0, 3.0, 5.0],
                          S.TIMESTAMP: [1, 2, 3]})  # fmt: skip
    return S.canonical_ratings(pd.concat([frame, extra]))


def test_random_split_partitions_per_user_80_20(ratings):
    split = random_split(ratings, 0.2, seed=42)
    assert len(split.train) + len(split.test) == len(ratings)
    assert not _keys(split.train) & _keys(split.test)
    per_user = ratings.groupby(S.USER_ID).size()
    test_per_user = split.test.groupby(S.USER_ID).size().reindex(per_user.index, fill_value=0)
    eligible = per_user >= 5
    assert (test_per_user[eligible] == np.rint(per_user[eligible] * 0.2)).all()
    assert (test_per_user[~eligible] == 0).all()
    assert {9001, 9002} <= set(split.train[S.USER_ID])


def test_random_split_is_seeded(ratings):
    a, b, c = random_split(ratings, seed=42), random_split(ratings, seed=42), random_split(ratings, seed=1)
    assert _keys(a.test) == _keys(b.test)
    assert _keys(a.test) != _keys(c.test)


def test_user_holdout_moves_whole_users(ratings):
    split = user_holdout_split(ratings, 0.2, seed=42)
    train_users, test_users = set(split.train[S.USER_ID]), set(split.test[S.USER_ID])
    assert not train_users & test_users
    assert len(test_users) == round(ratings[S.USER_ID].nunique() * 0.2)
    assert len(split.train) + len(split.test) == len(ratings)


def test_leave_last_out_takes_the_last_by_time_then_movie():
    frame = S.canonical_ratings(pd.DataFrame({
        S.USER_ID: [1, 1, 1, 1, 2, 2, 3],
        S.MOVIE_ID: [10, 11, 12, 13, 10, 11, 10],
        S.RATING: [1, 2, 3, 4, 5, 5, 5],
        S.TIMESTAMP: [100, 300, 200, 300, 5, 6, 1],
    }))  # fmt: skip
    split = leave_last_out_split(frame)
    # user 1: times 100, 300, 200, 300 -> order 10, 12, 11, 13 (tie at 300 broken by movie id)
    assert _keys(split.test) == {(1, 13), (2, 11)}
    assert _keys(split.valid) == {(1, 11)}
    assert _keys(split.train) == {(1, 10), (1, 12), (2, 10), (3, 10)}


def test_leave_last_out_never_leaks_the_future(ratings):
    split = leave_last_out_split(ratings)
    last_train = split.train.groupby(S.USER_ID)[S.TIMESTAMP].max()
    test_time = split.test.set_index(S.USER_ID)[S.TIMESTAMP]
    valid_time = split.valid.set_index(S.USER_ID)[S.TIMESTAMP]
    assert (last_train.reindex(test_time.index) <= test_time).all()
    assert (valid_time <= test_time.reindex(valid_time.index)).all()
    assert split.test[S.USER_ID].is_unique


def test_probe_split_removes_probe_pairs_from_train(ratings):
    probe = ratings.sample(50, random_state=0)[[S.USER_ID, S.MOVIE_ID]]
    split = probe_split(ratings, probe)
    assert _keys(split.test) == _keys(probe)
    assert not _keys(split.train) & _keys(probe)


def test_validation_is_carved_from_train_not_test(ratings):
    base = random_split(ratings, 0.2, seed=42)
    split = with_validation(base, 0.1, seed=42)
    assert _keys(split.test) == _keys(base.test)
    assert _keys(split.train) | _keys(split.valid) == _keys(base.train)
    assert not _keys(split.train) & _keys(split.valid)
