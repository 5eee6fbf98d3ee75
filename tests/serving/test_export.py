"""The serving export: SavedModels with brute-force and ScaNN indexes answer like the in-memory model,
in a fresh process, for any k up to k_max, with exclusion; the export is atomic and self-describing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrs_movies.config import load_config
from tfrs_movies.models.registry import build_model
from tfrs_movies.serving.export import export_run
from tfrs_movies.serving.load import ServingError, load_export

REPO = Path(__file__).resolve().parents[2]
K_MAX = 40  # the shared exported_retrieval fixture's (tests/conftest.py)


@pytest.fixture(scope="module")
def fitted(fitted_retrieval):
    return fitted_retrieval


@pytest.fixture(scope="module")
def exported(exported_retrieval):
    return exported_retrieval


def test_export_layout_and_manifest(exported, fitted):
    names = {p.name for p in exported.iterdir()}
    assert {"query_tower", "brute_force", "scann", "movies.csv", "movie_embeddings.npy", "seen.npz"} <= names
    assert {"popularity.npy", "manifest.json", "similar.npz"} <= names
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["k_max"] == K_MAX
    assert manifest["vocabulary"]["movies"] == len(fitted.catalogue)
    assert manifest["vocabulary"]["users"] == len(fitted.users)
    assert manifest["versions"]["tensorflow"] == tf.__version__
    assert all(manifest["versions"][name] for name in ("tfrs_movies", "scann", "tensorflow_recommenders"))
    assert manifest["indexes"]["scann"]["num_leaves"] >= 2
    assert manifest["config"]["model"]["name"] == "retrieval" and manifest["form"] == "dot"
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


FRESH = """
import json, sys
import tfrs_movies
from tfrs_movies.serving.load import load_export
e = load_export(sys.argv[1])
users = [int(u) for u in sys.argv[2].split(",")]
out = {idx: {str(u): e.recommend(u, 10, idx).frame.movie_id.tolist() for u in users}
       for idx in ("brute_force", "scann")}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_fresh_process_answers_like_the_in_memory_model(exported, fitted):
    users = fitted.users[:25]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", FRESH, str(exported), ",".join(map(str, users))],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    expected, _ = fitted.recommend(users, 10)
    recall = []
    for row, user in enumerate(users):
        assert answers["brute_force"][str(user)] == expected[row].tolist()
        recall.append(len(set(answers["scann"][str(user)]) & set(expected[row])) / 10)
    assert np.mean(recall) >= 0.8


@pytest.mark.parametrize("k", [1, 7, K_MAX])
def test_exclusion_and_any_k_after_loading(exported, fitted, k):
    served = load_export(exported)
    for user in fitted.users[:5]:
        seen = set(fitted.catalogue[fitted.seen_mask([user]).indices])
        expected, scores = fitted.recommend([user], k)
        got = served.recommend(user, k, "brute_force").frame
        assert got.movie_id.tolist() == expected[0].tolist()
        np.testing.assert_allclose(got.score, scores[0], rtol=1e-4, atol=1e-5)
        scann = served.recommend(user, k, "scann").frame
        assert len(scann) == k and not set(scann.movie_id) & seen
        with_seen, _ = fitted.recommend([user], k, exclude_seen=False)
        assert served.recommend(user, k, "brute_force", include_seen=True).frame.movie_id.tolist() == (
            with_seen[0].tolist()
        )


