"""The sequence model served: its query tower in the top-K SavedModels, explanations and pair ratings
answer after a fresh load exactly like the in-memory model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrs_movies.config import load_config
from tfrs_movies.data.splits import leave_last_out_split
from tfrs_movies.models.registry import build_model
from tfrs_movies.serving.export import export_run
from tfrs_movies.serving.load import load_export
from tfrs_movies.serving.sequence import _signature, explain_movies, pair_ratings

pytestmark = pytest.mark.slow  # trains a sequence model and writes its SavedModels

CONFIG = {
    "model.name": "sequence", "model.embedding_dim": 16, "model.history_length": 6, "train.epochs": 1,
    "train.verbose": 0, "train.batch_size": 64, "model.params.num_blocks": 1,
    "model.params.rating_layers": [16], "model.params.pair_epochs": 1, "model.params.pairs_per_movie": 2,
    "model.user_features": ["gender", "age"], "model.movie_features": ["id", "genres"],
}  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tiny_world):
    split = leave_last_out_split(tiny_world.dataset.ratings)
    model = build_model(load_config(None, CONFIG))
    model.fit(split.train, tiny_world.dataset)
    model.update_seen(pd.concat([split.train, split.valid]))  # served histories: train + validation
    return model


@pytest.fixture(scope="module")
def exported(fitted, tiny_world, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    path = export_run(fitted, tiny_world.dataset, run_dir, k_max=20)
    entries = json.loads((path / "manifest.json").read_text())["extras"]
    _signature.cache_clear()
    return path, entries


def test_top_k_savedmodel_serves_the_sequence_query_tower(exported, fitted):
    path, _ = exported
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model"] == "sequence" and "seq_history" in manifest["user_features"]
    served = load_export(path)
    for user in fitted.users[:8]:
        expected, scores = fitted.recommend([user], 10)
        got = served.recommend(user, 10, "brute_force").frame
        assert got.movie_id.tolist() == expected[0].tolist()
        np.testing.assert_allclose(got.score, scores[0], rtol=1e-4, atol=1e-5)


def test_query_tower_savedmodel_reads_raw_histories(exported, fitted):
    path, _ = exported
    serve = tf.saved_model.load(str(path / "query_tower")).signatures["serving_default"]
    rows = fitted.user_rows(fitted.users[:4])
    got = serve(**{name: tf.constant(value) for name, value in rows.items()})["embedding"].numpy()
    np.testing.assert_allclose(got, fitted.user_embeddings(fitted.users[:4]), rtol=1e-4, atol=1e-5)


def test_explain_savedmodel_matches_the_model(exported, fitted):
    path, entries = exported
    assert entries["explain"]["weights"] == "target_attention" and entries["explain"]["history_length"] == 6
    user, movies = fitted.users[3], fitted.catalogue[:5]
    history, weights = fitted.explain(np.repeat(user, 5), movies)
    serve = tf.saved_model.load(str(path / "explain")).signatures["serving_default"]
    out = serve(user_id=tf.constant([str(user)] * 5), movie_id=tf.constant(movies.astype(str)))
    np.testing.assert_array_equal(out["history_ids"].numpy().astype(str), history.astype(str))
    np.testing.assert_allclose(out["weights"].numpy(), weights, rtol=1e-4, atol=1e-6)

    frame = explain_movies(path, user, movies, top=3)
    assert list(frame.columns) == ["movie_id", "rank", "watched_movie_id", "watched_title", "weight"]
    first = frame[frame.movie_id == str(movies[0])]
    best = np.argsort(-weights[0], kind="stable")[:3]
    assert first.watched_movie_id.tolist() == history[0][best].tolist()
    assert first["rank"].tolist() == [1, 2, 3] and (np.diff(first.weight) <= 0).all()
    assert first.watched_title.str.len().gt(0).all()
    assert explain_movies(path, 10**9, movies[:2]).empty  # unknown user: nothing watched


def test_pair_savedmodel_matches_the_model(exported, fitted):
    path, entries = exported
    assert entries["pair"]["path"] == "pair"
    a, b, movies = fitted.users[0], fitted.users[1], fitted.catalogue[:7]
    expected = fitted.predict_pair(np.repeat(a, 7), np.repeat(b, 7), movies)
    got = pair_ratings(path, a, b, movies)
    assert got.shape == (7,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pair_ratings(path, b, a, movies), got, atol=1e-5)


def test_missing_extras_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no pair/"):
        pair_ratings(tmp_path, 1, 2, [1])
    with pytest.raises(FileNotFoundError, match="no explain/"):
        explain_movies(tmp_path, 1, [1])


def test_recommend_explain_lists_the_most_weighted_watched_movies(exported, fitted, capsys, tmp_path):
    import shutil

    from tfrs_movies.recommend import main
    from tfrs_movies.serving.load import ServingError

    path, _ = exported
    user = str(fitted.users[2])
    args = ["--model", str(path), "--user", user, "--k", "4", "--index", "brute_force", "--retrieval-only"]
    assert main([*args, "--explain", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    history = set(fitted.user_rows(np.array([int(user)]))["seq_history"][0]) - {""}
    assert len(rows) == 4
    for row in rows:
        watched = row["because_you_watched"]
        assert 1 <= len(watched) <= 3 and {w["movie_id"] for w in watched} <= {int(m) for m in history}
        assert [w["weight"] for w in watched] == sorted((w["weight"] for w in watched), reverse=True)
    assert main([*args, "--explain", "2"]) == 0
    assert "because_you_watched" in capsys.readouterr().out
    assert main(["--model", str(path), "--similar", str(fitted.catalogue[0]), "--explain"]) == 2
    assert "--explain goes with --user" in capsys.readouterr().err
    plain = tmp_path / "no_explain"
    shutil.copytree(path, plain)
    shutil.rmtree(plain / "explain")
    with pytest.raises(ServingError, match="no attention explanations"):
        load_export(plain).explain(user, [fitted.catalogue[0]])


def test_pair_uses_the_exported_pair_model_for_the_average(exported, fitted):
    path, _ = exported
    served = load_export(path)
    a, b = (int(u) for u in fitted.users[:2])
    result = served.recommend_pair(a, b, 5, "average", "brute_force")
    assert set(result.frame.stage) == {"pair model"} and "pair model" in result.note
    np.testing.assert_allclose(
        result.frame.pair_rating, pair_ratings(path, a, b, result.frame.movie_id.to_numpy()), atol=1e-5
    )
    seen = set(served.seen_movies(a)) | set(served.seen_movies(b))
    assert not set(result.frame.movie_id) & seen
    misery = served.recommend_pair(a, b, 5, "least_misery", "brute_force")
    assert "pair_rating" not in misery.frame.columns  # the pair model predicts an average
    plain = served.recommend_pair(a, b, 5, "average", "brute_force", rerank=False)
    assert set(plain.frame.stage) == {"retrieval"} and "pair_rating" not in plain.frame.columns
