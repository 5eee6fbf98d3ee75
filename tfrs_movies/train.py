"""``python -m tfrs_movies.train``: train, evaluate and save a model as a config says.

python -m tfrs_movies.train                                   # ML-100K (or a generated sample)
python -m tfrs_movies.train --config configs/ml100k_retrieval.yaml --epochs 5
python -m tfrs_movies.train --set model.embedding_dim=32 --set data.split.kind=leave_last_out
"""

from __future__ import annotations

import argparse
import json
import sys

import tfrs_movies  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfrs_movies.config import ConfigError, load_config

HEADLINE = (
    "rmse",
    "mae",
    "recall@10",
    "recall@20",
    "precision@10",
    "ndcg@10",
    "map@10",
    "hr@10",
    "coverage@10",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tfrs_movies.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML file (see configs/); overrides the built-in defaults")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.epochs=5 (repeatable)")  # fmt: skip
    parser.add_argument("--dataset", help="shorthand for data.name")
    parser.add_argument("--data-dir", help="shorthand for data.dir")
    parser.add_argument("--model", help="shorthand for model.name")
    parser.add_argument("--epochs", type=int, help="shorthand for train.epochs")
    parser.add_argument("--batch-size", type=int, help="shorthand for train.batch_size")
    parser.add_argument("--lr", type=float, help="shorthand for train.learning_rate")
    parser.add_argument("--run-dir", help="shorthand for run_dir")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> dict:
    """The resolved config: defaults < --config file < shorthands < --set (the most specific wins)."""
    shorthands = {
        "data.name": args.dataset,
        "data.dir": args.data_dir,
        "model.name": args.model,
        "train.epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "train.learning_rate": args.lr,
        "run_dir": args.run_dir,
    }
    overrides = [f"{k}={json.dumps(v)}" for k, v in shorthands.items() if v is not None] + list(args.set)
    return load_config(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from tfrs_movies.training.experiment import run_experiment

    result = run_experiment(config)
    ks = {f"@{k}" for k in config["eval"]["ks"]}
    shown = {
        k: round(v, 4)
        for k, v in result.metrics.items()
        if k in HEADLINE or (isinstance(v, float) and any(k.endswith(s) for s in ks) and "coverage" not in k)
    }
    print(f"test ({result.metrics['users']} users, seen movies removed): {json.dumps(shown)}")
    print(f"run: {result.run_dir}  (tensorboard --logdir {result.run_dir / 'tensorboard'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