def test_signature_takes_explicit_exclusions(exported, fitted):
    module = tf.saved_model.load(str(exported / "brute_force"))
    serve = module.signatures["serving_default"]
    users = tf.constant([str(u) for u in fitted.users[:2]])
    full = serve(user_id=users, k=tf.constant(5), exclude=tf.constant([[""], [""]]))
    first = full["movie_ids"].numpy()[:, 0]
    masked = serve(user_id=users, k=tf.constant(5), exclude=tf.constant([[first[0]], [first[1]]]))
    assert masked["movie_ids"].shape == (2, 5)
    assert first[0] not in masked["movie_ids"].numpy()[0] and first[1] not in masked["movie_ids"].numpy()[1]
    np.testing.assert_array_equal(masked["movie_ids"].numpy()[:, :4], full["movie_ids"].numpy()[:, 1:])
    unknown = serve(user_id=users, k=tf.constant(5), exclude=tf.constant([["nope", ""], ["", "x"]]))
    np.testing.assert_array_equal(unknown["movie_ids"].numpy(), full["movie_ids"].numpy())


def test_query_tower_savedmodel_serves_raw_features(exported, fitted):
    serve = tf.saved_model.load(str(exported / "query_tower")).signatures["serving_default"]
    rows = fitted.space.user_rows(fitted.users[:3])
    features = {name: tf.constant(value) for name, value in rows.items()}
    np.testing.assert_allclose(
        serve(**features)["embedding"].numpy(), fitted.user_embeddings(fitted.users[:3]), rtol=1e-4, atol=1e-5
    )


def test_unknown_user_gets_popularity_cold_start(exported, fitted):
    result = load_export(exported).recommend(10**9, 5)
    assert result.cold_start and "unknown" in result.note
    top = fitted.catalogue[np.argsort(-fitted.popularity, kind="stable")[:5]]
    assert result.frame.movie_id.tolist() == top.tolist()


def test_similar_movies_match_the_model(exported, fitted):
    movie = fitted.catalogue[3]
    expected, _ = fitted.similar_movies([movie], 5)
    got = load_export(exported).similar(movie, 5).frame
    assert got.movie_id.tolist() == expected[0].tolist() and movie not in got.movie_id.tolist()
    assert got.title.str.len().gt(0).all()


def test_request_errors_are_one_line_serving_errors(exported):
    served = load_export(exported)
    cases = [
        (lambda: served.recommend("abc", 5), "bad user id"),
        (lambda: served.recommend(1, 0), "between 1 and"),
        (lambda: served.recommend(1, K_MAX + 1), "between 1 and"),
        (lambda: served.recommend(1, 5, "annoy"), "unknown index"),
        (lambda: served.similar(10**9, 5), "unknown movie id"),
        (lambda: served.similar("x", 5), "bad movie id"),
    ]
    for call, words in cases:
        with pytest.raises(ServingError, match=words) as info:
            call()
        assert "\n" not in str(info.value)


def test_missing_or_corrupted_exports_are_clear_errors(exported, tmp_path):
    with pytest.raises(ServingError, match="does not exist"):
        load_export(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "brute_force" / "saved_model.pb").unlink()
    with pytest.raises(ServingError, match="missing brute_force/saved_model.pb"):
        load_export(broken)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(exported, corrupt)
    (corrupt / "manifest.json").write_text("{not json")
    with pytest.raises(ServingError, match="corrupted"):
        load_export(corrupt)
    garbage = tmp_path / "garbage"
    shutil.copytree(exported, garbage)
    (garbage / "scann" / "saved_model.pb").write_bytes(b"garbage")
    served = load_export(garbage)
    with pytest.raises(ServingError, match="cannot load the scann index"):
        served.recommend(int(np.load(garbage / "seen.npz")["users"][0]), 3, "scann")
    with pytest.raises(ServingError, match="is a run directory; its export is"):
        load_export(exported.parent)


@pytest.mark.slow
def test_export_run_replaces_an_existing_export_atomically(fitted, tiny_world, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "export").mkdir(parents=True)
    (run_dir / "export" / "stale.txt").write_text("old")
    path = export_run(fitted, tiny_world.dataset, run_dir, k_max=10, metrics={"recall@10": 0.5})
    assert path == run_dir / "export" and not (path / "stale.txt").exists()
    assert json.loads((path / "manifest.json").read_text())["metrics"] == {"recall@10": 0.5}
    assert sorted(p.name for p in run_dir.iterdir()) == ["export"]
    assert load_export(path).recommend(fitted.users[0], 10).frame.shape[0] == 10


