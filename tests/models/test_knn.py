"""``knn_baseline``: its similarities and neighbourhood terms against hand-worked numbers, its predictions
against a plain per-pair loop (Surprise's KNNBaseline algorithm), its fallbacks and its served scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.models.baselines.knn import neighbour_terms, pearson_baseline
from tfrs_movies.models.registry import build_model


def test_pearson_baseline_by_hand():
    # Residuals (users x movies); "." is unrated:
    #   u0:  1   1   .
    #   u1: -1  -1   2
    #   u2:  2   .  -1
    # (0, 1): common u0, u1: 2 / sqrt(2 * 2) = 1, n = 2, shrunk by (2 - 1) / (2 - 1 + 1) -> 0.5
    # (0, 2): common u1, u2: (-2 - 2) / sqrt(5 * 5) = -0.8, shrunk -> -0.4
    # (1, 2): one common user (n - 1 = 0) -> 0
    rows, cols = np.array([0, 0, 1, 1, 1, 2, 2]), np.array([0, 1, 0, 1, 2, 0, 2])
    values = np.array([1.0, 1.0, -1.0, -1.0, 2.0, 2.0, -1.0])
    residual = sp.csr_matrix((values, (rows, cols)), shape=(3, 3))
    expected = np.array([[0.0, 0.5, -0.4], [0.5, 0.0, 0.0], [-0.4, 0.0, 0.0]])
    np.testing.assert_allclose(pearson_baseline(residual, shrinkage=1.0), expected, atol=1e-6)
    # Without shrinkage the (1, 2) pair still has n - 1 = 0: no similarity from one common user.
    np.testing.assert_allclose(pearson_baseline(residual, shrinkage=0.0)[0], [0.0, 1.0, -0.8], atol=1e-6)


def test_pearson_baseline_keeps_zero_residuals_as_rated():
    # u1 rated movie 0 with residual exactly 0: it is a common user of (0, 1) (n = 2), so the pair is
    # similar (1 * 1 + 0 * 3) / sqrt(1 * 10) shrunk by 1 / (1 + 1); dropped, n would be 1 and s 0.
    residual = sp.csr_matrix(
        (np.array([1.0, 1.0, 0.0, 3.0]), (np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])))
    )
    assert pearson_baseline(residual, 1.0)[0, 1] == pytest.approx(1 / np.sqrt(10) / 2, rel=1e-6)


def test_neighbour_terms_by_hand():
    similarity = np.array([[0.5, 0.2, -0.3]])  # one wanted movie against three rated ones
    residuals = np.array([1.0, -2.0, 4.0])
    # k = 2: the two most similar, (0.5 * 1 + 0.2 * -2) / (0.5 + 0.2) = 0.1 / 0.7
    assert neighbour_terms(similarity, residuals, k=2, min_k=1)[0] == pytest.approx(0.1 / 0.7)
    # k = 3: the negative similarity is a neighbour but does not count (Surprise)
    assert neighbour_terms(similarity, residuals, k=3, min_k=1)[0] == pytest.approx(0.1 / 0.7)
    assert neighbour_terms(similarity, residuals, k=1, min_k=1)[0] == pytest.approx(1.0)
    assert neighbour_terms(similarity, residuals, k=3, min_k=3)[0] == 0.0  # two positive < min_k
    assert neighbour_terms(-np.abs(similarity), residuals, k=3, min_k=1)[0] == 0.0  # none positive


def _ratings(seed: int = 3, users: int = 12, movies: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    mask = rng.random((users, movies)) < 0.6
    mask[np.arange(users), np.arange(users) % movies] = True
    rows, cols = np.nonzero(mask)
    return S.canonical_ratings(pd.DataFrame({
        S.USER_ID: rows + 1, S.MOVIE_ID: cols + 101, S.RATING: rng.integers(1, 6, len(rows)).astype(float),
        S.TIMESTAMP: np.zeros(len(rows), dtype=np.int64),
    }))  # fmt: skip


def _fit(ratings: pd.DataFrame, **params):
    movies = pd.DataFrame({S.MOVIE_ID: np.arange(101, 111)})  # movie 110 has no ratings
    dataset = S.Dataset(name="synthetic", ratings=ratings, movies=movies, rating_scale=(-100.0, 100.0))
    config = load_config(
        None, {"model.name": "knn_baseline", **{f"model.params.{k}": v for k, v in params.items()}}
    )
    return build_model(config).fit(ratings, dataset)


def _loop_prediction(model, ratings: pd.DataFrame, user: int, movie: int, k: int, min_k: int) -> float:
    """Surprise's KNNBaseline estimate for one pair, written as a plain loop over the user's ratings."""
    u = int(np.searchsorted(model.users, user))
    i = int(np.searchsorted(model.catalogue, movie))
    baseline = model.global_mean + model.user_bias[u] + model.movie_bias[i]
    neighbours = []
    for _, row in ratings[ratings[S.USER_ID] == user].iterrows():
        j = int(np.searchsorted(model.catalogue, row[S.MOVIE_ID]))
        residual = row[S.RATING] - (model.global_mean + model.user_bias[u] + model.movie_bias[j])
        neighbours.append((float(model.similarity[i, j]), residual))
    neighbours = sorted(neighbours, key=lambda t: -t[0])[:k]
    positive = [(s, e) for s, e in neighbours if s > 0]
    if len(positive) < min_k or not positive:
        return baseline
    return baseline + sum(s * e for s, e in positive) / sum(s for s, _ in positive)


@pytest.mark.parametrize(("k", "min_k"), [(2, 1), (40, 1), (3, 2)])
def test_predictions_match_the_per_pair_loop(k, min_k):
    ratings = _ratings()
    model = _fit(ratings, k=k, min_k=min_k, shrinkage=2.0)
    users, movies = np.repeat(model.users, 9), np.tile(np.arange(101, 110), len(model.users))
    expected = [_loop_prediction(model, ratings, u, m, k, min_k) for u, m in zip(users, movies, strict=True)]
    np.testing.assert_allclose(model.predict(users, movies), expected, rtol=1e-5, atol=1e-5)
    # score() gives the same numbers over the whole catalogue
    scores = model.score(model.users)[:, :9].ravel()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_unknown_users_and_movies_fall_back_to_the_biases():
    model = _fit(_ratings(), k=5)
    mu = model.global_mean
    movie_bias = model.movie_bias[np.searchsorted(model.catalogue, 102)]
    user_bias = model.user_bias[0]
    predicted = model.predict(np.array([999, 1, 999]), np.array([102, 999, 999]))
    np.testing.assert_allclose(predicted, [mu + movie_bias, mu + user_bias, mu], rtol=1e-5)
    # A movie nobody rated is in the catalogue with no similarity: the baseline.
    unrated = model.predict(np.array([1]), np.array([110]))
    assert unrated[0] == pytest.approx(mu + user_bias + model.movie_bias[-1], rel=1e-5)


def test_served_scores_match_score_for_known_and_unknown_users():
    import tensorflow as tf

    model = _fit(_ratings(), k=3)
    users = np.array([*model.users[:5], 999])
    served = model.serving_parts().scorer(tf.constant([str(u) for u in users])).numpy()
    np.testing.assert_allclose(served, _expected_scores(model, users), rtol=1e-4, atol=1e-4)


def _expected_scores(model, users: np.ndarray) -> np.ndarray:
    """score() for known users; the baseline ``mu + b_i`` (not popularity) for an unknown one."""
    known = np.isin(users, model.users)
    out = np.empty((len(users), len(model.catalogue)), np.float32)
    out[known] = model.score(users[known])
    out[~known] = model.global_mean + model.movie_bias[None, :]
    return out


def test_params_are_checked():
    with pytest.raises(ConfigError, match="model.params.k"):
        build_model(load_config(None, {"model.name": "knn_baseline", "model.params.k": 0}))
    with pytest.raises(ConfigError, match="model.params.shrinkage"):
        build_model(load_config(None, {"model.name": "knn_baseline", "model.params.shrinkage": -1.0}))


def test_similarities_larger_than_the_budget_are_refused_in_one_line():
    from tfrs_movies.models.baselines.memory import TooLargeError

    with pytest.raises(TooLargeError, match="movie similarities needs about") as caught:
        _fit(_ratings(), memory_gb=1e-9)
    assert "\n" not in str(caught.value)
