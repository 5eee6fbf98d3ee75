"""MRR@K, hit@K (hr@K's other name), item coverage@K, novelty@K and Gini@K against figures worked by hand.

The world: 3 users, 5 movies (catalogue 10, 20, 30, 40, 50 in that column order), K = 1 and 2.

    seen (train)        relevant (test)    scores for 10, 20, 30, 40, 50        top 2 (seen removed)
    u1: 10, 20          30, 50             .9  .1  .5  .7  .2                   40, 30   hits 0 1
    u2: 10, 30          20                 .9  .8  .1  .6  .3                   20, 40   hits 1 0
    u3: 10, 20, 40      50                 .9  .8  .6  .95 .2                   30, 50   hits 0 1

MRR@2 = (1/2 + 1 + 1/2) / 3 = 2/3; MRR@1 = (0 + 1 + 0) / 3 = 1/3; hit@2 = 1, hit@1 = 1/3.
recall@2 = (1/2 + 1/1 + 1/1) / 3 = 5/6.
Coverage@2: 20, 30, 40, 50 appear = 4/5; coverage@1: 40, 20, 30 = 3/5.
Gini@2: times in a top 2 for 10..50 = 0, 1, 2, 2, 1 -> sorted 0 1 1 2 2, n = 5, total 6:
    sum (2i - n - 1) x_i = -4*0 - 2*1 + 0*1 + 2*2 + 4*2 = 10; 10 / (5 * 6) = 1/3.
Gini@1: counts 0, 1, 1, 1, 0 -> sorted 0 0 1 1 1: -4*0 - 2*0 + 0*1 + 2*1 + 4*1 = 6; 6 / (5 * 3) = 2/5.
Novelty: rated by 3, 2, 1, 1, 0 of the 3 training users -> self-information -log2(share):
    10: 0, 20: log2(3/2) = log2 3 - 1, 30, 40: log2 3, 50: nobody, counted as one user: log2 3.
    novelty@2 = mean over users of the mean over their top 2:
        u1 (40, 30): log2 3; u2 (20, 40): log2 3 - 1/2; u3 (30, 50): log2 3  ->  log2 3 - 1/6.
    novelty@1: u1 40: log2 3; u2 20: log2 3 - 1; u3 30: log2 3  ->  log2 3 - 1/3.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tfrs_movies.evaluation import metrics_table as M
from tfrs_movies.evaluation.metrics import gini_index, item_coverage, mrr_at_k, self_information
from tfrs_movies.evaluation.ranking import FullRankingEvaluator

LOG2_3 = math.log2(3)
CATALOGUE = [10, 20, 30, 40, 50]
SCORES = {1: [0.9, 0.1, 0.5, 0.7, 0.2], 2: [0.9, 0.8, 0.1, 0.6, 0.3], 3: [0.9, 0.8, 0.6, 0.95, 0.2]}


def _ratings(pairs: list[tuple[int, int]]) -> pd.DataFrame:
    users, movies = zip(*pairs, strict=True)
    return pd.DataFrame({"user_id": users, "movie_id": movies, "rating": 4.0, "timestamp": 0})


@pytest.fixture(scope="module")
def figures() -> dict[str, float]:
    train = _ratings([(1, 10), (1, 20), (2, 10), (2, 30), (3, 10), (3, 20), (3, 40)])
    test = _ratings([(1, 30), (1, 50), (2, 20), (3, 50)])
    evaluator = FullRankingEvaluator(train, test, CATALOGUE, ks=(1, 2))
    return evaluator.evaluate(lambda users: np.array([SCORES[int(u)] for u in users]))


def test_the_evaluator_reproduces_the_hand_worked_figures(figures):
    expected = {
        "mrr@2": 2 / 3, "mrr@1": 1 / 3, "hr@2": 1.0, "hr@1": 1 / 3, "recall@2": 5 / 6,
        "coverage@2": 4 / 5, "coverage@1": 3 / 5, "gini@2": 1 / 3, "gini@1": 2 / 5,
        "novelty@2": LOG2_3 - 1 / 6, "novelty@1": LOG2_3 - 1 / 3,
    }  # fmt: skip
    for name, value in expected.items():
        assert figures[name] == pytest.approx(value, abs=1e-12), name
    assert figures["users"] == 3


def test_the_functions_on_their_own():
    hits = np.array([[0, 1], [1, 0], [0, 0]], dtype=bool)
    np.testing.assert_allclose(mrr_at_k(hits, 2), [0.5, 1.0, 0.0])
    np.testing.assert_allclose(self_information(np.array([3, 2, 1, 0]), 3), [0, LOG2_3 - 1, LOG2_3, LOG2_3])
    assert gini_index(np.array([4, 4, 4, 4])) == 0.0  # every movie equally often
    assert gini_index(np.array([0, 0, 0, 9])) == pytest.approx(3 / 4)  # one movie takes every slot
    assert gini_index(np.zeros(3)) == 0.0 and item_coverage(np.array([0, 2, 0, 1])) == 0.5


def test_the_table_knows_the_new_names_and_recboles():
    assert M.metric("mrr@10").kind == M.TOP_N and M.direction("mrr@10") == "higher"
    assert M.direction("novelty@10") == "higher" and M.direction("gini@10") == "lower"
    assert M.metric("hit@10") is M.metric("hr@10") and M.metric("itemcoverage@20") is M.metric("coverage@20")
    assert M.canonical("hit@10") == "hr@10" and M.canonical("itemcoverage@5") == "coverage@5"
    assert M.canonical("recall@20") == "recall@20" and M.canonical("nonsense") == "nonsense"
    with pytest.raises(ValueError, match=r"hit@K \(= hr@K\)"):
        M.parse("hits@10")


def test_an_alias_as_the_early_stopping_metric_is_stored_under_the_tables_name():
    from tfrs_movies.config import load_config

    def stopping_metric(overrides) -> str:
        return load_config(None, overrides)["train"]["early_stopping"]["metric"]

    assert stopping_metric({"train.early_stopping.metric": "hit@10"}) == "hr@10"
    assert stopping_metric(["train.early_stopping.metric=itemcoverage@20"]) == "coverage@20"
    assert stopping_metric(["train.early_stopping.metric=mrr@20"]) == "mrr@20"


def test_the_report_shows_novelty_and_gini_after_the_ranking_metrics():
    from tfrs_movies.evaluation.report import metric_columns

    class Run:
        metrics = {"recall@10": 0.2, "mrr@10": 0.3, "coverage@10": 0.5, "novelty@10": 3.2, "gini@10": 0.8}

    assert metric_columns([Run()]) == ["recall@10", "mrr@10", "coverage@10", "novelty@10", "gini@10"]
