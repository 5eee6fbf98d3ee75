"""The HTTP server's parts without a server: the micro-batcher gathers concurrent searches into fewer
calls and hands each caller its own answer (or the call's error); TensorFlow Serving's dialect on a
tiny SavedModel (row and columnar formats, scalars, strings, one or several outputs, errors)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from tfrs_movies.serving.http import tf_serving
from tfrs_movies.serving.http.batching import MicroBatcher, predict_many, predictor, search_many, searcher


def fake_search_users(calls: list):
    """Each user's answer is ids user*100 + 0..k-1 (minus the excluded), so answers are checkable."""

    def search_users(index, user_ids, k, excludes):
        calls.append((index, list(user_ids), k))
        out = []
        for user, exclude in zip(user_ids, excludes, strict=True):
            ids = np.array(
                [m for m in range(user * 100, user * 100 + k + len(exclude)) if str(m) not in exclude]
            )
            out.append((ids[:k], -np.arange(k, dtype=np.float64)))
        return out

    return search_users


def run_together(n: int, work) -> None:
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        barrier.wait()
        work(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(1, n + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)


def test_concurrent_searches_are_batched_and_each_gets_its_own_answer():
    calls: list = []
    batcher = MicroBatcher(search_many(fake_search_users(calls)), max_batch=16, max_wait_s=0.05)
    batcher._last = 2  # as under concurrent load: the batcher waits for others to join
    search = searcher(batcher)
    results: dict[int, tuple] = {}

    def one(user: int) -> None:
        results[user] = search("scann" if user % 2 else "brute_force", user, 1 + user % 5, [str(user * 100)])

    run_together(12, one)
    batcher.close()
    assert sorted(results) == list(range(1, 13))
    for user, (ids, scores) in results.items():
        k = 1 + user % 5
        assert ids.tolist() == list(range(user * 100 + 1, user * 100 + 1 + k)) and len(scores) == k
    assert len(calls) < 12 and batcher.stats.largest > 1 and batcher.stats.requests == 12
    assert all(len({u % 2 for u in users}) == 1 for _, users, _ in calls)  # one index per call


def test_ranking_calls_are_batched_into_one_predict_many():
    calls: list = []

    def predict_pairs(pairs):
        calls.append(len(pairs))
        return [np.asarray(movies, np.float64) + user for user, movies in pairs]

    batcher = MicroBatcher(predict_many(predict_pairs), max_batch=16, max_wait_s=0.05)
    batcher._last = 2
    predict = predictor(batcher)
    results: dict[int, np.ndarray] = {}
    run_together(8, lambda user: results.__setitem__(user, predict(user, np.arange(user))))
    batcher.close()
    assert all(results[u].tolist() == (np.arange(u) + u).tolist() for u in range(1, 9))
    assert len(calls) < 8 and sum(calls) == 8


def test_a_lone_request_does_not_wait():
    batcher = MicroBatcher(lambda key, requests: requests, max_batch=16, max_wait_s=1.0)
    start = time.monotonic()
    assert batcher.submit("k", 5) == 5
    assert time.monotonic() - start < 0.5
    batcher.close()


def test_a_failed_call_fails_its_requests_and_the_batcher_goes_on():
    def broken(key, requests):
        if 13 in requests:
            raise ValueError("boom")
        return requests

    batcher = MicroBatcher(broken, max_batch=4, max_wait_s=0.0)
    with pytest.raises(ValueError, match="boom"):
        batcher.submit("k", 13)
    assert batcher.submit("k", 7) == 7
    batcher.close()
    with pytest.raises(ValueError):
        MicroBatcher(broken, max_batch=0)


class Tiny(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="name"),
                                  tf.TensorSpec([], tf.int32, name="times")])  # fmt: skip
    def repeat(self, name, times):
        return {"text": tf.strings.reduce_join(tf.repeat(name[:, None], times, axis=1), axis=1),
                "length": tf.strings.length(name) * times}  # fmt: skip

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def total(self, x):
        return {"sum": tf.reduce_sum(x, axis=1)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    module = Tiny()
    path = tmp_path_factory.mktemp("tiny") / "model"
    tf.saved_model.save(
        module, str(path), signatures={"serving_default": module.total, "repeat": module.repeat}
    )
    return tf.saved_model.load(str(path))


def test_row_and_columnar_formats(tiny):
    assert tf_serving.predict(tiny, {"instances": [[1, 2], [3.5, 4]]}) == {"predictions": [3.0, 7.5]}
    assert tf_serving.predict(tiny, {"inputs": [[1, 2]]}) == {"outputs": [3.0]}
    assert tf_serving.predict(tiny, {"inputs": {"x": [[1, 2]]}}) == {"outputs": [3.0]}
    body = {"signature_name": "repeat", "inputs": {"name": ["ab", "c"], "times": 2}}
    assert tf_serving.predict(tiny, body) == {"outputs": {"text": ["abab", "cc"], "length": [4, 2]}}
    body = {"signature_name": "repeat", "inputs": {"name": [{"b64": "/w=="}], "times": 1}}
    assert tf_serving.predict(tiny, body)["outputs"]["text"] == [{"b64": "/w=="}]  # bytes that are not UTF-8


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"inputs": [[1, 2, 3]]}, 400, "'x'"),
        ({"inputs": [["a", "b"]]}, 400, "'x'"),
        ({"inputs": [1, 2]}, 400, "rank"),
        ({"instances": []}, 400, "at least one"),
        ({"instances": [[1, 2]], "inputs": [[1, 2]]}, 400, "exactly one"),
        ({"signature_name": "nope", "inputs": [[1, 2]]}, 404, "nope"),
        ({"signature_name": "repeat", "instances": [{"name": "a", "times": 1}]}, 400, "'times'"),
        ({"signature_name": "repeat", "inputs": {"name": ["a"]}}, 400, "'times'"),
        ({"signature_name": "repeat", "inputs": {"name": ["a"], "times": 1, "extra": 1}}, 400, "'extra'"),
        ([1, 2], 400, "object"),
    ],
)
def test_dialect_errors_name_the_input(tiny, body, status, names):
    with pytest.raises(tf_serving.DialectError) as caught:
        tf_serving.predict(tiny, body)
    assert caught.value.status == status and names in str(caught.value)


def test_metadata_lists_every_signature(tiny):
    meta = tf_serving.metadata("tiny", tiny)
    assert meta["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"serving_default", "repeat"}
    assert defs["repeat"]["inputs"]["times"] == {
        "dtype": "DT_INT32", "tensor_shape": {"dim": [], "unknown_rank": False}, "name": "repeat_times:0",
    }  # fmt: skip
    assert defs["serving_default"]["inputs"]["x"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""}, {"size": "2", "name": ""},
    ]  # fmt: skip
    assert tf_serving.status()["model_version_status"][0]["state"] == "AVAILABLE"
