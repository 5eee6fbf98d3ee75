"""EDA plots: written, valid PNGs, and features the dataset lacks skip their plot instead of crashing."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest

import tfrs_movies.data
from tfrs_movies import schema as S
from tfrs_movies.data import eda
from tfrs_movies.eda import main as eda_main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL = [eda.GENRES_PNG, eda.USER_GENRES_PNG, eda.OCCUPATION_GENRE_PNG, eda.RATINGS_PNG]


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 10_000, f"{path} is suspiciously small ({len(data)} bytes)"


def test_writes_the_four_plots(tiny_world, tmp_path):
    written = eda.write_eda_plots(tiny_world.dataset, tmp_path / "eda")
    assert [p.name for p in written] == ALL
    for path in written:
        assert path.parent == tmp_path / "eda"
        assert_png(path)


def test_without_users_the_occupation_plot_is_skipped(tiny_world, tmp_path, caplog):
    dataset = dataclasses.replace(tiny_world.dataset, users=S.empty_users())
    with caplog.at_level(logging.INFO, logger="tfrs_movies.data.eda"):
        written = eda.write_eda_plots(dataset, tmp_path)
    assert [p.name for p in written] == [eda.GENRES_PNG, eda.USER_GENRES_PNG, eda.RATINGS_PNG]
    assert any(
        eda.OCCUPATION_GENRE_PNG in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records
    )
    for path in written:
        assert_png(path)


def test_without_genres_only_the_rating_plot_is_written(tiny_world, tmp_path):
    movies = tiny_world.dataset.movies.assign(**{S.GENRES: [()] * len(tiny_world.dataset.movies)})
    dataset = dataclasses.replace(tiny_world.dataset, movies=movies, genres=())
    assert [p.name for p in eda.write_eda_plots(dataset, tmp_path)] == [eda.RATINGS_PNG]


def test_counts_match_a_direct_computation(tiny_world):
    ds = tiny_world.dataset
    exploded = ds.ratings.merge(ds.movies[[S.MOVIE_ID, S.GENRES]], on=S.MOVIE_ID).explode(S.GENRES)
    counts = eda.genre_counts(ds)
    expected = exploded[S.GENRES].value_counts()
    for genre in ds.genres:
        assert counts.loc[genre, "ratings"] == expected.get(genre, 0)
    assert counts["movies"].sum() == sum(len(g) for g in ds.movies[S.GENRES])

    per_user = eda.user_genre_counts(ds)
    assert per_user.to_dict() == exploded.groupby(S.USER_ID)[S.GENRES].nunique().to_dict()

    occ = eda.occupation_genre_counts(ds)
    direct = exploded.merge(ds.users[[S.USER_ID, S.OCCUPATION]], on=S.USER_ID)
    direct = pd.crosstab(direct[S.OCCUPATION], direct[S.GENRES])
    assert occ.to_numpy().sum() == direct.to_numpy().sum()
    assert occ.loc["student", "Drama"] == direct.loc["student", "Drama"]


def test_half_star_scale_has_a_bar_per_half_star(tiny_world):
    ratings = tiny_world.dataset.ratings.copy()
    ratings[S.RATING] = np.float32(3.5)
    ratings.loc[ratings.index[:10], S.RATING] = np.float32(0.5)
    dataset = dataclasses.replace(tiny_world.dataset, ratings=ratings, rating_scale=(0.5, 5.0))
    values, counts = eda._rating_values(dataset)
    assert values.tolist() == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    assert counts[0] == 10 and counts[6] == len(ratings) - 10 and counts.sum() == len(ratings)

    whole = eda._rating_values(tiny_world.dataset)[0]
    assert whole.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_main_loads_the_named_dataset_and_writes(tiny_world, tmp_path, monkeypatch, capsys):
    calls = []

    def fake_load(name, data_dir=None, on_bad_lines="error"):
        calls.append((name, data_dir))
        return tiny_world.dataset

    monkeypatch.setattr(tfrs_movies.data, "load_dataset", fake_load, raising=False)
    status = eda_main(
        ["--dataset", "ml-100k", "--data-dir", str(tmp_path / "d"), "--out", str(tmp_path / "o")]
    )
    assert status == 0 and calls == [("ml-100k", str(tmp_path / "d"))]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(ALL)
    assert sorted(capsys.readouterr().out.split()) == sorted(str(tmp_path / "o" / name) for name in ALL)


@pytest.mark.ml100k
def test_genuine_ml100k_plots(ml100k_dir, tmp_path):
    try:
        dataset = tfrs_movies.data.load_dataset("ml-100k", ml100k_dir)
    except (AttributeError, ModuleNotFoundError) as err:  # the loaders are written alongside
        pytest.skip(f"ml-100k loader not available: {err}")
    written = eda.write_eda_plots(dataset, tmp_path)
    assert [p.name for p in written] == ALL
    assert eda.occupation_genre_counts(dataset).to_numpy().sum() > 100_000  # multi-genre movies count twice
