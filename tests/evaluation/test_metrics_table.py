"""The one table of metrics: every figure the evaluator emits has a direction; early stopping, tuning,
the report and the headline list read it."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_movies.data.splits import random_split
from tfrs_movies.evaluation import metrics_table as M
from tfrs_movies.evaluation.metrics import binary_classification
from tfrs_movies.evaluation.ranking import FullRankingEvaluator


def test_every_figure_the_evaluator_emits_has_a_known_direction(tiny_world):
    split = random_split(tiny_world.dataset.ratings, 0.2, seed=1)
    catalogue = np.sort(tiny_world.dataset.movies["movie_id"].to_numpy())
    evaluator = FullRankingEvaluator(split.train, split.test, catalogue, ks=(5, 10, 20))
    rng = np.random.default_rng(0)
    figures = evaluator.evaluate(lambda users: rng.random((len(users), len(catalogue))))
    figures.update(binary_classification(np.array([0, 1, 1, 0]), np.array([0.2, 0.7, 0.4, 0.1])))
    names = [name for name in figures if name != "users"]  # a count of users, not a figure
    names += ["rmse", "mae", "rmse_normalized", "mae_normalized", "train_seconds", "parameters"]
    for name in names:
        assert M.direction(name) in ("higher", "lower"), name
    for name in M.HEADLINE:
        assert M.is_metric(name)
    assert not M.is_metric("users") and not M.is_metric("best_epoch")


@pytest.mark.parametrize(
    "name, higher, kind",
    [("recall@20", True, M.TOP_N), ("ndcg@10", True, M.TOP_N), ("coverage@10", True, M.TOP_N),
     ("rmse", False, M.RATING), ("mae_normalized", False, M.RATING), ("auc", True, M.CLASSIFICATION),
     ("accuracy", True, M.CLASSIFICATION), ("log_loss", False, M.CLASSIFICATION),
     ("train_seconds", False, M.COST)],
)  # fmt: skip
def test_direction_and_kind(name, higher, kind):
    assert M.higher_is_better(name) is higher and M.lower_is_better(name) is not higher
    assert M.metric(name).kind == kind


@pytest.mark.parametrize("name", ["recal@20", "recall", "recall@0", "recall@x", "rmse@10", "loss"])
def test_unknown_or_malformed_names_are_one_line_errors_listing_the_known(name):
    with pytest.raises(ValueError) as err:
        M.higher_is_better(name)
    message = str(err.value)
    assert "\n" not in message and repr(name) in message and "recall@K" in message and "rmse" in message


def test_early_stopping_reads_the_table():
    from tfrs_movies.training.fit import RATING_METRICS, ValidationEarlyStopping, metric_k

    assert metric_k("ndcg@10") == 10 and set(RATING_METRICS) <= set(M.METRICS)
    for name in ("recall@20", "rmse", "log_loss", "auc"):
        stopper = ValidationEarlyStopping(None, name, patience=1)
        assert stopper.higher_is_better is M.higher_is_better(name)
        assert stopper.best == (-np.inf if stopper.higher_is_better else np.inf)
    with pytest.raises(ValueError, match="unknown metric 'recal@20'"):
        ValidationEarlyStopping(None, "recal@20", patience=1)
    with pytest.raises(ValueError, match="has no cut-off"):
        metric_k("rmse")


def test_tuning_and_the_report_read_the_table():
    from tfrs_movies.evaluation.report import RATING, TOP_N
    from tfrs_movies.tuning import plots
    from tfrs_movies.tuning.runner import choose_winner

    assert plots.lower_is_better is M.lower_is_better
    ok = {"status": "ok", "params": {}}
    records = [{**ok, "trial_id": "a", "valid": {"log_loss": 0.3, "auc": 0.7}},
               {**ok, "trial_id": "b", "valid": {"log_loss": 0.4, "auc": 0.8}}]  # fmt: skip
    assert choose_winner(records, "log_loss")["trial_id"] == "a"  # lower is better
    assert choose_winner(records, "auc")["trial_id"] == "b"  # higher is better
    assert set(RATING) == set(M.families(M.RATING) + M.families(M.CLASSIFICATION))
    assert "recall" in TOP_N and "coverage" not in TOP_N
