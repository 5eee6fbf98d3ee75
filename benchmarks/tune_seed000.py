"""Seed 000's grid search on ML-100K with ``python -m tfrs_movies.tune``, recorded in docs/BENCHMARKS.md.

    python benchmarks/tune_seed000.py                      # run (or resume) the budgeted grid, then the doc
    python benchmarks/tune_seed000.py --grid configs/grids/seed000.yaml     # the full 150-trial grid
    python benchmarks/tune_seed000.py --no-run             # only rewrite the doc from the tuning dir

Protocol: configs/seed000_cosine_normalized.yaml (per-user random 80/20 split, seed 42; validation = 10%
of each user's training ratings). Trials are compared on validation RMSE; the winner is refitted and read
on test once (``best.json``). The section lists the best trials, the winner's test figures and the PNGs
(copied to docs/img/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_section import replace_section  # noqa: E402

import tfrs_movies  # noqa: E402,F401
from tfrs_movies.tune import main as tune_main  # noqa: E402
from tfrs_movies.tuning.store import TuningDir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/seed000_cosine_normalized.yaml"
HEADING = "Hyperparameter search (issue 6)"
HEATMAPS = (("model.embedding_dim", "final_dim"), ("user_dense", "movie_dense"))


def command(grid: str, tune_dir: str, heatmap: tuple[str, str], workers: int) -> list[str]:
    return ["--config", CONFIG, "--grid", grid, "--tune-dir", tune_dir, "--workers", str(workers),
            "--heatmap", *heatmap]  # fmt: skip


def _row(rank: str, r: dict) -> str:
    p, v = r["params"], r["valid"]
    figures = [v["rmse"], v["mae"], r["train"]["rmse"], v["rmse_normalized"]]
    cells = [rank, p["model.embedding_dim"], p["user_dense"], p["movie_dense"], p["final_dim"],
             *(f"{x:.4f}" for x in figures), r.get("best_epoch", ""), f"{r['train_seconds']:.1f}",
             f"{r['parameters']:,}"]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


def trials_table(records: list[dict], n: int) -> str:
    """The ``n`` best trials on validation RMSE, and the worst."""
    head = ("| rank | embedding | user dense | movie dense | final | valid RMSE | valid MAE | train RMSE | "
            "valid RMSE (normalised) | best epoch | train s | params |")  # fmt: skip
    ranked = sorted(records, key=lambda r: r["valid"]["rmse"])
    lines = [head, "|" + "---|" * 12]
    lines += [_row(str(rank), r) for rank, r in enumerate(ranked[:n], 1)]
    lines.append(_row(f"{len(ranked)} (worst)", ranked[-1]))
    return "\n".join(lines)


def _figures(name: str, m: dict) -> str:
    keys = ("rmse", "mae", "rmse_normalized", "mae_normalized")
    return f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in keys) + " |"


def write_doc(tune_dir: Path, grid: str, wall: float | None, workers: int) -> None:
    store = TuningDir(tune_dir)
    records = [r for r in store.records() if r["status"] == "ok"]
    best = json.loads((tune_dir / "best.json").read_text(encoding="utf-8"))
    img = REPO / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    pngs = []
    for plot in sorted((tune_dir / "plots").glob("*.png")):
        target = img / f"tune_seed000_{plot.name}"
        shutil.copyfile(plot, target)
        pngs.append(target.relative_to(REPO / "docs"))
    seconds = sum(r["train_seconds"] for r in records)
    span = (max(r["finished_at"] for r in records) - (tune_dir / "tuning.json").stat().st_mtime) / 60
    when = datetime.fromtimestamp(max(r["finished_at"] for r in records)).date()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    load_text = f" (load average at the end {load})" if wall else ""
    w, t = best["valid"], best["test"]
    p = best["params"]
    cmd = "python -m tfrs_movies.tune " + " ".join(command(grid, str(tune_dir), HEATMAPS[0], workers))
    full = grid.endswith("seed000.yaml")
    scope = (
        "the full grid was run"
        if full
        else f"the budgeted subset `{grid}` was run ({len(records)} trials: dense sizes 8, 32 and 128 only; "
        "their trial ids are the full grid's, so the rest can be added later in the same tuning directory)"
    )
    wall_text = f" (this script: {wall / 60:.1f} min)" if wall else ""
    body = f"""\
Seed 000's grid is embedding size 16/32/64 x user dense 8..128 x movie dense 8..128 x final dimension
64/128 (`configs/grids/seed000.yaml`: 3 x 5 x 5 x 2 = 150 trials; the seed ran "120+"). On this shared
2-core machine {scope}. Base config `{CONFIG}`: seed 000's protocol (per-user random 80/20 split, seed
42; validation = 10% of each user's training ratings; early stopping on validation RMSE, Adam 0.005,
batch 256; metrics on the 1..5 scale and on seed 000's per-user normalised scale).

Measured {when} on {os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()},
{workers} worker processes (1 TensorFlow thread each), while other jobs shared the machine{load_text}:
{len(records)} trials in {span:.1f} min of wall clock{wall_text}; the trials' own
training times (wall clock inside each worker, so slowed by the sharing) add up to {seconds / 60:.1f} min.
At that pace the full grid would take about {span * 150 / len(records):.0f} min.

    {cmd}
    python benchmarks/tune_seed000.py --no-run     # this section, from the tuning directory

Winner on validation RMSE (trial `{best["trial_id"]}`): embedding {p["model.embedding_dim"]}, user
dense {p["user_dense"]}, movie dense {p["movie_dense"]}, final dimension {p["final_dim"]}
({best["test_users"]} test users; the refit took {best["refit_train_seconds"]} s).

| winner | RMSE | MAE | RMSE (normalised) | MAE (normalised) |
|---|---|---|---|---|
{_figures("validation (selection)", w)}
{_figures("test (refit once, after the search)", t)}

Seed 000 reported a best test RMSE of 0.396 on the normalised scale, choosing on test; the shipped config
(towers [64, 32]) gives 0.4008 (see "The seed projects' own protocols"). The ten best trials on
validation, and the worst:

{trials_table(records, 10)}

Plots (validation, not test: a tuning run never reads test):

{chr(10).join(f"- ![{path.stem}]({path.as_posix()})" for path in pngs)}

`python -m tfrs_movies.report {tune_dir}` compares the trials in one table and chart;
`tensorboard --logdir {tune_dir}/tensorboard` shows them in the HParams dashboard.
"""
    replace_section(HEADING, reflow(body))


def reflow(markdown: str, width: int = 105) -> str:
    """Re-wrap the prose paragraphs (tables, code and lists are left as they are)."""
    blocks = []
    for block in markdown.split("\n\n"):
        if block.lstrip("\n").startswith(("|", "    ", "- ")):
            blocks.append(block)
        else:
            blocks.append(textwrap.fill(" ".join(block.split()), width))
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default="configs/grids/seed000_budget.yaml")
    parser.add_argument("--tune-dir", default="runs/tune/seed000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-run", action="store_true", help="only rewrite the doc from the tuning dir")
    parser.add_argument("--no-doc", action="store_true", help="leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    os.chdir(REPO)  # the paths above are relative to the repository
    wall = None
    if not args.no_run:
        start = time.perf_counter()
        if tune_main(command(args.grid, args.tune_dir, HEATMAPS[0], args.workers)) != 0:
            return 1
        wall = time.perf_counter() - start
    # The second heatmap: nothing left to run, so this only redraws the plots.
    tune_main(command(args.grid, args.tune_dir, HEATMAPS[1], args.workers))
    if not args.no_doc:
        write_doc(Path(args.tune_dir), args.grid, wall, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
