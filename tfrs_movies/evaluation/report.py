"""Compare run directories in one Markdown table and one PNG chart (``python -m tfrs_movies.report``).

Each run directory holds ``config.yaml`` and ``metrics.json`` (see ``training/experiment.py``); a tuning
directory's trials hold the same, measured on validation. Rows are only comparable on the same split,
so :func:`split_problems` names the first difference of data, split, evaluation settings or evaluated
set between runs. Columns (from the metric table, :mod:`tfrs_movies.evaluation.metrics_table`): rating
metrics (RMSE, MAE, and their normalised-scale versions), classification metrics (accuracy, AUC,
log-loss), top-N metrics (recall, precision, NDCG, MAP, HR at each K), training seconds, model size
(bytes of ``<run>/model`` on disk) and parameters (where recorded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tfrs_movies.evaluation import metrics_table as M
from tfrs_movies.io import atomic_file, atomic_write_text

# Per-run figures without a cut-off, in table order; then the top-N families of the users' rankings;
# then, per K, what the lists do to the catalogue (not accuracy: coverage, novelty in bits, Gini).
RATING = M.families(M.RATING) + M.families(M.CLASSIFICATION)
BEYOND_ACCURACY = ("coverage", "novelty", "gini")
TOP_N = tuple(f for f in M.families(M.TOP_N) if f not in BEYOND_ACCURACY)
# The split settings that shape the test set, per split kind (the rest is unused by that kind).
SPLIT_KEYS = {
    "files": ("train", "test"),
    "random": ("test_fraction", "min_ratings", "seed"),
    "user_holdout": ("test_fraction", "seed"),
}


@dataclass
class Run:
    """One run directory's figures, config and size."""

    path: Path
    label: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    model_bytes: int | None

    @property
    def evaluated_on(self) -> str:
        return self.metrics.get("evaluated_on", "test")

    @property
    def parameters(self) -> int | None:
        value = self.metrics.get("parameters")
        return int(value) if value is not None else None


def _disk_size(path: Path) -> int | None:
    if not path.exists():
        return None
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class RunReadError(ValueError):
    """A run's metrics.json or config.yaml is there but unreadable (damaged). One line naming the run."""


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read ``path/metrics.json`` and ``path/config.yaml`` (a missing one is a FileNotFoundError)."""
    path = Path(path)
    for name in ("metrics.json", "config.yaml"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not a run directory: no {name}")
    try:
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
    except (ValueError, yaml.YAMLError) as err:  # not UTF-8, not JSON, not YAML
        why = _first_line(err)
        raise RunReadError(f"{path}: cannot read its metrics.json or config.yaml ({why})") from None
    if not isinstance(metrics, dict) or not isinstance(config, dict):
        raise RunReadError(f"{path}: its metrics.json and config.yaml must each hold a mapping")
    return Run(path, label or path.name, config, metrics, _disk_size(path / "model"))


def collect_runs(paths: list[str | Path]) -> list[Run]:
    """Run directories as given; a tuning directory (with ``trials/``) stands for its finished trials,
    labelled by their hyperparameters; any other folder for the run directories directly inside it."""
    runs: list[Run] = []
    for path in map(Path, paths):
        if (path / "metrics.json").is_file():
            runs.append(load_run(path))
        elif (path / "trials").is_dir():
            for trial in sorted((path / "trials").iterdir()):
                result = trial / "result.json"
                if result.is_file() and (trial / "metrics.json").is_file():
                    record = json.loads(result.read_text(encoding="utf-8"))
                    if record.get("status") == "ok":
                        params = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in record["params"].items())
                        runs.append(load_run(trial, f"{trial.name} {params}"))
        elif path.is_dir() and any((p / "metrics.json").is_file() for p in path.iterdir()):
            runs += [load_run(p) for p in sorted(path.iterdir()) if (p / "metrics.json").is_file()]
        else:
            raise FileNotFoundError(f"{path}: not a run directory, a tuning directory or a folder of runs")
    return runs


def split_signature(run: Run) -> dict[str, Any]:
    """What must match for two runs' figures to be comparable: data, split, evaluation, evaluated set."""
    data = run.config.get("data", {})
    split = data.get("split", {})
    signature: dict[str, Any] = {"data.name": run.metrics.get("dataset", data.get("name"))}
    signature["data.split.kind"] = split.get("kind")
    signature.update({f"data.split.{k}": split.get(k) for k in SPLIT_KEYS.get(split.get("kind"), ())})
    if signature["data.name"] == "synthetic":
        signature["data.synthetic"] = data.get("synthetic")
    evaluation = run.config.get("eval", {})
    for key in ("relevance_threshold", "exclude_seen"):
        signature[f"eval.{key}"] = evaluation.get(key)
    signature["evaluated_on"] = run.evaluated_on
    sizes = run.metrics.get("sizes", {})
    if run.evaluated_on == "validation":  # the validation set depends on its fraction and seed
        signature["data.split.validation_fraction"] = split.get("validation_fraction")
        signature["data.split.seed"] = split.get("seed")
        signature["rows evaluated"] = sizes.get("valid")
    else:
        signature["rows evaluated"] = sizes.get("test")
    return signature


