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


def test_main_finds_the_dataset_as_train_does(tiny_world, tmp_path, monkeypatch, capsys):
    """No --dataset: the config's default (ml-100k), resolved by the same function train uses; --dataset
    and --data-dir are passed on as data.name and data.dir."""
    configs = []

    def fake_resolve(config, say=print):
        configs.append(config["data"])
        say("data: the tiny world")
        return tiny_world.dataset

    monkeypatch.setattr(tfrs_movies.data, "resolve_dataset", fake_resolve)
    assert eda_main(["--out", str(tmp_path / "o")]) == 0
    assert configs[-1]["name"] == "ml-100k" and configs[-1]["dir"] is None
    out = capsys.readouterr()
    assert sorted(out.out.split()) == sorted(str(tmp_path / "o" / name) for name in ALL)
    assert out.err.strip() == "data: the tiny world"  # stdout holds only the paths written
    monkeypatch.setattr("tfrs_movies.eda.write_eda_plots", lambda dataset, out: [])  # plotted above
    status = eda_main(["--dataset", "ml-1m", "--data-dir", str(tmp_path / "d"), "--out", str(tmp_path / "p")])
    assert status == 0 and (configs[-1]["name"], configs[-1]["dir"]) == ("ml-1m", str(tmp_path / "d"))


def test_occupation_shares_sum_to_one_per_row(tiny_world):
    counts = eda.occupation_genre_counts(tiny_world.dataset)
    shares = eda.occupation_genre_shares(tiny_world.dataset)
    np.testing.assert_allclose(shares.sum(axis=1).to_numpy(), 1.0)
    assert shares.index[-1] == eda.ALL_OCCUPATIONS and set(shares.index[:-1]) == set(counts.index)
    assert shares.loc["student", "Drama"] == pytest.approx(
        counts.loc["student", "Drama"] / counts.loc["student"].sum()
    )
    overall = counts.sum(axis=0)
    assert shares.loc[eda.ALL_OCCUPATIONS, "Drama"] == pytest.approx(overall["Drama"] / overall.sum())
    assert list(shares.loc[eda.ALL_OCCUPATIONS]) == sorted(shares.loc[eda.ALL_OCCUPATIONS], reverse=True)
    per_occupation = eda.occupation_rating_counts(tiny_world.dataset)
    assert list(shares.index[:-1]) == list(per_occupation.sort_values(ascending=False, kind="stable").index)


def test_genre_panels_share_one_genre_axis(tiny_world, tmp_path, monkeypatch):
    """The genre chart: three panels over the same genres in the same order (one shared y axis), not two
    y axes over one set of bars."""
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(eda, "_save", lambda fig, path: figures.append(fig) or path)
    eda.plot_genres(tiny_world.dataset, tmp_path / "g.png")
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes] == ["ratings", "movies", "ratings per movie"]
    assert all(ax.get_shared_y_axes().joined(axes[0], ax) for ax in axes)
    counts = eda.genre_counts(tiny_world.dataset).sort_values("ratings", ascending=False)
    assert [t.get_text() for t in axes[0].get_yticklabels()] == list(counts.index)
    assert [bar.get_width() for bar in axes[1].patches] == list(counts["movies"])
    plt.close(figures[0])


@pytest.mark.ml100k
def test_genuine_ml100k_plots(ml100k_dir, tmp_path):
    try:
        dataset = tfrs_movies.data.load_dataset("ml-100k", ml100k_dir)
    except (AttributeError, ModuleNotFoundError) as err:  # the loaders are written alongside
        pytest.skip(f"ml-100k loader not available: {err}")
    written = eda.write_eda_plots(dataset, tmp_path)
    assert [p.name for p in written] == ALL
    assert eda.occupation_genre_counts(dataset).to_numpy().sum() > 100_000  # multi-genre movies count twice
