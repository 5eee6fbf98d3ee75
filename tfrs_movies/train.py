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
from tfrs_movies.cli import add_debug_flag, command_parser, guarded
from tfrs_movies.config import load_config
from tfrs_movies.evaluation import metrics_table as M


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = command_parser("train", __doc__)
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
    add_debug_flag(parser)
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
    """Errors are one line (exit 2: a setting; 1: the data or the training); ``--debug``: the traceback."""
    args = parse_args(argv)
    return guarded(lambda: _train(args), args.debug, args.verbose)


def _train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from tfrs_movies.training.experiment import run_experiment

    result = run_experiment(config)
    shown = {k: round(v, 4) for k, v in result.metrics.items() if _shown(k, v, config["eval"]["ks"])}
    print(f"test ({result.metrics['users']} users, seen movies removed): {json.dumps(shown)}")
    print(f"run: {result.run_dir}  (tensorboard --logdir {result.run_dir / 'tensorboard'})")
    return 0


def _shown(name: str, value: object, ks: list[int]) -> bool:
    """The headline figures, plus every top-N figure but coverage at the configured cut-offs."""
    if name in M.HEADLINE:
        return True
    if not isinstance(value, float) or not M.is_metric(name) or not M.is_top_n(name):
        return False
    return M.cutoff(name) in ks and M.metric(name).family != "coverage"


if __name__ == "__main__":
    sys.exit(main())
