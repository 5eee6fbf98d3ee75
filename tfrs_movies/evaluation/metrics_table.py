"""The one table of metrics: every figure the project reports, its kind and whether higher is better.

Early stopping (:mod:`tfrs_movies.training.fit`), tuning (the winner, Optuna's direction, the plots),
the comparison report and the headline list printed by ``python -m tfrs_movies.train`` read it, so a
metric's direction is decided here and nowhere else.

A name is a family (``rmse``) or a family at a cut-off (``recall@20``): top-N families need ``@K``, the
others refuse it. An unknown name is a one-line ``ValueError`` listing the known families.
"""

from __future__ import annotations

from dataclasses import dataclass

TOP_N = "top_n"  # full-ranking metrics at a cut-off K (seen movies removed)
RATING = "rating"  # errors of the predicted rating on the held-out (user, movie) pairs
CLASSIFICATION = "classification"  # of a predicted probability of "rating >= threshold"
COST = "cost"  # what a run costs (not a quality figure, but comparable: less is better)


@dataclass(frozen=True)
class Metric:
    family: str
    kind: str
    higher_is_better: bool
    description: str


_TABLE = (
    Metric("recall", TOP_N, True, "relevant movies in the top K / relevant movies"),
    Metric("precision", TOP_N, True, "relevant movies in the top K / K"),
    Metric("ndcg", TOP_N, True, "discounted cumulative gain of the top K over its ideal"),
    Metric("map", TOP_N, True, "mean average precision of the top K"),
    Metric("hr", TOP_N, True, "hit rate: any relevant movie in the top K"),
    Metric("mrr", TOP_N, True, "mean reciprocal rank of the first relevant movie in the top K (0: none)"),
    Metric("coverage", TOP_N, True, "share of the catalogue recommended to some user in a top K"),
    Metric("novelty", TOP_N, True, "mean -log2(share of training users who rated it) of the top K movies"),
    Metric("gini", TOP_N, False, "Gini index of how often each movie is in a top K (0: all equally often)"),
    Metric("rmse", RATING, False, "root mean squared error of the rating (clipped to the scale)"),
    Metric("mae", RATING, False, "mean absolute error of the rating (clipped to the scale)"),
    Metric("rmse_normalized", RATING, False, "RMSE on the per-user normalised scale (cosine head)"),
    Metric("mae_normalized", RATING, False, "MAE on the per-user normalised scale (cosine head)"),
    Metric("accuracy", CLASSIFICATION, True, "accuracy of the probability at 0.5"),
    Metric("auc", CLASSIFICATION, True, "ROC AUC of the probability"),
    Metric("log_loss", CLASSIFICATION, False, "binary cross-entropy of the probability"),
    Metric("train_seconds", COST, False, "seconds spent fitting"),
    Metric("parameters", COST, False, "trainable numbers of the fitted model"),
)
METRICS: dict[str, Metric] = {m.family: m for m in _TABLE}
# Other names for a family (RecBole's): the figures are stored and reported under the family's own name.
ALIASES = {"hit": "hr", "itemcoverage": "coverage"}

# The rating metrics ``predict``-based early stopping computes (the normalised ones come from a model).
RATING_METRICS = ("rmse", "mae")
# The figures ``python -m tfrs_movies.train`` prints (plus every top-N figure at the configured K).
HEADLINE = (
    "rmse", "mae", "recall@10", "recall@20", "precision@10", "ndcg@10", "map@10", "hr@10", "mrr@10",
    "coverage@10",
)  # fmt: skip


def _known() -> str:
    names = [f"{m.family}@K" if m.kind == TOP_N else m.family for m in _TABLE]
    return ", ".join(names + [f"{alias}@K (= {family}@K)" for alias, family in ALIASES.items()])


def parse(name: str) -> tuple[Metric, int | None]:
    """``"recall@20"`` -> (the recall entry, 20); ``"rmse"`` -> (the rmse entry, None).

    ValueError (one line, listing the known metrics) for an unknown family, a top-N family without a
    positive whole ``@K``, or a K on a metric that has none.
    """
    family, at, k_text = str(name).partition("@")
    family = ALIASES.get(family, family)
    metric = METRICS.get(family)
    if metric is None:
        raise ValueError(f"unknown metric {name!r}; known: {_known()}")
    if metric.kind == TOP_N:
        if not at or not k_text.isdigit() or int(k_text) < 1:
            raise ValueError(f"metric {name!r} needs a cut-off, e.g. '{family}@10'; known: {_known()}")
        return metric, int(k_text)
    if at:
        raise ValueError(f"metric {name!r}: {family} takes no cut-off; known: {_known()}")
    return metric, None


def canonical(name: str) -> str:
    """The name a figure is stored under: ``"hit@10"`` -> ``"hr@10"``, ``"itemcoverage@20"`` ->
    ``"coverage@20"``; any other name (known or not) unchanged."""
    family, at, k_text = str(name).partition("@")
    return f"{ALIASES[family]}{at}{k_text}" if family in ALIASES else str(name)


def metric(name: str) -> Metric:
    """The table entry of ``name`` (``"ndcg@10"`` or ``"rmse"``)."""
    return parse(name)[0]


def higher_is_better(name: str) -> bool:
    return parse(name)[0].higher_is_better


def lower_is_better(name: str) -> bool:
    return not parse(name)[0].higher_is_better


def direction(name: str) -> str:
    """``"higher"`` or ``"lower"`` (is better)."""
    return "higher" if higher_is_better(name) else "lower"


def cutoff(name: str) -> int:
    """``"recall@20"`` -> 20; ValueError for a metric without a cut-off."""
    metric_, k = parse(name)
    if k is None:
        raise ValueError(f"metric {name!r} has no cut-off (it is a {metric_.kind} metric)")
    return k


def is_top_n(name: str) -> bool:
    return parse(name)[0].kind == TOP_N


def is_rating(name: str) -> bool:
    return parse(name)[0].kind == RATING


def is_metric(name: str) -> bool:
    """Whether ``name`` is a figure of the table (``"users"``, ``"best_epoch"`` are not)."""
    try:
        parse(name)
    except ValueError:
        return False
    return True


def families(kind: str) -> tuple[str, ...]:
    """The families of one kind, in table order (e.g. the top-N columns of a report)."""
    return tuple(m.family for m in _TABLE if m.kind == kind)
