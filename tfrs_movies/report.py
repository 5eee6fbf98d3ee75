"""``python -m tfrs_movies.report``: compare run directories in one Markdown table and one PNG chart.

python -m tfrs_movies.report runs/a runs/b --out runs/report      # two runs
python -m tfrs_movies.report runs/tune/seed000                     # a tuning dir: its trials (validation)

Runs whose data, split, evaluation settings or evaluated set differ are refused (exit 2, naming the
difference) unless ``--allow-mixed-splits`` (then a warning, and a ``split`` column). Incomplete runs
(killed, or still being written: a ``RUNNING`` marker, :mod:`tfrs_movies.training.status`) are left out
and named in one line. The work is done by :mod:`tfrs_movies.evaluation.report`.
"""

from __future__ import annotations

import argparse
import sys

from tfrs_movies.cli import add_debug_flag, command_parser, guarded
from tfrs_movies.evaluation.report import collect_runs, report_dir, split_problems, write_report
from tfrs_movies.training.status import is_complete


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("report", __doc__)
    parser.add_argument("paths", nargs="+", help="run directories, tuning directories or folders of runs")
    parser.add_argument("--out", help="output folder (default: <tuning dir>/report, else runs/report)")
    parser.add_argument("--allow-mixed-splits", action="store_true",
                        help="warn instead of refusing when runs are not on the same split")  # fmt: skip
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    return guarded(lambda: _report(args), args.debug, args.verbose)


def _report(args: argparse.Namespace) -> int:
    try:
        runs = collect_runs(args.paths)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    incomplete = [run for run in runs if not is_complete(run.path)]
    if incomplete:
        names = ", ".join(str(run.path) for run in incomplete)
        print(f"skipped {len(incomplete)} incomplete run(s) (killed or still being written): {names}",
              file=sys.stderr)  # fmt: skip
        runs = [run for run in runs if is_complete(run.path)]
    if not runs:
        print("error: no finished run found", file=sys.stderr)
        return 2
    problems = split_problems(runs)
    for line in problems:
        print(("warning: " if args.allow_mixed_splits else "error: ") + line, file=sys.stderr)
    if problems and not args.allow_mixed_splits:
        print("runs on different splits are not comparable (--allow-mixed-splits to show them anyway)",
              file=sys.stderr)  # fmt: skip
        return 2
    out = report_dir(args.paths, args.out)
    print(write_report(runs, out, mixed=bool(problems)))
    print(f"report: {out / 'report.md'}, chart: {out / 'report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
