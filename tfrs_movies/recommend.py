"""Top-N recommendations from a serving export.

    python -m tfrs_movies.recommend --model runs/<run>/export --user 42 --k 10
    python -m tfrs_movies.recommend --model runs/<run>/export --similar 50 --format json
    python -m tfrs_movies.recommend --model runs/<run>/export --pair 42 77 --aggregation least_misery
    python -m tfrs_movies.recommend --model runs/<run>/export --users-file users.csv --out recs.csv
    python -m tfrs_movies.recommend --model runs/<run>/export --user 9999 --age 25 --gender F

Seen movies (those the user rated in train) are left out unless ``--include-seen``. When the export
holds a ranking model (a multitask run, or ``--ranking`` pointing at another run's export) the answer
has two stages: the index proposes ``--candidates`` movies, the ranking model predicts their rating,
and they are ordered by z(retrieval score) + ``--rerank-weight`` z(rating) (the columns and one line
say so; ``--retrieval-only`` skips the second stage). An unknown user
gets a cold start from ``--age/--gender/--occupation/--zip`` through the query tower when its user
tower uses them, else the most popular movies, with one line saying which. Errors are one
``error: ...`` line, exit status 2 (``--debug``: with the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd

import tfrs_movies  # sets TF_USE_LEGACY_KERAS before TensorFlow is imported
from tfrs_movies.cli import add_debug_flag, command_parser, guarded
from tfrs_movies.io import atomic_write_text
from tfrs_movies.serving.load import AGGREGATIONS, ServingError, load_export, read_user_ids


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("recommend", __doc__)
    parser.add_argument("--model", required=True, help="an export directory (<run_dir>/export)")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="recommend for this user id")
    who.add_argument("--similar", metavar="MOVIE_ID", help="movies similar to this movie id")
    who.add_argument("--pair", nargs=2, metavar=("USER_A", "USER_B"), help="two users watching together")
    who.add_argument("--users-file", help="a file of user ids (one per line, or a CSV with a user_id column)")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default="average", help="for --pair")
    parser.add_argument("--out", help="with --users-file: write the CSV here (default: standard output)")
    parser.add_argument("--k", type=int, default=10, help="how many movies (default 10)")
    parser.add_argument(
        "--index", choices=("scann", "brute_force"), default=None,
        help="the top-K index (default: scann where the export has one, else brute_force)",
    )  # fmt: skip
    parser.add_argument("--include-seen", action="store_true", help="keep movies the user rated in train")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    stages = parser.add_argument_group("two stages (retrieval, then the ranking model)")
    stages.add_argument("--candidates", type=int, help="how many movies the index proposes (default 100)")
    stages.add_argument("--retrieval-only", action="store_true", help="skip the ranking stage")
    stages.add_argument(
        "--rerank-weight", type=float, metavar="W",
        help="order = z(retrieval score) + W z(predicted rating) over the candidates (default: the export's)",
    )  # fmt: skip
    stages.add_argument("--ranking", metavar="DIR", help="another run's ranking export for the second stage")
    parser.add_argument(
        "--explain", nargs="?", type=int, const=3, metavar="N",
        help="with --user: the N (default 3) watched movies the attention weighted most (sequence model)",
    )  # fmt: skip
    cold = parser.add_argument_group("cold start (a user unknown to the model)")
    cold.add_argument("--age", type=float)
    cold.add_argument("--gender")
    cold.add_argument("--occupation")
    cold.add_argument("--zip", help="zip code (its first character is used)")
    add_debug_flag(parser)
    return parser


def _plain(value):
    """A JSON-ready scalar: pandas NA / NaN -> None, numpy numbers -> Python numbers."""
    if isinstance(value, (list, dict)):
        return value
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return None
    return value.item() if isinstance(value, np.generic) else value


def render(frame: pd.DataFrame, fmt: str) -> str:
    if fmt == "json":
        rows = [
            {key: _plain(value) for key, value in row.items()}
            for row in frame.astype(object).to_dict("records")
        ]
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    out = frame.copy()
    for column in out.columns:
        if column == "score" or column.startswith(("score_", "retrieval_score")):
            out[column] = out[column].map(lambda s: f"{s:.4f}")
    out["year"] = out["year"].astype(object).where(out["year"].notna(), "")
    out.index = range(1, len(out) + 1)
    return out.to_string()


def _batch(exported, args: argparse.Namespace) -> int:
    table = exported.recommend_many(
        read_user_ids(args.users_file), args.k, args.index, args.include_seen, args.candidates, _rerank(args),
        args.rerank_weight,
    )  # fmt: skip
    text = table.to_csv(index=False)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"{table['user_id'].nunique()} users -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _with_explanations(exported, user, frame: pd.DataFrame, top: int, fmt: str) -> pd.DataFrame:
    """Add ``because_you_watched``: per recommended movie, the watched movies the attention weighted
    most, best first (a list of {movie_id, title, weight} in JSON, "title (weight); ..." otherwise)."""
    if top < 1:
        raise ServingError(f"--explain needs at least 1 movie, got {top}")
    because = exported.because_you_watched(user, frame["movie_id"].to_numpy(), top)
    if fmt == "json":
        per_movie = {
            movie: [{**w, "weight": round(w["weight"], 4)} for w in rows] for movie, rows in because.items()
        }
    else:
        per_movie = {
            movie: "; ".join(f"{w['title'] or w['movie_id']} ({w['weight']:.2f})" for w in rows)
            for movie, rows in because.items()
        }
    out = frame.copy()
    out["because_you_watched"] = [per_movie.get(int(m), [] if fmt == "json" else "") for m in out["movie_id"]]
    return out


def _rerank(args: argparse.Namespace) -> bool | None:
    return False if args.retrieval_only else None  # None: two stages whenever a ranking model is there


def _quiet_graph_optimizer() -> None:
    """Grappler's cost estimator logs a warning per Softmax of unknown shape (the attention of the
    sequence exports) through absl, which no log level silences; one query gains nothing from it."""
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: _answer(args), args.debug, args.verbose)


def _answer(args: argparse.Namespace) -> int:
    features = {"age": args.age, "gender": args.gender, "occupation": args.occupation, "zip": args.zip}
    exported = load_export(args.model, ranking=args.ranking)  # a wrong path fails here, before TensorFlow
    if tfrs_movies.LOG_LEVEL_SET_BY_US:
        _quiet_graph_optimizer()
    if args.users_file is not None:
        return _batch(exported, args)
    if args.similar is not None:
        result = exported.similar(args.similar, args.k)
    elif args.pair is not None:
        result = exported.recommend_pair(
            *args.pair, args.k, args.aggregation, args.index, args.candidates, _rerank(args),
            args.rerank_weight,
        )  # fmt: skip
    else:
        result = exported.recommend(
            args.user, args.k, args.index, args.include_seen, args.candidates, _rerank(args), features,
            args.rerank_weight,
        )  # fmt: skip
    if args.explain is not None:
        if args.user is None:
            raise ServingError("--explain goes with --user")
        result.frame = _with_explanations(exported, args.user, result.frame, args.explain, args.format)
    if result.note:
        print(result.note, file=sys.stderr if args.format != "table" else sys.stdout)
    print(render(result.frame, args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
