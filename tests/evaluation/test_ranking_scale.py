"""The evaluator at any size: batches bounded by the catalogue, top K a few rows at a time, relevance
looked up sparse, a seeded sample of users; the same figures as a dense reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.evaluation import ranking
from tfrs_movies.evaluation.metrics import ranking_metrics
from tfrs_movies.evaluation.ranking import (
    FullRankingEvaluator,
    interaction_matrix,
    rows_per_block,
    sparse_hits,
    top_k_indices,
)


def _ratings(rng, n_users, n_movies, n, t0=0):
    frame = pd.DataFrame({
        S.USER_ID: rng.integers(1, n_users + 1, n), S.MOVIE_ID: rng.integers(1, n_movies + 1, n),
        S.RATING: rng.integers(1, 6, n).astype(float), S.TIMESTAMP: np.full(n, t0),
    })  # fmt: skip
    return S.canonical_ratings(frame)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    train, test = _ratings(rng, 120, 90, 3000), _ratings(rng, 120, 90, 600, t0=1)
    catalogue = np.arange(1, 96)  # a few movies nobody rated
    user_f = rng.standard_normal((121, 8)).astype(np.float32)
    movie_f = rng.standard_normal((len(catalogue), 8)).astype(np.float32)
    return train, test, catalogue, lambda users: user_f[users] @ movie_f.T


def _dense_reference(train, test, catalogue, score, ks, threshold=None):
    """EVALUATION.md done the obvious way: the whole score matrix, dense masks, a full sort."""
    relevant_frame = test if threshold is None else test[test[S.RATING] >= threshold]
    users = np.sort(relevant_frame[S.USER_ID].unique())
    relevant = interaction_matrix(relevant_frame, users, catalogue).toarray() > 0
    users, relevant = users[relevant.any(1)], relevant[relevant.any(1)]
    scores = score(users).astype(np.float64)
    scores[interaction_matrix(train, users, catalogue).toarray() > 0] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, : max(ks)]
    hits = np.take_along_axis(relevant, top, axis=1)
    out = {k: float(v.mean()) for k, v in ranking_metrics(hits, relevant.sum(1), ks).items()}
    # novelty: -log2(ratings of the movie in train / training users), a movie nobody rated as rated once
    rated = train[S.MOVIE_ID].value_counts().reindex(catalogue, fill_value=0).to_numpy()
    information = -np.log2(np.maximum(rated, 1) / train[S.USER_ID].nunique())
    for k in ks:
        out[f"coverage@{k}"] = len(np.unique(top[:, :k])) / len(catalogue)
        out[f"novelty@{k}"] = float(np.mean([information[row].mean() for row in top[:, :k]]))
        x = np.sort([(top[:, :k] == item).sum() for item in range(len(catalogue))])  # Gini, term by term
        n = len(x)
        out[f"gini@{k}"] = sum((2 * i - n - 1) * x[i - 1] for i in range(1, n + 1)) / (n * x.sum())
    out["users"] = len(users)
    return out


@pytest.mark.parametrize("block_bytes", [1, 4 * 95 * 7, ranking.SCORE_BLOCK_BYTES])
@pytest.mark.parametrize("threshold", [None, 4])
def test_batched_figures_equal_the_dense_reference(problem, block_bytes, threshold, monkeypatch):
    train, test, catalogue, score = problem
    monkeypatch.setattr(ranking, "_TOP_K_BLOCK_BYTES", 8 * 95 * 3)  # top K three rows at a time
    evaluator = FullRankingEvaluator(train, test, catalogue, ks=[5, 10], relevance_threshold=threshold)
    asked = []

    def counting(users):
        asked.append(len(users))
        return score(users)

    got = evaluator.evaluate(counting, batch_size=50, block_bytes=block_bytes)
    expected = _dense_reference(train, test, catalogue, score, [5, 10], threshold)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
    assert max(asked) == min(50, max(1, block_bytes // (4 * 95))) and sum(asked) == got["users"]


def test_rows_per_block_bounds_the_score_block():
    assert rows_per_block(59_047) == 256 * 2**20 // (4 * 59_047) == 1136  # ML-25M: the 512 asked decides
    assert rows_per_block(59_047, 512) == 512
    assert rows_per_block(1682, 512) == 512
    assert rows_per_block(10**9, 512) == 1  # never zero
    assert rows_per_block(1000, 512, block_bytes=4 * 1000 * 7) == 7


def test_top_k_in_row_blocks_equals_one_pass(monkeypatch):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(37, 50)).astype(np.float32)  # many ties
    whole = top_k_indices(scores, 7)
    monkeypatch.setattr(ranking, "_TOP_K_BLOCK_BYTES", 8 * 50 * 4)
    np.testing.assert_array_equal(top_k_indices(scores, 7), whole)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(  # the k best values, best first
        np.take_along_axis(scores, whole, axis=1), np.take_along_axis(scores, order, axis=1)
    )


def test_sparse_hits_equal_a_dense_lookup():
    rng = np.random.default_rng(1)
    dense = rng.random((30, 40)) < 0.1
    dense[3] = False  # a row with nothing relevant
    matrix = interaction_matrix(
        pd.DataFrame({S.USER_ID: np.nonzero(dense)[0], S.MOVIE_ID: np.nonzero(dense)[1], S.RATING: 1.0}),
        np.arange(30), np.arange(40),
    )  # fmt: skip
    columns = rng.integers(0, 40, size=(30, 6))
    np.testing.assert_array_equal(sparse_hits(matrix, columns), np.take_along_axis(dense, columns, axis=1))
    empty = interaction_matrix(pd.DataFrame({S.USER_ID: [], S.MOVIE_ID: [], S.RATING: []}), np.arange(2),
                               np.arange(5))  # fmt: skip
    assert not sparse_hits(empty, np.zeros((2, 3), np.int64)).any()


def test_max_users_ranks_a_seeded_sample(problem):
    train, test, catalogue, score = problem
    everyone = FullRankingEvaluator(train, test, catalogue, ks=[10])
    sample = FullRankingEvaluator(train, test, catalogue, ks=[10], max_users=25, seed=4)
    again = FullRankingEvaluator(train, test, catalogue, ks=[10], max_users=25, seed=4)
    other = FullRankingEvaluator(train, test, catalogue, ks=[10], max_users=25, seed=5)
    assert len(sample.users) == 25 and sample.candidate_users == len(everyone.users)
    assert np.isin(sample.users, everyone.users).all() and (np.diff(sample.users) > 0).all()
    np.testing.assert_array_equal(sample.users, again.users)
    assert not np.array_equal(sample.users, other.users)
    # The figures of the sample are those of the test restricted to the sampled users.
    restricted = FullRankingEvaluator(train, test[test[S.USER_ID].isin(sample.users)], catalogue, ks=[10])
    assert sample.evaluate(score) == restricted.evaluate(score)
    more_than_everyone = FullRankingEvaluator(train, test, catalogue, max_users=10**6)
    np.testing.assert_array_equal(more_than_everyone.users, everyone.users)


def test_eval_max_users_config_key_reaches_the_evaluation(tiny_world, tiny_split):
    from tfrs_movies.models.registry import build_model
    from tfrs_movies.training.experiment import evaluate

    with pytest.raises(ConfigError, match="'eval.max_users'"):
        load_config(None, {"eval.max_users": -1})
    assert load_config(None, {})["eval"]["max_users"] == 0
    config = load_config(None, {"model.name": "popularity", "eval.max_users": 30})
    model = build_model(config).fit(tiny_split.train, tiny_world.dataset)
    assert evaluate(model, tiny_split, config)["users"] == 30
    everyone = evaluate(model, tiny_split, load_config(None, {"model.name": "popularity"}))["users"]
    assert everyone > 30
