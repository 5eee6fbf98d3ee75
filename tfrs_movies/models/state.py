"""A model's saved state: arrays and JSON values, written by the framework alone, never pickled.

On disk a model folder holds two files, written together inside one atomic directory
(:func:`tfrs_movies.io.atomic_directory`), so a reader never sees half of a save:

- ``model.json``: ``{"format": STATE_FORMAT, "name": <registered model name>, "config": <resolved
  config>, "values": {key: JSON value}, "arrays": [keys], "string_arrays": [keys]}``;
- ``arrays.npz``: one entry per array key (NumPy's own format, read with ``allow_pickle=False``).
  String arrays (object dtype in memory) are stored as fixed-width unicode and turned back into object
  arrays on load.

Keys are flat paths: a composite model nests its members' states under a prefix
(``members/0/weights/003``); :meth:`State.nest` and :meth:`State.child` do that. A folder written by
another format version is refused with one line saying which version it holds and which this release
reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_movies.io import atomic_directory, atomic_write_json

STATE_FORMAT = 2  # 1: the pickled layout of releases before the model contract (refused)
MODEL_FILE = "model.json"
ARRAYS_FILE = "arrays.npz"


class ModelFormatError(ValueError):
    """A model folder this release cannot read; the message is one line."""


@dataclass
class State:
    """``arrays``: name -> numpy array; ``values``: name -> JSON value (numbers, strings, lists, dicts)."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, items: dict[str, Any]) -> State:
        """Split a flat ``{name: array or JSON value}`` into arrays and values."""
        state = cls()
        for key, value in items.items():
            state[key] = value
        return state

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, np.ndarray):
            self.arrays[key] = value
        else:
            self.values[key] = _plain(value)

    def __getitem__(self, key: str) -> Any:
        if key in self.arrays:
            return self.arrays[key]
        if key in self.values:
            return self.values[key]
        raise KeyError(f"the saved state has no {key!r}")

    def __contains__(self, key: str) -> bool:
        return key in self.arrays or key in self.values

    def flat(self) -> dict[str, Any]:
        return {**self.values, **self.arrays}

    def nest(self, prefix: str, other: State) -> State:
        """Add ``other``'s entries under ``prefix/``; returns self."""
        for key, value in other.arrays.items():
            self.arrays[f"{prefix}/{key}"] = value
        for key, value in other.values.items():
            self.values[f"{prefix}/{key}"] = value
        return self

    def child(self, prefix: str) -> State:
        """The entries under ``prefix/``, with the prefix removed."""
        start = f"{prefix}/"
        return State(
            {k[len(start) :]: v for k, v in self.arrays.items() if k.startswith(start)},
            {k[len(start) :]: v for k, v in self.values.items() if k.startswith(start)},
        )


def _plain(value: Any) -> Any:
    """numpy scalars and tuples as plain JSON values (checked now, not when writing)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{type(value).__name__} is not a state value (arrays or JSON values only)")


# ----- Keras weights as arrays -------------------------------------------------------------------
def keras_weights(model: Any, prefix: str = "weights") -> dict[str, np.ndarray]:
    """``model.get_weights()`` as ``{prefix/000: array, ...}`` (the order Keras builds them in)."""
    return {f"{prefix}/{i:03d}": np.asarray(w) for i, w in enumerate(model.get_weights())}


def set_keras_weights(model: Any, state: State, prefix: str = "weights") -> None:
    """The inverse of :func:`keras_weights` on a model built the same way."""
    start = f"{prefix}/"
    keys = sorted(k for k in state.arrays if k.startswith(start) and "/" not in k[len(start) :])
    expected = len(model.get_weights())
    if len(keys) != expected:
        raise ModelFormatError(f"saved state holds {len(keys)} weight arrays, the model builds {expected}")
    model.set_weights([state.arrays[k] for k in keys])


# ----- on disk -----------------------------------------------------------------------------------
def write_state(path: str | Path, name: str, config: dict[str, Any], state: State) -> Path:
    """Write ``model.json`` + ``arrays.npz`` into ``path`` atomically (an old folder is replaced)."""
    path = Path(path)
    strings = sorted(k for k, v in state.arrays.items() if v.dtype == object)
    arrays = {k: (v.astype(str) if k in strings else v) for k, v in state.arrays.items()}
    for key, value in arrays.items():
        if value.dtype == object:
            raise TypeError(f"state array {key!r} holds Python objects; only numbers and strings are saved")
    with atomic_directory(path) as tmp:
        # Names inside the archive are positional: keys may hold characters npz names cannot.
        with open(tmp / ARRAYS_FILE, "wb") as handle:
            np.savez(handle, **{f"a{i}": arrays[k] for i, k in enumerate(sorted(arrays))})
        atomic_write_json(
            tmp / MODEL_FILE,
            {"format": STATE_FORMAT, "name": name, "config": config, "values": state.values,
             "arrays": sorted(arrays), "string_arrays": strings},
        )  # fmt: skip
    return path


def read_state(path: str | Path) -> tuple[str, dict[str, Any], State]:
    """``(model name, config, state)`` of a model folder; :class:`ModelFormatError` if it is not one
    this release reads. Nothing is unpickled."""
    path = Path(path)
    meta_file = path / MODEL_FILE
    if not meta_file.is_file():
        legacy = (path / "model.yaml").is_file()
        raise ModelFormatError(
            f"{path} holds a model saved in format 1 (pickled, before the model contract); this release "
            f"reads format {STATE_FORMAT}: train it again"
            if legacy
            else f"{path} is not a saved model (no {MODEL_FILE})"
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        version = meta.get("format")
    except (ValueError, AttributeError) as err:
        raise ModelFormatError(f"{meta_file} is not valid JSON ({type(err).__name__})") from None
    if version != STATE_FORMAT:
        raise ModelFormatError(
            f"{path} holds a model saved in format {version}; this release reads format {STATE_FORMAT}"
        )
    try:
        with np.load(path / ARRAYS_FILE, allow_pickle=False) as archive:
            keys: Iterable[str] = meta["arrays"]
            arrays = {k: archive[f"a{i}"] for i, k in enumerate(keys)}
    except (OSError, ValueError, KeyError) as err:
        raise ModelFormatError(f"{path / ARRAYS_FILE} is unreadable: {err}".splitlines()[0]) from None
    for key in meta.get("string_arrays", []):
        arrays[key] = arrays[key].astype(object)
    return meta["name"], meta["config"], State(arrays, meta.get("values", {}))
