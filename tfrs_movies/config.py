"""One layered configuration: built-in defaults < a YAML file < ``--set key=value`` overrides.

Every key the project understands is in :data:`DEFAULTS`; anything else is an error that names the key
(with a suggestion when it looks like a typo). Values are checked against the type of their default, or
against :data:`_CHOICES` / :data:`_NULLABLE` where a default alone cannot say what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tfrs_movies.data.registry import DATASET_NAMES, SPLIT_KINDS

DEFAULTS: dict[str, Any] = {
    "seed": 42,
    "run_dir": None,  # None: runs/<dataset>-<model>-<time>
    "data": {
        "name": "ml-100k",
        "dir": None,  # None: --data-dir, $TFRS_MOVIES_DATA, data/, ../shared/data, download, else synthetic
        "on_bad_lines": "error",
        "download": True,
        "imdb_dir": None,
        "split": {
            "kind": "random",
            "train": None,  # files split: e.g. u1.base (relative to data.dir unless absolute)
            "test": None,
            "test_fraction": 0.2,
            "min_ratings": 5,
            "seed": 42,
            "validation_fraction": 0.1,
        },
        "synthetic": {"users": 300, "movies": 400, "ratings": 20000, "seed": 0},
    },
    "model": {
        "name": "retrieval",
        "embedding_dim": 64,
        "user_layers": [],
        "movie_layers": [],
        "temperature": 0.1,
        "similarity": "dot",
        "remove_accidental_hits": True,
        "sampling_correction": True,
        "l2": 0.0,
        "dropout": 0.0,
        "batch_norm": False,
        # Side features the towers use, when the dataset has them (see tfrs_movies/features/side.py).
        "user_features": ["id"],
        "movie_features": ["id"],
        "history_length": 50,
        # 0: an embedding row per id of the vocabulary; N > 0: ids hashed into N rows (models/towers.py).
        "id_buckets": 0,
        # Model-specific settings (e.g. model.params.hidden for autorec): each model class declares its
        # own `Params` dataclass and rejects keys it does not know, naming them (RecBole-style).
        "params": {},
    },
    "train": {
        "epochs": 10,
        "batch_size": 1024,
        "learning_rate": 0.05,
        "optimizer": "adagrad",
        "shuffle_buffer": 200_000,
        # More training rows than this: stream them from index shards (features/streaming.py).
        "stream_above": 1_000_000,
        "early_stopping": {"metric": "recall@20", "patience": 3, "min_delta": 0.0},
        "verbose": 1,
        "factorized_topk": False,
        # default: one device; mirrored: MirroredStrategy over the local GPUs (else the CPU devices);
        # multi_worker: MultiWorkerMirroredStrategy configured by TF_CONFIG (see training/distribute.py).
        "strategy": "default",
        # Checkpoints (training/fit.py) at every epoch's end and, N > 0, every N steps within an epoch.
        "checkpoint_every": 0,
    },
    # max_users: 0 ranks every test user; N a sample of N of them (drawn with the run's seed).
    "eval": {"ks": [10, 20], "relevance_threshold": None, "batch_size": 512, "exclude_seen": True,
             "max_users": 0},
    # SavedModels (query tower, brute-force and ScaNN top-K, ranking) under <run_dir>/export.
    # rerank_weight: two-stage serving orders candidates by z(retrieval) + rerank_weight * z(ranking).
    "export": {"enabled": True, "k_max": 100, "rerank_weight": 0.25},
}

_CHOICES: dict[str, tuple] = {
    "data.name": DATASET_NAMES,
    "data.on_bad_lines": ("error", "skip"),
    "data.split.kind": SPLIT_KINDS,
    "model.similarity": ("dot", "cosine"),
    "train.optimizer": ("adagrad", "adam", "lazy_adam", "sgd"),
    "train.strategy": ("default", "mirrored", "multi_worker"),
}
# Keys whose default is None, with the types they may hold otherwise.
_NULLABLE: dict[str, tuple[type, ...]] = {
    "run_dir": (str,),
    "data.dir": (str,),
    "data.imdb_dir": (str,),
    "data.split.train": (str,),
    "data.split.test": (str,),
    "eval.relevance_threshold": (int, float),
}


# "1e-3", "5E+2": numbers to anyone but YAML 1.1, which needs a dot ("1.0e-3"); so does json.dumps(1e-05).
_EXPONENT_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _positive_ints(value: list) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)


# What a value must be beyond its type: (what, test) per key. A test is written so that NaN fails it
# (every comparison with NaN is false); float values must be finite besides (checked for every key).
_RULE_TABLE: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    ("positive", lambda v: v > 0, (
        "export.k_max", "train.epochs", "train.batch_size", "train.learning_rate", "train.shuffle_buffer",
        "model.embedding_dim", "model.temperature", "model.history_length", "eval.batch_size",
        "data.synthetic.users", "data.synthetic.movies", "data.synthetic.ratings",
    )),
    (">= 0", lambda v: v >= 0, (
        "model.l2", "model.id_buckets", "train.stream_above", "train.early_stopping.patience",
        "train.early_stopping.min_delta", "eval.max_users", "data.split.min_ratings",
        "train.checkpoint_every",
    )),
    ("from 0 to 2**32 - 1 (a NumPy seed)", lambda v: 0 <= v < 2**32,
     ("seed", "data.split.seed", "data.synthetic.seed")),
    ("in [0, 1)", lambda v: 0 <= v < 1,
     ("data.split.test_fraction", "data.split.validation_fraction", "model.dropout")),
    ("0, 1 or 2", lambda v: v in (0, 1, 2), ("train.verbose",)),
    ("a non-empty list of positive integers", lambda v: bool(v) and _positive_ints(v), ("eval.ks",)),
    ("a list of positive integers", _positive_ints, ("model.user_layers", "model.movie_layers")),
)  # fmt: skip
_RULES: dict[str, tuple[str, Any]] = {key: (what, test) for what, test, keys in _RULE_TABLE for key in keys}


class ConfigError(ValueError):
    """A config key is unknown or its value is not allowed. The message names the key."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as one level of dotted keys, in the tree's order: ``{"a": {"b": 1}, "c": {}}``
    -> ``{"a.b": 1, "c": {}}`` (an empty mapping stays a value)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


