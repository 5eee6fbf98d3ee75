"""``python -m tfrs_movies.tune``: grid or Optuna search over config keys, resumable, in parallel.

python -m tfrs_movies.tune --config configs/seed000_cosine_normalized.yaml --grid configs/grids/seed000.yaml
python -m tfrs_movies.tune --config C --grid G --search optuna --trials 30 --workers 2
python -m tfrs_movies.tune --config C --grid G --max-trials 10      # stop after 10 new trials; re-run resumes

Trials are measured on validation only; with ``--search optuna`` a median pruner stops a trial whose
per-epoch validation figure falls below the median of the finished trials' (the grid file's ``pruner``
section: ``median`` or ``none``, with ``n_startup_trials`` and ``n_warmup_steps``). The winner (best
``--metric`` on validation) is refitted and read on test once, when the search is complete
(``<tune_dir>/best.json``). Re-running the same command skips finished and pruned trials.
``tensorboard --logdir <tune_dir>/tensorboard`` shows the HParams dashboard.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import tfrs_movies  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfrs_movies.cli import add_debug_flag, command_parser, exit_status, guarded
from tfrs_movies.config import load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = command_parser("tune", __doc__)
    parser.add_argument("--config", help="base YAML config (see configs/)")
    parser.add_argument("--grid", required=True, help="grid file (see configs/grids/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the base config (repeatable)")  # fmt: skip
    parser.add_argument("--dataset", help="shorthand for --set data.name=...")
    parser.add_argument("--data-dir", help="shorthand for --set data.dir=...")
    parser.add_argument("--tune-dir", help="tuning directory (default runs/tune/<config>-<grid>)")
    parser.add_argument("--metric", help="validation figure to select on, e.g. rmse (lower is better) "
                        "or ndcg@10 (higher); default: the grid file's, else the early-stopping "
                        "metric")  # fmt: skip
    parser.add_argument("--search", choices=("grid", "optuna"), default="grid")
    parser.add_argument(
        "--trials", type=int, help="Optuna budget: finished trials wanted (default: grid size)"
    )
    parser.add_argument(
        "--max-trials", type=int, help="start at most this many new trials now (resume later)"
    )
    cores = os.cpu_count() or 1
    parser.add_argument("--workers", type=int, default=min(cores, 2),
                        help=f"parallel worker processes (default min(cores, 2) = {min(cores, 2)}; "
                        "1 runs trials in this process)")  # fmt: skip
    parser.add_argument(
        "--threads", type=int, help="TensorFlow/BLAS threads per worker (default cores/workers)"
    )
    parser.add_argument("--no-test", action="store_true", help="skip the winner's final test figure")
    parser.add_argument("--heatmap", nargs=2, metavar=("X_AXIS", "Y_AXIS"),
                        help="grid axes of the heatmap (default: the first two that vary)")  # fmt: skip
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.workers < 1 or args.workers > cores:
        parser.error(f"--workers must be between 1 and the number of cores ({cores})")
    return args


def default_tune_dir(config_path: str | None, grid_path: str) -> Path:
    """Stable (no time stamp), so that running the same command again resumes."""
    stem = Path(config_path).stem if config_path else "defaults"
    return Path("runs") / "tune" / f"{stem}-{Path(grid_path).stem}"


def main(argv: list[str] | None = None) -> int:
    """Errors are one line (exit 2: a setting; 1: the data); ``--debug`` shows the traceback."""
    args = parse_args(argv)
    return guarded(lambda: _tune(args), args.debug, args.verbose)


def _tune(args: argparse.Namespace) -> int:
    from tfrs_movies.tuning.grid import load_space
    from tfrs_movies.tuning.runner import TuneOptions, tune

    shorthands = {"data.name": args.dataset, "data.dir": args.data_dir}
    overrides = [f"{k}={json.dumps(v)}" for k, v in shorthands.items() if v is not None] + list(args.set)
    base = load_config(args.config, overrides)
    space = load_space(args.grid)
    from tfrs_movies.evaluation.metrics_table import canonical

    metric = canonical(args.metric or space.metric or base["train"]["early_stopping"]["metric"])
    tune_dir = Path(args.tune_dir) if args.tune_dir else default_tune_dir(args.config, args.grid)
    options = TuneOptions(
        tune_dir=tune_dir, metric=metric, search=args.search, trials=args.trials, max_trials=args.max_trials,
        workers=args.workers, threads=args.threads, final_test=not args.no_test,
        heatmap=tuple(args.heatmap) if args.heatmap else None, seed=base["seed"], verbose=args.verbose,
    )  # fmt: skip
    try:
        result = tune(base, space, options)
    except KeyboardInterrupt:
        return 130  # finished trials are kept: the same command resumes
    except ValueError as err:
        if exit_status(err) is not None:
            raise  # the project's own (a data error): its own status
        print(f"error: {err}", file=sys.stderr)  # a search setting the runner refused (e.g. the metric)
        return 2
    print(f"results: {tune_dir / 'results.csv'} ({len(result.ran)} trials run now, {result.reused} reused, "
          f"{len(result.pruned)} pruned, {len(result.failed)} failed)")  # fmt: skip
    for plot in result.plots:
        print(f"plot: {plot}")
    if result.best is not None:
        print(f"best: {tune_dir / 'best.json'}")
    print(f"hparams: tensorboard --logdir {tune_dir / 'tensorboard'}")
    return 0 if not result.failed else 1


if __name__ == "__main__":
    sys.exit(main())
