"""IMDb readers and enrichment on generated TSVs in the exact layout (see FORMATS.md)."""

from __future__ import annotations

import dataclasses
import gzip

import numpy as np
import pandas as pd
import pytest

from tfrs_movies import schema as S
from tfrs_movies.data.errors import DataFormatError, MissingDataFileError
from tfrs_movies.data.imdb import (
    IMDB_GENRE_TUPLE,
    MATCHED,
    deinvert_title,
    enrich_with_imdb,
    iter_imdb,
    normalize_imdb_id,
    normalize_title,
    read_title_basics,
    read_title_principals,
    title_keys,
    write_imdb,
)

IMDB_COLUMNS = [S.IMDB_ID, S.RUNTIME, S.IMDB_RATING, S.IMDB_VOTES, S.DIRECTORS, S.ACTORS]


@pytest.fixture(scope="module")
def imdb(tiny_world, tmp_path_factory):
    return write_imdb(tiny_world.dataset, tmp_path_factory.mktemp("imdb"), gzip=True)


@pytest.fixture(scope="module")
def imdb_plain(tiny_world, tmp_path_factory):
    return write_imdb(tiny_world.dataset, tmp_path_factory.mktemp("imdb-plain"), gzip=False)


def _without_imdb(dataset: S.Dataset) -> S.Dataset:
    return dataclasses.replace(dataset, movies=dataset.movies.drop(columns=IMDB_COLUMNS))


def _assert_matches_truth(movies: pd.DataFrame, truth: pd.DataFrame, check_ids: bool = True) -> None:
    matched = truth[MATCHED].to_numpy()
    if check_ids:
        got = [i if m else None for i, m in zip(movies[S.IMDB_ID], matched, strict=True)]
        assert got == [i if m else None for i, m in zip(truth[S.IMDB_ID], matched, strict=True)]
    for col in (S.RUNTIME, S.IMDB_RATING, S.IMDB_VOTES):
        np.testing.assert_array_equal(movies[col].to_numpy(np.float32), truth[col].to_numpy(np.float32))
        assert movies[col].dtype == np.float32
    for col in (S.DIRECTORS, S.ACTORS):
        assert movies[col].tolist() == truth[col].tolist()


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Usual Suspects, The (1995)", ("the usual suspects", 1995)),
        ("Misérables, Les (1995)", ("les miserables", 1995)),
        ("Homme du train, L' (2002)", ("lhomme du train", 2002)),
        ("Vita è bella, La (1997)", ("la vita e bella", 1997)),
        ("Blechtrommel, Die (1979)", ("die blechtrommel", 1979)),
        ("Boot, Das (1981)", ("das boot", 1981)),
        ("Postino, Il (1994)", ("il postino", 1994)),
        ("American President, The (1995)", ("the american president", 1995)),
        ("Schindler's List (1993)", ("schindlers list", 1993)),
        ("Face/Off (1997)", ("face off", 1997)),
        ("Star Wars: Episode IV - A New Hope (1977)", ("star wars episode iv a new hope", 1977)),
        ("I, Robot (2004)", ("i robot", 2004)),
        ("Fawlty Towers (1975-1979)", ("fawlty towers", 1975)),
        ("Sabrina (1995) ", ("sabrina", 1995)),
        ("Black Mirror", ("black mirror", None)),
        ("Crouching Tiger, Hidden Dragon (Wo hu cang long) (2000)", ("crouching tiger hidden dragon", 2000)),
    ],
)
def test_normalize_title(title, expected):
    assert normalize_title(title) == expected


def test_title_keys_include_alternative_titles():
    keys = title_keys("City of Lost Children, The (Cité des enfants perdus, La) (1995)")
    assert keys[0] == "the city of lost children"
    assert "la cite des enfants perdus" in keys
    assert "se7en" in title_keys("Seven (a.k.a. Se7en) (1995)")
    assert deinvert_title("Usual Suspects, The") == "The Usual Suspects"
    assert deinvert_title("Homme du train, L'") == "L'Homme du train"
    assert deinvert_title("Me, Myself and Irene") == "Me, Myself and Irene"


