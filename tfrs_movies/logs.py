"""Quiet start-up for the command lines: what TensorFlow and its libraries print before anything useful.

A training run would otherwise open with TensorFlow's C++ log lines (a ``cuInit`` error on a machine
without a GPU, oneDNN notices), ScaNN's native absl lines (``I0000 ... partitioner_factory_base.cc``)
and one ``Model's __init__() arguments contain non-serializable objects ... get_config`` warning per
Keras model saved. :func:`configure` hides exactly those, unless the user asked for them (``--verbose``,
see :func:`tfrs_movies.cli.add_debug_flag`); every other warning is kept:

- TensorFlow's C++ logging: ``TF_CPP_MIN_LOG_LEVEL=3`` (read once, when TensorFlow loads; only when the
  user did not set it; ``--verbose`` sets 0);
- the native absl logging of the libraries loaded into TensorFlow's process (ScaNN's index builder):
  its minimum level raised to ERROR right after ``import tensorflow`` (absl's ``SetMinLogLevel`` in
  ``libtensorflow_framework``, which ScaNN's op library shares);
- Python's ``absl`` logger (``WARNING:absl:...`` while saving a SavedModel): ERROR and above;
- the ``tensorflow`` logger: the ``get_config`` warning only, matched by its text.

Call :func:`configure` from an entry point after its arguments are parsed and before TensorFlow is
imported (``--help`` stays fast); :func:`tfrs_movies.cli.guarded` does.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.abc
import importlib.util
import logging
import mmap
import os
import re
import sys
from pathlib import Path
from typing import Any

import tfrs_movies

# The start of tf_keras's warning when a subclassed Model without get_config() is saved.
GET_CONFIG_WARNING = "Model's `__init__()` arguments contain non-serializable objects"
_ABSL_ERROR = 2  # absl::LogSeverityAtLeast::kError
_SET_MIN_LOG_LEVEL = re.compile(rb"_ZN4absl\d+lts_\d+14SetMinLogLevelENS0_18LogSeverityAtLeastE")


class _DropGetConfigWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(GET_CONFIG_WARNING)


_FILTER = _DropGetConfigWarning()


def configure(verbose: bool = False) -> None:
    """Hide the start-up noise described above (``verbose=False``) or show every log line (``True``)."""
    if tfrs_movies.LOG_LEVEL_SET_BY_US:  # a TF_CPP_MIN_LOG_LEVEL the user set is theirs
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"
    tf_logger = logging.getLogger("tensorflow")
    if verbose:
        tf_logger.removeFilter(_FILTER)
        logging.getLogger("absl").setLevel(logging.NOTSET)
        return
    tf_logger.addFilter(_FILTER)  # a logger holds a filter once, however often this runs
    logging.getLogger("absl").setLevel(logging.ERROR)
    if "tensorflow" in sys.modules:
        quiet_native_absl()
    elif not any(isinstance(f, _AfterTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterTensorFlow())


@functools.cache  # the level holds for the process; the library need not be searched again
def quiet_native_absl() -> bool:
    """Raise the native absl logging's minimum level to ERROR in the loaded TensorFlow library; False
    when the library or its ``SetMinLogLevel`` is not found (nothing is changed then)."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return False
    library = Path(list(spec.submodule_search_locations)[0]) / "libtensorflow_framework.so.2"
    if not library.is_file():
        return False
    with open(library, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        found = _SET_MIN_LOG_LEVEL.search(data)  # the mangled name names absl's version
        name = found.group(0).decode("ascii") if found else None
    if name is None:
        return False
    try:  # RTLD_NOLOAD: the handle of the copy TensorFlow loaded, never a second one
        handle = ctypes.CDLL(str(library), mode=os.RTLD_NOLOAD)
        getattr(handle, name)(ctypes.c_int(_ABSL_ERROR))
    except (OSError, AttributeError):
        return False
    return True


class _AfterTensorFlow(importlib.abc.MetaPathFinder):
    """Runs :func:`quiet_native_absl` once ``import tensorflow`` has finished, then leaves
    ``sys.meta_path``."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            quiet_native_absl()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
