"""The one place that writes artifacts: atomically (a temporary name in the same folder, then a rename),
so a killed process never leaves a half-written file behind, only the old complete version or nothing.

Every temporary name says who wrote it: ``.<name>.tmp-<pid>-<random><suffix>`` (an old version moved
aside while a folder is replaced: ``.<name>.old-<pid>-<random>``). A writer killed part-way (SIGKILL,
power loss) cannot clean up after itself, so the next writer into the same folder calls
:func:`remove_stale_temporaries`, which removes the temporaries whose writer is no longer running.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

# A temporary of this module: hidden, the target's name, tmp/old, the writer's pid, a random part, and
# the target's suffix (so a writer that picks its format from the name, e.g. savefig, still can).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}(?:\.[A-Za-z0-9]+)?$")
# Temporaries of earlier versions (no pid in the name): removed once older than LEGACY_AGE_S.
_LEGACY = re.compile(r"^\..+\.(?:(?:tmp|old)-[0-9a-f]{8}|[A-Za-z0-9_]{8}\.(?:tmp|part))$")
LEGACY_AGE_S = 3600.0
# A temporary older than this is stale whatever its pid says (pids are reused).
MAX_AGE_S = 7 * 24 * 3600.0


def temporary_sibling(path: str | Path, kind: str = "tmp") -> Path:
    """A fresh temporary name beside ``path`` (nothing is created): ``.<name>.<kind>-<pid>-<random>``,
    plus ``path``'s suffix for a file."""
    path = Path(path)
    return path.parent / f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}"


def _process_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any writer thread runs
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def _readable_mode() -> int:
    """0666 less the process umask: what ``open`` would give a new file (mkstemp gives 0600)."""
    return 0o666 & ~_UMASK


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) for any writer; when the block succeeds the
    file replaces ``path``, when it fails it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, _readable_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_file(path) as tmp, open(tmp, "xb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, Paths and tuples as plain JSON."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; when the block succeeds it replaces ``path`` (an old
    ``path`` is moved aside first, then deleted), when it fails it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = temporary_sibling(path, "old")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_fill(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` for a writer of several files; when the block succeeds
    its entries move into ``path`` (the whole folder at once when ``path`` does not exist yet; else entry
    by entry, each replacing its old version atomically, other entries of ``path`` kept), when it fails
    it is removed and ``path`` is untouched."""
    path = Path(path)
    if not path.exists():
        with atomic_directory(path) as tmp:
            yield tmp
        return
    tmp = temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        for entry in sorted(tmp.iterdir()):
            target = path / entry.name
            if entry.is_dir() and target.is_dir():
                old = temporary_sibling(target, "old")
                os.replace(target, old)
                os.replace(entry, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def writer_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def is_stale_temporary(path: Path, now: float | None = None) -> bool:
    """A temporary of this module whose writer is dead (or that is older than :data:`MAX_AGE_S`), or a
    pid-less temporary of an earlier version older than :data:`LEGACY_AGE_S`."""
    now = time.time() if now is None else now
    try:
        age = now - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    match = _TEMPORARY.match(path.name)
    if match is not None:
        return age > MAX_AGE_S or not writer_alive(int(match["pid"]))
    return _LEGACY.match(path.name) is not None and age > LEGACY_AGE_S


def remove_stale_temporaries(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Remove the temporaries a killed writer left in ``folder`` (and its subfolders when ``recursive``);
    returns what was removed. Temporaries of live writers are left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    for entry in list(folder.iterdir()):
        if is_stale_temporary(entry):
            with suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
        elif recursive and entry.is_dir() and not entry.is_symlink():
            removed += remove_stale_temporaries(entry, recursive=True)
    return removed
