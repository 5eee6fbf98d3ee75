"""``python -m tfrs_movies.data {download,synth,info,split}``: the dataset command line.

python -m tfrs_movies.data download ml-100k [--data-dir data]
python -m tfrs_movies.data synth --format ml-1m --out /tmp/ml-1m --ratings 50000 --seed 3
python -m tfrs_movies.data info --dataset ml-100k --data-dir ../shared/data
python -m tfrs_movies.data split --dataset ml-100k --kind random --out /tmp/split
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import tfrs_movies  # noqa: F401
from tfrs_movies.cli import add_debug_flag, command_parser, guarded
from tfrs_movies.data.registry import DATASET_NAMES, SPLIT_KINDS


def _synth_formats() -> tuple[str, ...]:
    from tfrs_movies.data.synth_formats import SYNTH_FORMATS

    return tuple(SYNTH_FORMATS)


def _downloadable() -> list[str]:
    from tfrs_movies.data.download import DATASETS, NOT_DOWNLOADABLE

    return sorted(set(DATASETS) | set(NOT_DOWNLOADABLE))


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("data", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="fetch a dataset from its official source, verify, extract")
    p.add_argument("name", choices=_downloadable())
    p.add_argument("--data-dir", default="data")
    p.add_argument("--force", action="store_true")

    p = sub.add_parser("synth", help="write a generated dataset in a real dataset's exact file layout")
    p.add_argument("--format", required=True, choices=_synth_formats())
    p.add_argument("--out", required=True)
    p.add_argument("--ratings", type=int, default=100_000)
    p.add_argument("--users", type=int, help="default: ratings / 100")
    p.add_argument("--movies", type=int, help="default: about 5.3 * sqrt(ratings)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("info", help="print one JSON line of counts")
    p.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    p.add_argument("--data-dir")
    p.add_argument("--on-bad-lines", default="error", choices=("error", "skip"))

    p = sub.add_parser("split", help="write train/valid/test files in the dataset's own ratings layout")
    p.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    p.add_argument("--data-dir")
    p.add_argument("--kind", default="random", choices=[k for k in SPLIT_KINDS if k != "files"])
    p.add_argument("--out", required=True)
    p.add_argument("--config", help="a config whose data.split section to use")
    for command in sub.choices.values():
        add_debug_flag(command)
    return parser


def _synth(args: argparse.Namespace) -> dict:
    from tfrs_movies.data.synth_formats import write_synthetic

    written = write_synthetic(args.format, args.out, args.ratings, args.seed, args.users, args.movies)
    return {"format": args.format, "out": str(args.out), **written}


def _split(args: argparse.Namespace) -> dict:
    from tfrs_movies.config import load_config
    from tfrs_movies.data import resolve_dataset
    from tfrs_movies.data.movielens import write_ratings_file
    from tfrs_movies.data.registry import LAYOUT_SUFFIX, dataset_spec
    from tfrs_movies.data.splits import build_split

    overrides = {"data.name": args.dataset, "data.split.kind": args.kind, "data.download": False}
    if args.data_dir:
        overrides["data.dir"] = args.data_dir
    config = load_config(args.config, overrides)
    dataset = resolve_dataset(config, say=lambda line: print(line, file=sys.stderr))
    split = build_split(config, dataset)
    layout = dataset_spec(dataset.name).ratings_layout
    suffix = LAYOUT_SUFFIX[layout]
    out = Path(args.out)
    files = {}
    for part in ("train", "valid", "test"):
        frame = getattr(split, part)
        if frame is not None:
            path = out / f"{part}{suffix}"
            write_ratings_file(frame, path, layout)
            files[part] = str(path)
    return {"kind": split.kind, "layout": layout, **split.sizes(), "files": files}


def _download(args: argparse.Namespace) -> dict:
    from tfrs_movies.data.download import download

    return {"dataset": args.name, "path": str(download(args.name, args.data_dir, force=args.force))}


def _info(args: argparse.Namespace) -> dict:
    from tfrs_movies.data import load_dataset

    return load_dataset(args.dataset, args.data_dir, args.on_bad_lines).info()


_COMMANDS = {"download": _download, "synth": _synth, "info": _info, "split": _split}


def main(argv: list[str] | None = None) -> int:
    """One JSON line on success; an error is one line (exit 1: the data or the download; 2: a setting)."""
    args = _parser().parse_args(argv)

    def body() -> int:
        print(json.dumps(_COMMANDS[args.command](args)))
        return 0

    return guarded(body, args.debug, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