def split_problems(runs: list[Run]) -> list[str]:
    """One line per run whose split differs from the first run's, naming the first differing key."""
    if not runs:
        return []
    reference = split_signature(runs[0])
    problems = []
    for run in runs[1:]:
        signature = split_signature(run)
        for key, value in reference.items():
            if signature.get(key) != value:
                problems.append(
                    f"{run.label} ({run.path}) is not on the split of {runs[0].label}: "
                    f"{key} is {signature.get(key)!r}, not {value!r}"
                )
                break
    return problems


def metric_columns(runs: list[Run]) -> list[str]:
    """Rating and classification metrics, then top-N metrics (grouped by K), that at least one run has."""
    present = {k for run in runs for k, v in run.metrics.items() if isinstance(v, (int, float))}
    columns = [m for m in RATING if m in present]
    ks = sorted({M.cutoff(k) for k in present if M.is_metric(k) and M.is_top_n(k)})
    columns += [f"{m}@{k}" for k in ks for m in TOP_N + BEYOND_ACCURACY if f"{m}@{k}" in present]
    return columns


def human_bytes(size: int | None) -> str:
    if size is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _human_count(count: int | None) -> str:
    return "" if count is None else f"{count:,}"


def markdown_table(runs: list[Run], columns: list[str] | None = None, with_split: bool = False) -> str:
    """A Markdown table: one row per run, ``columns`` (default :func:`metric_columns`) to 4 decimals,
    then train seconds, model size on disk and parameters."""
    columns = columns if columns is not None else metric_columns(runs)
    head = ["run", *columns, "train s", "model size", "params"] + (["split"] if with_split else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        cells = [run.label.replace("|", "/")]
        for column in columns:
            value = run.metrics.get(column)
            cells.append(f"{value:.4f}" if isinstance(value, (int, float)) else "")
        seconds = run.metrics.get("train_seconds")
        cells += [f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "", human_bytes(run.model_bytes),
                  _human_count(run.parameters)]  # fmt: skip
        if with_split:
            signature = split_signature(run)
            cells.append(f"{signature['data.name']} {signature['data.split.kind']} ({run.evaluated_on})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_runs(runs: list[Run], path: str | Path, title: str = "") -> Path:
    """A PNG of four panels (runs as bars): rating metrics, top-N metrics at the smallest K, training
    seconds and model size; a panel without figures says so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    columns = metric_columns(runs)
    k = min((M.cutoff(c) for c in columns if M.is_top_n(c)), default=None)
    panels = [
        ("rating metrics (lower is better)", [c for c in columns if M.is_rating(c)]),
        (
            f"top-N metrics @{k} (higher is better)",
            [c for c in columns if k is not None and c.endswith(f"@{k}") and M.metric(c).family in TOP_N],
        ),
        ("train seconds", ["train_seconds"]),
        ("model size on disk (MiB)", ["model_mib"]),
    ]
    values = {run.label: dict(run.metrics, model_mib=(run.model_bytes or 0) / 2**20) for run in runs}
    height = max(3.0, 0.45 * len(runs) + 1.5)  # per row of panels
    fig, axes = plt.subplots(2, 2, figsize=(13, height * 2))
    y = np.arange(len(runs))
    for ax, (name, metrics) in zip(axes.ravel(), panels, strict=True):
        ax.set_title(name, fontsize=10)
        metrics = [m for m in metrics if any(isinstance(values[r.label].get(m), (int, float)) for r in runs)]
        if not metrics:
            ax.text(0.5, 0.5, "no run has these figures", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        width = 0.8 / len(metrics)
        for i, metric in enumerate(metrics):
            bars = [float(values[r.label].get(metric) or 0.0) for r in runs]
            ax.barh(y + i * width - 0.4 + width / 2, bars, height=width, label=metric)
        ax.set_yticks(y, [r.label[:40] for r in runs], fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        if len(metrics) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title or f"{len(runs)} runs", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return path


def describe(runs: list[Run]) -> str:
    """One line: on what the figures were measured."""
    signature = split_signature(runs[0])
    where = "validation split (not test)" if runs[0].evaluated_on == "validation" else "test split"
    return (f"{len(runs)} runs on {signature['data.name']}, split {signature['data.split.kind']}, "
            f"figures on the {where} ({signature['rows evaluated']} ratings)")  # fmt: skip


def report_dir(paths: list[str | Path], out: str | Path | None = None) -> Path:
    """Where the report goes: ``out``, else ``<tuning dir>/report`` for a tuning dir first, else
    ``runs/report``."""
    if out:
        return Path(out)
    first = Path(paths[0])
    return first / "report" if (first / "trials").is_dir() else Path("runs/report")


def write_report(runs: list[Run], out: str | Path, mixed: bool = False) -> str:
    """Write ``out/report.md`` (title line and table) and ``out/report.png``; returns the table.

    ``mixed``: the runs are not all on one split (the title says so and a ``split`` column is added).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = describe(runs) + (" (MIXED SPLITS)" if mixed else "")
    table = markdown_table(runs, with_split=mixed)
    atomic_write_text(out / "report.md", f"# Runs compared\n\n{title}.\n\n{table}\n\n![chart](report.png)\n")
    plot_runs(runs, out / "report.png", title)
    return table
