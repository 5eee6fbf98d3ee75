"""Where the next trial comes from: the grid in order, or an Optuna study (ask / tell).

Both hand out ``{axis: value}`` points; the runner turns a point into config overrides and a trial id.
The Optuna study lives in memory and is rebuilt on every start from the trials already finished in the
tuning directory (``study.add_trial``), so resuming needs no database and a point reached twice is
answered from its finished trial instead of being trained again. Trials the pruner stopped
(:mod:`tfrs_movies.tuning.pruning`) are added as PRUNED, with their per-epoch values, and never rerun.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tfrs_movies.config import ConfigError
from tfrs_movies.evaluation.metrics_table import lower_is_better
from tfrs_movies.tuning.grid import SearchSpace, expand_grid


def study_direction(metric: str) -> str:
    """Optuna's ``direction`` for a study of ``metric``: ``"minimize"`` or ``"maximize"``."""
    return "minimize" if lower_is_better(metric) else "maximize"


def grid_points(space: SearchSpace) -> Iterator[dict[str, Any]]:
    yield from expand_grid(space)


def optuna_specs(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """The ``optuna`` section, or else a categorical over each grid axis."""
    return space.optuna or {name: {"choices": values} for name, values in space.axes.items()}


def _distribution(spec: dict[str, Any]):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if "choices" in spec:
        # Indices, so that lists (e.g. layer sizes) can be choices too; decoded in OptunaSearch.decode.
        return CategoricalDistribution(list(range(len(spec["choices"]))))
    low, high = spec["low"], spec["high"]
    log, step = bool(spec.get("log", False)), spec.get("step")
    if _is_int(low) and _is_int(high) and not isinstance(step, float):
        return IntDistribution(low, high, log=log, step=step or 1)
    return FloatDistribution(float(low), float(high), log=log, step=step)


def _in_range(value: Any, spec: dict[str, Any]) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and spec["low"] <= value <= spec["high"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class OptunaSearch:
    """An Optuna study over the space (TPE, seeded), fed with the trials already finished."""

    def __init__(self, space: SearchSpace, direction: str, seed: int) -> None:
        try:
            import optuna
        except ImportError as err:
            raise ConfigError("--search optuna needs Optuna: pip install 'tfrs_movies[tune]'") from err

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.specs = optuna_specs(space)
        self.distributions = {name: _distribution(spec) for name, spec in self.specs.items()}
        self.study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))

    def encode(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """A finished trial's point in Optuna's terms, or None when it lies outside this space."""
        out = {}
        for name, spec in self.specs.items():
            if name not in params:
                return None
            value = params[name]
            if "choices" in spec:
                texts = [json.dumps(c) for c in spec["choices"]]
                if json.dumps(value) not in texts:
                    return None
                value = texts.index(json.dumps(value))
            elif not _in_range(value, spec):
                return None
            out[name] = value
        return out

    def decode(self, optuna_params: dict[str, Any]) -> dict[str, Any]:
        return {
            name: spec["choices"][optuna_params[name]] if "choices" in spec else optuna_params[name]
            for name, spec in self.specs.items()
        }

    def add_finished(self, params: dict[str, Any], value: float | None,
                     curve: dict[int, float] | None = None) -> bool:  # fmt: skip
        """Teach the study a trial run earlier (``value`` None: the pruner stopped it, a PRUNED trial),
        with its per-epoch values if kept; False when it is outside this space."""
        import optuna

        encoded = self.encode(params)
        if encoded is None:
            return False
        state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.PRUNED
        try:
            trial = optuna.trial.create_trial(params=encoded, distributions=self.distributions, value=value,
                                              intermediate_values=dict(curve or {}), state=state)  # fmt: skip
        except ValueError:  # e.g. an integer off the step grid
            return False
        self.study.add_trial(trial)
        return True

    def ask(self) -> tuple[Any, dict[str, Any]]:
        """(Optuna trial, point) for the next trial to run."""
        trial = self.study.ask(self.distributions)
        return trial, self.decode(trial.params)

    def tell(self, trial: Any, value: float | None) -> None:
        """The trial's validation figure, or None when it failed."""
        import optuna

        if value is None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, value)

    def tell_pruned(self, trial: Any, curve: dict[int, float]) -> None:
        """The pruner stopped the trial after the epochs of ``curve`` (epoch -> validation figure)."""
        import optuna

        for epoch, value in sorted(curve.items()):
            trial.report(value, epoch)
        self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
