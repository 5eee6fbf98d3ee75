"""Metric functions, exactly as ``EVALUATION.md`` defines them. NumPy only, vectorised over users.

Ranking metrics take ``hits``: a boolean matrix of shape ``(users, K)`` whose entry ``[u, i]`` says
whether the item ranked ``i + 1`` for user ``u`` is relevant, and ``n_relevant``: shape ``(users,)``,
each user's number of relevant items (>= 1). They return one value per user; average for the figure.
"""

from __future__ import annotations

import numpy as np


def rmse(y_true: np.ndarray, y_pred: np.ndarray, clip: tuple[float, float] | None = None) -> float:
    """Root mean squared error; predictions clipped to ``clip`` (the rating scale) first when given."""
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if clip is not None:
        y_pred = np.clip(y_pred, *clip)
    return float(np.sqrt(np.mean((np.asarray(y_true, dtype=np.float64) - y_pred) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray, clip: tuple[float, float] | None = None) -> float:
    """Mean absolute error; predictions clipped to ``clip`` first when given."""
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if clip is not None:
        y_pred = np.clip(y_pred, *clip)
    return float(np.mean(np.abs(np.asarray(y_true, dtype=np.float64) - y_pred)))


def binary_classification(y_true: np.ndarray, p_pred: np.ndarray) -> dict[str, float]:
    """Accuracy (threshold 0.5), ROC AUC and log-loss for a binary label and a predicted probability."""
    from sklearn.metrics import log_loss, roc_auc_score

    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(p_pred, dtype=np.float64), 1e-7, 1 - 1e-7)
    out = {"accuracy": float(np.mean((p >= 0.5) == y)), "log_loss": float(log_loss(y, p, labels=[0, 1]))}
    out["auc"] = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    return out


def _check(hits: np.ndarray, k: int) -> np.ndarray:
    if k < 1 or k > hits.shape[1]:
        raise ValueError(f"k must be in 1..{hits.shape[1]}, got {k}")
    return hits[:, :k].astype(np.float64)


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """hits in top k / number of relevant items."""
    return _check(hits, k).sum(1) / n_relevant


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """hits in top k / k."""
    return _check(hits, k).sum(1) / k


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """1 when any relevant item is in the top k (equals recall@k when each user has one relevant item)."""
    return (_check(hits, k).sum(1) > 0).astype(np.float64)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """DCG of the top k with binary gains over the DCG of ``min(n_relevant, k)`` hits at the top."""
    h = _check(hits, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = h @ discounts
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k).astype(int) - 1]
    return dcg / ideal


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """(1 / min(n_relevant, k)) * sum over ranks i <= k of precision@i * hit_i."""
    h = _check(hits, k)
    precision_at_i = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    return (precision_at_i * h).sum(1) / np.minimum(n_relevant, k)


def mrr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """1 / the rank of the first relevant item in the top k (ranks from 1); 0 when none is there."""
    h = _check(hits, k) > 0
    first = h.argmax(1)
    return np.where(h.any(1), 1.0 / (first + 1), 0.0)


def self_information(item_counts: np.ndarray, n_users: int) -> np.ndarray:
    """Per item, -log2(its training ratings / the training users): the share of users who rated it, a user
    rating a movie once (the data checks); 0 for an item everyone rated, more for rarer ones. An item
    nobody rated counts as rated once (the rarest it can be, not infinite). Shapes: (items,) -> (items,)."""
    counts = np.maximum(np.asarray(item_counts, np.float64), 1.0)
    return -np.log2(counts / max(int(n_users), 1))


def novelty_at_k(top: np.ndarray, information: np.ndarray, k: int) -> np.ndarray:
    """Per user, the mean :func:`self_information` of the top k items (``top``: (users, >= k) item
    positions, best first; ``information``: one value per catalogue item). Higher: less popular picks."""
    return information[top[:, :k]].mean(axis=1)


def item_coverage(times_recommended: np.ndarray) -> float:
    """Share of the catalogue in at least one user's top K (``times_recommended``: one count per item)."""
    return float((np.asarray(times_recommended) > 0).mean())


def gini_index(times_recommended: np.ndarray) -> float:
    """Gini index of how often each catalogue item was recommended: 0 when every item appears equally
    often, (n - 1) / n when one item takes every slot. Sorted counts x_1 <= ... <= x_n:
    sum_i (2i - n - 1) x_i / (n sum_i x_i)."""
    x = np.sort(np.asarray(times_recommended, np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray, ks: list[int]) -> dict[str, np.ndarray]:
    """Every per-user ranking metric at every k, keyed ``"recall@10"`` etc."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(hits, n_relevant, k)
        out[f"precision@{k}"] = precision_at_k(hits, k)
        out[f"ndcg@{k}"] = ndcg_at_k(hits, n_relevant, k)
        out[f"map@{k}"] = map_at_k(hits, n_relevant, k)
        out[f"hr@{k}"] = hit_rate_at_k(hits, k)
        out[f"mrr@{k}"] = mrr_at_k(hits, k)
    return out
