"""Seed 000's plots of a tuning run, as PNG files (matplotlib, Agg backend).

- :func:`plot_curves`: train and validation RMSE and MAE of every trial (seed 000 plotted train and
  test; a tuning run never reads test, so the second curve is validation and the title says so);
  models without rating figures get the selection metric instead.
- :func:`plot_heatmap`: the validation metric over two chosen axes, the best value over the other axes
  in each cell.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tfrs_movies.evaluation.metrics_table import lower_is_better  # noqa: E402
from tfrs_movies.io import atomic_file  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    """Lay out, write (creating the folder) and close ``fig``; returns the path."""
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def _label(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def plot_curves(records: list[dict[str, Any]], path: str | Path, metric: str) -> Path:
    """Train and validation curves over the trials, sorted by validation ``metric`` (best first)."""
    records = [r for r in records if metric in r["valid"]]
    records.sort(key=lambda r: r["valid"][metric], reverse=not lower_is_better(metric))
    panels = [m for m in ("rmse", "mae") if any(m in r["valid"] for r in records)] or [metric]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    x = np.arange(1, len(records) + 1)
    for ax, name in zip(axes[0], panels, strict=True):
        valid = [r["valid"].get(name, np.nan) for r in records]
        train = [r.get("train", {}).get(name, np.nan) for r in records]
        if not np.all(np.isnan(train)):
            ax.plot(x, train, "o-", markersize=3, label=f"train {name.upper()}")
        ax.plot(x, valid, "s-", markersize=3, label=f"validation {name.upper()}")
        ax.set_xlabel(f"trial, ranked by validation {metric} (1 = best)")
        ax.set_ylabel(name.upper())
        ax.set_title(f"Train and validation {name.upper()} across {len(records)} trials\n"
                     "(validation split, not test)", fontsize=10)  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend()
    if len(records) <= 20:  # few trials: name them (their id) under the axis
        for ax in axes[0]:
            ax.set_xticks(x, [r["trial_id"][:6] for r in records], rotation=90, fontsize=7)
    return _save(fig, path)


def heatmap_matrix(
    records: list[dict[str, Any]], x_axis: str, y_axis: str, metric: str
) -> tuple[list[str], list[str], np.ndarray]:
    """(x labels, y labels, values (len(y), len(x))): the best ``metric`` per cell, NaN where none ran."""
    best = min if lower_is_better(metric) else max
    cells: dict[tuple[str, str], float] = {}
    xs: list[Any] = []
    ys: list[Any] = []
    for r in records:
        if metric not in r["valid"] or x_axis not in r["params"] or y_axis not in r["params"]:
            continue
        xv, yv = r["params"][x_axis], r["params"][y_axis]
        xs += [xv] if xv not in xs else []
        ys += [yv] if yv not in ys else []
        key = (_label(xv), _label(yv))
        value = float(r["valid"][metric])
        cells[key] = best(cells[key], value) if key in cells else value
    order = lambda v: (0, v, "") if isinstance(v, (int, float)) else (1, 0, _label(v))  # noqa: E731
    x_labels = [_label(v) for v in sorted(xs, key=order)]
    y_labels = [_label(v) for v in sorted(ys, key=order)]
    matrix = np.full((len(y_labels), len(x_labels)), np.nan)
    for (xl, yl), value in cells.items():
        matrix[y_labels.index(yl), x_labels.index(xl)] = value
    return x_labels, y_labels, matrix


def plot_heatmap(
    records: list[dict[str, Any]], x_axis: str, y_axis: str, metric: str, path: str | Path
) -> Path:
    """Validation ``metric`` over ``x_axis`` x ``y_axis`` (best over the other axes), annotated."""
    x_labels, y_labels, matrix = heatmap_matrix(records, x_axis, y_axis, metric)
    if not x_labels or not y_labels:
        raise ValueError(f"no finished trial has both {x_axis!r} and {y_axis!r} and validation {metric!r}")
    fig, ax = plt.subplots(figsize=(1.2 * len(x_labels) + 3, 0.7 * len(y_labels) + 2.2))
    cmap = "viridis_r" if lower_is_better(metric) else "viridis"
    image = ax.imshow(matrix, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(x_labels)), x_labels)
    ax.set_yticks(range(len(y_labels)), y_labels)
    ax.set_xlabel(x_axis)
    ax.set_ylabel(y_axis)
    finite = matrix[np.isfinite(matrix)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            dark = value > middle if lower_is_better(metric) else value < middle
            ax.text(j, i, f"{value:.4f}", ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")  # fmt: skip
    word = "lowest" if lower_is_better(metric) else "highest"
    ax.set_title(
        f"Validation {metric} ({word} over the other axes)\n(validation split, not test)", fontsize=10
    )
    fig.colorbar(image, ax=ax, label=f"validation {metric}")
    return _save(fig, path)
