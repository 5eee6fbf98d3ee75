"""tfrs_movies: movie recommendation with TensorFlow Recommenders.

TFRS 0.7.7 is written against Keras 2, so the legacy Keras (tf-keras) must be selected *before*
TensorFlow is first imported anywhere in the process. Importing this package does that, so users
never have to set ``TF_USE_LEGACY_KERAS`` themselves.

The Python API (:mod:`tfrs_movies.api`), imported on first use so that ``import tfrs_movies`` stays light::

    from tfrs_movies import load_config, load_dataset, build_model, run, load_export
"""

import os
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ start-up chatter hides the one line the user needs; keep warnings and errors.
# (Entry points that print answers, e.g. ``recommend``, go further when the user set nothing.)
LOG_LEVEL_SET_BY_US = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

# The API's names, resolved from tfrs_movies.api on first use (module __getattr__, PEP 562); type
# checkers read them from the import below.
if TYPE_CHECKING:
    from tfrs_movies.api import build_model, load_config, load_dataset, load_export, run

_API = ("build_model", "load_config", "load_dataset", "load_export", "run")
__all__ = ["__version__", "build_model", "load_config", "load_dataset", "load_export", "run"]


def __getattr__(name: str) -> Any:
    if name in _API:
        import tfrs_movies.api

        value = getattr(tfrs_movies.api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