@pytest.mark.slow
def test_export_run_on_a_real_experiment(tmp_path):
    from tfrs_movies.training.experiment import run_experiment

    config = load_config(
        None,
        {
            "data.name": "synthetic", "data.synthetic.users": 60, "data.synthetic.movies": 50,
            "data.synthetic.ratings": 1500, "model.embedding_dim": 8, "train.epochs": 1,
            "train.verbose": 0, "run_dir": str(tmp_path / "run"),
        },
    )  # fmt: skip
    result = run_experiment(config, say=lambda *_: None)
    path = result.run_dir / "export"  # the run exports itself (export.enabled)
    assert path == tmp_path / "run" / "export"
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["metrics"]["model"] == "retrieval" and manifest["config"]["run_dir"] == str(
        tmp_path / "run"
    )
    user = int(result.model.users[0])
    expected, _ = result.model.recommend([user], 5)
    assert load_export(path).recommend(user, 5, "brute_force").frame.movie_id.tolist() == expected[0].tolist()


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        {"model.params.head": "concat"},
        {"model.params.head": "dot_sigmoid", "model.user_features": ["id", "gender", "age"],
         "model.movie_features": ["id", "genres"]},
    ],
    ids=["concat", "dot_sigmoid_side_features"],
)  # fmt: skip
def test_rating_savedmodel_predicts_like_the_model(tiny_world, tmp_path, overrides):
    from tfrs_movies.data.splits import random_split

    split = random_split(tiny_world.dataset.ratings, 0.2, seed=42)
    config = {"model.name": "ranking", "train.epochs": 1, "train.verbose": 0, "model.embedding_dim": 8}
    model = build_model(load_config(None, {**config, **overrides}))
    model.fit(split.train, tiny_world.dataset)
    path = export_run(model, tiny_world.dataset, tmp_path)
    assert path == tmp_path / "export"
    assert json.loads((path / "manifest.json").read_text())["form"] == "scorer"
    assert not (path / "scann").exists()  # a ranking head's score is no dot product
    serve = tf.saved_model.load(str(path / "ranking")).signatures["serving_default"]
    users = np.concatenate([split.test.user_id.to_numpy()[:200], [10**8, 10**8, model.users[0]]])
    movies = np.concatenate([split.test.movie_id.to_numpy()[:200], [model.catalogue[0], 10**8, 10**8]])
    got = serve(user_id=tf.constant(users.astype(str)), movie_id=tf.constant(movies.astype(str)))["rating"]
    np.testing.assert_allclose(got.numpy(), model.predict(users, movies), rtol=1e-5, atol=1e-5)
    # Its index already orders by the predicted rating: one stage, labelled so, as the model ranks.
    answer = load_export(path).recommend(model.users[0], 5)
    assert set(answer.frame.stage) == {"ranking"} and "retrieval_score" not in answer.frame
    assert answer.frame.movie_id.tolist() == model.recommend([model.users[0]], 5)[0][0].tolist()


@pytest.mark.slow
def test_catalogue_mask_exclusion_path_gives_the_same_answers(fitted, tiny_world, tmp_path, monkeypatch):
    """Large fetches (brute force over a big catalogue) exclude through a catalogue mask instead of a
    pairwise comparison; force that path on the tiny catalogue and check it answers the same."""
    import tfrs_movies.serving.export as export_module

    monkeypatch.setattr(export_module, "PAIRWISE_EXCLUSION_MAX", 0)
    path = export_module.export_model(fitted, tiny_world.dataset, tmp_path / "export", k_max=K_MAX)
    served = load_export(path)
    for user in fitted.users[:5]:
        expected, _ = fitted.recommend([user], 7)
        assert served.recommend(user, 7, "brute_force").frame.movie_id.tolist() == expected[0].tolist()
