"""Compare run directories in one Markdown table and one PNG chart (``python -m tfrs_movies.report``).

Each run directory holds ``config.yaml`` and ``metrics.json`` (see ``training/experiment.py``); a tuning
directory's trials hold the same, measured on validation. Rows are only comparable on the same split,
so :func:`split_problems` names the first difference of data, split, evaluation settings or evaluated
set between runs. Columns (from the metric table, :mod:`tfrs_movies.evaluation.metrics_table`): rating
metrics (RMSE, MAE, and their normalised-scale versions), classification metrics (accuracy, AUC,
log-loss), top-N metrics (recall, precision, NDCG, MAP, HR, MRR at each K) and what the lists do to the
catalogue (coverage, novelty, Gini), training seconds, model size (bytes of ``<run>/model`` on disk),
weights (the model's learned numbers, where recorded) and params (what the config sets for the model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from tfrs_movies import config as C
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

    @cached_property
    def parameters(self) -> int | None:
        """The fitted model's learned numbers: ``metrics.json``'s ``parameters`` (tuning trials), else
        the export manifest's (every exported run); None when neither records it. The manifest is read
        only when metrics.json has no ``parameters``, and once per run."""
        if "parameters" in self.metrics:
            value = self.metrics["parameters"]
        else:
            value = _manifest(self.path).get("parameters")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def settings(self) -> str:
        """The run's model as configured, in one short line: :func:`model_settings` of its config."""
        return model_settings(self.config)


