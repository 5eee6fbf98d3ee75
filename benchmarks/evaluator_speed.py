"""How long the full-ranking evaluator takes on an ML-1M-sized problem (6,040 users x 3,706 movies).

    python benchmarks/evaluator_speed.py [--no-doc]

The data is a generated world of ML-1M's shape (1,000,000 ratings, per-user random 80/20 split); the
score function is a fixed dot product of random 64-d factors, so the time measured is the evaluator's
own (masking seen movies, top-K, hits, metrics, coverage) plus one (users x 64) @ (64 x movies) product.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from docs_section import replace_section  # noqa: E402

from tfrs_movies.data.splits import random_split  # noqa: E402
from tfrs_movies.data.synthetic import generate_world  # noqa: E402
from tfrs_movies.evaluation.ranking import FullRankingEvaluator  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    world = generate_world(n_users=6040, n_movies=3706, n_ratings=1_000_000, seed=0)
    split = random_split(world.dataset.ratings)
    catalogue = world.dataset.movies["movie_id"].to_numpy()
    rng = np.random.default_rng(0)
    users_f = rng.normal(size=(6041, 64)).astype(np.float32)
    movies_f = rng.normal(size=(len(catalogue), 64)).astype(np.float32)

    start = time.perf_counter()
    evaluator = FullRankingEvaluator(split.train, split.test, catalogue, ks=[10, 20])
    setup = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluator.evaluate(lambda users: users_f[users] @ movies_f.T, batch_size=512)
    run = time.perf_counter() - start
    table = (
        "| users ranked | movies | train ratings | test ratings | set-up s | evaluate s |\n"
        "|---|---|---|---|---|---|\n"
        f"| {metrics['users']:,} | {len(catalogue):,} | {len(split.train):,} | {len(split.test):,} "
        f"| {setup:.2f} | {run:.2f} |"
    )
    print(table)
    if not args.no_doc:
        replace_section(
            "Full-ranking evaluator speed (ML-1M size)",
            f"Measured {date.today()} on {os.cpu_count()} cores by `python benchmarks/evaluator_speed.py`: "
            "every user's scores over the whole catalogue, seen movies removed, top 20, all metrics at 10 "
            "and 20, "
            f"coverage.\n\n{table}",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
