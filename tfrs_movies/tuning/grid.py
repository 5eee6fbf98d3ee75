"""The search-space file: grid axes, keys derived from them, fixed keys and Optuna distributions.

A grid file is YAML::

    metric: rmse                       # default for --metric (else train.early_stopping.metric)
    grid:                              # every combination of these values is one trial
      model.embedding_dim: [16, 32, 64]
      user_dense: [8, 16, 32, 64, 128] # a name without a dot is a variable for `derived`
      final_dim: [64, 128]
    derived:                           # config keys computed from the axes: "${name}" is an axis value
      model.user_layers: ["${user_dense}", "${final_dim}"]
    fixed:                             # config keys set for every trial
      train.epochs: 5
    optuna:                            # --search optuna; absent: a categorical over each grid axis
      user_dense: {low: 8, high: 128, log: true}
      model.embedding_dim: {choices: [16, 32, 64]}
    pruner: {name: median, n_startup_trials: 5, n_warmup_steps: 2}   # or none; see tuning.pruning

A name with a dot is a config key (``load_config`` checks it, ``model.params.*`` included); a name
without one is a variable and must appear in ``derived``. A trial is identified by the config
overrides it produces (:func:`trial_id`), so the same point reached by the grid or by Optuna, or by a
grid file that grew, is one trial and is never trained twice.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tfrs_movies.config import ConfigError
from tfrs_movies.tuning.pruning import PrunerSpec, parse_pruner

_SECTIONS = {"metric", "grid", "derived", "fixed", "optuna", "pruner"}
_TEMPLATE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


@dataclass(frozen=True)
class SearchSpace:
    """A parsed grid file (see the module docstring)."""

    axes: dict[str, list[Any]]
    derived: dict[str, Any] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    optuna: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric: str | None = None
    pruner: PrunerSpec | None = None  # None: the search's default (tuning.pruning.default_pruner)

    def size(self) -> int:
        """Number of grid points."""
        count = 1
        for values in self.axes.values():
            count *= len(values)
        return count

    def as_dict(self) -> dict[str, Any]:
        return {"grid": self.axes, "derived": self.derived, "fixed": self.fixed, "optuna": self.optuna,
                "metric": self.metric, "pruner": asdict(self.pruner) if self.pruner else None}  # fmt: skip


def parse_space(raw: Mapping[str, Any], source: str = "grid file") -> SearchSpace:
    """Check and parse the mapping of a grid file; a mistake is a ConfigError naming the entry."""
    unknown = set(raw) - _SECTIONS
    if unknown:
        raise ConfigError(f"{source}: unknown section {sorted(unknown)[0]!r} (sections: {sorted(_SECTIONS)})")
    axes = dict(raw.get("grid") or {})
    optuna = {name: dict(spec) for name, spec in (raw.get("optuna") or {}).items()}
    if not axes and not optuna:
        raise ConfigError(f"{source}: needs a 'grid' or an 'optuna' section")
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: grid axis {name!r} must be a non-empty list, got {values!r}")
    for name, spec in optuna.items():
        if "choices" not in spec and not {"low", "high"} <= set(spec):
            raise ConfigError(f"{source}: optuna entry {name!r} needs 'choices' or 'low' and 'high'")
    derived = dict(raw.get("derived") or {})
    used = {m for template in derived.values() for m in _TEMPLATE.findall(json.dumps(template))}
    for name in set(axes) | set(optuna):
        if "." not in name and name not in used:
            raise ConfigError(
                f"{source}: axis {name!r} is not a config key (no dot) and no 'derived' key uses ${{{name}}}"
            )
    pruner = parse_pruner(raw.get("pruner"), source)
    space = SearchSpace(axes, derived, dict(raw.get("fixed") or {}), optuna, raw.get("metric"), pruner)
    missing = used - set(axes) - set(optuna)
    if missing:
        raise ConfigError(f"{source}: 'derived' uses ${{{sorted(missing)[0]}}}, which is not an axis")
    return space


def load_space(path: str | Path) -> SearchSpace:
    """Read a grid file (YAML, see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} does not exist")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"grid file {path} must hold a mapping at the top level")
    return parse_space(raw, str(path))


def expand_grid(space: SearchSpace) -> list[dict[str, Any]]:
    """Every grid point as ``{axis: value}``, in file order (the last axis varies fastest)."""
    names = list(space.axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*space.axes.values())]


def _substitute(template: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(template, str):
        whole = _TEMPLATE.fullmatch(template)
        if whole:  # "${x}" alone keeps the value's type (an int stays an int)
            return params[whole.group(1)]
        return _TEMPLATE.sub(lambda m: str(params[m.group(1)]), template)
    if isinstance(template, list):
        return [_substitute(item, params) for item in template]
    if isinstance(template, Mapping):
        return {key: _substitute(value, params) for key, value in template.items()}
    return template


def overrides_for(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """The config overrides of one trial: fixed keys, then the dotted axes, then the derived keys."""
    out = dict(space.fixed)
    out.update({name: value for name, value in params.items() if "." in name})
    out.update({key: _substitute(template, params) for key, template in space.derived.items()})
    return dict(sorted(out.items()))


def trial_id(overrides: Mapping[str, Any]) -> str:
    """A stable 12-hex-digit id of a trial's overrides (key order and int/float spelling do not matter)."""
    canonical = json.dumps(_canonical(overrides), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:12]


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1.0 and 1 name the same trial
    return value
