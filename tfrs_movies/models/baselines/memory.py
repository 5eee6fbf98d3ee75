"""How much memory a baseline may take, and its one-line refusal when a dense array would not fit.

The budget is ``model.params.memory_gb`` when a model sets it (> 0), else 90 % of the kernel's
``MemAvailable`` (``/proc/meminfo``, read when the model starts fitting): what the machine can still give
this process without swapping or being killed, less a margin for the data already loaded alongside.
"""

from __future__ import annotations

from pathlib import Path

from tfrs_movies.config import ConfigError

GB = 10**9
_MEMINFO = Path("/proc/meminfo")
_MARGIN = 0.9  # of MemAvailable


class TooLargeError(ConfigError):
    """A model would need more memory than the budget; raised before anything large is allocated. The
    message is one line: what it needs, what is available, and the setting that would make it fit."""


def available_bytes() -> int | None:
    """``MemAvailable`` in bytes, or None where ``/proc/meminfo`` cannot be read (not Linux)."""
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_budget(memory_gb: float = 0.0) -> tuple[int | None, str]:
    """(bytes a model may use, where that figure comes from); None bytes when nothing is known."""
    if memory_gb > 0:
        return int(memory_gb * GB), "model.params.memory_gb"
    available = available_bytes()
    if available is None:
        return None, "unknown (no /proc/meminfo)"
    return int(available * _MARGIN), f"90% of MemAvailable {available / GB:.1f} GB"


def gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / GB:,.1f} GB"


def require(need: int, what: str, advice: str, memory_gb: float = 0.0) -> None:
    """Raise :class:`TooLargeError` (one line) when ``need`` bytes exceed the budget; nothing is
    allocated here. ``what`` says what would be built, ``advice`` what setting makes it fit."""
    budget, source = memory_budget(memory_gb)
    if budget is not None and need > budget:
        raise TooLargeError(
            f"{what} needs about {gigabytes(need)} but the budget is {gigabytes(budget)} ({source}); {advice}"
        )
