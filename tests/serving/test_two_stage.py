"""Two-stage serving (index candidates re-scored by the ranking SavedModel), ranking exports of every
head, and the cold start from features given at request time."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrs_movies.config import load_config
from tfrs_movies.data.splits import random_split
from tfrs_movies.models.registry import build_model
from tfrs_movies.recommend import main
from tfrs_movies.serving.export import export_model, export_run
from tfrs_movies.serving.load import ServingError, load_export

pytestmark = pytest.mark.slow  # writes SavedModels for every ranking head

K_MAX = 30  # the shared exported_multitask fixture's (tests/conftest.py)
UNKNOWN_USER = 10**7


@pytest.fixture(scope="module")
def multitask(fitted_multitask, exported_multitask):
    return fitted_multitask, exported_multitask


def test_a_multitask_run_exports_retrieval_and_ranking_together(multitask):
    model, path = multitask
    assert path.name == "export" and (path / "ranking" / "saved_model.pb").is_file()
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["ranking"]["output"] == "rating"
    assert manifest["user_feature_inputs"]["gender"]["values"] == sorted(
        set(model.space.user_table["gender"]) - {""}
    )


def test_two_stages_are_the_default_and_match_the_in_memory_pipeline(multitask):
    model, path = multitask
    served = load_export(path)
    for user in model.users[:6]:
        result = served.recommend(user, 5, "brute_force", candidates=20)
        # In memory: the retrieval top 20 (seen removed), each scored z(retrieval) + 0.25 z(rating).
        candidates, retrieval = model.recommend([user], 20)
        predicted = model.predict(np.full(20, user), candidates[0])
        blended = (retrieval[0] - retrieval[0].mean()) / retrieval[0].std()
        blended += 0.25 * (predicted - predicted.mean()) / predicted.std()
        order = np.argsort(-blended, kind="stable")[:5]
        assert result.frame.movie_id.tolist() == candidates[0][order].tolist()
        assert (result.frame.stage == "ranking").all()
        np.testing.assert_allclose(result.frame.score, blended[order], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(result.frame.rating, predicted[order], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(result.frame.retrieval_score, retrieval[0][order], rtol=1e-5, atol=1e-5)
        assert "two stages" in result.note and "20 candidates" in result.note and "0.25" in result.note
    # Weight 0 keeps the retrieval order; a large weight orders by the predicted rating.
    user = model.users[0]
    candidates, _ = model.recommend([user], 20)
    zero = served.recommend(user, 5, "brute_force", candidates=20, rerank_weight=0)
    assert zero.frame.movie_id.tolist() == candidates[0][:5].tolist()
    by_rating = served.recommend(user, 20, "brute_force", candidates=20, rerank_weight=1e6).frame
    assert np.all(np.diff(by_rating.rating.to_numpy()) <= 1e-6)
    with pytest.raises(ServingError, match="rerank weight"):
        served.recommend(user, 5, rerank_weight=-1)


def test_retrieval_only_answers_like_the_retrieval_score(multitask):
    model, path = multitask
    served = load_export(path)
    user = model.users[3]
    result = served.recommend(user, 7, "brute_force", rerank=False)
    expected, _ = model.recommend([user], 7)
    assert result.frame.movie_id.tolist() == expected[0].tolist()
    assert (result.frame.stage == "retrieval").all() and result.note is None


def test_candidates_must_lie_between_k_and_k_max(multitask):
    _, path = multitask
    served = load_export(path)
    user = 1
    for bad in (4, K_MAX + 1, 2.5):
        with pytest.raises(ServingError, match="candidates must be"):
            served.recommend(user, 5, "brute_force", candidates=bad)


def test_pair_with_a_ranking_model_aggregates_two_stage_scores(multitask):
    model, path = multitask
    served = load_export(path)
    a, b = (int(u) for u in model.users[:2])
    seen = set(served.seen_movies(a)) | set(served.seen_movies(b))
    average = served.recommend_pair(a, b, 8, "average", "brute_force", candidates=20).frame
    misery = served.recommend_pair(a, b, 8, "least_misery", "brute_force", candidates=20).frame
    assert not set(average.movie_id) & seen
    np.testing.assert_allclose(average.score, (average[f"score_{a}"] + average[f"score_{b}"]) / 2, rtol=1e-6)
    np.testing.assert_allclose(misery.score, np.minimum(misery[f"score_{a}"], misery[f"score_{b}"]))
    assert "two-stage score" in served.recommend_pair(a, b, 8, "average", "brute_force", candidates=20).note
    # Weight 0: each user's column is their standardised retrieval score, as without a ranking model.
    plain = served.recommend_pair(a, b, 8, "average", "brute_force", rerank=False).frame
    assert set(plain.stage) == {"retrieval"}


def test_cold_start_from_features_goes_through_the_query_tower(multitask):
    model, path = multitask
    served = load_export(path)
    result = served.recommend(UNKNOWN_USER, 6, "brute_force", features={"gender": "F", "age": 31})
    assert result.cold_start and "features given (gender F, age 31)" in result.note
    # The in-memory user tower on the same raw features, dotted with the movie embeddings.
    features = model.space.user_rows(np.array([UNKNOWN_USER]))
    features.update({"user_id": np.array([""], dtype=object), "gender": np.array(["F"], dtype=object)})
    features.update({"age": np.array([31.0], np.float32), "age_bucket": np.array(["25-34"], dtype=object)})
    query = model.model.user_tower({k: tf.constant(v) for k, v in features.items()}).numpy()
    scores = (query @ model.movie_embeddings().T)[0]
    assert result.frame.movie_id.tolist() == model.catalogue[np.argsort(-scores, kind="stable")[:6]].tolist()
    # ScaNN answers from the same embedding.
    assert served.recommend(UNKNOWN_USER, 6, "scann", features={"gender": "F", "age": 31}).cold_start


def test_cold_start_without_usable_features_is_popularity(multitask):
    _, path = multitask
    served = load_export(path)
    plain = served.recommend(UNKNOWN_USER, 5, "brute_force")
    assert plain.cold_start and (plain.frame.stage == "popularity").all()
    unused = served.recommend(UNKNOWN_USER, 5, "brute_force", features={"occupation": "writer"})
    assert "uses none of the features given (occupation" in unused.note
    assert unused.frame.movie_id.tolist() == plain.frame.movie_id.tolist()
    with pytest.raises(ServingError, match="unknown gender 'X'"):
        served.recommend(UNKNOWN_USER, 5, features={"gender": "X"})
    with pytest.raises(ServingError, match="age must be"):
        served.recommend(UNKNOWN_USER, 5, features={"age": "old"})


def test_cli_two_stages_cold_start_and_another_runs_ranking(multitask, tiny_world, tmp_path, capsys):
    model, path = multitask
    user = str(model.users[0])
    assert main(["--model", str(path), "--user", user, "--k", "4", "--candidates", "12", "--index",
                 "brute_force", "--format", "json"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert len(rows) == 4 and {r["stage"] for r in rows} == {"ranking"} and "retrieval_score" in rows[0]
    assert "two stages" in captured.err
    assert main(["--model", str(path), "--user", str(UNKNOWN_USER), "--gender", "M", "--age", "40"]) == 0
    assert "features given (age 40, gender M)" in capsys.readouterr().out
    assert main(["--model", str(path), "--user", user, "--k", "10", "--candidates", "5"]) == 2
    assert capsys.readouterr().err.startswith("error: candidates must be between k (10)")

    # A retrieval-only export re-scored by the multitask run's ranking model.
    retrieval = build_model(load_config(None, {"model.name": "retrieval", "model.embedding_dim": 8,
                                              "train.epochs": 1, "train.verbose": 0}))  # fmt: skip
    retrieval.fit(tiny_world.dataset.ratings, tiny_world.dataset)
    plain = export_model(retrieval, tiny_world.dataset, tmp_path / "export", k_max=K_MAX)
    assert main(["--model", str(plain), "--user", user, "--format", "csv", "--index", "brute_force"]) == 0
    assert set(pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out)).stage) == {"retrieval"}
    args = ["--model", str(plain), "--ranking", str(path), "--user", user, "--format", "csv"]
    assert main([*args, "--index", "brute_force"]) == 0
    frame = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert set(frame.stage) == {"ranking"}
    np.testing.assert_allclose(
        frame.rating, model.predict(np.full(len(frame), int(user)), frame.movie_id), rtol=1e-5, atol=1e-5
    )
    assert main(["--model", str(plain), "--ranking", str(tmp_path), "--user", user]) == 2
    assert "no ranking SavedModel" in capsys.readouterr().err


@pytest.mark.parametrize(
    "overrides",
    [
        {"model.name": "ranking", "model.params.head": "cosine"},
        {"model.name": "rating_classifier", "model.user_features": ["id", "gender"]},
        {"model.name": "dnn_multi_embedding"},
    ],
    ids=["cosine", "rating_classifier", "dnn_multi_embedding"],
)
def test_every_ranking_head_exports_what_predict_returns(tiny_world, tmp_path, overrides):
    split = random_split(tiny_world.dataset.ratings, 0.2, seed=42)
    config = {"train.epochs": 1, "train.verbose": 0, "model.embedding_dim": 8, **overrides}
    model = build_model(load_config(None, config))
    model.fit(split.train, tiny_world.dataset)
    path = export_run(model, tiny_world.dataset, tmp_path) / "ranking"
    info = json.loads((path / "ranking.json").read_text())
    assert info["output"] == model.output
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    users = np.concatenate([split.test.user_id.to_numpy()[:200], [10**8, 10**8, model.users[0]]])
    movies = np.concatenate([split.test.movie_id.to_numpy()[:200], [model.catalogue[0], 10**8, 10**8]])
    got = serve(user_id=tf.constant(users.astype(str)), movie_id=tf.constant(movies.astype(str)))
    np.testing.assert_allclose(got[model.output].numpy(), model.predict(users, movies), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got["score"].numpy(), got[model.output].numpy())


def test_ranking_from_features_answers_like_the_id_signature(multitask):
    """``from_features`` takes the side features themselves; fed the tables' own rows for trained
    users and movies it gives what ``serving_default`` gives from the ids."""
    model, path = multitask
    served = tf.saved_model.load(str(path / "ranking"))
    users = np.repeat(model.users[:10], 3)
    movies = np.tile(model.catalogue[model.trained_movies][:3], 10)
    features = {**model.space.user_rows(users), **model.space.movie_rows(movies)}
    tensors = {name: tf.constant(values) for name, values in features.items()}
    got = served.signatures["from_features"](**tensors)["rating"].numpy()
    by_id = served.signatures["serving_default"](
        user_id=tf.constant(users.astype(str)), movie_id=tf.constant(movies.astype(str))
    )["rating"].numpy()
    np.testing.assert_allclose(got, by_id, rtol=1e-5, atol=1e-5)
    # A new user described only by features still gets a rating from the towers, within the scale.
    new = {**tensors, "user_id": tf.constant(["new"] * len(users))}
    rating = served.signatures["from_features"](**new)["rating"].numpy()
    assert np.all((rating >= 1) & (rating <= 5)) and not np.allclose(rating, got)
    info = json.loads((path / "ranking" / "ranking.json").read_text())
    assert info["rerank_weight"] == 0.25 and "gender" in info["from_features"]