def test_normalize_imdb_id():
    assert normalize_imdb_id("0114709") == "tt0114709"
    assert normalize_imdb_id(114709) == "tt0114709"
    assert normalize_imdb_id("tt0114709") == "tt0114709"
    assert normalize_imdb_id(114709.0) == "tt0114709"
    assert normalize_imdb_id("tt10872600") == "tt10872600"
    assert (
        normalize_imdb_id(None) is None
        and normalize_imdb_id(np.nan) is None
        and normalize_imdb_id("") is None
    )


def test_reader_nulls_quotes_gzip_and_plain(imdb, imdb_plain):
    assert imdb.paths["title.basics"].name == "title.basics.tsv.gz"
    assert imdb_plain.paths["title.basics"].name == "title.basics.tsv"
    with gzip.open(imdb.paths["title.basics"], "rt", encoding="utf-8") as fh:
        raw = fh.read()
    assert '\t"Quoted" Unrelated Feature 0\t' in raw and "\\N" in raw
    gz = pd.concat(iter_imdb(imdb.out_dir, "title.basics", chunk_rows=17))
    plain = pd.concat(iter_imdb(imdb_plain.out_dir, "title.basics"))
    pd.testing.assert_frame_equal(gz.reset_index(drop=True), plain.reset_index(drop=True))
    assert len(gz) == raw.count("\n") - 1  # a leading quote swallows no lines
    quoted = gz[gz["primaryTitle"].str.startswith('"')]
    assert quoted["primaryTitle"].tolist() == ['"Quoted" Unrelated Feature 0']
    assert gz["endYear"].isna().any() and not (gz["endYear"] == "\\N").any()
    assert gz["primaryTitle"].str.contains('"Secret"|"Silent"|"Last"', regex=True).any()
    principals = pd.concat(iter_imdb(imdb.out_dir, "title.principals"))
    assert principals["characters"].str.contains('"', regex=False).any() and principals["job"].isna().any()


def test_reader_only_nulls_backslash_n(tmp_path):
    (tmp_path / "title.ratings.tsv").write_text(
        "tconst\taverageRating\tnumVotes\ntt1\tNA\t\\N\ntt2\tnull\t5\n"
    )
    frame = next(iter_imdb(tmp_path, "title.ratings"))
    assert frame["averageRating"].tolist() == ["NA", "null"]
    assert frame["numVotes"].isna().tolist() == [True, False]


def test_reader_bad_line_named(tmp_path):
    rows = "".join(f"tt{i}\t7.0\t{i}\n" for i in range(1, 10))
    (tmp_path / "title.ratings.tsv").write_text(
        "tconst\taverageRating\tnumVotes\n" + rows + "tt99\t1\t2\t3\n"
    )
    with pytest.raises(DataFormatError) as err:
        list(iter_imdb(tmp_path, "title.ratings", chunk_rows=4))
    assert err.value.line_number == 11 and err.value.path.endswith("title.ratings.tsv")
    frames = list(iter_imdb(tmp_path, "title.ratings", chunk_rows=4, on_bad_lines="skip"))
    assert sum(map(len, frames)) == 9


def test_reader_missing_file(tmp_path):
    with pytest.raises(MissingDataFileError, match="title.basics"):
        list(iter_imdb(tmp_path, "title.basics"))


def test_filtered_readers(imdb):
    truth = imdb.truth[imdb.truth[MATCHED]]
    wanted = truth[S.IMDB_ID].iloc[:5].tolist()
    basics = read_title_basics(imdb.out_dir, wanted, chunk_rows=7)
    assert sorted(basics["tconst"]) == sorted(wanted)
    principals = read_title_principals(imdb.out_dir, wanted, chunk_rows=11)
    assert set(principals["tconst"]) == set(wanted)
    assert set(principals["category"]) <= {"actor", "actress"}
    assert principals.groupby("tconst")["ordering"].apply(lambda s: s.is_monotonic_increasing).all()


def test_enrich_by_imdb_id(tiny_world, imdb):
    out = enrich_with_imdb(tiny_world.dataset, imdb.out_dir, chunk_rows=64)
    truth = imdb.truth
    _assert_matches_truth(out.movies, truth)
    n = len(truth)
    assert out.report["imdb_matched"] == n - len(imdb.absent_movie_ids) == truth[MATCHED].sum()
    assert out.report["imdb_matched_share"] == pytest.approx(imdb.matched_share, abs=1e-6)
    assert 0.8 < imdb.matched_share < 1.0
    assert out.report["imdb_matched_by_id"] == out.report["imdb_matched"]
    # Absent movies keep the id they were linked by (it is the link, even if IMDb lacks it).
    assert out.movies[S.IMDB_ID].tolist() == tiny_world.dataset.movies[S.IMDB_ID].tolist()
    # The source genres are kept: the movies have their own.
    assert out.movies[S.GENRES].tolist() == tiny_world.dataset.movies[S.GENRES].tolist()
    assert out.genres == tiny_world.dataset.genres


