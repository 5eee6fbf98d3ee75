"""Serving: export any model's SavedModels from its serving parts (top-K indexes, query tower, ranking,
extras) and load them to answer top-N questions.

The names below are imported on first use, so that ``tfrs_movies.serving.load`` (NumPy and pandas) can be
imported without :mod:`tfrs_movies.serving.export`, which imports TensorFlow (``recommend --help``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tfrs_movies.serving.export import export_model, export_run
    from tfrs_movies.serving.load import Exported, Recommendations, ServingError, load_export

# name -> the module that defines it
_LAZY = {
    "Exported": "tfrs_movies.serving.load",
    "Recommendations": "tfrs_movies.serving.load",
    "ServingError": "tfrs_movies.serving.load",
    "load_export": "tfrs_movies.serving.load",
    "export_model": "tfrs_movies.serving.export",
    "export_run": "tfrs_movies.serving.export",
}

__all__ = ["Exported", "Recommendations", "ServingError", "export_model", "export_run", "load_export"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
