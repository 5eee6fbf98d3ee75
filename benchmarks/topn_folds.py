"""Top-N on five folds: models and configs on MovieLens 100K ``u1``..``u5`` and the per-user random 80/20
split, every choice made on validation carved from each fold's train, beside EASE, EDLAE, popularity
and iALS.

    python benchmarks/topn_folds.py                                   # the baselines alone
    python benchmarks/topn_folds.py configs/ml100k_u1_topn.yaml       # a config (only data.split changes)
    python benchmarks/topn_folds.py retrieval --set model.embedding_dim=32 --label "retrieval 32"
    python benchmarks/topn_folds.py ials --grid model.params.reg=0.01,0.03 --no-baselines --json rows.json
    python benchmarks/topn_folds.py --no-baselines --merge rows.json more.json   # a table of earlier rows

Each candidate (a YAML path or a registered model name, with ``--set`` overrides) runs once per split
through :func:`tfrs_movies.training.experiment.run` with the split's ``data.split`` keys put over the
config: ``files`` with ``u{i}.base`` / ``u{i}.test`` for ``u1``..``u5``, ``random`` (per user 80/20,
seed 42, EVALUATION.md) for ``random``. A model chooses its own data-dependent settings on validation
carved from train (EASE's ``l2: auto``, a hybrid's weights, early stopping); a ``--grid`` (``key=v1,v2``)
is searched here, by coordinate search (each key in turn over its values, the others held, until none
changes), each point run with ``evaluate_on="valid"`` (fitted on train minus validation, measured on
validation) and only the best evaluated on test. Test data chooses nothing.

The table: Recall@20 / NDCG@10 per fold, mean ± standard deviation over ``u1``..``u5`` (sample standard
deviation, n - 1), the random split, and train seconds (the test run's fit; a ``--grid``'s search
seconds apart); then every headline top-N metric as mean ± std. ``--json`` writes the rows
(machine-readable); ``--merge`` reads rows written earlier into the same table.

Importable: :func:`run_candidate` (rows of one candidate), :func:`choose_on_validation`,
:func:`summary` / :func:`markdown_tables` (tables from rows), :data:`BASELINES`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small BLAS calls are faster single-threaded here

import numpy as np  # noqa: E402

import tfrs_movies  # noqa: E402,F401
from tfrs_movies import schema as S  # noqa: E402
from tfrs_movies.config import load_config, parse_override  # noqa: E402
from tfrs_movies.data import resolve_dataset  # noqa: E402
from tfrs_movies.training.experiment import run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FOLDS = ("u1", "u2", "u3", "u4", "u5")
SPLITS: dict[str, dict[str, Any]] = {
    **{f: {"data.split.kind": "files", "data.split.train": f"{f}.base", "data.split.test": f"{f}.test"}
       for f in FOLDS},
    "random": {"data.split.kind": "random", "data.split.test_fraction": 0.2, "data.split.seed": 42},
}  # fmt: skip
METRICS = ("recall@10", "recall@20", "precision@10", "ndcg@10", "map@10", "coverage@20")
SELECT_METRIC = "ndcg@10"


@dataclass
class Candidate:
    """One row of the table: ``source`` a YAML path or a registered model name, ``overrides`` put over
    it (config keys), ``grid`` {key: values} searched on validation."""

    label: str
    source: str
    overrides: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)

    def config(self, split: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The resolved config of this candidate on ``split`` (``extra`` over everything)."""
        path = self.source if self.source.endswith((".yaml", ".yml")) else None
        overrides = {} if path else {"model.name": self.source}
        overrides.update({"train.verbose": 0, "export.enabled": False})
        overrides.update(self.overrides)
        overrides.update(SPLITS[split])
        overrides.update(extra or {})
        return load_config(REPO / path if path and not Path(path).is_absolute() else path, overrides)


# The baselines of every table. iALS's grid is scaled by the data through the model's own units
# (unobserved weight relative to the density, frequency-scaled lambda), not tuned to ML-100K.
BASELINES: dict[str, Candidate] = {
    "popularity": Candidate("popularity", "popularity"),
    "ease": Candidate("EASE (l2 on validation)", "ease", {"model.params.l2": "auto"}),
    "edlae": Candidate(
        "EDLAE (l2, dropout on validation)", "ease",
        {"model.params.l2": "auto", "model.params.dropout": "auto"},
    ),
    "ials": Candidate(
        "iALS (grid on validation)", "ials", {"model.params.dim": 64, "model.params.epochs": 12},
        grid={"model.params.unobserved_weight": [1.0, 3.0, 10.0], "model.params.reg": [0.01, 0.03, 0.1]},
    ),
}  # fmt: skip


