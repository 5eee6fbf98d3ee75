"""Models looked up by name (``model.name`` in the config)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from tfrs_movies.models.base import Recommender

_REGISTRY: dict[str, type[Recommender]] = {}
# Modules of tfrs_movies.models that define no model; every other module is imported (lazily, on the
# first look-up) so that its @register decorators run. Adding a model is adding a module.
_NOT_MODELS = {"base", "registry", "towers"}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make ``cls`` reachable as ``model.name: <cls.name>``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"model name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _import_all() -> None:
    import tfrs_movies.models as package

    for info in pkgutil.walk_packages(package.__path__, prefix="tfrs_movies.models."):
        if info.name.rsplit(".", 1)[-1] not in _NOT_MODELS:
            importlib.import_module(info.name)


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
