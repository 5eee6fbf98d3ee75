"""Every model on MovieLens 100K u1.base / u1.test (split ``files``), beside EVALUATION.md's figures.

    python benchmarks/ml100k_models.py                    # all rows, refreshes docs/BENCHMARKS.md
    python benchmarks/ml100k_models.py --only ease biases --no-doc
    python benchmarks/ml100k_models.py --from-runs        # no training: the table from the run dirs

Each row is one ``run_experiment`` with the config shown: hyperparameters were chosen on a validation
split carved from u1.base (never on u1.test); the test figure is computed once per row. The table comes
from the run directories through ``tfrs_movies.report`` (which refuses rows on different splits), with
the model's size on disk and its parameter count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small BLAS calls are faster single-threaded here

from docs_section import replace_section  # noqa: E402

import tfrs_movies  # noqa: E402,F401
from tfrs_movies.config import load_config  # noqa: E402
from tfrs_movies.evaluation.report import load_run, markdown_table, split_problems  # noqa: E402
from tfrs_movies.io import atomic_write_json  # noqa: E402
from tfrs_movies.training.experiment import run_experiment  # noqa: E402

FILES = ["data.name=ml-100k", "data.split.kind=files", "data.split.train=u1.base", "data.split.test=u1.test"]
REPO = Path(__file__).resolve().parents[1]

# label -> (config file or None, overrides)
ROWS: dict[str, tuple[str | None, list[str]]] = {
    "popularity": (None, ["model.name=popularity"]),
    "biases (ALS)": (None, ["model.name=biases"]),
    "svd (rank 10)": (None, ["model.name=svd"]),
    "soft_impute": (None, ["model.name=soft_impute"]),
    "hard_impute": (None, ["model.name=hard_impute"]),
    "ease (l2 400)": (None, ["model.name=ease"]),
    "retrieval, ids (TFRS)": ("configs/ml100k_retrieval.yaml", []),
    "retrieval, history bag, full softmax (TFRS)": ("configs/ml100k_retrieval_history.yaml", []),
    "best top-N: configs/ml100k_u1_topn.yaml": ("configs/ml100k_u1_topn.yaml", []),
    "best rating: configs/ml100k_u1_rating.yaml": ("configs/ml100k_u1_rating.yaml", []),
}
COLUMNS = ("rmse", "mae", "recall@10", "recall@20", "precision@10", "ndcg@10", "map@10")  # + train s, size
REFERENCE = """\
| system (EVALUATION.md) | RMSE | MAE | Recall@10 | Recall@20 | Precision@10 | NDCG@10 | MAP@10 |
|---|---|---|---|---|---|---|---|
| Surprise SVD++ | 0.9330 | 0.7327 | | | | | |
| Surprise KNNBaseline | 0.9359 | 0.7343 | | | | | |
| Surprise SVD | 0.9513 | 0.7502 | | | | | |
| Surprise BaselineOnly | 0.9599 | 0.7616 | | | | | |
| EASE (lambda 400) | | | 0.1912 | 0.3072 | 0.5139 | 0.5659 | 0.4316 |
| implicit ALS (32 factors) | | | 0.1844 | 0.2850 | 0.4871 | 0.5360 | 0.3965 |
| implicit item-item cosine (K 20) | | | 0.1623 | 0.2511 | 0.4333 | 0.4736 | 0.3392 |
| implicit BPR (128 factors) | | | 0.1490 | 0.2386 | 0.3906 | 0.4315 | 0.2825 |
| popularity | | | 0.0975 | 0.1481 | 0.3046 | 0.3253 | 0.1990 |"""


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)[:40]


def _command(config_file: str | None, overrides: list[str]) -> str:
    if config_file:
        return f"python -m tfrs_movies.train --config {config_file}"
    return "python -m tfrs_movies.train " + " ".join(f"--set {o}" for o in FILES[1:] + overrides)


def _record_parameters(run_dir: Path, model=None) -> None:
    """Add the model's parameter count to ``metrics.json`` (loading the saved model if not given)."""
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    if "parameters" in metrics:
        return
    if model is None:
        from tfrs_movies.models.base import Recommender

        model = Recommender.load(run_dir / "model")
    metrics["parameters"] = model.parameter_count()
    atomic_write_json(path, metrics)


