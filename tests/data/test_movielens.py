"""MovieLens loaders and writers: generated files in every layout (odd cases included), the genuine
ML-100K, malformed lines (file, line number, expectation; skip counts) and missing files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrs_movies import schema as S
from tfrs_movies.data import movielens as M
from tfrs_movies.data.errors import DataFormatError, MissingDataFileError
from tfrs_movies.data.synthetic import generate_world

# --- helpers ------------------------------------------------------------------------------------------


def _ratings(rows: list[tuple]) -> pd.DataFrame:
    return S.canonical_ratings(pd.DataFrame(rows, columns=list(S.RATING_COLUMNS)))


def _write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def _by_id(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame.set_index(column).sort_index()


@pytest.fixture(scope="module")
def half_star_world():
    genres = M.ML_CSV_GENRES
    return generate_world(n_users=60, n_movies=80, n_ratings=2000, seed=3, genres=genres, half_stars=True)


# --- ML-100K ------------------------------------------------------------------------------------------


def test_ml100k_round_trip(tiny_world, tmp_path):
    ds = tiny_world.dataset
    M.write_ml100k(ds, tmp_path)
    got = M.load_ml100k(tmp_path)
    assert got.name == "ml-100k" and got.genres == M.ML100K_GENRES and got.rating_scale == (1.0, 5.0)
    pd.testing.assert_frame_equal(got.ratings, ds.ratings)

    # Movies: the same, plus the one extra "unknown" row of the real file's id 267 kind.
    extra = got.movies[~got.movies[S.MOVIE_ID].isin(ds.movies[S.MOVIE_ID])]
    assert len(extra) == 1 and extra[S.TITLE].iloc[0] == "unknown"
    assert np.isnan(extra[S.YEAR].iloc[0]) and extra[S.GENRES].iloc[0] == ("unknown",)
    movies = _by_id(got.movies, S.MOVIE_ID).loc[ds.movies[S.MOVIE_ID]]
    want = _by_id(ds.movies, S.MOVIE_ID)
    assert movies[S.TITLE].tolist() == want[S.TITLE].tolist()
    assert movies[S.GENRES].tolist() == want[S.GENRES].tolist()
    np.testing.assert_array_equal(movies[S.YEAR].to_numpy(), want[S.YEAR].to_numpy())
    assert got.movies[S.YEAR].dtype == np.float32 and got.movies[S.MOVIE_ID].dtype == np.int64

    pd.testing.assert_frame_equal(
        _by_id(got.users, S.USER_ID), _by_id(ds.users, S.USER_ID), check_dtype=False, check_index_type=False
    )
    assert got.users[S.ZIP_CODE].str.fullmatch(r"T\dH\dN").any()  # non-numeric zips stay text


def test_ml100k_writer_layout_and_odd_cases(tiny_world, tmp_path):
    M.write_ml100k(tiny_world.dataset, tmp_path)
    item = (tmp_path / "u.item").read_bytes()
    assert b"Mis\xe9rables" in item  # ISO-8859-1, not UTF-8
    rows = [line.split("|") for line in item.decode("latin-1").splitlines()]
    assert all(len(r) == 24 for r in rows)
    assert any(r[2] == "" and r[1] != "unknown" for r in rows)  # an empty release date
    assert all(r[2] == "" or pd.Series([r[2]]).str.fullmatch(r"\d\d-[A-Z][a-z]{2}-\d{4}")[0] for r in rows)
    assert rows[-1][1:6] == ["unknown", "", "", "", "1"]
    assert (tmp_path / "u.genre").read_text().endswith("Western|18\n\n")
    assert (tmp_path / "u.occupation").read_text().splitlines() == list(M.ML100K_OCCUPATIONS)
    n = len(tiny_world.dataset.ratings)
    assert (tmp_path / "u.info").read_text().splitlines()[2] == f"{n} ratings"

    # Loading the writer's own odd date/titles: a title's year wins, else the date's.
    loaded = M.load_ml100k(tmp_path)
    assert loaded.movies[S.TITLE].str.startswith("Misérables").any()


def test_ml100k_folds(tiny_world, tmp_path):
    M.write_ml100k(tiny_world.dataset, tmp_path)
    full = tiny_world.dataset.ratings
    key = [S.USER_ID, S.MOVIE_ID]
    tests = [M.read_ratings_file(tmp_path / f"u{k}.test", "ml-100k") for k in range(1, 6)]
    all_tests = pd.concat(tests)
    assert len(all_tests) == len(full) and not all_tests.duplicated(key).any()  # each rating in one test
    for k, test in enumerate(tests, 1):
        base = M.read_ratings_file(tmp_path / f"u{k}.base", "ml-100k")
        assert len(base) + len(test) == len(full)
        assert abs(len(test) - len(full) / 5) <= 1
        assert base.merge(test, on=key).empty
        assert (base[S.USER_ID].diff().dropna() >= 0).all()  # sorted by user, like the real files
    ua = M.read_ratings_file(tmp_path / "ua.test", "ml-100k")
    ub = M.read_ratings_file(tmp_path / "ub.test", "ml-100k")
    assert (ua.groupby(S.USER_ID).size() == 10).all() and ua[S.USER_ID].nunique() == full[S.USER_ID].nunique()
    assert (ub.groupby(S.USER_ID).size() == 10).all()
    assert ua.merge(ub, on=key).empty
    assert len(M.read_ratings_file(tmp_path / "ua.base", "ml-100k")) + len(ua) == len(full)
    # Deterministic.
    again = tmp_path / "again"
    M.write_ml100k(tiny_world.dataset, again)
    assert (again / "u3.test").read_bytes() == (tmp_path / "u3.test").read_bytes()
    assert (again / "ub.test").read_bytes() == (tmp_path / "ub.test").read_bytes()


def test_ml100k_hand_written_odd_cases(tmp_path):
    flags = "|".join(["0"] * 19)
    _write(tmp_path / "u.data", "1\t1\t5\t881250949\n2\t2\t3\t891717742\n")
    _write(
        tmp_path / "u.item",
        f"1|Misérables, Les (1995)|01-Jan-1995||http://x|{flags[:-1]}1\n"
        "2|Land Before Time III (1995) (V)|4-Feb-1995|||0|0|0|1|1|" + "|".join(["0"] * 14) + "\n"
        "3|unknown||||1|" + "|".join(["0"] * 18) + "\n"
        "4|Heidi Fleiss: Hollywood Madam (1995) |09-Feb-1996||http://y|" + flags + "\n",
        "latin-1",
    )
    _write(tmp_path / "u.user", "1|24|M|technician|85711\n2|39|M|scientist|T8H1N\n")
    ds = M.load_ml100k(tmp_path)  # no u.genre: the standard 19
    assert ds.genres == M.ML100K_GENRES
    movies = _by_id(ds.movies, S.MOVIE_ID)
    assert movies.loc[1, S.TITLE] == "Misérables, Les (1995)" and movies.loc[1, S.GENRES] == ("Western",)
    assert movies.loc[2, S.YEAR] == 1995 and movies.loc[2, S.GENRES] == ("Animation", "Children's")
    assert np.isnan(movies.loc[3, S.YEAR]) and movies.loc[3, S.GENRES] == ("unknown",)
    assert movies.loc[4, S.TITLE] == "Heidi Fleiss: Hollywood Madam (1995)" and movies.loc[4, S.YEAR] == 1995
    assert movies.loc[4, S.GENRES] == ()
    assert ds.users[S.ZIP_CODE].tolist() == ["85711", "T8H1N"]
    assert ds.users[S.AGE].dtype == np.float32


@pytest.mark.ml100k
def test_genuine_ml100k(ml100k_dir):
    ds = M.load_ml100k(ml100k_dir)
    info = ds.info()
    assert (info["ratings"], info["users"], info["movies"], info["genres"]) == (100000, 943, 1682, 19)
    assert len(ds.users) == 943 and ds.ratings[S.RATING].between(1, 5).all()
    assert ds.ratings.dtypes.to_dict() == S.RATINGS_DTYPES
    movies = _by_id(ds.movies, S.MOVIE_ID)
    toy = movies.loc[1]
    assert toy[S.TITLE] == "Toy Story (1995)" and toy[S.YEAR] == 1995
    assert toy[S.GENRES] == ("Animation", "Children's", "Comedy")
    assert movies.loc[543, S.TITLE] == "Misérables, Les (1995)"
    assert movies.loc[267, S.TITLE] == "unknown" and np.isnan(movies.loc[267, S.YEAR])
    assert movies.loc[1412, S.YEAR] == 1995  # "(1995) (V)": the year comes from the release date
    assert ds.movies[S.YEAR].isna().sum() == 1
    assert "T8H1N" in set(ds.users[S.ZIP_CODE])
    assert ds.report == {}
    base = M.read_ratings_file(ml100k_dir / "u1.base", "ml-100k")
    test = M.read_ratings_file(ml100k_dir / "u1.test", "ml-100k")
    assert (len(base), len(test)) == (80000, 20000)
    assert len(M.load_ml100k(ml100k_dir, ratings_file="ua.test").ratings) == 9430


# --- ML-1M --------------------------------------------------------------------------------------------


def test_ml1m_round_trip(tiny_world, tmp_path):
    ds = tiny_world.dataset
    M.write_ml1m(ds, tmp_path)
    got = M.load_ml1m(tmp_path)
    assert got.name == "ml-1m" and got.genres == M.ML1M_GENRES and len(got.genres) == 18
    pd.testing.assert_frame_equal(got.ratings, ds.ratings)

    movies, want = _by_id(got.movies, S.MOVIE_ID), _by_id(ds.movies, S.MOVIE_ID)
    assert movies.index.tolist() == want.index.tolist()
    assert movies[S.TITLE].tolist() == want[S.TITLE].tolist()
    assert movies[S.GENRES].tolist() == [tuple(g for g in gs if g != "unknown") for gs in want[S.GENRES]]
    assert b"Mis\xe9rables" in (tmp_path / "movies.dat").read_bytes()

    users, want_users = _by_id(got.users, S.USER_ID), _by_id(ds.users, S.USER_ID)
    assert set(users[S.AGE]) <= set(M.ML1M_AGE_BUCKETS)
    assert users.loc[want_users[S.AGE] == 33, S.AGE].eq(25).all()
    assert users.loc[want_users[S.AGE] < 18, S.AGE].eq(1).all()
    assert set(users[S.OCCUPATION]) <= set(M.ML1M_OCCUPATIONS)
    assert users.loc[want_users[S.OCCUPATION] == "student", S.OCCUPATION].eq("college/grad student").all()
    assert users[S.GENDER].tolist() == want_users[S.GENDER].tolist()
    zips = users[S.ZIP_CODE]
    assert zips.str.fullmatch(r"\d{5}-\d{4}").any()  # ZIP+4 like 98107-2117
    assert all(z.startswith(w) for z, w in zip(zips, want_users[S.ZIP_CODE], strict=True))
    assert zips.str.fullmatch(r"T\dH\dN").any()


def test_ml1m_hand_written(tmp_path):
    _write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    _write(
        tmp_path / "users.dat",
        "".join(f"{i + 1}::{'MF'[i % 2]}::{M.ML1M_AGE_BUCKETS[i % 7]}::{i}::98107-2117\n" for i in range(21)),
    )
    _write(
        tmp_path / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "29::City of Lost Children, The (1995)::Adventure|Sci-Fi\n"
        "661::Misérables, Les (1995)::Drama|Musical\n",
        "latin-1",
    )
    ds = M.load_ml1m(tmp_path)
    assert ds.users[S.OCCUPATION].tolist() == list(M.ML1M_OCCUPATIONS)
    assert (
        ds.users[S.OCCUPATION].iloc[12] == "programmer" and ds.users[S.OCCUPATION].iloc[10] == "K-12 student"
    )
    assert ds.users[S.AGE].iloc[:7].tolist() == list(M.ML1M_AGE_BUCKETS)
    assert set(ds.users[S.ZIP_CODE]) == {"98107-2117"}
    movies = _by_id(ds.movies, S.MOVIE_ID)
    assert movies.loc[29, S.TITLE] == "City of Lost Children, The (1995)"
    assert movies.loc[29, S.GENRES] == ("Adventure", "Sci-Fi") and movies.loc[29, S.YEAR] == 1995
    assert movies.loc[661, S.TITLE] == "Misérables, Les (1995)"


# --- CSV (ML-25M and friends) -------------------------------------------------------------------------


def test_ml_csv_round_trip(half_star_world, tmp_path):
    ds = half_star_world.dataset
    M.write_ml_csv(ds, tmp_path, name="ml-latest-small")
    got = M.load_ml_csv(tmp_path, name="ml-latest-small")
    assert got.name == "ml-latest-small" and got.rating_scale == (0.5, 5.0) and len(got.users) == 0
    pd.testing.assert_frame_equal(got.ratings, ds.ratings)
    assert (got.ratings[S.RATING] % 1 == 0.5).any()
    assert "3.5" in (tmp_path / "ratings.csv").read_text() or "4.5" in (tmp_path / "ratings.csv").read_text()

    movies, want = _by_id(got.movies, S.MOVIE_ID), _by_id(ds.movies, S.MOVIE_ID)
    same = movies.loc[want.index]
    assert same[S.TITLE].tolist() == want[S.TITLE].tolist()  # trailing spaces written, stripped on load
    assert same[S.GENRES].tolist() == want[S.GENRES].tolist()
    np.testing.assert_array_equal(same[S.YEAR].to_numpy(), want[S.YEAR].to_numpy())
    assert same[S.IMDB_ID].tolist() == want[S.IMDB_ID].tolist()
    assert same[S.TAGS].tolist() == [tuple(t) for t in want[S.TAGS]]  # repeated tags kept once

    # The writer's extra odd movies.
    extra = movies.loc[~movies.index.isin(want.index)]
    assert len(extra) == 3
    no_year, no_genres, quoted = (extra.iloc[i] for i in range(3))
    assert no_year[S.TITLE] == "Quiet Orchard" and np.isnan(no_year[S.YEAR])
    assert no_year[S.TAGS] == ("Amélie-like", "dark, but funny")
    assert no_genres[S.GENRES] == () and no_genres[S.YEAR] == 2003
    assert quoted[S.TITLE] == 'American Garden, The "Director\'s Cut" (1995)' and quoted[S.YEAR] == 1995
    assert quoted[S.IMDB_ID] == "tt0054709"  # zero padding kept
    assert M.NO_GENRES not in got.genres and "IMAX" in got.genres
    assert list(got.genres) == [g for g in M.ML_CSV_GENRES if g in got.genres]


def test_ml_csv_writer_layout(tiny_world, tmp_path):
    M.write_ml_csv(tiny_world.dataset, tmp_path)
    movies = (tmp_path / "movies.csv").read_text(encoding="utf-8").splitlines()
    assert movies[0] == "movieId,title,genres"
    assert any(line.split(",", 1)[1].startswith('"') and ", The" in line for line in movies)
    assert any(line.endswith(",(no genres listed)") for line in movies)
    assert any(" (" in line and line.split(",")[1].endswith(") ") for line in movies)  # extra space
    assert "Children's" not in "".join(movies)
    assert '"dark, but funny"' in (tmp_path / "tags.csv").read_text(encoding="utf-8")
    links = (tmp_path / "links.csv").read_text().splitlines()
    assert links[0] == "movieId,imdbId,tmdbId" and links[1].split(",")[1] == "1000000"
    assert any(line.endswith(",") for line in links)  # empty tmdbId
    got = M.load_ml_csv(tmp_path)
    children = [gs for gs in got.movies[S.GENRES] if "Children" in gs]
    assert children and "Children's" not in got.genres


def test_ml_csv_hand_written(tmp_path):
    _write(
        tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,11,0.5,964981247\n"
    )
    _write(
        tmp_path / "movies.csv",
        "movieId,title,genres\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        "149,Babylon 5,Sci-Fi\n"
        "150,  Hamlet (2000)  ,(no genres listed)\n"
        '151,"Café ""Noir"" (2001)",Drama|IMAX\n',
    )
    _write(
        tmp_path / "tags.csv",
        'userId,movieId,tag,timestamp\n2,1,pixar,1\n3,1,"fun, for kids",2\n4,1,pixar,3\n5,11,Amélie-like,4\n',
    )
    _write(tmp_path / "links.csv", "movieId,imdbId,tmdbId\n1,0114709,862\n11,0112346,\n149,00105946,\n")
    ds = M.load_ml_csv(tmp_path, name="ml-25m")
    movies = _by_id(ds.movies, S.MOVIE_ID)
    assert movies.loc[11, S.TITLE] == "American President, The (1995)"
    assert movies.loc[149, S.TITLE] == "Babylon 5" and np.isnan(movies.loc[149, S.YEAR])
    assert movies.loc[150, S.TITLE] == "Hamlet (2000)" and movies.loc[150, S.YEAR] == 2000
    assert movies.loc[150, S.GENRES] == ()
    assert movies.loc[151, S.TITLE] == 'Café "Noir" (2001)'
    assert movies.loc[1, S.TAGS] == ("pixar", "fun, for kids") and movies.loc[11, S.TAGS] == ("Amélie-like",)
    assert movies.loc[150, S.TAGS] == ()
    assert movies.loc[1, S.IMDB_ID] == "tt0114709" and movies.loc[149, S.IMDB_ID] == "tt00105946"
    assert movies.loc[150, S.IMDB_ID] == ""
    assert ds.genres == (
        "Adventure", "Animation", "Children", "Comedy", "Drama", "Fantasy", "IMAX", "Romance", "Sci-Fi",
    )  # fmt: skip
    assert ds.ratings[S.RATING].tolist() == [4.0, 0.5] and ds.ratings[S.TIMESTAMP].dtype == np.int64
    # tags.csv and links.csv are optional.
    (tmp_path / "tags.csv").unlink()
    (tmp_path / "links.csv").unlink()
    bare = M.load_ml_csv(tmp_path)
    assert S.TAGS not in bare.movies and S.IMDB_ID not in bare.movies and len(bare.movies) == 5


# --- ratings files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", M.LAYOUTS)
def test_ratings_file_round_trip(layout, tmp_path):
    rows = [(1, 10, 4.0, 881250949), (943, 1682, 1.0, 2_000_000_000), (7, 3, 5.0, 0)]
    if layout == "csv":
        rows += [(2, 209171, 0.5, 1574327703), (3, 5, 3.5, 1)]
    frame = _ratings(rows)
    path = tmp_path / "ratings.txt"
    M.write_ratings_file(frame, path, layout)
    text = path.read_text()
    first = {"ml-100k": "1\t10\t4\t881250949", "ml-1m": "1::10::4::881250949", "csv": "1,10,4.0,881250949"}
    assert text.splitlines()[1 if layout == "csv" else 0] == first[layout]
    if layout == "csv":
        assert text.startswith("userId,movieId,rating,timestamp\n") and "\n2,209171,0.5," in text
    got = M.read_ratings_file(path, layout)
    pd.testing.assert_frame_equal(got, frame)
    assert got.dtypes.to_dict() == S.RATINGS_DTYPES


def test_ratings_file_layout_rules(tmp_path):
    with pytest.raises(ValueError, match="whole-star"):
        M.write_ratings_file(_ratings([(1, 1, 3.5, 1)]), tmp_path / "x", "ml-100k")
    with pytest.raises(ValueError, match="layout"):
        M.write_ratings_file(_ratings([(1, 1, 3, 1)]), tmp_path / "x", "tsv")
    M.write_ratings_file(_ratings([]), tmp_path / "empty.csv", "csv")
    assert len(M.read_ratings_file(tmp_path / "empty.csv", "csv")) == 0
    assert M.ratings_layout("ml-100k") == "ml-100k" and M.ratings_layout("ml-1m") == "ml-1m"
    for name in ("ml-25m", "ml-20m", "ml-latest", "ml-latest-small", "synthetic", "netflix"):
        assert M.ratings_layout(name) == "csv"
    with pytest.raises(ValueError):
        M.ratings_layout("nope")


# --- malformed lines ----------------------------------------------------------------------------------

BAD_RATINGS = {
    # layout: (text, (line of the wrong field count, line of the non-numeric rating))
    "ml-100k": ("1\t1\t5\t1\n2\t2\t4\n3\t3\tfour\t3\n4\t4\t3\t4\n", (2, 3)),
    "ml-1m": ("1::1::5::1\n2::2::4::2::9\n\n3::3::x::3\n4::4::3::4\n", (2, 4)),
    "csv": ("userId,movieId,rating,timestamp\n1,1,5.0,1\n2,2,4.0,2,9\n3,3,abc,3\n4,4,3.0,4\n", (3, 4)),
}


@pytest.mark.parametrize("layout", M.LAYOUTS)
def test_bad_ratings_lines(layout, tmp_path):
    text, (count_line, value_line) = BAD_RATINGS[layout]
    path = _write(tmp_path / "r.txt", text)
    with pytest.raises(DataFormatError) as err:
        M.read_ratings_file(path, layout)
    assert err.value.line_number == count_line and err.value.path == str(path)
    assert f"{path}:{count_line}: expected 4 fields" in str(err.value)
    got = M.read_ratings_file(path, layout, on_bad_lines="skip")
    assert got[S.USER_ID].tolist() == [1, 4]
    assert got.attrs["report"] == {"skipped_lines": 2, "skipped_by_file": {str(path): 2}}
    # Only the non-numeric rating left: named with its field and the expected range.
    lines = text.splitlines()
    lines.pop(count_line - 1)
    _write(path, "\n".join(lines) + "\n")
    with pytest.raises(
        DataFormatError, match=rf":{value_line - 1}: expected field 3 \(.*\) to be a number from"
    ):
        M.read_ratings_file(path, layout)


def test_bad_lines_found_in_later_blocks(monkeypatch, tmp_path):
    monkeypatch.setattr(M, "_BLOCK_BYTES", 64)  # many blocks: line numbers must carry across them
    lines = [f"{i}\t{i}\t{1 + i % 5}\t{1000 + i}" for i in range(1, 301)]
    lines[149] = "150\t150\t9\t1150"  # rating out of range
    lines[250] = "251\t251"
    path = _write(tmp_path / "u.data", "\n".join(lines) + "\n")
    with pytest.raises(
        DataFormatError, match=r"u\.data:150: expected field 3 \(rating\) to be a number from 1"
    ):
        M.read_ratings_file(path, "ml-100k")
    got = M.read_ratings_file(path, "ml-100k", on_bad_lines="skip")
    assert len(got) == 298 and got.attrs["report"]["skipped_lines"] == 2
    assert 150 not in set(got[S.USER_ID]) and got[S.USER_ID].is_monotonic_increasing


def test_bad_lines_in_side_files(tiny_world, tmp_path):
    M.write_ml100k(tiny_world.dataset, tmp_path)
    item = tmp_path / "u.item"
    rows = item.read_bytes().split(b"\n")
    rows[4] = rows[4].replace(b"|0|", b"|7|", 1)  # a genre flag that is not 0/1
    rows[9] = rows[9] + b"|0"  # 25 fields
    item.write_bytes(b"\n".join(rows))
    with pytest.raises(
        DataFormatError, match=r"u\.item:5: expected fields 6-24 \(genre flags\) to be 0 or 1"
    ):
        M.load_ml100k(tmp_path)
    ds = M.load_ml100k(tmp_path, on_bad_lines="skip")
    assert ds.report["skipped_lines"] == 2 and ds.report["skipped_by_file"] == {str(item): 2}
    assert len(ds.movies) == len(tiny_world.dataset.movies) + 1 - 2

    M.write_ml100k(tiny_world.dataset, tmp_path)  # a clean u.item again
    users = tmp_path / "u.user"
    _write(users, "1|24|M|technician|85711\n2|old|F|other|94043\n1|30|M|writer|32067\n")
    with pytest.raises(DataFormatError, match=r"u\.user:2: expected field 2 \(age\) to be a number"):
        M.load_ml100k(tmp_path)
    ds = M.load_ml100k(tmp_path, on_bad_lines="skip")
    assert ds.users[S.USER_ID].tolist() == [1] and ds.report["skipped_by_file"][str(users)] == 2  # dup id 1


def test_bad_lines_ml1m_and_csv(tiny_world, tmp_path):
    ml1m = tmp_path / "ml1m"
    M.write_ml1m(tiny_world.dataset, ml1m)
    users = ml1m / "users.dat"
    rows = users.read_text().splitlines()
    rows[2] = "3::F::25::21::12345"
    users.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=r"users\.dat:3: expected field 4 \(Occupation\) from 0 to 20"):
        M.load_ml1m(ml1m)
    assert M.load_ml1m(ml1m, on_bad_lines="skip").report["skipped_lines"] == 1

    csvdir = tmp_path / "csv"
    M.write_ml_csv(tiny_world.dataset, csvdir)
    movies = csvdir / "movies.csv"
    text = movies.read_text(encoding="utf-8").splitlines()
    text[3] = 'x3,"Comma, Title (1990)",Drama'  # line 4: bad movieId (the quoted comma is fine)
    text[5] = "6,Too,Many,Fields"  # line 6
    movies.write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(
        DataFormatError, match=r"movies\.csv:4: expected field 1 \(movieId\) to be an integer"
    ):
        M.load_ml_csv(csvdir)
    tags = csvdir / "tags.csv"
    tags.write_text(tags.read_text(encoding="utf-8") + '1,2,"unterminated, tag",notatime\n', encoding="utf-8")
    ds = M.load_ml_csv(csvdir, on_bad_lines="skip")
    assert ds.report["skipped_by_file"] == {str(movies): 2, str(tags): 1}
    assert len(ds.movies) == len(tiny_world.dataset.movies) + 3 - 2


def test_bad_csv_header_and_mode(tmp_path):
    path = _write(tmp_path / "ratings.csv", "user,movie,rating,time\n1,1,4.0,1\n")
    with pytest.raises(
        DataFormatError, match=r"ratings\.csv:1: expected the header userId,movieId,rating,timestamp"
    ):
        M.read_ratings_file(path, "csv")
    with pytest.raises(ValueError, match="on_bad_lines"):
        M.read_ratings_file(path, "csv", on_bad_lines="ignore")


# --- missing files ------------------------------------------------------------------------------------


def test_missing_files(tiny_world, tmp_path):
    with pytest.raises(MissingDataFileError, match=r"u\.data"):
        M.load_ml100k(tmp_path)
    M.write_ml100k(tiny_world.dataset, tmp_path / "a")
    (tmp_path / "a" / "u.item").unlink()
    with pytest.raises(MissingDataFileError, match=r"u\.item") as err:
        M.load_ml100k(tmp_path / "a")
    assert err.value.path == str(tmp_path / "a" / "u.item")
    (tmp_path / "a" / "u.genre").unlink()  # optional
    M.write_ml1m(tiny_world.dataset, tmp_path / "b")
    (tmp_path / "b" / "users.dat").unlink()
    with pytest.raises(MissingDataFileError, match=r"users\.dat"):
        M.load_ml1m(tmp_path / "b")
    with pytest.raises(MissingDataFileError, match=r"ratings\.csv"):
        M.load_ml_csv(tmp_path / "c")
    with pytest.raises(MissingDataFileError, match=r"u1\.base"):
        M.read_ratings_file(tmp_path / "u1.base", "ml-100k")


# --- writers across vocabularies ----------------------------------------------------------------------


def test_writers_map_vocabularies(half_star_world, tmp_path):
    """A ratings-only ML-25M-style dataset written as ML-100K / ML-1M: the documented mappings."""
    ds = half_star_world.dataset
    ratings_only = S.Dataset(name="ml-25m", ratings=ds.ratings, movies=ds.movies, rating_scale=(0.5, 5.0))
    M.write_ml100k(ratings_only, tmp_path / "100k")
    got = M.load_ml100k(tmp_path / "100k")
    want = np.clip(np.ceil(ds.ratings[S.RATING].to_numpy()), 1, 5)  # half stars round up
    np.testing.assert_array_equal(got.ratings[S.RATING].to_numpy(), want)
    assert len(got.users) == ds.ratings[S.USER_ID].nunique()  # users made from the ratings, with defaults
    movies = _by_id(got.movies, S.MOVIE_ID).loc[ds.movies[S.MOVIE_ID]]
    for loaded, original in zip(movies[S.GENRES], ds.movies[S.GENRES], strict=True):
        mapped = {"Children's" if g == "Children" else g for g in original} - {"IMAX"}
        assert set(loaded) == (mapped or {"unknown"})

    M.write_ml1m(ratings_only, tmp_path / "1m")
    got = M.load_ml1m(tmp_path / "1m")
    assert set(got.users[S.AGE]) == {25.0} and set(got.users[S.OCCUPATION]) == {"other or not specified"}
    assert all("IMAX" not in gs and "Children" not in gs for gs in got.movies[S.GENRES])


def test_ml25m_genome_files(half_star_world, tmp_path):
    M.write_ml_csv(half_star_world.dataset, tmp_path, name="ml-25m")
    tags = pd.read_csv(tmp_path / "genome-tags.csv")
    scores = pd.read_csv(tmp_path / "genome-scores.csv")
    assert list(tags.columns) == ["tagId", "tag"] and list(scores.columns) == [
        "movieId",
        "tagId",
        "relevance",
    ]
    assert len(scores) == len(tags) * (len(half_star_world.dataset.movies) + 3)
    assert scores["relevance"].between(0, 1).all()
    M.write_ml_csv(half_star_world.dataset, tmp_path / "small", name="ml-latest-small")
    assert not (tmp_path / "small" / "genome-scores.csv").exists()
    with pytest.raises(ValueError):
        M.write_ml_csv(half_star_world.dataset, tmp_path / "x", name="ml-100k")
