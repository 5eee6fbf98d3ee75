"""Each metric against values worked out by hand from EVALUATION.md's definitions."""

import math

import numpy as np
import pandas as pd
import pytest

from tfrs_movies import schema as S
from tfrs_movies.evaluation.metrics import (
    binary_classification,
    hit_rate_at_k,
    mae,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    rmse,
)
from tfrs_movies.evaluation.ranking import FullRankingEvaluator, top_k_indices

# One user, 3 relevant items, top-4 list with hits at ranks 1 and 3.
HITS = np.array([[True, False, True, False]])
N_REL = np.array([3])


def test_recall_precision_hr():
    assert recall_at_k(HITS, N_REL, 4)[0] == pytest.approx(2 / 3)
    assert recall_at_k(HITS, N_REL, 2)[0] == pytest.approx(1 / 3)
    assert precision_at_k(HITS, 4)[0] == pytest.approx(0.5)
    assert precision_at_k(HITS, 1)[0] == pytest.approx(1.0)
    assert hit_rate_at_k(HITS, 1)[0] == 1.0
    assert hit_rate_at_k(np.array([[False, True]]), 1)[0] == 0.0


def test_ndcg_by_hand():
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    ideal = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # min(3, 4) = 3 ideal hits
    assert ndcg_at_k(HITS, N_REL, 4)[0] == pytest.approx(dcg / ideal)
    # k = 2: one hit at rank 1, ideal has min(3, 2) = 2 hits
    assert ndcg_at_k(HITS, N_REL, 2)[0] == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_map_by_hand():
    # precision@1 = 1 (hit), precision@3 = 2/3 (hit); divided by min(3, 4) = 3
    assert map_at_k(HITS, N_REL, 4)[0] == pytest.approx((1 + 2 / 3) / 3)
    # one relevant item found at rank 2: 1/2
    assert map_at_k(np.array([[False, True, False]]), np.array([1]), 3)[0] == pytest.approx(0.5)


def test_k_out_of_range():
    with pytest.raises(ValueError):
        recall_at_k(HITS, N_REL, 5)


def test_rmse_mae_clip_to_scale():
    y, p = np.array([1.0, 5.0]), np.array([0.0, 6.0])
    assert rmse(y, p) == pytest.approx(1.0)
    assert rmse(y, p, clip=(1, 5)) == 0.0
    assert mae(np.array([3.0, 4.0]), np.array([2.0, 4.5])) == pytest.approx(0.75)


def test_binary_classification():
    out = binary_classification(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.4, 0.3]))
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["auc"] == pytest.approx(1.0)
    expected = -np.mean(np.log([0.9, 0.9, 0.4, 0.7]))
    assert out["log_loss"] == pytest.approx(expected)


def test_top_k_indices_sorted_with_stable_ties():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [3.0, 2.0, 1.0, 0.0]])
    assert top_k_indices(scores, 3).tolist() == [[1, 3, 2], [0, 1, 2]]


def _frame(rows):
    return S.canonical_ratings(pd.DataFrame(rows, columns=list(S.RATING_COLUMNS)))


def test_evaluator_removes_seen_items_and_averages_users():
    catalogue = [10, 20, 30, 40]
    train = _frame([(1, 10, 5, 0), (2, 40, 5, 0)])
    test = _frame([(1, 20, 4, 1), (1, 30, 2, 1), (2, 10, 5, 1)])
    # Both users score the catalogue 10 > 20 > 30 > 40.
    evaluator = FullRankingEvaluator(train, test, catalogue, ks=[1, 2])
    metrics = evaluator.evaluate(lambda users: np.tile([4.0, 3.0, 2.0, 1.0], (len(users), 1)))
    # user 1: 10 is seen -> ranking 20, 30: hits [1, 1]; user 2: ranking 10, 20: hits [1, 0]
    assert metrics["users"] == 2
    assert metrics["recall@1"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["recall@2"] == pytest.approx((1 + 1) / 2)
    assert metrics["precision@2"] == pytest.approx((1 + 0.5) / 2)
    assert metrics["coverage@1"] == pytest.approx(2 / 4)  # 20 and 10


def test_evaluator_relevance_threshold_drops_users_without_relevant_items():
    catalogue = [10, 20, 30]
    train = _frame([(1, 10, 5, 0)])
    test = _frame([(1, 20, 5, 1), (2, 30, 2, 1)])
    evaluator = FullRankingEvaluator(train, test, catalogue, ks=[1], relevance_threshold=4)
    metrics = evaluator.evaluate(lambda users: np.tile([3.0, 2.0, 1.0], (len(users), 1)))
    assert metrics["users"] == 1
    assert metrics["recall@1"] == 1.0
