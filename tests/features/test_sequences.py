"""Watch-history sequences: order and ties, windows, padding, and that no future movie leaks in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrs_movies import schema as S
from tfrs_movies.features.sequences import (
    causal_examples,
    history_tables,
    left_pad,
    pair_examples,
    user_sequences,
    window_examples,
)


def frame(rows):
    return pd.DataFrame(rows, columns=[S.USER_ID, S.MOVIE_ID, S.RATING, S.TIMESTAMP])


# User 1 rates 30 and 10 at the same second: the tie goes by movie id (10 first).
RATINGS = frame(
    [(1, 30, 4.0, 100), (1, 10, 3.0, 100), (1, 20, 5.0, 50), (1, 40, 2.0, 300), (1, 50, 1.0, 400),
     (1, 60, 4.0, 500), (2, 10, 5.0, 10), (2, 20, 4.0, 20), (3, 10, 1.0, 5)]
)  # fmt: skip


def positions(ratings):
    """(user, movie id string) -> position in the user's watch order."""
    return {
        (user, str(m)): i
        for user, (movies, _) in user_sequences(ratings).items()
        for i, m in enumerate(movies)
    }


def test_sequences_follow_time_then_movie_id():
    seqs = user_sequences(RATINGS)
    np.testing.assert_array_equal(seqs[1][0], [20, 10, 30, 40, 50, 60])
    np.testing.assert_array_equal(seqs[1][1], [5.0, 3.0, 4.0, 2.0, 1.0, 4.0])
    assert list(seqs) == [1, 2, 3]


def test_left_pad_keeps_the_most_recent_in_the_last_slot():
    assert left_pad(np.array([1, 2, 3]), 5, "").tolist() == ["", "", "1", "2", "3"]
    assert left_pad(np.array([1, 2, 3]), 2, "").tolist() == ["2", "3"]
    assert left_pad(np.array([4.0]), 3, 0.0).tolist() == [0.0, 0.0, 4.0]


def assert_no_leak(examples, ratings, causal: bool):
    pos = positions(ratings)
    for row in range(len(examples)):
        user = int(examples.user_id[row])
        for slot, target in enumerate(examples.targets[row]):
            if target == "":
                continue
            seen = examples.inputs[row, : slot + 1] if causal else examples.inputs[row]
            assert all(pos[(user, m)] < pos[(user, target)] for m in seen if m != ""), (row, slot)
            assert examples.inputs[row, slot] != ""  # a target always follows a real movie


@pytest.mark.parametrize("length", [2, 3, 10])
def test_causal_examples_target_every_movie_once_without_leaks(length):
    ex = causal_examples(RATINGS, length)
    assert ex.inputs.shape == ex.targets.shape == (len(ex), length)
    assert_no_leak(ex, RATINGS, causal=True)
    targets = sorted((int(u), t) for u, row in zip(ex.user_id, ex.targets, strict=True) for t in row if t)
    expected = sorted((u, str(m)) for u, (movies, _) in user_sequences(RATINGS).items() for m in movies[1:])
    assert targets == expected  # every movie after a user's first is a target exactly once
    # Each slot's target is the movie right after the slot's input, and ratings line up.
    seqs = user_sequences(RATINGS)
    for row in range(len(ex)):
        movies, values = seqs[int(ex.user_id[row])]
        order = [str(m) for m in movies]
        for slot in np.flatnonzero(ex.targets[row] != ""):
            i = order.index(ex.targets[row, slot])
            assert ex.inputs[row, slot] == order[i - 1]
            assert ex.target_ratings[row, slot] == values[i]
            assert ex.input_ratings[row, slot] == values[i - 1]
    # Padding has no rating.
    assert (ex.input_ratings[ex.inputs == ""] == 0).all()


def test_windows_follow_seed_004():
    ex = window_examples(RATINGS, length=4, step=2)
    user1 = ex.user_id == 1
    # Sequence 20 10 30 40 50 60: windows start at 0, 2, 4 -> targets 40, 60 and (short) 60.
    assert ex.inputs[user1].tolist() == [["20", "10", "30"], ["30", "40", "50"], ["", "", "50"]]
    assert ex.targets[user1][:, -1].tolist() == ["40", "60", "60"]
    assert (ex.targets[:, :-1] == "").all()  # only the last slot has a target
    assert ex.target_ratings[user1][:, -1].tolist() == [2.0, 4.0, 4.0]
    assert ex.inputs[ex.user_id == 2].tolist() == [["", "", "10"]]
    assert not (ex.user_id == 3).any()  # one rating: nothing to predict
    assert_no_leak(ex, RATINGS, causal=False)


def test_windows_on_generated_data_never_leak(tiny_world):
    ratings = tiny_world.dataset.ratings
    for length, step in ((4, 2), (6, 1)):
        ex = window_examples(ratings, length, step)
        assert ex.inputs.shape[1] == length - 1
        assert_no_leak(ex, ratings, causal=False)


def test_history_tables_hold_the_most_recent_movies():
    ids, values = history_tables(RATINGS, np.array([1, 2, 99]), 4)
    assert ids.tolist() == [["30", "40", "50", "60"], ["", "", "10", "20"], ["", "", "", ""]]
    assert values.tolist() == [[4.0, 2.0, 1.0, 4.0], [0.0, 0.0, 5.0, 4.0], [0.0] * 4]


def test_pairs_share_a_movie_and_histories_stop_before_it(tiny_world):
    ratings = tiny_world.dataset.ratings
    pairs = pair_examples(ratings, length=5, pairs_per_movie=3, seed=0)
    pos = positions(ratings)
    lookup = ratings.set_index([S.USER_ID, S.MOVIE_ID])[S.RATING]
    for i in range(len(pairs)):
        a, b, movie = int(pairs.user_a[i]), int(pairs.user_b[i]), pairs.movie_id[i]
        assert a != b
        expected = (lookup[(a, int(movie))] + lookup[(b, int(movie))]) / 2
        assert pairs.rating[i] == pytest.approx(expected)
        for user, history in ((a, pairs.history_a[i]), (b, pairs.history_b[i])):
            assert all(pos[(user, m)] < pos[(user, movie)] for m in history if m != "")
            assert movie not in history
