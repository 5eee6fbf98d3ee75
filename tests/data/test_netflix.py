"""The Netflix Prize loader on generated files in the exact layout (see FORMATS.md), odd cases included."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfrs_movies import schema as S
from tfrs_movies.data.errors import DataFormatError, MissingDataFileError
from tfrs_movies.data.netflix import (
    CUSTOMER_ID_MAX,
    load_movie_titles,
    load_netflix,
    load_probe,
    load_qualifying,
    netflix_customer_ids,
    write_netflix,
)


@pytest.fixture(scope="module", params=["combined", "training_set"])
def written(request, tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"netflix-{request.param}")
    return write_netflix(tiny_world.dataset, out, layout=request.param, seed=3)


def _files(tmp_path: Path, ratings: str, titles: str = "1,2001,One\n2,2002,Two\n") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "combined_data_1.txt").write_bytes(ratings.encode("iso-8859-1"))
    (tmp_path / "movie_titles.csv").write_bytes(titles.encode("iso-8859-1"))
    return tmp_path


def test_round_trip_both_layouts(written, tiny_world):
    ds = load_netflix(written.out_dir)
    assert ds.name == "netflix"
    pd.testing.assert_frame_equal(ds.ratings, written.ratings)
    pd.testing.assert_frame_equal(ds.movies, written.movies)
    assert ds.ratings.dtypes.to_dict() == S.RATINGS_DTYPES
    assert len(ds.users) == 0 and list(ds.users.columns) == list(S.USER_COLUMNS)
    assert ds.rating_scale == (1.0, 5.0)
    assert ds.report["layout"] == written.layout
    assert ds.report["ratings"] == len(tiny_world.dataset.ratings)
    assert ds.report["probe_pairs"] == len(written.probe_pairs) > 0
    # Dates are midnight UTC of the rating's day.
    assert (ds.ratings[S.TIMESTAMP] % 86_400 == 0).all()
    expected_days = tiny_world.dataset.ratings[S.TIMESTAMP] // 86_400
    assert sorted(ds.ratings[S.TIMESTAMP] // 86_400) == sorted(expected_days)


def test_written_layout(written):
    if written.layout == "combined":
        names = sorted(p.name for p in written.rating_files)
        assert names == [f"combined_data_{i}.txt" for i in range(1, 5)]
        # Movies are split across the files by id ranges, each block opened by "MovieID:".
        first = [p.read_text().split("\n", 1)[0] for p in written.rating_files]
        assert all(line.endswith(":") for line in first)
        assert [int(line[:-1]) for line in first] == sorted(int(line[:-1]) for line in first)
    else:
        path = written.rating_files[0]
        assert path.parent.name == "training_set" and path.name == "mv_0000001.txt"
        assert path.read_text().startswith("1:\n")
    line = written.rating_files[0].read_text().split("\n")[1]
    customer, rating, date = line.split(",")
    assert customer.isdigit() and rating in "12345" and len(date) == 10 and date[4] == date[7] == "-"


def test_customer_ids_are_sparse_and_deterministic(written, tiny_world):
    ids = written.customer_ids
    assert ids.is_unique and ids.max() <= CUSTOMER_ID_MAX
    assert ids.max() == CUSTOMER_ID_MAX  # the real maximum is there, as in the real data
    assert ids.max() - ids.min() > 100 * len(ids)  # not contiguous
    np.testing.assert_array_equal(netflix_customer_ids(len(ids), 3), ids.to_numpy())
    assert set(written.ratings[S.USER_ID]) == set(ids)
    assert set(written.ratings[S.MOVIE_ID]) <= set(range(1, len(tiny_world.dataset.movies) + 1))


def test_movie_titles_odd_cases(tmp_path):
    text = (
        "1,2003,Dinosaur Planet\n"
        "2,NULL,Isle of Man TT 2004 Review\n"
        "3,1997,Character, The Movie, Part 2\n"
        "4,1999,Les Misérables\r\n"
        "5,2000,\n"
    )
    (tmp_path / "movie_titles.csv").write_bytes(text.encode("iso-8859-1"))
    movies = load_movie_titles(tmp_path)
    assert list(movies[S.MOVIE_ID]) == [1, 2, 3, 4, 5]
    assert list(movies[S.TITLE]) == [
        "Dinosaur Planet", "Isle of Man TT 2004 Review", "Character, The Movie, Part 2", "Les Misérables", "",
    ]  # fmt: skip
    assert np.isnan(movies[S.YEAR].iloc[1]) and movies[S.YEAR].iloc[0] == 2003
    assert movies[S.YEAR].dtype == np.float32
    assert all(g == () for g in movies[S.GENRES])


def test_written_titles_have_nulls_commas_and_latin1(written):
    raw = written.movie_titles.read_bytes()
    assert b",NULL," in raw
    assert "é".encode("iso-8859-1") in raw and "é".encode() not in raw
    lines = raw.decode("iso-8859-1").splitlines()
    assert any(line.count(",") > 2 for line in lines)  # titles keep their commas, unquoted
    assert not any(line.split(",", 2)[2].startswith('"') for line in lines)
    assert written.movies[S.YEAR].isna().sum() > 0


def test_probe_and_qualifying(written):
    probe = load_probe(written.out_dir)
    pd.testing.assert_frame_equal(probe, written.probe_pairs)
    assert list(probe.columns) == [S.USER_ID, S.MOVIE_ID]
    train = set(zip(written.ratings[S.USER_ID], written.ratings[S.MOVIE_ID], strict=True))
    assert set(zip(probe[S.USER_ID], probe[S.MOVIE_ID], strict=True)) <= train
    assert abs(len(probe) - 0.015 * len(written.ratings)) <= 1

    qualifying = load_qualifying(written.out_dir)
    pd.testing.assert_frame_equal(qualifying, written.qualifying_pairs)
    assert list(qualifying.columns) == [S.USER_ID, S.MOVIE_ID, S.TIMESTAMP]
    assert not set(zip(qualifying[S.USER_ID], qualifying[S.MOVIE_ID], strict=True)) & train
    assert (qualifying[S.TIMESTAMP] % 86_400 == 0).all() and len(qualifying) == len(probe)


def test_probe_reader_exact(tmp_path):
    (tmp_path / "probe.txt").write_text("1:\n30878\n2647871\n10:\n1952305\n")
    (tmp_path / "qualifying.txt").write_text("1:\n1046323,2005-12-19\n2:\n2059652,2005-09-05\n")
    probe = load_probe(tmp_path)
    assert probe.to_dict("list") == {S.USER_ID: [30878, 2647871, 1952305], S.MOVIE_ID: [1, 1, 10]}
    qualifying = load_qualifying(tmp_path)
    assert qualifying[S.TIMESTAMP].tolist() == [1134950400, 1125878400]  # 2005-12-19, 2005-09-05 UTC


def test_cache_hit_then_invalidated_by_a_changed_source(tmp_path):
    data = _files(tmp_path, "1:\n6,3,2005-09-06\n7,5,2005-05-13\n2:\n6,1,2004-01-31\n")
    first = load_netflix(data)
    assert first.report["cache"] == "written"
    cache_files = list((data / ".cache").glob("*.parquet"))
    assert len(cache_files) == 1
    second = load_netflix(data)
    assert second.report["cache"] == "hit"
    pd.testing.assert_frame_equal(first.ratings, second.ratings)

    with open(data / "combined_data_1.txt", "a") as fh:
        fh.write("8,4,2005-01-01\n")
    third = load_netflix(data)
    assert third.report["cache"] == "written" and len(third.ratings) == 4
    assert third.ratings.iloc[-1].tolist() == [8, 2, 4.0, 1104537600]
    assert len(list((data / ".cache").glob("*.parquet"))) == 1  # the stale cache was removed

    # Same size, new mtime: still a change.
    os.utime(data / "combined_data_1.txt", ns=(1, 1))
    assert load_netflix(data).report["cache"] == "written"
    assert load_netflix(data).report["cache"] == "hit"


def test_cache_dir_override_and_no_cache(tmp_path):
    data = _files(tmp_path / "d", "1:\n6,3,2005-09-06\n")
    other = tmp_path / "elsewhere"
    ds = load_netflix(data, cache_dir=other)
    assert ds.report["cache"] == "written" and list(other.glob("netflix-ratings-*.parquet"))
    assert not (data / ".cache").exists()
    ds = load_netflix(data, use_cache=False)
    assert ds.report["cache"] == "off" and not (data / ".cache").exists()
    assert ds.ratings[S.USER_ID].tolist() == [6]


def test_corrupt_cache_is_rewritten(tmp_path):
    data = _files(tmp_path, "1:\n6,3,2005-09-06\n")
    load_netflix(data)
    (cache_file,) = (data / ".cache").glob("*.parquet")
    cache_file.write_bytes(b"not parquet")
    ds = load_netflix(data)
    assert ds.report["cache"] == "written" and ds.ratings[S.USER_ID].tolist() == [6]


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("1:\n6,3,2005-09-06\n7,3\n", 3, "3 comma-separated fields"),
        ("1:\n6,3,2005-09-06\n7,6,2005-09-06\n", 3, "Rating as an integer 1..5"),
        ("1:\n6,0,2005-09-06\n", 2, "Rating as an integer 1..5"),
        ("1:\n6,3,2005-02-30\n", 2, "Date as a valid YYYY-MM-DD"),
        ("1:\n6,3,05-09-2005\n", 2, "Date as a valid YYYY-MM-DD"),
        ("1:\nx6,3,2005-09-06\n", 2, "CustomerID as a positive integer"),
        ("6,3,2005-09-06\n1:\n", 1, "a valid `MovieID:` line before"),
        ("1:\n6,3,2005-09-06\nab:\n7,3,2005-09-06\n", 3, "`MovieID:` line with a positive integer"),
        ("1:\n6,3,2005-09-06,extra\n", 2, "3 comma-separated fields"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, expected):
    data = _files(tmp_path, text)
    with pytest.raises(DataFormatError) as err:
        load_netflix(data, use_cache=False)
    assert err.value.line_number == line
    assert err.value.path.endswith("combined_data_1.txt")
    assert expected in str(err.value) and f"combined_data_1.txt:{line}:" in str(err.value)


def test_line_numbers_across_chunks_and_files(tmp_path):
    good = "".join(f"{c},3,2005-09-06\n" for c in range(1, 200))
    _files(tmp_path, "1:\n" + good)
    (tmp_path / "combined_data_2.txt").write_text("2:\n" + good + "5,9,2005-09-06\n" + good)
    with pytest.raises(DataFormatError) as err:
        load_netflix(tmp_path, use_cache=False, chunk_bytes=100)
    assert err.value.path.endswith("combined_data_2.txt") and err.value.line_number == 201


def test_skip_mode_counts_bad_lines(tmp_path):
    text = (
        "6,3,2005-09-06\n1:\n6,3,2005-09-06\n7,9,2005-09-06\n8,3\nzz:\n9,1,2005-01-01\n2:\n9,2,2005-01-01\n"
    )
    data = _files(tmp_path, text)
    ds = load_netflix(data, on_bad_lines="skip")
    assert ds.ratings[[S.USER_ID, S.MOVIE_ID]].values.tolist() == [[6, 1], [9, 2]]
    # line 1 (no movie yet), 4 (rating 9), 5 (2 fields), 6 (bad header), 7 (after the bad header)
    assert ds.report["skipped_lines"] == 5
    assert list(ds.report["skipped_by_file"].values()) == [5]
    assert "combined_data_1.txt:1:" in ds.report["skipped_examples"][0]
    # The cache remembers the skipped lines; error mode does not accept it and re-reads the text.
    hit = load_netflix(data, on_bad_lines="skip")
    assert hit.report["cache"] == "hit" and hit.report["skipped_lines"] == 5
    with pytest.raises(DataFormatError):
        load_netflix(data)


def test_crlf_blank_lines_and_missing_final_newline(tmp_path):
    data = _files(tmp_path, "1:\r\n6,3,2005-09-06\r\n\r\n2:\r\n7,4,2004-02-29")
    ds = load_netflix(data, use_cache=False)
    assert ds.ratings.values.tolist() == [[6, 1, 3, 1125964800], [7, 2, 4, 1078012800]]


def test_bad_movie_titles_lines(tmp_path):
    data = _files(tmp_path, "1:\n6,3,2005-09-06\n", "1,2001,One\n2,19x5,Two\nthree\n")
    with pytest.raises(DataFormatError) as err:
        load_netflix(data)
    assert err.value.path.endswith("movie_titles.csv") and err.value.line_number == 2
    ds = load_netflix(data, on_bad_lines="skip")
    assert ds.report["skipped_lines"] == 2 and list(ds.movies[S.MOVIE_ID]) == [1]


def test_missing_files_are_named(tmp_path):
    with pytest.raises(MissingDataFileError, match="combined_data_1.txt"):
        load_netflix(tmp_path)
    (tmp_path / "combined_data_1.txt").write_text("1:\n6,3,2005-09-06\n")
    with pytest.raises(MissingDataFileError, match="movie_titles.csv"):
        load_netflix(tmp_path)
    with pytest.raises(MissingDataFileError, match="probe.txt"):
        load_probe(tmp_path)
    with pytest.raises(MissingDataFileError, match="qualifying.txt"):
        load_qualifying(tmp_path)


def test_small_chunks_equal_one_shot(written):
    """The bounded-memory path: tiny chunks (many cut lines) give exactly the one-shot result."""
    whole = load_netflix(written.out_dir, use_cache=False, chunk_bytes=1 << 30, with_probe=False)
    chunked = load_netflix(written.out_dir, use_cache=False, chunk_bytes=97, with_probe=False)
    pd.testing.assert_frame_equal(whole.ratings, chunked.ratings)
    cache_dir = written.out_dir / "small-chunk-cache"
    cached = load_netflix(written.out_dir, cache_dir=cache_dir, chunk_bytes=97, with_probe=False)
    assert cached.report["cache"] == "written"
    pd.testing.assert_frame_equal(whole.ratings, cached.ratings)
    pd.testing.assert_frame_equal(load_probe(written.out_dir, chunk_bytes=13), written.probe_pairs)


def test_writer_rejects_half_stars(tmp_path):
    from tfrs_movies.data.synthetic import generate_world

    world = generate_world(n_users=30, n_movies=40, n_ratings=800, seed=1, half_stars=True)
    with pytest.raises(ValueError, match="whole stars"):
        write_netflix(world.dataset, tmp_path)


def test_cache_module_round_trip_and_atomic_write(tmp_path):
    from tfrs_movies.data import cache

    source = tmp_path / "source.txt"
    source.write_text("x")
    path = cache.cache_path_for([source], "things", data_dir=tmp_path, salt="v1")
    assert path.parent == tmp_path / ".cache" and path.name.startswith("things-")
    assert cache.cache_path_for([source], "things", data_dir=tmp_path, salt="v2") != path  # parser version
    assert cache.read_cached(path) is None
    frame = pd.DataFrame({"a": np.arange(3, dtype=np.int64), "b": ["x", "y", "é"]})
    cache.write_atomically(frame, path, info={"n": 3})
    got, info = cache.read_cached(path)
    pd.testing.assert_frame_equal(got, frame, check_dtype=False)
    assert info == {"n": 3} and not list(path.parent.glob(".*.tmp"))
    # A copy under another fingerprint's name is not trusted.
    impostor = path.with_name("things-0123456789abcdef01234567.parquet")
    impostor.write_bytes(path.read_bytes())
    assert cache.read_cached(impostor) is None
    assert cache.remove_stale(path) == [impostor] and path.exists()
    source.write_text("changed!")
    assert cache.cache_path_for([source], "things", data_dir=tmp_path, salt="v1") != path


def test_failed_conversion_leaves_no_cache(tmp_path):
    data = _files(tmp_path, "1:\n6,3,2005-09-06\n7,9,2005-09-06\n")
    with pytest.raises(DataFormatError):
        load_netflix(data)
    assert not [p for p in (data / ".cache").iterdir()]  # neither a cache file nor a temp file


def test_probe_split_by_int64_keys_matches_the_pairs_even_with_a_repeated_probe_line():
    from tfrs_movies.data.splits import probe_split

    rng = np.random.default_rng(0)
    users, movies = rng.integers(1, 2_649_430, 5000), rng.integers(1, 17771, 5000)
    ratings = pd.DataFrame({S.USER_ID: users, S.MOVIE_ID: movies, S.RATING: 3.0, S.TIMESTAMP: 0})
    ratings = ratings.drop_duplicates([S.USER_ID, S.MOVIE_ID])
    probe = ratings.sample(300, random_state=1)[[S.USER_ID, S.MOVIE_ID]]
    probe = pd.concat([probe, probe.iloc[:3], pd.DataFrame({S.USER_ID: [7], S.MOVIE_ID: [17771]})])
    split = probe_split(ratings.reset_index(drop=True), probe)
    pairs = set(zip(probe[S.USER_ID], probe[S.MOVIE_ID], strict=True))
    in_probe = [(u, m) in pairs for u, m in zip(ratings[S.USER_ID], ratings[S.MOVIE_ID], strict=True)]
    assert len(split.test) == 300 and len(split.train) == len(ratings) - 300 == len(ratings) - sum(in_probe)
    assert not set(zip(split.train[S.USER_ID], split.train[S.MOVIE_ID], strict=True)) & pairs
    frame = ratings.reset_index(drop=True)
    pd.testing.assert_frame_equal(split.train, frame[~np.array(in_probe)].reset_index(drop=True))
    pd.testing.assert_frame_equal(split.test, frame[np.array(in_probe)].reset_index(drop=True))
