"""The classic baselines against closed forms on tiny matrices, and against EVALUATION.md on ML-100K."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrs_movies import schema as S
from tfrs_movies.config import load_config
from tfrs_movies.models.baselines import ease as ease_module
from tfrs_movies.models.baselines.biases import BiasesRecommender
from tfrs_movies.models.baselines.ease import EASERecommender
from tfrs_movies.models.baselines.impute import complete_matrix
from tfrs_movies.models.baselines.svd import truncated_svd
from tfrs_movies.models.registry import build_model


def _frame(matrix: np.ndarray, mask: np.ndarray) -> pd.DataFrame:
    """Ratings frame of ``matrix[mask]``; user ids 1..n, movie ids 101..100+m."""
    rows, cols = np.nonzero(mask)
    return S.canonical_ratings(
        pd.DataFrame(
            {
                S.USER_ID: rows + 1,
                S.MOVIE_ID: cols + 101,
                S.RATING: matrix[rows, cols],
                S.TIMESTAMP: np.zeros(len(rows), dtype=np.int64),
            }
        )
    )


def _fit(name: str, ratings: pd.DataFrame, scale=(-100.0, 100.0), **params):
    """Fit model ``name`` on ``ratings``; a wide rating scale by default so clipping never hides an error."""
    movies = pd.DataFrame({S.MOVIE_ID: np.sort(ratings[S.MOVIE_ID].unique())})
    dataset = S.Dataset(name="synthetic", ratings=ratings, movies=movies, rating_scale=scale)
    config = load_config(None, {"model.name": name, **{f"model.params.{k}": v for k, v in params.items()}})
    return build_model(config).fit(ratings, dataset)


def _low_rank(n: int, m: int, rank: int, seed: int = 0) -> np.ndarray:
    """An exactly rank-``rank`` (n, m) matrix with entries well inside 1..5 (centred on 3)."""
    rng = np.random.default_rng(seed)
    product = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, m))
    return 3.0 + product / np.abs(product).max()


def test_biases_solve_the_regularised_least_squares():
    rng = np.random.default_rng(1)
    matrix = rng.integers(1, 6, size=(8, 6)).astype(float)
    mask = rng.random((8, 6)) < 0.6
    mask[np.arange(6), np.arange(6)] = True  # every user and movie rated at least once
    ratings = _frame(matrix, mask)
    model = _fit("biases", ratings, reg_user=2.0, reg_movie=3.0, iterations=300)

    rows, cols = np.nonzero(mask)
    mu = matrix[mask].mean()
    # [one-hot users | one-hot movies] b = r - mu, with sqrt(reg) * I rows appended for the penalty.
    design = np.zeros((len(rows), 14))
    design[np.arange(len(rows)), rows] = 1.0
    design[np.arange(len(rows)), 8 + cols] = 1.0
    penalty = np.diag(np.r_[np.full(8, np.sqrt(2.0)), np.full(6, np.sqrt(3.0))])
    solution = np.linalg.lstsq(
        np.vstack([design, penalty]), np.r_[matrix[mask] - mu, np.zeros(14)], rcond=None
    )[0]
    assert model.global_mean == pytest.approx(mu)
    np.testing.assert_allclose(model.user_bias, solution[:8], atol=1e-8)
    np.testing.assert_allclose(model.movie_bias, solution[8:], atol=1e-8)

    # Per-pair predictions, with the bias-0 fallback for an unknown user / movie.
    predicted = model.predict(np.array([1, 1, 999, 999]), np.array([102, 999, 102, 999]))
    expected = [mu + solution[0] + solution[9], mu + solution[0], mu + solution[9], mu]
    np.testing.assert_allclose(predicted, expected, rtol=1e-5)


def test_biases_with_no_regularisation_fit_an_additive_matrix_exactly():
    user, movie = np.array([0.5, -0.5, 1.0, 0.0]), np.array([0.2, -0.4, 0.6])
    matrix = 3.0 + user[:, None] + movie[None, :]
    model = _fit("biases", _frame(matrix, np.ones_like(matrix, bool)), reg_user=0.0, reg_movie=0.0)
    np.testing.assert_allclose(model.score(np.arange(1, 5)), matrix, atol=1e-5)


def test_predictions_are_clipped_to_the_rating_scale():
    matrix = np.array([[5.0, 5.0], [1.0, 1.0]])
    model = _fit("biases", _frame(matrix, np.ones_like(matrix, bool)), scale=(2.0, 4.0), reg_user=0.0)
    assert model.predict(np.array([1, 2]), np.array([101, 101])).tolist() == [4.0, 2.0]


def test_svd_at_full_rank_reproduces_a_complete_matrix():
    rng = np.random.default_rng(2)
    matrix = rng.integers(1, 6, size=(12, 9)).astype(float)
    ratings = _frame(matrix, np.ones_like(matrix, bool))
    model = _fit("svd", ratings, rank=9)
    predicted = model.predict(ratings[S.USER_ID].to_numpy(), ratings[S.MOVIE_ID].to_numpy())
    np.testing.assert_allclose(predicted, ratings[S.RATING].to_numpy(), atol=1e-4)
    np.testing.assert_allclose(model.score(np.arange(1, 13)), matrix, atol=1e-4)


def test_truncated_svd_sparse_path_matches_dense():
    import scipy.sparse as sp

    matrix = np.random.default_rng(3).standard_normal((30, 20))
    u, s, v = truncated_svd(sp.csr_matrix(matrix), rank=5)
    u_dense, s_dense, vt_dense = np.linalg.svd(matrix)
    np.testing.assert_allclose(s, s_dense[:5], rtol=1e-8)
    np.testing.assert_allclose((u * s) @ v.T, (u_dense[:, :5] * s_dense[:5]) @ vt_dense[:5], atol=1e-8)


def _missing_error(estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    return float(np.linalg.norm((estimate - truth)[~mask]) / np.linalg.norm(truth[~mask]))


def test_hard_impute_recovers_an_exactly_low_rank_matrix():
    rng = np.random.default_rng(4)
    truth = rng.standard_normal((60, 3)) @ rng.standard_normal((3, 40))
    mask = rng.random((60, 40)) < 0.7
    rows, cols = np.nonzero(mask)
    user, movie, history = complete_matrix(rows, cols, truth[mask], (60, 40), rank=3, tol=1e-12)
    assert user.shape == (60, 3) and movie.shape == (40, 3)
    assert _missing_error(user @ movie.T, truth, mask) < 1e-4
    assert history["train_rmse"][-1] < 1e-5


def test_hard_impute_model_recovers_missing_ratings():
    truth = _low_rank(60, 40, 3, seed=5)
    mask = np.random.default_rng(5).random((60, 40)) < 0.7
    # Removing the biases adds at most rank 2 (mu + b_u 1^T + 1 b_i^T), hence rank 5.
    model = _fit("hard_impute", _frame(truth, mask), rank=5, tol=1e-12, max_iterations=500)
    assert _missing_error(model.score(np.arange(1, 61)), truth, mask) < 1e-3


def test_soft_impute_small_shrinkage_is_close_and_huge_shrinkage_leaves_the_biases():
    rng = np.random.default_rng(6)
    truth = rng.standard_normal((60, 3)) @ rng.standard_normal((3, 40))
    mask = rng.random((60, 40)) < 0.7
    rows, cols = np.nonzero(mask)
    user, movie, _ = complete_matrix(rows, cols, truth[mask], (60, 40), rank=10, shrinkage=1.0, tol=1e-9)
    assert _missing_error(user @ movie.T, truth, mask) < 0.1
    user, movie, _ = complete_matrix(rows, cols, truth[mask], (60, 40), rank=10, shrinkage=1e6)
    assert user.shape == (60, 0) and movie.shape == (40, 0)

    ratings = _frame(_low_rank(60, 40, 3, seed=6), mask)
    soft = _fit("soft_impute", ratings, shrinkage=1e6, reg_user=5.0, reg_movie=2.0)
    biases = _fit("biases", ratings, reg_user=5.0, reg_movie=2.0)
    assert soft.user_factors.shape[1] == 0
    np.testing.assert_allclose(soft.score(soft.users), biases.score(biases.users), atol=1e-6)


def test_ease_is_the_closed_form_and_scores_seen_items_too(monkeypatch):
    rng = np.random.default_rng(7)
    binary = (rng.random((10, 7)) < 0.4).astype(float)
    binary[np.arange(7), np.arange(7)] = 1.0  # every movie seen once, every user row non-empty
    binary[7:, 0] = 1.0
    ratings = _frame(np.full_like(binary, 4.0), binary > 0)
    model = _fit("ease", ratings, l2=2.5)
    assert isinstance(model, EASERecommender)

    inverse = np.linalg.inv(binary.T @ binary + 2.5 * np.eye(7))
    expected = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.weights, expected, rtol=1e-5, atol=1e-6)

    users = np.arange(1, 11)
    scores = model.score(users)
    np.testing.assert_allclose(scores, binary @ expected, rtol=1e-5, atol=1e-6)  # seen items too
    grid_users, grid_movies = np.meshgrid(users, np.arange(101, 108), indexing="ij")
    for gather_cost in (0, 10**6):  # per-pair sums over the history, then whole score rows
        monkeypatch.setattr(ease_module, "_GATHER_COST", gather_cost)
        np.testing.assert_allclose(
            model.predict(grid_users.ravel(), grid_movies.ravel()), scores.ravel(), rtol=1e-5, atol=1e-6
        )
    top, _ = model.recommend(users, k=1)  # the base class, not the model, removes seen items
    assert not binary[np.arange(10), top[:, 0] - 101].any()


@pytest.mark.ml100k
def test_ease_and_biases_reach_the_reference_figures_on_ml100k(ml100k_dir):
    from tfrs_movies.data.movielens import load_ml100k, read_ratings_file
    from tfrs_movies.evaluation.metrics import rmse
    from tfrs_movies.evaluation.ranking import FullRankingEvaluator

    dataset = load_ml100k(ml100k_dir)
    train = read_ratings_file(ml100k_dir / "u1.base", "ml-100k")
    test = read_ratings_file(ml100k_dir / "u1.test", "ml-100k")

    ease = build_model(load_config(None, {"model.name": "ease", "model.params.l2": 400.0}))
    ease.fit(train, dataset)
    figures = FullRankingEvaluator(train, test, ease.catalogue, ks=[10, 20]).evaluate(ease.score)
    assert figures["recall@20"] == pytest.approx(0.3072, abs=1e-3)
    assert figures["ndcg@10"] == pytest.approx(0.5659, abs=1e-3)

    surprise = {"model.params.reg_user": 15.0, "model.params.reg_movie": 10.0}  # BaselineOnly's ALS
    figures = []
    for overrides in [{}, surprise]:
        biases = build_model(load_config(None, {"model.name": "biases", **overrides})).fit(train, dataset)
        assert isinstance(biases, BiasesRecommender)
        predicted = biases.predict(test[S.USER_ID].to_numpy(), test[S.MOVIE_ID].to_numpy())
        figures.append(rmse(test[S.RATING].to_numpy(), predicted, biases.rating_scale))
    assert figures[0] < 0.96
    assert figures[1] == pytest.approx(0.9599, abs=5e-4)  # EVALUATION.md's Surprise BaselineOnly


def _ease_world(seed: int = 11, n_users: int = 40, n_movies: int = 12):
    """A binary world where movies have clearly different numbers of ratings."""
    rng = np.random.default_rng(seed)
    binary = rng.random((n_users, n_movies)) < np.linspace(0.7, 0.1, n_movies)[None, :]
    binary[np.arange(n_movies), np.arange(n_movies)] = True
    return binary, _frame(np.full(binary.shape, 4.0), binary)


def test_ease_refuses_in_one_line_before_allocating(monkeypatch):
    from tfrs_movies.config import ConfigError
    from tfrs_movies.models.baselines import memory

    _, ratings = _ease_world()
    calls = []
    monkeypatch.setattr(ease_module, "ease_weights", lambda *a: calls.append(a))
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)  # fits 8 movies: sqrt(900 / 12)
    for params, fits in [({}, 8), ({"max_movies": 10}, 8), ({"memory_gb": 1e-6, "max_movies": 12}, 9)]:
        with pytest.raises(memory.TooLargeError) as err:
            _fit("ease", ratings, **params)
        message = str(err.value)
        assert isinstance(err.value, ConfigError) and "\n" not in message
        movies = params.get("max_movies", 12)
        assert f"EASE on {movies} movies needs about" in message
        assert f"set model.params.max_movies to at most {fits} " in message and "'auto'" in message
    assert calls == []  # refused before the Gram matrix was built
    monkeypatch.setattr(memory, "available_bytes", lambda: 0)
    with pytest.raises(memory.TooLargeError):  # auto refuses too when not even one movie fits
        _fit("ease", ratings, max_movies="auto")
    assert calls == []
    with pytest.raises(ConfigError, match="model.params.max_movies"):
        _fit("ease", ratings, max_movies="most")


def test_ease_on_the_most_rated_movies_is_ease_on_their_columns(monkeypatch):
    from tfrs_movies.models.baselines import memory

    binary, ratings = _ease_world()
    counts = binary.sum(0)
    monkeypatch.setattr(memory, "available_bytes", lambda: int(12 * 5.5**2 / 0.9))  # 5 movies fit
    model = _fit("ease", ratings, l2=3.0, max_movies="auto")
    kept = np.sort(np.argsort(-counts, kind="stable")[:5])
    np.testing.assert_array_equal(model.kept, kept)
    assert model.weights.shape == (5, 5)

    # The same as plain EASE fitted on those movies' columns; every other movie scores 0.
    sub = binary[:, kept].astype(float)
    inverse = np.linalg.inv(sub.T @ sub + 3.0 * np.eye(5))
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    users = np.arange(1, len(binary) + 1)
    expected = np.zeros(binary.shape)
    expected[:, kept] = sub @ weights
    np.testing.assert_allclose(model.score(users), expected, rtol=1e-5, atol=1e-6)
    grid_users, grid_movies = np.meshgrid(users, 101 + np.arange(binary.shape[1]), indexing="ij")
    for gather_cost in (0, 10**6):  # per-pair sums and whole rows
        monkeypatch.setattr(ease_module, "_GATHER_COST", gather_cost)
        np.testing.assert_allclose(
            model.predict(grid_users.ravel(), grid_movies.ravel()), expected.ravel(), rtol=1e-5, atol=1e-6
        )
    same = _fit("ease", ratings, l2=3.0, max_movies=5, memory_gb=1.0)
    np.testing.assert_array_equal(same.weights, model.weights)


@pytest.mark.parametrize("max_movies", [12, 50, "auto"])
def test_ease_keeping_the_whole_catalogue_is_plain_ease(max_movies):
    binary, ratings = _ease_world()
    plain = _fit("ease", ratings, l2=3.0)
    kept = _fit("ease", ratings, l2=3.0, max_movies=max_movies)
    assert len(kept.kept) == binary.shape[1] and not kept.restricted
    np.testing.assert_array_equal(kept.weights, plain.weights)
    users = np.arange(1, len(binary) + 1)
    for a, b in zip(kept.recommend(users, k=5), plain.recommend(users, k=5), strict=True):
        np.testing.assert_array_equal(a, b)


def test_ease_gram_in_column_blocks_and_weights_in_row_blocks(monkeypatch):
    import scipy.sparse as sp

    binary, _ = _ease_world(n_users=60, n_movies=30)
    matrix = sp.csr_matrix(binary.astype(np.float32))
    whole = ease_module.ease_weights(matrix, 5.0)
    monkeypatch.setattr(ease_module, "_GRAM_BLOCK_BYTES", 12 * 30 * 4)  # 4 columns / rows per block
    np.testing.assert_array_equal(ease_module.gram_matrix(matrix), binary.T.astype(float) @ binary)
    np.testing.assert_allclose(ease_module.ease_weights(matrix, 5.0), whole, rtol=1e-6, atol=1e-7)
    assert ease_module.ease_bytes(59_047) == 12 * 59_047**2  # ML-25M: about 41.8 GB


def test_recommend_and_predict_in_user_blocks_equal_one_block(monkeypatch):
    from tfrs_movies.models import base

    binary, ratings = _ease_world()
    model = _fit("ease", ratings, l2=3.0)
    users = np.array([5, 1, 10**9, 7, 3, 2, 40, 9])  # an unknown user among them
    top, scores = model.recommend(users, k=4)
    pairs_u, pairs_m = np.repeat(users, 12), np.tile(101 + np.arange(12), len(users))
    predicted = base.Recommender.predict(model, pairs_u, pairs_m)
    monkeypatch.setattr(base, "rows_per_block", lambda *args, **kwargs: 3)
    blocked_top, blocked_scores = model.recommend(users, k=4)
    np.testing.assert_array_equal(blocked_top, top)
    np.testing.assert_array_equal(blocked_scores, scores)
    np.testing.assert_array_equal(base.Recommender.predict(model, pairs_u, pairs_m), predicted)
    np.testing.assert_allclose(predicted, model.score(users).ravel(), rtol=1e-6)


def test_hybrid_weight_search_ranks_a_sample_when_its_rows_would_not_fit(monkeypatch, tiny_world, tiny_split):
    from tfrs_movies.models import hybrid
    from tfrs_movies.models.baselines import memory

    ranked = []
    real = hybrid.FullRankingEvaluator

    def recording(*args, **kwargs):
        evaluator = real(*args, **kwargs)
        ranked.append(len(evaluator.users))
        return evaluator

    monkeypatch.setattr(hybrid, "FullRankingEvaluator", recording)
    config = load_config(None, {"model.name": "hybrid", "model.params.components": [
        {"model": "popularity", "set": {}},
        {"model": "ease", "set": {"model.params.l2": 10.0, "model.params.memory_gb": 1.0}},
    ]})  # fmt: skip
    build_model(config).fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
    n_movies = len(tiny_world.dataset.movies)
    # The search holds 2 components' rows + the blend + a copy: 4 float32 rows per user; room for 10.
    monkeypatch.setattr(memory, "available_bytes", lambda: int(np.ceil(16 * n_movies * 10 / 0.9)))
    model = build_model(config).fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
    assert ranked[0] > 10 and ranked[1] == 10
    assert len(model.weights) == 2 and np.isclose(model.weights.sum(), 1.0)


@pytest.mark.parametrize(
    ("name", "params"),
    [("svd", {"rank": 5}), ("svd", {"rank": 40}), ("soft_impute", {"max_rank": 5}),
     ("hard_impute", {"rank": 3})],  # fmt: skip
)
def test_factor_baselines_refuse_in_one_line_before_factorising(name, params, monkeypatch):
    from tfrs_movies.models.baselines import impute, memory, svd

    ratings = _frame(_low_rank(60, 40, 3), np.random.default_rng(2).random((60, 40)) < 0.5)
    calls = []
    monkeypatch.setattr(svd, "truncated_svd", lambda *a: calls.append(a))
    monkeypatch.setattr(impute, "complete_matrix", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(memory.TooLargeError) as err:
        _fit(name, ratings, **params)
    message = str(err.value)
    assert "\n" not in message and "needs about" in message and "rank" in message and calls == []
    assert svd.svd_bytes(60, 40, 40) == 16 * (60 * 40 + 100 * 40)  # the dense path
    assert svd.svd_bytes(162_541, 59_047, 10) == 8 * 31 * (162_541 + 59_047)


def test_edlae_is_ease_with_the_dropout_emphasis_ridge_and_its_full_rank_variant():
    binary, ratings = _ease_world()
    gram = binary.T.astype(float) @ binary
    l2, p = 3.0, 0.25
    ridge = np.diag(l2 + p / (1 - p) * np.diag(gram))  # Steck 2020: Lambda = l2 I + p/(1-p) diagMat(diag G)
    inverse = np.linalg.inv(gram + ridge)
    zero_diagonal = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(zero_diagonal, 0.0)
    model = _fit("ease", ratings, l2=l2, dropout=p)
    np.testing.assert_allclose(model.weights, zero_diagonal, rtol=1e-5, atol=1e-6)
    full = _fit("ease", ratings, l2=l2, dropout=p, full_rank=True)
    # Without the diagonal constraint: the ridge-like solution (G + Lambda)^-1 G = I - P Lambda.
    np.testing.assert_allclose(full.weights, inverse @ gram, rtol=1e-5, atol=1e-6)
    assert model.chosen == {"l2": l2, "dropout": p}


def test_ease_auto_l2_grid_scales_with_the_data_and_refits_the_validation_choice():
    binary, ratings = _ease_world(n_users=60, n_movies=15)
    grid = ease_module.l2_grid(binary)
    mean_count = binary.sum(0).mean()
    np.testing.assert_allclose(grid, [mean_count * m for m in ease_module.AUTO_L2_MULTIPLES])
    np.testing.assert_allclose(ease_module.l2_grid(np.vstack([binary, binary])), 2 * np.asarray(grid))

    model = _fit("ease", ratings, l2="auto")
    tried = model.chosen["grid"]
    best = max(tried, key=tried.get)
    assert best == f"l2={model.chosen['l2']:.6g},dropout=0"
    # The coarse grid, then the best one's neighbours at half and twice it.
    assert len(tried) == len(grid) + 2 - (model.chosen["l2"] in (grid[0] / 2, grid[-1] * 2))
    # Chosen on a validation share, then refitted on every rating it was given.
    refit = ease_module.ease_weights(model.seen, model.chosen["l2"])
    np.testing.assert_allclose(model.weights, refit, rtol=1e-6)


def _direct_ease(binary: np.ndarray, l2: float, full_rank: bool = False) -> np.ndarray:
    """B by an explicit float64 inverse (Steck's closed form), the reference for the fast paths."""
    inverse = np.linalg.inv(binary.T.astype(float) @ binary + l2 * np.eye(binary.shape[1]))
    if full_rank:
        return np.eye(len(inverse)) - l2 * inverse
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def _wide_world(seed: int, n_users: int, n_movies: int):
    """:func:`_ease_world` with fewer users than movies (each movie seen at least once)."""
    rng = np.random.default_rng(seed)
    binary = rng.random((n_users, n_movies)) < np.linspace(0.6, 0.1, n_movies)[None, :]
    binary[np.arange(n_movies) % n_users, np.arange(n_movies)] = True
    return binary, _frame(np.full(binary.shape, 4.0), binary)


def test_ease_user_gram_spectrum_is_the_direct_inverse_for_every_l2():
    import scipy.sparse as sp

    binary, _ = _wide_world(seed=11, n_users=15, n_movies=40)
    binary[3] = False  # a user with no ratings: a zero eigenvalue of X X^T
    matrix = sp.csr_matrix(binary.astype(np.float32))
    spectrum = ease_module.UserGramSpectrum(matrix)
    rows = matrix[[0, 4, 9, 14]]
    projected = spectrum.project(rows)
    for l2 in (0.25, 3.0, 200.0):
        inverse = np.linalg.inv(binary.T.astype(float) @ binary + l2 * np.eye(40))
        np.testing.assert_allclose(spectrum.diagonal(l2), np.diag(inverse), rtol=1e-10)
        for full_rank in (False, True):
            direct = _direct_ease(binary, l2, full_rank)
            np.testing.assert_allclose(spectrum.weights(l2, full_rank), direct, rtol=1e-5, atol=1e-6)
            scores = spectrum.scores(rows, projected, l2, full_rank)
            np.testing.assert_allclose(scores, rows.toarray() @ direct, rtol=1e-9, atol=1e-12)
    assert ease_module.spectrum_fits(15, 40) and ease_module.spectrum_fits(800, 1000)
    assert not ease_module.spectrum_fits(900, 1000) and not ease_module.spectrum_fits(40, 15)
    with pytest.raises(ValueError, match="l2 > 0"):
        spectrum.diagonal(0.0)


def test_ease_auto_l2_chooses_what_the_direct_inversion_chooses(monkeypatch):
    binary, ratings = _wide_world(seed=5, n_users=30, n_movies=60)
    assert ease_module.spectrum_fits(*binary.shape)
    built = []

    class Recorded(ease_module.UserGramSpectrum):
        def __init__(self, interactions):
            built.append(interactions.shape)
            super().__init__(interactions)

    monkeypatch.setattr(ease_module, "UserGramSpectrum", Recorded)
    fast = _fit("ease", ratings, l2="auto")
    assert len(built) == 2  # one shared by every validation candidate, one for the refit on everything
    np.testing.assert_allclose(fast.weights, _direct_ease(binary, fast.chosen["l2"]), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(ease_module, "spectrum_fits", lambda *shape: False)  # every l2 by its own inverse
    direct = _fit("ease", ratings, l2="auto")
    assert fast.chosen["l2"] == direct.chosen["l2"]
    assert fast.chosen["grid"].keys() == direct.chosen["grid"].keys()
    figures = [list(model.chosen["grid"].values()) for model in (fast, direct)]
    np.testing.assert_allclose(*figures, atol=1e-6)
    np.testing.assert_allclose(fast.weights, direct.weights, rtol=1e-5, atol=1e-6)


def test_ease_candidate_lists_pick_the_best_validation_figure_by_coordinate_search():
    figure = {(1.0, 0.0): 0.1, (10.0, 0.0): 0.3, (100.0, 0.0): 0.2, (10.0, 0.5): 0.4, (1.0, 0.5): 0.5,
              (100.0, 0.5): 0.0}  # fmt: skip
    l2, dropout, tried = ease_module.select_on_validation(
        lambda a, b: figure[(a, b)], [1.0, 10.0, 100.0], [0.0, 0.5], refine_l2=False
    )
    assert (l2, dropout) == (1.0, 0.5) and len(tried) == len(figure)  # l2, then dropout, then l2 again

    _, ratings = _ease_world()
    model = _fit("ease", ratings, l2=[1.0, 50.0], dropout=[0.0, 0.3])
    assert model.chosen["l2"] in (1.0, 50.0) and model.chosen["dropout"] in (0.0, 0.3)
    assert set(model.chosen["grid"]) <= {f"l2={a:g},dropout={b:g}" for a in (1, 50) for b in (0, 0.3)}


@pytest.mark.parametrize(
    "params", [{"l2": -1.0}, {"l2": "best"}, {"l2": []}, {"dropout": 1.0}, {"dropout": [0.1, -0.2]},
               {"select_metric": "ndcg"}, {"validation_fraction": 0.0}],  # fmt: skip
)
def test_ease_refuses_bad_choices_in_one_line(params):
    from tfrs_movies.config import ConfigError

    _, ratings = _ease_world()
    with pytest.raises(ConfigError, match=f"model.params.{next(iter(params))}"):
        _fit("ease", ratings, **params)


def test_ials_each_solve_is_the_closed_form_and_the_loss_never_rises():
    from tfrs_movies.models.baselines import ials

    binary, ratings = _ease_world(n_users=30, n_movies=9)
    rng = np.random.default_rng(0)
    movies = rng.standard_normal((9, 3))
    alpha0, reg, nu = 0.2, 0.05, 1.0
    got = ials.solve_side(ials.sp.csr_matrix(binary.astype(float)), movies, alpha0, reg, nu)
    for u in range(30):
        seen = movies[binary[u]]
        ridge = reg * (binary[u].sum() + alpha0 * 9) ** nu
        lhs = seen.T @ seen + alpha0 * movies.T @ movies + ridge * np.eye(3)
        np.testing.assert_allclose(got[u], np.linalg.solve(lhs, seen.sum(0)), rtol=1e-8)
    # The same solution minimises the objective over that user's factor: a nudge makes it worse.
    loss = ials.ials_loss(ials.sp.csr_matrix(binary.astype(float)), got, movies, alpha0, reg, nu)
    nudged = got.copy()
    nudged[0] += 1e-3
    assert ials.ials_loss(ials.sp.csr_matrix(binary.astype(float)), nudged, movies, alpha0, reg, nu) > loss

    model = _fit("ials", ratings, dim=3, epochs=6)
    assert (np.diff(model.history["loss"]) <= 1e-9).all()
    assert model.alpha0 == pytest.approx(1.0 * binary.mean())  # relative to the density
    # Fold-in: a user's factor from their watched list is the user step with the movie factors held.
    folded = model.fold_in(model.seen[:4])
    expected = ials.solve_side(model.seen[:4], model.movie_factors.astype(float), model.alpha0, 0.01, 1.0)
    np.testing.assert_allclose(folded, expected, rtol=1e-5)
    model.update_seen(ratings)
    np.testing.assert_allclose(model.score(model.users[:4]), folded @ model.movie_factors.T, rtol=1e-5)


def test_ials_blocks_and_slices_give_the_same_solution(monkeypatch):
    from tfrs_movies.models.baselines import ials

    binary, _ = _ease_world(n_users=50, n_movies=20)
    matrix = ials.sp.csr_matrix(binary.astype(float))
    fixed = np.random.default_rng(1).standard_normal((20, 6))
    whole = ials.solve_side(matrix, fixed, 0.1, 0.02, 0.5)
    monkeypatch.setattr(ials, "_BLOCK_BYTES", 8 * 36 * 7)  # 7 rows per block, 7 pairs per slice of 20 cols
    np.testing.assert_allclose(ials.solve_side(matrix, fixed, 0.1, 0.02, 0.5), whole, rtol=1e-10)
