"""Every model on MovieLens 100K u1.base / u1.test (split ``files``), beside EVALUATION.md's figures.

    python benchmarks/ml100k_models.py                    # all rows, refreshes docs/BENCHMARKS.md
    python benchmarks/ml100k_models.py --only ease biases --no-doc

Each row is one ``run_experiment`` with the config shown: hyperparameters were chosen on a validation
split carved from u1.base (never on u1.test); the test figure is computed once per row.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small BLAS calls are faster single-threaded here

from docs_section import replace_section  # noqa: E402

import tfrs_movies  # noqa: E402,F401
from tfrs_movies.config import load_config  # noqa: E402
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
COLUMNS = ("rmse", "mae", "recall@10", "recall@20", "precision@10", "ndcg@10", "map@10", "train_seconds")
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


def run_row(label: str, config_file: str | None, overrides: list[str], run_root: Path) -> dict:
    path = REPO / config_file if config_file else None
    if path is not None and not path.exists():
        return {"label": label, "skipped": f"{config_file} not shipped"}
    slug = "".join(c if c.isalnum() else "_" for c in label)[:40]
    config = load_config(path, FILES + overrides + ["train.verbose=0", f"run_dir={run_root / slug}"])
    start = time.perf_counter()
    result = run_experiment(config, say=lambda _: None)
    metrics = dict(result.metrics)
    metrics["wall_seconds"] = time.perf_counter() - start
    metrics["label"] = label
    metrics["command"] = (
        f"python -m tfrs_movies.train --config {config_file}"
        if config_file
        else "python -m tfrs_movies.train " + " ".join(f"--set {o}" for o in FILES[1:] + overrides)
    )
    return metrics


def table(rows: list[dict]) -> str:
    head = "| model | " + " | ".join(c.replace("train_seconds", "train s") for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['label']} | " + " | ".join("" for _ in COLUMNS) + " |")
            continue
        cells = []
        for column in COLUMNS:
            value = row.get(column)
            digits = 1 if column == "train_seconds" else 4
            cells.append("" if value is None else f"{value:.{digits}f}")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="labels (prefixes) of the rows to run")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    parser.add_argument("--run-root", default="runs/benchmarks/ml100k")
    args = parser.parse_args(argv)
    rows = []
    for label, (config_file, overrides) in ROWS.items():
        if args.only and not any(label.startswith(p) for p in args.only):
            continue
        print(f"running {label} ...", file=sys.stderr, flush=True)
        rows.append(run_row(label, config_file, overrides, Path(args.run_root)))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    body = table(rows)
    print(body)
    if not args.no_doc:
        commands = "\n".join(f"- {r['label']}: `{r['command']}`" for r in rows if "command" in r)
        machine = f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})"
        intro = (
            f"Measured {date.today()} on {machine}, Python {platform.python_version()}, by "
            "`python benchmarks/ml100k_models.py`. Full ranking of all 1,682 movies with each user's "
            "u1.base movies removed; RMSE/MAE on the 1..5 scale, clipped. Hyperparameters were chosen on "
            "a validation split carved from u1.base; u1.test was read once per row."
        )
        replace_section(
            "MovieLens 100K, u1.base / u1.test (split files)",
            f"{intro}\n\n{body}\n\nReference figures (same files, from EVALUATION.md):\n\n{REFERENCE}"
            f"\n\nCommands:\n\n{commands}",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
