"""``python -m tfrs_movies.recommend``: titles, years and scores in three formats; seen movies left out;
cold start said in one line; every error one ``error:`` line with exit status 2, never a traceback."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfrs_movies.config import load_config
from tfrs_movies.models.registry import build_model
from tfrs_movies.recommend import main
from tfrs_movies.serving.export import export_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tiny_world, tmp_path_factory):
    config = {"model.name": "retrieval", "model.embedding_dim": 8, "train.epochs": 1, "train.verbose": 0}
    model = build_model(load_config(None, config))
    model.fit(tiny_world.dataset.ratings, tiny_world.dataset)
    path = export_model(model, tiny_world.dataset, tmp_path_factory.mktemp("cli") / "export", k_max=20)
    return model, path


def test_table_lists_titles_years_and_scores_without_seen_movies(setup, capsys):
    model, path = setup
    user = int(model.users[0])
    assert main(["--model", str(path), "--user", str(user), "--k", "5", "--index", "brute_force"]) == 0
    out = capsys.readouterr().out
    expected, _ = model.recommend([user], 5)
    titles = model_titles(path, expected[0])
    assert all(title in out for title in titles)
    assert "score" in out and "year" in out


def model_titles(path, movie_ids):
    import pandas as pd

    movies = pd.read_csv(path / "movies.csv").set_index("movie_id")
    return movies.loc[list(movie_ids), "title"].tolist()


def test_json_and_csv_formats_and_include_seen(setup, capsys):
    model, path = setup
    user = int(model.users[1])
    seen = set(model.catalogue[model.seen_mask([user]).indices].tolist())
    assert main(["--model", str(path), "--user", str(user), "--k", "20", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 20 and set(rows[0]) == {"movie_id", "title", "year", "score", "stage"}
    assert not {r["movie_id"] for r in rows} & seen
    args = ["--model", str(path), "--user", str(user), "--k", "20", "--format", "csv", "--include-seen"]
    assert main([*args, "--index", "brute_force"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    expected, _ = model.recommend([user], 20, exclude_seen=False)
    assert [int(r["movie_id"]) for r in rows] == expected[0].tolist()


def test_unknown_user_gets_a_cold_start_line(setup, capsys):
    model, path = setup
    assert main(["--model", str(path), "--user", "987654", "--k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum("unknown" in line for line in out) == 1 and "popular" in out[0]
    top = model.catalogue[np.argsort(-model.popularity, kind="stable")[:3]]
    assert all(title in "\n".join(out) for title in model_titles(path, top))


def test_similar_movies(setup, capsys):
    model, path = setup
    assert (
        main(["--model", str(path), "--similar", str(model.catalogue[0]), "--k", "4", "--format", "json"])
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and int(model.catalogue[0]) not in [r["movie_id"] for r in rows]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--user", "abc"], "bad user id"),
        (["--user", "1", "--k", "0"], "k must be between 1 and 20"),
        (["--user", "1", "--k", "21"], "k must be between 1 and 20"),
        (["--similar", "999999"], "unknown movie id 999999"),
    ],
)
def test_errors_are_one_line_and_exit_2(setup, capsys, args, words):
    _, path = setup
    assert main(["--model", str(path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("error: ") and words in err[0]


@pytest.mark.slow
def test_missing_export_in_a_real_process_prints_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "tfrs_movies.recommend", "--model", str(tmp_path / "none"), "--user", "1"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"error: export directory {tmp_path / 'none'} does not exist" in done.stderr


def test_pair_excludes_both_users_seen_movies_and_aggregations_differ(setup, capsys):
    from tfrs_movies.serving.load import load_export

    model, path = setup
    exported = load_export(path)
    a, b = int(model.users[0]), int(model.users[1])
    seen = set(exported.seen_movies(a)) | set(exported.seen_movies(b))
    average = exported.recommend_pair(a, b, 10, "average", "brute_force")
    misery = exported.recommend_pair(a, b, 10, "least_misery", "brute_force")
    for result in (average, misery):
        assert len(result.frame) == 10 and not seen & set(result.frame["movie_id"])
        assert (result.frame["score"].diff().dropna() <= 1e-9).all()
    assert "average" in average.note and "least_misery" in misery.note
    # Least misery scores a movie by the less happy viewer, never above the average of the two.
    assert misery.frame["score"].iloc[0] <= average.frame["score"].iloc[0] + 1e-9
    assert main(["--model", str(path), "--pair", str(a), str(b), "--aggregation", "least_misery",
                 "--index", "brute_force"]) == 0  # fmt: skip
    assert "least_misery" in capsys.readouterr().out


def test_users_file_writes_one_csv_for_the_batch(setup, tmp_path, capsys):
    model, path = setup
    users = [int(model.users[0]), int(model.users[1]), 10**9]
    ids = tmp_path / "users.csv"
    ids.write_text("user_id\n" + "\n".join(str(u) for u in users) + "\n")
    out = tmp_path / "recs.csv"
    assert main(["--model", str(path), "--users-file", str(ids), "--k", "3", "--index", "brute_force",
                 "--out", str(out)]) == 0  # fmt: skip
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 9
    assert [r["rank"] for r in rows[:3]] == ["1", "2", "3"]
    expected, _ = model.recommend([users[0]], 3)
    assert [int(r["movie_id"]) for r in rows[:3]] == list(expected[0])
    assert {r["cold_start"] for r in rows[6:]} == {"True"}