class Datasets:
    """Each dataset resolved once (by its ``data`` keys other than the split), and refused when the
    real files are missing (a generated stand-in would make the table meaningless)."""

    def __init__(self) -> None:
        self.cache: dict[str, S.Dataset] = {}

    def get(self, config: dict[str, Any]) -> S.Dataset:
        data = {k: v for k, v in config["data"].items() if k != "split"}
        key = json.dumps(data, sort_keys=True, default=str)
        if key not in self.cache:
            name = config["data"]["name"]
            probe = copy.deepcopy(config)
            self.cache[key] = resolve_dataset(probe, lambda line: None)
            if probe["data"]["name"] != name:
                raise SystemExit(f"{name} is not on this machine (set TFRS_MOVIES_DATA or data.dir)")
        return self.cache[key]


def _run(config: dict[str, Any], on: str, datasets: Datasets) -> dict[str, Any]:
    """One experiment in a throw-away run directory; its metrics."""
    run_dir = Path(tempfile.mkdtemp(prefix="topn_folds_"))
    try:
        return run(config, on, lambda line: None, run_dir, dataset=datasets.get(config)).metrics
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def choose_on_validation(
    candidate: Candidate, split: str, datasets: Datasets, metric: str = SELECT_METRIC
) -> tuple[dict[str, Any], dict[str, float]]:
    """Coordinate search over ``candidate.grid`` on ``split``'s validation (carved from its train):
    each key in turn over its values, the others held, until a full pass changes nothing. Returns
    (the best point, {point as JSON: validation metric} for every point tried)."""
    keys = list(candidate.grid)
    best = {k: candidate.grid[k][len(candidate.grid[k]) // 2] for k in keys}
    tried: dict[str, float] = {}

    def value(point: dict[str, Any]) -> float:
        key = json.dumps(point, sort_keys=True)
        if key not in tried:
            tried[key] = float(_run(candidate.config(split, point), "valid", datasets)[metric])
        return tried[key]

    for _ in range(3):
        before = dict(best)
        for k in keys:
            best = max(({**best, k: v} for v in candidate.grid[k]), key=value)
        if best == before:
            break
    return best, tried


def run_candidate(
    candidate: Candidate,
    splits: list[str] | tuple[str, ...] = (*FOLDS, "random"),
    datasets: Datasets | None = None,
    say: Callable[[str], None] = print,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """The candidate on each split: one row per split, {label, split, metrics (test), train_seconds,
    chosen (its grid point, if any), validation (every point tried), select_seconds}; ``on_row`` gets
    each row as soon as it is measured (e.g. to write it out)."""
    datasets = datasets or Datasets()
    rows = []
    for split in splits:
        start = time.perf_counter()
        chosen, tried = choose_on_validation(candidate, split, datasets) if candidate.grid else ({}, {})
        select_seconds = time.perf_counter() - start
        metrics = _run(candidate.config(split, chosen), "test", datasets)
        row = {
            "label": candidate.label, "split": split, "source": candidate.source,
            "overrides": candidate.overrides, "chosen": chosen, "validation": tried,
            "select_seconds": round(select_seconds, 2), "train_seconds": metrics["train_seconds"],
            "metrics": {k: float(metrics[k]) for k in METRICS if k in metrics},
        }  # fmt: skip
        rows.append(row)
        if on_row is not None:
            on_row(row)
        say(
            f"{candidate.label:40s} {split:7s} R@20 {row['metrics']['recall@20']:.4f} "
            f"NDCG@10 {row['metrics']['ndcg@10']:.4f} train {row['train_seconds']:.1f}s"
            + (f" chosen {chosen} ({select_seconds:.0f}s)" if chosen else "")
        )
    return rows


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{label: {split: metrics, "mean": {metric: (mean, std)} over u1..u5, "train_seconds": mean over
    every split}} from rows of :func:`run_candidate` (labels in first-seen order)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = out.setdefault(row["label"], {"splits": {}, "train": {}})
        entry["splits"][row["split"]] = row["metrics"]
        entry["train"][row["split"]] = row["train_seconds"]
    for entry in out.values():
        folds = [entry["splits"][f] for f in FOLDS if f in entry["splits"]]
        entry["mean"] = {m: mean_std([f[m] for f in folds]) for m in METRICS if folds and m in folds[0]}
        entry["train_seconds"] = float(np.mean(list(entry["train"].values())))
    return out


def _cell(metrics: dict[str, float] | None) -> str:
    return f"{metrics['recall@20']:.4f} / {metrics['ndcg@10']:.4f}" if metrics else ""


def markdown_tables(rows: list[dict[str, Any]]) -> str:
    """Two tables: Recall@20 / NDCG@10 per split with the mean ± std over u1..u5; then every headline
    metric as mean ± std over u1..u5."""
    table = summary(rows)
    head = "| model | " + " | ".join(FOLDS) + " | mean ± std R@20 | mean ± std NDCG@10 | random | train s |"
    lines = [
        "Recall@20 / NDCG@10 (test; full ranking, train items removed):", "", head,
        "|---" * (len(FOLDS) + 5) + "|",
    ]  # fmt: skip
    for label, entry in table.items():
        mean = entry["mean"]
        cells = [_cell(entry["splits"].get(f)) for f in FOLDS]
        r20 = f"{mean['recall@20'][0]:.4f} ± {mean['recall@20'][1]:.4f}" if mean else ""
        n10 = f"{mean['ndcg@10'][0]:.4f} ± {mean['ndcg@10'][1]:.4f}" if mean else ""
        random = _cell(entry["splits"].get("random"))
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {r20} | {n10} | {random} | {entry['train_seconds']:.1f} |"
        )
    lines += ["", "Mean ± std over u1..u5 of every headline metric:", ""]
    lines.append("| model | " + " | ".join(METRICS) + " |")
    lines.append("|---" * (len(METRICS) + 1) + "|")
    for label, entry in table.items():
        cells = [f"{entry['mean'][m][0]:.4f} ± {entry['mean'][m][1]:.4f}" if m in entry["mean"] else ""
                 for m in METRICS]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _grid(text: str) -> tuple[str, list[Any]]:
    key, values = parse_override(text)
    if not isinstance(values, list):
        values = [parse_override(f"x={v}")[1] for v in str(values).split(",")]
    return key, values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("candidates", nargs="*", help="YAML config paths or registered model names")
    parser.add_argument("--set", action="append", default=[], help="key=value over every candidate")
    parser.add_argument("--grid", action="append", default=[], help="key=v1,v2 searched on validation")
    parser.add_argument("--label", action="append", default=[], help="a label per candidate")
    parser.add_argument("--splits", default=",".join((*FOLDS, "random")), help="comma-separated")
    parser.add_argument("--no-baselines", action="store_true", help="only the candidates")
    parser.add_argument("--baselines", default=",".join(BASELINES), help="which of them (comma-separated)")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--merge", nargs="*", default=[], help="rows written earlier (--json) to add")
    args = parser.parse_args(argv)

    overrides = dict(parse_override(s) for s in args.set)
    grid = dict(_grid(g) for g in args.grid)
    labels = args.label + [None] * len(args.candidates)
    candidates = [
        Candidate(
            label or (Path(source).stem if source.endswith(".yaml") else source), source, overrides, grid
        )
        for source, label in zip(args.candidates, labels, strict=False)
    ]
    if not args.no_baselines:
        candidates = [BASELINES[b] for b in args.baselines.split(",") if b] + candidates
    splits = [s for s in args.splits.split(",") if s]
    rows = [row for path in args.merge for row in json.loads(Path(path).read_text())]
    datasets = Datasets()

    def keep(row: dict[str, Any]) -> None:  # every row on disk as soon as it is measured
        rows.append(row)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))

    for candidate in candidates:
        run_candidate(candidate, splits, datasets, on_row=keep)
    load = os.getloadavg()
    loads = " ".join(f"{x:.2f}" for x in load)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, load {loads}\n")
    print(markdown_tables(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
