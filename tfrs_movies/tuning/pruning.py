"""Pruning: a trial whose validation figure after some epoch is worse than the median of the finished
trials' at the same epoch is stopped there (Optuna's :class:`~optuna.pruners.MedianPruner`).

The grid file's ``pruner`` section sets it (default: ``median`` for ``--search optuna``, ``none`` for a
grid, which is meant to be run whole)::

    pruner: median                                    # or: none
    pruner: {name: median, n_startup_trials: 5, n_warmup_steps: 2}

``n_startup_trials``: no pruning before that many trials have finished; ``n_warmup_steps``: no trial is
pruned before that many epochs (epoch ``e`` is step ``e``, counted from 0).

The design, since trials run in worker processes and the Optuna study of :mod:`tfrs_movies.tuning.search`
lives in the main process only (rebuilt in memory on every start, no database): each trial decides for
itself. When the runner starts a trial it hands it a :class:`Pruning`: the pruner's settings, the
metric, its direction and the per-epoch validation curves of every trial finished so far (kept in each
finished trial's ``result.json`` under ``intermediate``). The trial (:mod:`tfrs_movies.tuning.trial`)
passes a Keras callback (:class:`~tfrs_movies.tuning.epochs.ReportEpochs`) down through the experiment
runner to ``fit_keras``; it builds a private in-memory study holding those curves as finished trials,
reports each epoch's ``val_<metric>`` (written into the epoch's logs by the early-stopping callback,
which runs first) to its own trial and raises :class:`TrialPruned` when the pruner says so. The runner
records the trial as ``pruned`` with its curve; a pruned trial is never run again, and a rebuilt Optuna
study is told it as PRUNED. The decision is the one a shared study would make, except that trials
running at the same time do not see each other's curves until they finish. A model without epochs
(EASE, SVD, ...) never calls the callback and is never pruned; nor is a model whose early stopping does
not log the metric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tfrs_movies.config import ConfigError

PRUNERS = ("median", "none")
DEFAULTS = {"n_startup_trials": 5, "n_warmup_steps": 2}


@dataclass(frozen=True)
class PrunerSpec:
    """The grid file's ``pruner`` section."""

    name: str = "none"
    n_startup_trials: int = DEFAULTS["n_startup_trials"]
    n_warmup_steps: int = DEFAULTS["n_warmup_steps"]

    @property
    def enabled(self) -> bool:
        return self.name != "none"


def parse_pruner(raw: Any, source: str = "grid file") -> PrunerSpec | None:
    """``median`` / ``none`` / ``{name: median, n_startup_trials: 5, n_warmup_steps: 2}``; None when the
    section is absent (the search's default applies)."""
    if raw is None:
        return None
    spec = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(spec, Mapping) or spec.get("name") not in PRUNERS:
        raise ConfigError(
            f"{source}: pruner must be one of {list(PRUNERS)} or a mapping with 'name', got {raw!r}"
        )
    unknown = set(spec) - {"name", *DEFAULTS}
    if unknown:
        raise ConfigError(
            f"{source}: unknown pruner key {sorted(unknown)[0]!r} (keys: name, {', '.join(DEFAULTS)})"
        )
    for key in DEFAULTS:
        value = spec.get(key, DEFAULTS[key])
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{source}: pruner {key} must be an integer >= 0, got {value!r}")
    return PrunerSpec(**spec)


def default_pruner(search: str) -> PrunerSpec:
    return PrunerSpec("median") if search == "optuna" else PrunerSpec("none")


Curve = dict[int, float]  # epoch (from 0) -> validation figure


@dataclass(frozen=True)
class Pruning:
    """What a trial needs to decide on its own pruning (picklable: it travels to a worker process)."""

    spec: PrunerSpec
    metric: str
    finished: tuple[Curve, ...] = field(default_factory=tuple)


class TrialPruned(Exception):
    """Raised from the epoch's end when the pruner stops the trial; carries the curve so far."""

    def __init__(self, epoch: int, curve: Curve) -> None:
        super().__init__(f"pruned after epoch {epoch + 1}")
        self.epoch, self.curve = epoch, dict(curve)


def curve_of(record: Mapping[str, Any], metric: str) -> Curve | None:
    """A finished trial's per-epoch validation ``metric`` (``result.json``'s ``intermediate``), if kept."""
    kept = record.get("intermediate") or {}
    if kept.get("metric") != metric or not kept.get("values"):
        return None
    return {int(epoch): float(value) for epoch, value in kept["values"].items()}


def intermediate(metric: str, curve: Curve) -> dict[str, Any]:
    """The ``intermediate`` entry of a ``result.json`` (epochs as JSON keys)."""
    return {"metric": metric, "values": {str(epoch): value for epoch, value in sorted(curve.items())}}


def local_trial(pruning: Pruning) -> Any:
    """A trial of a private in-memory study that holds the finished curves, under the pruner."""
    import optuna

    from tfrs_movies.tuning.search import study_direction  # search imports grid, which imports this

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = pruning.spec
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=spec.n_startup_trials, n_warmup_steps=spec.n_warmup_steps
    )
    study = optuna.create_study(direction=study_direction(pruning.metric), pruner=pruner)
    for curve in pruning.finished:
        last = curve[max(curve)]
        study.add_trial(optuna.trial.create_trial(value=last, intermediate_values=dict(curve)))
    return study.ask()


def finished_curves(records: Sequence[Mapping[str, Any]], metric: str) -> tuple[Curve, ...]:
    """The curves of ``metric`` kept by finished (``ok``) trials."""
    curves = (curve_of(r, metric) for r in records if r.get("status") == "ok")
    return tuple(c for c in curves if c)
