"""What the ``serve`` command line sets (kept apart from the app, so ``serve --help`` loads no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    """What the command line sets: the token, request caps and micro-batching."""

    token: str | None = None
    max_body_bytes: int = 1_000_000
    max_batch_users: int = 1_000
    micro_batch: int = 64  # the most single-user searches in one index call (1: no micro-batching)
    max_wait_ms: float = 2.0  # how long the first search of a batch waits for others
    threads: int = 64  # request threads (each waits on its index call)