def _manifest(run_dir: Path) -> dict[str, Any]:
    """``<run>/export/manifest.json`` as a mapping; empty when the run has no (readable) export."""
    try:
        manifest = json.loads((run_dir / "export" / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


# Training keys shown beside the model's own when a run sets them away from the built-in defaults.
SETTINGS_TRAIN_KEYS = ("epochs", "batch_size", "learning_rate", "optimizer")


def model_settings(config: dict[str, Any]) -> str:
    """What a run's ``config.yaml`` sets for its model, as ``key=value`` words: every ``model.params``
    entry (keys sorted), then the shared ``model.*`` keys and ``train.epochs/batch_size/learning_rate/
    optimizer`` whose value differs from the built-in defaults (:data:`tfrs_movies.config.DEFAULTS`);
    ``"defaults"`` when it sets nothing. ``{"model": {"name": "ease", "params": {"l2": 400}}}`` ->
    ``"l2=400"``."""
    model = config.get("model") or {}
    params = C.flatten(model.get("params") or {})
    shared = {f"model.{k}": v for k, v in model.items() if k not in ("name", "params")}
    shared.update({f"train.{k}": (config.get("train") or {}).get(k) for k in SETTINGS_TRAIN_KEYS})
    defaults = C._DEFAULT_FLAT  # every section; only model.* and train.* keys are in ``shared``
    # In the defaults' order (and the params' keys sorted): the same words whatever order the file has.
    changed = {k.split(".", 1)[1]: shared[k] for k in defaults if k in shared and shared[k] != defaults[k]}
    words = [f"{k}={_short(params[k])}" for k in sorted(params)]
    words += [f"{k}={_short(v)}" for k, v in changed.items()]
    return " ".join(words) or "defaults"


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(_short, value)) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


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
    then train seconds, model size on disk, ``weights`` (the model's learned numbers, where recorded)
    and ``params`` (:func:`model_settings`: what the config sets for the model)."""
    columns = columns if columns is not None else metric_columns(runs)
    head = ["run", *columns, "train s", "model size", "weights", "params"] + (["split"] if with_split else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        cells = [run.label.replace("|", "/")]
        for column in columns:
            value = run.metrics.get(column)
            cells.append(f"{value:.4f}" if isinstance(value, (int, float)) else "")
        seconds = run.metrics.get("train_seconds")
        cells += [f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "", human_bytes(run.model_bytes),
                  _human_count(run.parameters), run.settings.replace("|", "/")]  # fmt: skip
        if with_split:
            signature = split_signature(run)
            cells.append(f"{signature['data.name']} {signature['data.split.kind']} ({run.evaluated_on})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _panel_metrics(runs: list[Run]) -> list[str]:
    """The figures the chart draws, one panel each, in order: rating and classification metrics, the
    top-N accuracy metrics at the smallest K, coverage, novelty and Gini at that K, train seconds, model
    size; only those at least one run has (a panel is never empty)."""
    columns = metric_columns(runs)
    k = min((M.cutoff(c) for c in columns if M.is_top_n(c)), default=None)
    at_k = [f"{m}@{k}" for m in TOP_N + BEYOND_ACCURACY if k is not None and f"{m}@{k}" in columns]
    chosen = [c for c in columns if not M.is_top_n(c)] + at_k
    costs = ("train_seconds", "model_mib", "parameters")
    chosen += [m for m in costs if any(_figure(r, m) is not None for r in runs)]
    return chosen


def _figure(run: Run, name: str) -> float | None:
    """One number of a run for the chart (``model_mib``: its model folder in MiB); None when absent."""
    if name == "model_mib":
        return run.model_bytes / 2**20 if run.model_bytes is not None else None
    if name == "parameters":
        return float(run.parameters) if run.parameters is not None else None
    value = run.metrics.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# How a chart panel is titled: the figure and which way is better.
_PANEL_TITLE = {
    "train_seconds": "train seconds (lower is better)",
    "model_mib": "model on disk, MiB",
    "parameters": "weights (learned numbers)",
}


def _panel_title(name: str) -> str:
    if name in _PANEL_TITLE:
        return _PANEL_TITLE[name]
    unit = " (bits)" if name.startswith("novelty@") else ""
    return f"{name}{unit} ({M.direction(name)} is better)"


def _bar_label(value: float) -> str:
    """3 decimals below 10 (metrics), 1 below 1,000 (seconds, MiB), else a whole number with commas."""
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def chart(runs: list[Run], title: str = "", columns: int = 4):
    """The report's matplotlib figure: small panels, one per figure that some run has (see
    :func:`_panel_metrics`; never an empty one), ``columns`` to a row. The runs are horizontal bars in
    one colour each, in the same order in every panel, each bar labelled with its value, and ``n/a``
    where a run lacks that figure (a rating metric of a top-N model). The runs are named on the y axis
    of each row's first panel, so there is no legend to cover a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import EngFormatter

    names = _panel_metrics(runs)
    n_cols = max(1, min(columns, len(names)))
    n_rows = max(1, -(-len(names) // n_cols))
    row_height = 0.32 * len(runs) + 1.1
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.6 * n_cols + 1.6, row_height * n_rows + 0.8),
                             sharey=True, squeeze=False)  # fmt: skip
    colours = plt.get_cmap("tab10")
    y = np.arange(len(runs))
    for ax, name in zip(axes.ravel(), names, strict=False):
        figures = [_figure(run, name) for run in runs]
        bars = [v if v is not None else 0.0 for v in figures]
        ax.barh(y, bars, height=0.7, color=[colours(i % 10) for i in range(len(runs))])
        ax.set_title(_panel_title(name), fontsize=9)
        top = max(bars) if max(bars) > 0 else 1.0
        ax.set_xlim(0, top * 1.3)  # room for the labels at the bars' ends
        for row, value in enumerate(figures):
            text = "n/a" if value is None else _bar_label(value)
            ax.text(bars[row] + top * 0.02, row, text, va="center", fontsize=7,
                    color="0.45" if value is None else "black")  # fmt: skip
        ax.grid(axis="x", alpha=0.3)
        if top >= 10_000:  # counts: 2.5M on the axis, not 2.5 with "1e6" in the corner
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.tick_params(axis="x", labelsize=7)
        ax.tick_params(axis="y", labelsize=8)
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)  # the last row's unused slots: hidden, not drawn empty
    axes[0, 0].set_yticks(y, [r.label[:40] for r in runs])
    axes[0, 0].invert_yaxis()
    ks = {M.cutoff(n) for n in names if M.is_metric(n) and M.is_top_n(n)}
    at = f"; top-N panels at K={min(ks)} (every K in report.md)" if ks else ""
    fig.suptitle((title or f"{len(runs)} runs") + at, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def plot_runs(runs: list[Run], path: str | Path, title: str = "", columns: int = 4) -> Path:
    """Write :func:`chart` as a PNG at ``path`` (atomic)."""
    import matplotlib.pyplot as plt

    fig = chart(runs, title, columns)
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
