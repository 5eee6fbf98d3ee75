"""Micro-batching: concurrent single-user SavedModel calls gathered into one call.

``MicroBatcher(run_many, max_batch, max_wait_s)``: ``submit(key, request)`` puts a request on a queue
and waits; one worker thread takes the first waiting request, then whatever else arrives within
``max_wait_s`` (up to ``max_batch``; it waits only while requests arrive together: when the last
batch had several), and answers each key's group with one ``run_many(key, requests)
-> answers`` (one answer per request, in order). A failed call fails every request of its group with
the same exception.

Two uses, installed on :class:`tfrs_movies.serving.load.Exported` by the server: index searches
(:func:`searcher`: key = the index, one ``search_users`` call at the largest ``k`` asked, each user's
answer cut to its own ``k``: the index's answer is sorted, so the first ``k`` of a longer answer are
the top ``k``) and the ranking stage (:func:`predictor`: one ``predict_many`` call for every user's
candidates).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RunMany = Callable[[Hashable, list[Any]], list[Any]]


@dataclass
class _Request:
    key: Hashable
    request: Any
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counts since start: requests answered, calls made, the largest batch gathered."""

    requests: int = 0
    calls: int = 0
    largest: int = 0


class MicroBatcher:
    """Gathers concurrent ``submit`` calls into batched ``run_many`` calls (module docstring)."""

    def __init__(
        self,
        run_many: Callable[[Hashable, list[Any]], list[Any]],
        max_batch: int = 64,
        max_wait_s: float = 0.002,
    ):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be at least 1 and max_wait_s at least 0")
        self.run_many = run_many
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.stats = BatchStats()
        self._last = 0  # the size of the last batch
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._worker.start()

    def submit(self, key: Hashable, request: Any) -> Any:
        """``request``'s answer (blocks until its batch is answered; raises what its call raised)."""
        item = _Request(key, request)
        self._queue.put(item)
        return item.future.result()

    def close(self) -> None:
        """Stop the worker once the requests already queued are answered."""
        self._queue.put(None)
        self._worker.join(timeout=5)

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """The first request and those already waiting, then, while requests arrive together (the last
        batch had several), those arriving within ``max_wait_s``; whether a stop came with them."""
        wait = self.max_wait_s if self._last > 1 else 0.0  # a lone client never waits
        batch, deadline = [first], time.monotonic() + wait
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
            self._last = len(batch)
            groups: dict[Hashable, list[_Request]] = {}
            for item in batch:
                groups.setdefault(item.key, []).append(item)
            for key, group in groups.items():
                self._answer(key, group)
            self.stats.requests += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))

    def _answer(self, key: Hashable, group: list[_Request]) -> None:
        self.stats.calls += 1
        try:
            answers = self.run_many(key, [item.request for item in group])
            if len(answers) != len(group):
                raise RuntimeError(f"a batched call gave {len(answers)} answers to {len(group)} requests")
        except Exception as err:  # noqa: BLE001 - handed to every waiting request
            for item in group:
                item.future.set_exception(err)
            return
        for item, answer in zip(group, answers, strict=True):
            item.future.set_result(answer)


SearchMany = Callable[[str, list[int], int, list[list[str]]], list[tuple[np.ndarray, np.ndarray]]]


def searcher(batcher: MicroBatcher) -> Callable[[str, int, int, list[str]], tuple[np.ndarray, np.ndarray]]:
    """``(index, user_id, k, exclude) -> (movie_ids, scores)`` through ``batcher`` (key: the index)."""
    return lambda index, user_id, k, exclude: batcher.submit(index, (int(user_id), int(k), list(exclude)))


def search_many(search_users: SearchMany) -> RunMany:
    """The batched search: one ``search_users`` call at the largest ``k``, each answer cut to its ``k``."""

    def run(index, requests):
        k = max(k for _, k, _ in requests)
        answers = search_users(index, [user for user, _, _ in requests], k, [ex for _, _, ex in requests])
        return [
            (ids[:k_asked], scores[:k_asked])
            for (_, k_asked, _), (ids, scores) in zip(requests, answers, strict=True)
        ]

    return run


def predictor(batcher: MicroBatcher) -> Callable[[int, np.ndarray], np.ndarray]:
    """``(user_id, movie_ids) -> predictions`` through ``batcher`` (one key: the ranking model)."""
    return lambda user_id, movie_ids: batcher.submit("ranking", (user_id, movie_ids))


def predict_many(predict_pairs: Callable[[list[tuple[Any, Any]]], list[np.ndarray]]) -> RunMany:
    """The batched ranking stage: one ``predict_many`` call for every request's (user, movies)."""
    return lambda _key, requests: predict_pairs(requests)
