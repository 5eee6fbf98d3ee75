"""Whether a run directory is complete, and which interrupted run the same command resumes.

A run writes ``<run_dir>/RUNNING`` (its pid, host and start time) before anything else and removes it
only once its last artifact is in place (the export, when ``export.enabled``): a run directory with
``RUNNING`` is incomplete, killed or still being written; ``python -m tfrs_movies.report`` skips it and
says so. Run directories written before this marker existed have none and count as complete.

:func:`resumable_run` finds the run directory ``python -m tfrs_movies.train`` continues when no
``run_dir`` is given: the newest ``runs/<data>-<model>-*`` whose writer is dead and whose
``config.yaml`` is the same config (``run_dir`` aside). The training state itself is in its
``checkpoints/`` (see :mod:`tfrs_movies.training.fit`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import yaml

from tfrs_movies.io import atomic_write_json, writer_alive

RUNNING = "RUNNING"


def mark_running(run_dir: str | Path) -> None:
    """Mark ``run_dir`` incomplete, owned by this process."""
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    atomic_write_json(Path(run_dir) / RUNNING, record)


def mark_complete(run_dir: str | Path) -> None:
    """Mark ``run_dir`` complete (call once its last artifact is in place)."""
    (Path(run_dir) / RUNNING).unlink(missing_ok=True)


def is_complete(run_dir: str | Path) -> bool:
    return not (Path(run_dir) / RUNNING).exists()


def writer_running(run_dir: str | Path) -> bool:
    """Whether another process that marked ``run_dir`` running still runs (on this host; a marker written
    on another host, or one that cannot be read, counts as running; this process's own does not)."""
    try:
        record = json.loads((Path(run_dir) / RUNNING).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    if record.get("host") != socket.gethostname():
        return True
    pid = int(record.get("pid", -1))
    return pid != os.getpid() and writer_alive(pid)


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as ``config.yaml`` would read back, ``run_dir`` left out."""
    from tfrs_movies import config as C

    plain = yaml.safe_load(C.dump(config)) or {}
    plain.pop("run_dir", None)
    return plain


def same_config(run_dir: str | Path, config: dict[str, Any]) -> bool:
    """Whether ``run_dir/config.yaml`` holds ``config`` (``run_dir`` aside)."""
    try:
        old = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    old.pop("run_dir", None)
    return old == comparable(config)


def interrupted(run_dir: str | Path, config: dict[str, Any]) -> bool:
    """``run_dir`` is an incomplete run of ``config`` whose writer is gone: the same command resumes it."""
    return not is_complete(run_dir) and not writer_running(run_dir) and same_config(run_dir, config)


def resumable_run(parent: str | Path, prefix: str, config: dict[str, Any]) -> Path | None:
    """The newest interrupted run of ``config`` among ``parent/<prefix>*``, or None."""
    parent = Path(parent)
    if not parent.is_dir():
        return None
    candidates = sorted((p for p in parent.glob(f"{prefix}*") if p.is_dir()), key=lambda p: p.name)
    for path in reversed(candidates):
        if interrupted(path, config):
            return path
    return None
