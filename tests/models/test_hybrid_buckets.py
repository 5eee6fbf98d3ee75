"""The hybrid's history-length buckets (``model.params.weight_buckets``): per-bucket weights chosen on
validation, the same scores in numpy, after save -> load and in the exported TensorFlow scorer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfrs_movies import schema as S
from tfrs_movies.config import load_config
from tfrs_movies.evaluation.ranking import FullRankingEvaluator
from tfrs_movies.models.base import Recommender
from tfrs_movies.models.hybrid import (
    history_buckets,
    per_user_metric,
    quantile_edges,
    simplex_grid,
    standardise_rows,
)
from tfrs_movies.models.registry import build_model

COMPONENTS = [{"model": "popularity", "set": {}}, {"model": "ease", "set": {"model.params.l2": 10.0}}]


def _hybrid(**params):
    overrides = {"model.name": "hybrid", "model.params.components": COMPONENTS}
    overrides.update({f"model.params.{key}": value for key, value in params.items()})
    return build_model(load_config(None, overrides))


@pytest.fixture(scope="module")
def bucketed(tiny_world, tiny_split):
    return _hybrid(weight_buckets=3, bucket_min_users=10).fit(
        tiny_split.train, tiny_world.dataset, tiny_split.valid
    )


def test_quantile_edges_split_users_into_equal_buckets_by_history_length():
    counts = np.arange(1, 101)
    edges = quantile_edges(counts, 4)
    np.testing.assert_allclose(edges, [25.75, 50.5, 75.25])
    assert np.bincount(history_buckets(counts, edges)).tolist() == [25, 25, 25, 25]
    # Repeated quantiles collapse (fewer, never empty, buckets); one bucket has no edges.
    assert quantile_edges(np.array([5, 5, 5, 9]), 3).tolist() == [5.0]
    assert quantile_edges(counts, 1).size == 0
    assert history_buckets(np.array([0, 1000]), np.empty(0)).tolist() == [0, 0]


def test_per_user_metric_averages_to_exactly_what_the_evaluator_reports(tiny_world, tiny_split):
    train, valid = tiny_split.train, tiny_split.valid
    evaluator = FullRankingEvaluator(train, valid, tiny_world.dataset.movies[S.MOVIE_ID].to_numpy(), ks=[10])
    scores = np.random.default_rng(0).random((len(evaluator.users), len(evaluator.catalogue)))
    values, mean = per_user_metric(evaluator, scores, "ndcg@10")
    expected = evaluator.evaluate(lambda users: scores[np.searchsorted(evaluator.users, users)])["ndcg@10"]
    assert values.shape == (len(evaluator.users),)
    assert mean == expected
    assert np.isclose(values.mean(), expected)


def test_one_bucket_is_one_set_of_weights_for_everyone(tiny_world, tiny_split):
    model = _hybrid().fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
    assert model.bucket_weights.shape == (1, 2) and model.bucket_edges.size == 0
    np.testing.assert_array_equal(model.bucket_weights[0], model.weights)
    assert (model.user_buckets == 0).all()
    best = max(model.validation["grid"].values())
    assert model.validation["best"] == best
    users = model.users[:7]
    pairs = zip(model.weights, model.components, strict=True)
    expected = sum(w * standardise_rows(c.score(users)) for w, c in pairs)
    np.testing.assert_allclose(model.score(users), expected, rtol=1e-6)


def test_each_bucket_gets_its_own_validation_best_and_scores_use_it(bucketed):
    model = bucketed
    chosen = model.validation["buckets"]["chosen"]
    assert len(chosen) == len(model.bucket_edges) + 1 == len(model.bucket_weights) == 3
    grid = [list(point) for point in simplex_grid(2, 0.1)]
    for bucket, report in enumerate(chosen):
        assert report["users"] >= 10 and report["weights"] in grid
        np.testing.assert_allclose(model.bucket_weights[bucket], report["weights"])
    # Buckets follow history length (train plus half of validation): median train counts rise with them.
    counts = pd.Series(model.seen.getnnz(axis=1), index=model.users)
    medians = counts.groupby(model.user_buckets).median().to_numpy()
    assert (np.diff(medians) > 0).all()
    users = model.users[:20]
    weights = model.user_weights(np.arange(20))
    expected = sum(weights[:, [k]] * standardise_rows(c.score(users)) for k, c in enumerate(model.components))
    np.testing.assert_allclose(model.score(users), expected, rtol=1e-6)


def test_a_bucket_with_too_few_validation_users_keeps_the_global_weights(tiny_world, tiny_split):
    model = _hybrid(weight_buckets=3, bucket_min_users=1000).fit(
        tiny_split.train, tiny_world.dataset, tiny_split.valid
    )
    assert len(model.bucket_weights) == 3
    for row in model.bucket_weights:
        np.testing.assert_array_equal(row, model.weights)


def test_bucketed_weights_survive_save_load_and_export(bucketed, tmp_path):
    import tensorflow as tf

    model = bucketed
    assert len({tuple(row) for row in model.bucket_weights}) > 1, "the fixture should choose unequal weights"
    users = model.users
    loaded = Recommender.load(model.save(tmp_path / "hybrid"))
    np.testing.assert_array_equal(loaded.user_buckets, model.user_buckets)
    np.testing.assert_allclose(loaded.score(users), model.score(users), rtol=1e-5, atol=1e-5)
    served = model.serving_parts().catalogue_scorer()(tf.constant([str(u) for u in users])).numpy()
    np.testing.assert_allclose(served, model.score(users), rtol=1e-4, atol=1e-4)
    # An unknown user is scored with the global weights (the table's unknown row).
    unknown = model.serving_parts().catalogue_scorer()(tf.constant(["-1"])).numpy()
    assert unknown.shape == (1, len(model.catalogue)) and np.isfinite(unknown).all()


def test_cross_fit_chooses_on_both_validation_halves(tiny_world, tiny_split):
    one = _hybrid().fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
    both = _hybrid(cross_fit=True).fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
    ranked_one = one.validation["buckets"]["chosen"][0]["users"]
    ranked_both = both.validation["buckets"]["chosen"][0]["users"]
    # (user, half) pairs: the weight half's users plus the early-stopping half's.
    assert ranked_one < ranked_both <= 2 * tiny_split.valid[S.USER_ID].nunique()
    assert both.validation["best"] == max(both.validation["grid"].values())
    assert json_key(both.weights) in both.validation["grid"]
    assert both.validation["grid"] != one.validation["grid"]


def json_key(weights: np.ndarray) -> str:
    import json

    return json.dumps(tuple(float(w) for w in weights))


def test_rank_fusion_sums_reciprocal_ranks_and_exports_them(tiny_world, tiny_split):
    import tensorflow as tf

    from tfrs_movies.models.hybrid import reciprocal_ranks

    np.testing.assert_allclose(reciprocal_ranks(np.array([[0.5, 2.0, 1.0]])), [[1 / 63, 1 / 61, 1 / 62]])
    model = _hybrid(fusion="rank").fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
    users = model.users[:20]
    pairs = zip(model.weights, model.components, strict=True)
    expected = sum(w * reciprocal_ranks(c.score(users)) for w, c in pairs)
    np.testing.assert_allclose(model.score(users), expected, rtol=1e-6)
    served = model.serving_parts().catalogue_scorer()(tf.constant([str(u) for u in users])).numpy()
    np.testing.assert_allclose(served, model.score(users), rtol=1e-4, atol=1e-6)


def test_a_hybrid_saved_before_buckets_loads_with_one_set_of_weights(tiny_world, tiny_split):
    model = _hybrid().fit(tiny_split.train, tiny_world.dataset, tiny_split.valid)
    state = model.state()
    for key in ("bucket_weights", "bucket_edges", "user_buckets"):
        del state.arrays[f"model/{key}"]
    loaded = type(model).from_state(model.config, state)
    np.testing.assert_array_equal(loaded.bucket_weights, model.weights[None, :])
    np.testing.assert_allclose(loaded.score(model.users[:10]), model.score(model.users[:10]), rtol=1e-6)
