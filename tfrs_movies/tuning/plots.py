"""Seed 000's plots of a tuning run, as PNG files (matplotlib, Agg backend).

- :func:`plot_curves`: train and validation RMSE and MAE of every trial (seed 000 plotted train and
  test; a tuning run never reads test, so the second curve is validation and the title says so);
  models without rating figures get the selection metric instead.
- :func:`plot_heatmap`: the validation metric over two chosen axes, the best value over the other axes
  in each cell.
- :func:`plot_importance`: Optuna's parameter importances (fANOVA, :func:`param_importances`): how much
  of the validation metric's variance over the finished trials each varied parameter explains.

Trials are named by their hyperparameter values (the ones that vary), never by their ids.
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
from tfrs_movies.tuning.search import study_direction  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    """Lay out, write (creating the folder) and close ``fig``; returns the path."""
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def _label(value: Any) -> str:
    """A hyperparameter value as a tick reads it: lists as JSON, floats to 4 significant digits
    (Optuna's ``0.0008812615372898485`` is ``0.0008813``)."""
    if isinstance(value, float):
        return repr(value) if len(repr(value)) <= 7 else f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def varied_params(records: list[dict[str, Any]]) -> list[str]:
    """The hyperparameters that took more than one value over ``records``, in file order."""
    names = list(dict.fromkeys(name for r in records for name in r["params"]))
    return [n for n in names if len({repr(r["params"].get(n)) for r in records}) > 1]


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def trial_label(record: dict[str, Any], names: list[str]) -> str:
    """``"rank=5 reg_user=2.0"``: the trial's values of ``names`` (short names)."""
    return " ".join(f"{_short(n)}={_label(record['params'].get(n))}" for n in names)


def plot_curves(records: list[dict[str, Any]], path: str | Path, metric: str) -> Path:
    """Train and validation curves over the trials. One numeric hyperparameter varied: over its values;
    else over the trials sorted by validation ``metric`` (best first), each tick naming the trial's
    values of the varied hyperparameters."""
    records = [r for r in records if metric in r["valid"]]
    varied = varied_params(records)
    over_value = len(varied) == 1 and all(_number(r["params"].get(varied[0])) for r in records)
    if over_value:
        records.sort(key=lambda r: r["params"][varied[0]])
        x = np.array([float(r["params"][varied[0]]) for r in records])
    else:
        records.sort(key=lambda r: r["valid"][metric], reverse=not lower_is_better(metric))
        x = np.arange(1, len(records) + 1)
    panels = [m for m in ("rmse", "mae") if any(m in r["valid"] for r in records)] or [metric]
    longest = 0 if over_value else max((len(trial_label(r, varied)) for r in records), default=0)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.5 + 0.07 * longest), squeeze=False)
    for ax, name in zip(axes[0], panels, strict=True):
        valid = [r["valid"].get(name, np.nan) for r in records]
        train = [r.get("train", {}).get(name, np.nan) for r in records]
        if not np.all(np.isnan(train)):
            ax.plot(x, train, "o-", markersize=3, label=f"train {name.upper()}")
        ax.plot(x, valid, "s-", markersize=3, label=f"validation {name.upper()}")
        ax.set_ylabel(name.upper())
        ax.set_title(f"Train and validation {name.upper()} across {len(records)} trials\n"
                     "(validation split, not test)", fontsize=10)  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend()
        if over_value:
            ax.set_xlabel(varied[0])
            if len(set(x)) > 1 and x.min() > 0 and x.max() / x.min() >= 20:
                ax.set_xscale("log")
        else:
            every = max(1, -(-len(records) // 20))  # at most 20 named ticks
            shown = x[::every]
            labels = [trial_label(records[i - 1], varied) for i in shown]
            ax.set_xticks(shown, labels, rotation=90, fontsize=7)
            ax.set_xlabel(f"trials, best validation {metric} first")
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
    x_labels = list(dict.fromkeys(_label(v) for v in sorted(xs, key=order)))  # values alike to 4 digits: one
    y_labels = list(dict.fromkeys(_label(v) for v in sorted(ys, key=order)))
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


def param_importances(records: list[dict[str, Any]], metric: str, seed: int = 0) -> dict[str, float]:
    """``{hyperparameter: importance}`` (sums to 1, largest first): Optuna's fANOVA over the finished
    trials' validation ``metric``, the varied hyperparameters only (numbers on their range, anything
    else as categories). Needs Optuna, at least 2 trials with the figure and 1 varied hyperparameter
    (a ValueError says which is missing)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    records = [r for r in records if metric in r["valid"]]
    varied = varied_params(records)
    if len(records) < 2 or not varied:
        raise ValueError(f"{len(records)} finished trials and {len(varied)} varied hyperparameters "
                         "(at least 2 and 1 needed)")  # fmt: skip
    distributions: dict[str, Any] = {}
    for name in varied:
        values = [r["params"].get(name) for r in records]
        if all(_number(v) for v in values):
            distributions[name] = FloatDistribution(float(min(values)), float(max(values)))
        else:
            distributions[name] = CategoricalDistribution(sorted({_label(v) for v in values}))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=study_direction(metric))
    for r in records:
        params = {n: float(r["params"][n]) if isinstance(d, FloatDistribution) else _label(r["params"].get(n))
                  for n, d in distributions.items()}  # fmt: skip
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  value=float(r["valid"][metric])))  # fmt: skip
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))


def plot_importance(importances: dict[str, float], n_trials: int, metric: str, path: str | Path) -> Path:
    """A horizontal bar per hyperparameter, the most important on top."""
    names = list(importances)[::-1]
    values = [importances[n] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.8))
    bars = ax.barh(range(len(names)), values, color="tab:blue")
    ax.set_yticks(range(len(names)), names)
    ax.bar_label(bars, [f"{v:.2f}" for v in values], padding=3, fontsize=8)
    ax.set_xlim(0, max(1.0, max(values) * 1.15))
    ax.set_xlabel(f"importance (share of the variance of validation {metric}, fANOVA)")
    ax.set_title(f"Hyperparameter importance over {n_trials} finished trials\n(validation split, not test)",
                 fontsize=10)  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
