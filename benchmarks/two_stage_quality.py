"""Does the second stage help? Retrieval alone vs retrieval candidates re-scored with the ranking model.

    python benchmarks/two_stage_quality.py                       # trains configs/ml100k_two_stage.yaml
    python benchmarks/two_stage_quality.py --run-dir runs/two_stage --no-doc

Two stages as ``recommend`` serves them: per user the retrieval score (``u . v``) picks ``n`` candidates
among the movies not seen, and they are ordered by ``blend_stages`` (``z(retrieval) + w z(predicted
rating)``; w = inf is the predicted rating alone). Every (n, w) is measured on the validation split, the
best by NDCG@10 (relevance as in the config, and with ratings >= 4 as relevant) is then measured on test
once, beside retrieval alone, with the full-ranking metrics of EVALUATION.md. Results go to
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_section import replace_section  # noqa: E402

import tfrs_movies  # noqa: E402,F401
from tfrs_movies.config import load_config  # noqa: E402
from tfrs_movies.data.splits import Split  # noqa: E402
from tfrs_movies.evaluation.ranking import FullRankingEvaluator, interaction_matrix, top_k_indices  # noqa: E402
from tfrs_movies.models.base import Recommender  # noqa: E402
from tfrs_movies.serving.load import blend_stages  # noqa: E402
from tfrs_movies.training.experiment import build_split, resolve_dataset, run_experiment  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/ml100k_two_stage.yaml"
CANDIDATES = (20, 50, 100)
WEIGHTS = (0.1, 0.25, 0.5, 1.0, float("inf"))
COLUMNS = ("recall@10", "precision@10", "ndcg@10", "map@10", "hr@10", "recall@20", "ndcg@20")


def two_stage_score(model: Recommender, seen: pd.DataFrame, n: int, weight: float):
    """A score function for the evaluator: the ``n`` unseen retrieval candidates ordered as served,
    everything else last."""
    seen_matrix = interaction_matrix(seen, model.users, model.catalogue).tocsr()
    rows_of = pd.Index(model.users)

    def score(user_ids: np.ndarray) -> np.ndarray:
        retrieval = model.score(user_ids)
        rows = rows_of.get_indexer(user_ids)
        for i, row in enumerate(rows):
            if row >= 0:
                retrieval[i, seen_matrix[row].indices] = -np.inf
        candidates = top_k_indices(retrieval, n)
        stage1 = np.take_along_axis(retrieval, candidates, axis=1)
        users = np.repeat(user_ids, candidates.shape[1])
        predicted = model.predict(users, model.catalogue[candidates.ravel()]).reshape(candidates.shape)
        out = np.full(retrieval.shape, -1e9, dtype=np.float32)
        for i in range(len(user_ids)):
            order = predicted[i] if np.isinf(weight) else blend_stages(stage1[i], predicted[i], weight)
            out[i, candidates[i]] = order
        return out

    return score


def label(n: int | None, weight: float | None) -> str:
    if n is None:
        return "retrieval only"
    return f"two stages, {n} candidates, " + ("rating alone" if np.isinf(weight) else f"w {weight:g}")


def measure(model, split: Split, config: dict, on: str, threshold, settings) -> dict[str, dict[str, float]]:
    frame = split.valid if on == "validation" else split.test
    seen = split.train if on == "validation" else pd.concat([split.train, split.valid])
    evaluator = FullRankingEvaluator(seen, frame, model.catalogue, (10, 20), threshold)
    rows = {}
    for n, weight in settings:
        score = model.score if n is None else two_stage_score(model, seen, n, weight)
        rows[label(n, weight)] = evaluator.evaluate(score)
    return rows


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| answer | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for label, metrics in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{metrics[c]:.4f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", help="a finished run of the config (else one is trained)")
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    started = time.time()
    if args.run_dir and (Path(args.run_dir) / "model").is_dir():
        config = load_config(Path(args.run_dir) / "config.yaml")
        model = Recommender.load(Path(args.run_dir) / "model")
        dataset = resolve_dataset(config)
    else:
        config = load_config(REPO / args.config, {"run_dir": args.run_dir} if args.run_dir else None)
        result = run_experiment(config)
        model, dataset = result.model, result.dataset
    split = build_split(config, dataset)
    grid = [(None, None)] + [(n, w) for n in CANDIDATES for w in WEIGHTS]
    sections = []
    for threshold in (config["eval"]["relevance_threshold"], 4.0):
        validation = measure(model, split, config, "validation", threshold, grid)
        best_label = max(
            (r for r in validation if r != "retrieval only"), key=lambda r: validation[r]["ndcg@10"]
        )
        best = grid[list(validation).index(best_label)]
        served = (None, None), (100, float("inf")), (100, 0.25), best
        test = measure(model, split, config, "test", threshold, list(dict.fromkeys(served)))
        relevant = "every test rating relevant" if threshold is None else f"ratings >= {threshold:g} relevant"
        sections.append(
            f"### {relevant}\n\nValidation (every setting; best by NDCG@10: {best_label}):\n\n"
            f"{table(validation)}\n\nTest (retrieval only, the rating alone, the served default, and the"
            " validation's best):"
            f"\n\n{table(test)}\n"
        )
    body = (
        f"`python benchmarks/two_stage_quality.py` ({date.today()}, {platform.machine()}, 2 shared CPU cores,"
        f" {time.time() - started:.0f} s): `{args.config}` (TFRS multitask; retrieval = `u . v`, ranking ="
        " the rating head), evaluated as `recommend` serves it: the retrieval score picks n unseen"
        " candidates, ordered by z(retrieval) + w z(predicted rating) (w = inf: the rating alone). Full"
        " ranking, seen movies removed, the config's split. The served default (`export.rerank_weight`"
        " 0.25, `--candidates` 100) was chosen from the first validation table.\n\n" + "\n".join(sections)
    )
    print(body)
    if not args.no_doc:
        replace_section("Two-stage serving quality (issue 4)", body)


if __name__ == "__main__":
    main()