_DEFAULT_FLAT = flatten(DEFAULTS)


def _unknown(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(_DEFAULT_FLAT), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown config key '{key}'{hint}")


def _check_value(key: str, value: Any) -> Any:
    default = _DEFAULT_FLAT[key]
    if key in _NULLABLE:
        if value is not None and not isinstance(value, _NULLABLE[key]) or isinstance(value, bool):
            allowed = " or ".join(t.__name__ for t in _NULLABLE[key])
            raise ConfigError(f"config key '{key}' must be {allowed} or null, got {value!r}")
        return value if value is None else _check_range(key, value)
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ConfigError(f"config key '{key}' must be one of {list(_CHOICES[key])}, got {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads "1e-3" (no dot) as text; every user means a number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
    elif isinstance(default, list) and not isinstance(value, list):
        raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
    return _check_range(key, value)


def _check_range(key: str, value: Any) -> Any:
    """``value`` if it is finite (numbers) and passes the key's rule in :data:`_RULES`."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
    if key in _RULES:
        what, test = _RULES[key]
        if not test(value):
            raise ConfigError(f"config key '{key}' must be {what}, got {value!r}")
    return value


PARAMS_PREFIX = "model.params."


def _set(tree: dict[str, Any], key: str, value: Any) -> None:
    if key.startswith(PARAMS_PREFIX) and len(key) > len(PARAMS_PREFIX):
        # Checked by the model class when it is built (it alone knows its parameters).
        tree["model"]["params"][key[len(PARAMS_PREFIX) :]] = value
        return
    if key not in _DEFAULT_FLAT:
        raise _unknown(key)
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = _check_value(key, value)


def merge(base: dict[str, Any], overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return ``base`` updated by the nested ``overrides``, validating every key it touches."""
    out = copy.deepcopy(base)
    for key, value in flatten(overrides, prefix).items():
        if key.startswith(PARAMS_PREFIX):
            _set(out, key, value)
            continue
        if key not in _DEFAULT_FLAT:
            is_section = any(k.startswith(key + ".") for k in _DEFAULT_FLAT)
            # An empty mapping for a section ("early_stopping: {}") is a no-op, not an unknown key.
            if is_section and isinstance(value, Mapping) and not value:
                continue
            if is_section:
                raise ConfigError(f"config key '{key}' is a section: it must be a mapping, got {value!r}")
            raise _unknown(key)
        _set(out, key, value)
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=5"`` -> ``("train.epochs", 5)``; the value is read as YAML (``[64, 32]``, ``null``)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"config key '{key}': cannot read value {raw!r}: {err}") from err
    return key, value


def _read_yaml(path: Path) -> Any:
    """The YAML document in ``path`` (safe: no tags that build objects); a ConfigError naming the file and
    the place for text that is not UTF-8 or not YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte 0x{err.object[err.start]:02x} on line {line}); "
            "save it as UTF-8"
        ) from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None


def check_names(config: Mapping[str, Any]) -> None:
    """What a resolved config refers to by name exists: the model (``model.name``) with its
    ``model.params``, and the early-stopping metric. A ConfigError naming the key otherwise.

    Called by the runner before any data is loaded or any folder is made (it imports the model
    registry, hence TensorFlow, which the plain key checks above do not need).
    """
    from tfrs_movies.evaluation import metrics_table as M
    from tfrs_movies.models.registry import get_model_class, model_names

    name = config["model"]["name"]
    try:
        model_class = get_model_class(name)
    except KeyError:
        raise ConfigError(
            f"config key 'model.name': unknown model {name!r}; registered: {', '.join(model_names())}"
        ) from None
    model = model_class(dict(config))  # checks model.params (and what a model checks when built): cheap
    metric = config["train"]["early_stopping"]["metric"]
    try:
        M.metric(metric)  # a name of the metric table (a model may watch its own, e.g. a classifier's auc)
    except ValueError as err:
        raise ConfigError(f"config key 'train.early_stopping.metric': {err}") from None
    early_stops = model.uses_validation and config["data"]["split"]["validation_fraction"] > 0
    if metric in M.RATING_METRICS and early_stops and not model.predicts_ratings:
        raise ConfigError(
            f"config key 'train.early_stopping.metric' {metric!r} needs a model that predicts ratings; "
            f"{name!r} does not (use a top-N metric such as recall@20)"
        )


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> dict[str, Any]:
    """Defaults, then the YAML file at ``path``, then ``overrides`` ("key=value" strings or a mapping)."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        loaded = _read_yaml(path)
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        config = merge(config, loaded)
    items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
    for key, value in items:
        _set(config, key, value)
    _canonical_metric(config)
    return config


def _canonical_metric(config: dict[str, Any]) -> None:
    """``train.early_stopping.metric`` under the name its figure is stored by (``hit@10`` -> ``hr@10``:
    RecBole's names are accepted; the run's config.yaml, logs and early stopping use the table's)."""
    from tfrs_movies.evaluation import metrics_table as M

    stop = config.get("train", {}).get("early_stopping")
    if isinstance(stop, dict) and isinstance(stop.get("metric"), str):
        stop["metric"] = M.canonical(stop["metric"])


def get(config: Mapping[str, Any], key: str) -> Any:
    """``get(cfg, "train.epochs")``."""
    node: Any = config
    for part in key.split("."):
        node = node[part]
    return node


def dump(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False)