def test_enrich_by_title_and_year(tiny_world, imdb):
    out = enrich_with_imdb(_without_imdb(tiny_world.dataset), imdb.out_dir, chunk_rows=50)
    truth = imdb.truth
    _assert_matches_truth(out.movies, truth)
    absent = out.movies[S.MOVIE_ID].isin(imdb.absent_movie_ids)
    assert out.movies.loc[absent, S.IMDB_ID].isna().all()  # the decoys (TV series, other years) stayed out
    assert out.movies.loc[~absent, S.IMDB_ID].notna().all()
    assert out.report["imdb_matched_share"] == pytest.approx(imdb.matched_share, abs=1e-6)
    assert out.report["imdb_matched_by_title"] == truth[MATCHED].sum()
    assert out.report["imdb_matched_by_near_year"] == len(imdb.shifted_movie_ids) > 0
    assert out.report["source"] == tiny_world.dataset.report["source"]  # the old report is kept


def test_enrich_with_links_frame(tiny_world, imdb):
    movies = tiny_world.dataset.movies
    links = pd.DataFrame({S.MOVIE_ID: movies[S.MOVIE_ID], S.IMDB_ID: movies[S.IMDB_ID].str[2:]})  # "0114709"
    out = enrich_with_imdb(_without_imdb(tiny_world.dataset), imdb.out_dir, links=links)
    _assert_matches_truth(out.movies, imdb.truth)
    assert out.report["imdb_matched_by_id"] == imdb.truth[MATCHED].sum()


def test_enrich_fills_missing_genres_and_extends_vocabulary(tiny_world, imdb_plain):
    movies = tiny_world.dataset.movies.drop(columns=IMDB_COLUMNS)
    movies[S.GENRES] = [() if i % 2 else g for i, g in enumerate(movies[S.GENRES])]
    dataset = dataclasses.replace(tiny_world.dataset, movies=movies)
    out = enrich_with_imdb(dataset, imdb_plain.out_dir)
    truth = imdb_plain.truth
    pairs = zip(out.movies[S.GENRES], movies[S.GENRES], truth[IMDB_GENRE_TUPLE], strict=True)
    for i, (got, own, imdb_genres) in enumerate(pairs):
        assert got == (imdb_genres if i % 2 else own)
    assert "Family" in out.genres and out.genres[: len(dataset.genres)] == dataset.genres


def test_enrich_never_crashes_on_unmatched(tiny_world, tmp_path):
    no_movies = dataclasses.replace(tiny_world.dataset, movies=tiny_world.dataset.movies.iloc[:0])
    write_imdb(no_movies, tmp_path, noise_titles=5)  # only unrelated titles
    out = enrich_with_imdb(_without_imdb(tiny_world.dataset), tmp_path)
    assert out.report["imdb_matched"] == 0 and out.report["imdb_matched_share"] == 0.0
    assert out.movies[S.IMDB_ID].isna().all() and out.movies[S.RUNTIME].isna().all()
    assert (out.movies[S.ACTORS] == ()).all()


def test_netflix_titles_enriched(tiny_world, imdb, tmp_path):
    """Netflix titles carry no year in the title (it is a column, sometimes NULL) and are not inverted."""
    from tfrs_movies.data.netflix import load_netflix, write_netflix

    files = write_netflix(tiny_world.dataset, tmp_path)
    netflix = load_netflix(tmp_path, use_cache=False)
    out = enrich_with_imdb(netflix, imdb.out_dir)
    has_year = files.movies[S.YEAR].notna().to_numpy()
    expected = imdb.truth[MATCHED].to_numpy() & has_year  # NULL years cannot be linked by title
    assert out.report["imdb_matched"] == expected.sum()
    assert out.movies[S.IMDB_ID].notna().tolist() == expected.tolist()
    filled = [g for g, e in zip(out.movies[S.GENRES], expected, strict=True) if e]
    assert all(isinstance(g, tuple) for g in filled) and sum(map(len, filled)) > 0
