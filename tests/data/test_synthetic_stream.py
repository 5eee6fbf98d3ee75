"""The streamed generator: exactly N ratings, no pair twice, and the Netflix layout written from chunks."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_movies import schema as S
from tfrs_movies.data import load_dataset
from tfrs_movies.data.netflix import load_probe, write_netflix_stream
from tfrs_movies.data.synth_formats import write_synthetic
from tfrs_movies.data.synthetic import exact_counts, stream_world


@pytest.mark.parametrize(("n", "users", "movies"), [(4003, 37, 500), (1000, 50, 20), (2999, 30, 100)])
def test_exact_counts_sum_to_n_within_the_bounds(n, users, movies):
    weights = np.random.default_rng(0).lognormal(0, 1.0, users)
    counts = exact_counts(n, users, movies, 20, weights)
    assert counts.sum() == n and counts.min() >= 20 and counts.max() <= movies


def test_exact_counts_refuse_what_cannot_fit():
    with pytest.raises(ValueError, match="do not fit"):
        exact_counts(101, 10, 10, 1, np.ones(10))
    with pytest.raises(ValueError, match="cannot give"):
        exact_counts(50, 10, 10, 20, np.ones(10))


def test_world_chunks_hold_exactly_n_distinct_pairs():
    world = stream_world(90, 120, 7_777, seed=4)
    parts = list(world.chunks(chunk_ratings=1000))
    assert len(parts) > 3  # really chunked
    u = np.concatenate([p[0] for p in parts]).astype(np.int64)
    m = np.concatenate([p[1] for p in parts]).astype(np.int64)
    rating = np.concatenate([p[2] for p in parts])
    assert len(u) == 7_777 and len(np.unique(u * 1000 + m)) == 7_777
    assert set(np.unique(rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0} and 3.0 < rating.mean() < 4.0
    again = np.concatenate([p[1] for p in world.chunks(chunk_ratings=1000)])
    np.testing.assert_array_equal(m, again)


def test_netflix_synth_writes_exactly_n_ratings_and_reads_back(tmp_path):
    n = 12_345
    written = write_synthetic("netflix", tmp_path / "a", n, seed=2, users=101, movies=300)
    assert written["ratings"] == n
    ratings = load_dataset("netflix", tmp_path / "a").ratings
    assert len(ratings) == n
    assert not ratings.duplicated([S.USER_ID, S.MOVIE_ID]).any()
    assert ratings[S.USER_ID].nunique() == 101 and ratings[S.MOVIE_ID].max() <= 300
    probe = load_probe(tmp_path / "a")
    assert len(probe) == written["probe"] > 0
    key = ratings[S.USER_ID] * 1000 + ratings[S.MOVIE_ID]
    assert (probe[S.USER_ID] * 1000 + probe[S.MOVIE_ID]).isin(key).all()  # probe pairs are rated pairs
    write_synthetic("netflix", tmp_path / "b", n, seed=2, users=101, movies=300)
    for name in ("combined_data_1.txt", "combined_data_4.txt", "probe.txt", "qualifying.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_small_buckets_give_the_same_files_as_one_bucket(tmp_path):
    world = stream_world(60, 80, 3_000, seed=1)
    write_netflix_stream(world, tmp_path / "one", seed=1, chunk_ratings=500)
    write_netflix_stream(world, tmp_path / "many", seed=1, bucket_rows=100, chunk_ratings=500)
    one = load_dataset("netflix", tmp_path / "one").ratings
    many = load_dataset("netflix", tmp_path / "many").ratings
    key = [S.USER_ID, S.MOVIE_ID]
    a = one.sort_values(key).reset_index(drop=True)
    b = many.sort_values(key).reset_index(drop=True)
    assert len(a) == 3_000
    assert a.equals(b)
