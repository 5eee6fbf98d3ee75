"""Models looked up by name (``model.name`` in the config)."""

from __future__ import annotations

import importlib
from typing import Any

from tfrs_movies.models.base import Recommender

_REGISTRY: dict[str, type[Recommender]] = {}
# Modules that register models on import; imported lazily so that `import tfrs_movies.models`
# does not pull TensorFlow in for a NumPy baseline.
_MODULES = ("tfrs_movies.models.retrieval", "tfrs_movies.models.baselines")


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make ``cls`` reachable as ``model.name: <cls.name>``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"model name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _import_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def model_names() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[Recommender]:
    _import_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_model(config: dict[str, Any]) -> Recommender:
    """Instantiate ``config["model"]["name"]`` with the whole resolved config."""
    return get_model_class(config["model"]["name"])(config)