def run_row(label: str, config_file: str | None, overrides: list[str], run_root: Path) -> dict:
    """Train and test one row; returns ``{"label", "run_dir", "command"}`` (or ``"skipped"``)."""
    path = REPO / config_file if config_file else None
    if path is not None and not path.exists():
        return {"label": label, "skipped": f"{config_file} not shipped"}
    run_dir = run_root / _slug(label)
    config = load_config(path, FILES + overrides + ["train.verbose=0", f"run_dir={run_dir}"])
    result = run_experiment(config, say=lambda _: None)
    _record_parameters(run_dir, result.model)
    return {"label": label, "run_dir": run_dir, "command": _command(config_file, overrides),
            "measured": datetime.now()}  # fmt: skip


def existing_row(label: str, config_file: str | None, overrides: list[str], run_root: Path) -> dict:
    """A row read back from its run directory (``--from-runs``), or ``"skipped"`` when there is none."""
    run_dir = run_root / _slug(label)
    if not (run_dir / "metrics.json").is_file():
        return {"label": label, "skipped": f"no run in {run_dir}"}
    measured = datetime.fromtimestamp((run_dir / "metrics.json").stat().st_mtime)
    _record_parameters(run_dir)
    return {
        "label": label,
        "run_dir": run_dir,
        "command": _command(config_file, overrides),
        "measured": measured,
    }


def table(rows: list[dict]) -> str:
    """The rows' run directories through the report module (same split checked, size columns added)."""
    runs = [load_run(row["run_dir"], row["label"]) for row in rows if "run_dir" in row]
    problems = split_problems(runs)
    if problems:
        raise SystemExit("rows on different splits:\n" + "\n".join(problems))
    return markdown_table(runs, list(COLUMNS)).replace("| run |", "| model |", 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="labels (prefixes) of the rows to run")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    parser.add_argument("--from-runs", action="store_true",
                        help="train nothing: read the rows' run directories under --run-root")  # fmt: skip
    parser.add_argument("--run-root", default="runs/benchmarks/ml100k")
    args = parser.parse_args(argv)
    rows = []
    for label, (config_file, overrides) in ROWS.items():
        if args.only and not any(label.startswith(p) for p in args.only):
            continue
        if args.from_runs:
            rows.append(existing_row(label, config_file, overrides, Path(args.run_root)))
            continue
        print(f"running {label} ...", file=sys.stderr, flush=True)
        rows.append(run_row(label, config_file, overrides, Path(args.run_root)))
        if "run_dir" in rows[-1]:
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    body = table(rows)
    print(body)
    skipped = [f"{r['label']} ({r['skipped']})" for r in rows if "skipped" in r]
    if skipped:
        print("skipped: " + "; ".join(skipped), file=sys.stderr)
    if not args.no_doc:
        commands = "\n".join(f"- {r['label']}: `{r['command']}`" for r in rows if "command" in r)
        machine = f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})"
        when = max((r["measured"] for r in rows if "measured" in r), default=datetime.now()).date()
        intro = (
            f"Measured {when} on {machine}, Python {platform.python_version()}, by "
            "`python benchmarks/ml100k_models.py`. Full ranking of all 1,682 movies with each user's "
            "u1.base movies removed; RMSE/MAE on the 1..5 scale, clipped. Hyperparameters were chosen on "
            "a validation split carved from u1.base; u1.test was read once per row. Model size is the "
            "saved `model/` folder on disk; params counts Keras weights and the float arrays a baseline "
            "learns (biases, factors, EASE's item-item matrix)."
        )
        replace_section(
            "MovieLens 100K, u1.base / u1.test (split files)",
            f"{intro}\n\n{body}\n\nReference figures (same files, from EVALUATION.md):\n\n{REFERENCE}"
            f"\n\nCommands:\n\n{commands}",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
