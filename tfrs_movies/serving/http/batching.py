"""Micro-batching: concurrent single-user index searches gathered into one SavedModel call.

``MicroBatcher(search_many, max_batch, max_wait_s)`` has the signature of
:attr:`tfrs_movies.serving.load.Exported.user_search`, ``search(index, user_id, k, exclude) ->
(movie_ids (k',), scores (k',))``, so the server installs it there. A request thread puts its search on
a queue and waits; one worker thread takes the first waiting search, then whatever else arrives within
``max_wait_s`` (up to ``max_batch``), and answers each index's group with one ``search_many(index,
user_ids, k, excludes)`` call at the largest ``k`` asked, each user's answer cut to its own ``k`` (the
index's answer is sorted, so the first ``k`` of a longer answer are the top ``k``). A failed call fails
every search of its group with the same exception.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

SearchMany = Callable[[str, list[int], int, list[list[str]]], list[tuple[np.ndarray, np.ndarray]]]


@dataclass
class _Search:
    index: str
    user_id: int
    k: int
    exclude: list[str]
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counts since start: searches answered, index calls made, the largest batch."""

    searches: int = 0
    calls: int = 0
    largest: int = 0


class MicroBatcher:
    """Gathers concurrent ``search`` calls into batched ``search_many`` calls (module docstring)."""

    def __init__(self, search_many: SearchMany, max_batch: int = 64, max_wait_s: float = 0.002):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_s at least 0")
        self.search_many = search_many
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.stats = BatchStats()
        self._queue: queue.Queue[_Search | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._worker.start()

    def search(self, index: str, user_id: int, k: int, exclude: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """One user's top ``k`` (blocks until its batch is answered)."""
        item = _Search(index, int(user_id), int(k), list(exclude))
        self._queue.put(item)
        return item.future.result()

    def close(self) -> None:
        """Stop the worker once the searches already queued are answered."""
        self._queue.put(None)
        self._worker.join(timeout=5)

    def _gather(self, first: _Search) -> tuple[list[_Search], bool]:
        """The first search and those arriving within ``max_wait_s``; whether a stop came with them."""
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:  # whatever is already waiting, then up to the deadline
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            groups: dict[str, list[_Search]] = {}
            for item in batch:
                groups.setdefault(item.index, []).append(item)
            for index, group in groups.items():
                self._answer(index, group)
            self.stats.searches += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))

    def _answer(self, index: str, group: list[_Search]) -> None:
        k = max(item.k for item in group)
        try:
            answers = self.search_many(index, [s.user_id for s in group], k, [s.exclude for s in group])
        except Exception as err:  # noqa: BLE001 - handed to every waiting request
            for item in group:
                item.future.set_exception(err)
            return
        finally:
            self.stats.calls += 1
        for item, (ids, scores) in zip(group, answers, strict=True):
            item.future.set_result((ids[: item.k], scores[: item.k]))
