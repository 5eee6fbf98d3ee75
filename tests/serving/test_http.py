"""``python -m tfrs_movies.serve`` in a subprocess on a free 127.0.0.1 port, over an export of a small
multitask model fitted on the genuine MovieLens 100K: every endpoint, each error (never a traceback),
the bearer token, a batch, TensorFlow Serving's REST dialect against calling the SavedModels directly,
a bounded load from several threads, and the page in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ml100k]

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token"
K_MAX = 50
MAX_BATCH_USERS = 50
MAX_BODY_BYTES = 20_000
# A small, fast model: retrieval + rating (two stages) with demographics in the user tower (cold start).
SMALL = {
    "model.name": "multitask", "model.embedding_dim": 16, "train.epochs": 1, "train.batch_size": 1024,
    "train.verbose": 0, "model.user_features": ["id", "gender", "age", "occupation"],
    "model.movie_features": ["id", "genres"], "model.params.head_layers": [16], "export.enabled": False,
}  # fmt: skip
# Only 127.0.0.1 is ever called, and never through a proxy.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def ml100k_export(ml100k_dir, tmp_path_factory) -> Path:
    from tfrs_movies.config import load_config
    from tfrs_movies.data import load_dataset
    from tfrs_movies.models.registry import build_model
    from tfrs_movies.serving.export import export_run

    dataset = load_dataset("ml-100k", ml100k_dir)
    model = build_model(load_config(None, SMALL))
    model.fit(dataset.ratings, dataset)
    return export_run(model, dataset, tmp_path_factory.mktemp("http_run"), k_max=K_MAX)


@pytest.fixture(scope="module")
def seen_by_user_1(ml100k_dir) -> set[int]:
    """Every movie user 1 rated in the genuine u.data (the model was fitted on all of them)."""
    ratings = pd.read_csv(ml100k_dir / "u.data", sep="\t", names=["user", "movie", "rating", "ts"])
    return set(ratings.loc[ratings.user == 1, "movie"].tolist())


class Server:
    """The server subprocess: its base URL and everything it logged."""

    def __init__(self, export: Path, log_path: Path):
        self.log_path = log_path
        self._log = log_path.open("w")
        args = [
            sys.executable, "-m", "tfrs_movies.serve", "--model", str(export), "--port", "0",
            "--token", TOKEN, "--max-batch-users", str(MAX_BATCH_USERS),
            "--max-body-bytes", str(MAX_BODY_BYTES),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("TFRS_MOVIES_TOKEN", None)
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"on (http://127\.0\.0\.1:\d+)/", self.log_path.read_text())
            if found:
                try:
                    OPENER.open(found.group(1) + "/health", timeout=5).read()
                    return found.group(1)
                except OSError:
                    pass
            if self.process.poll() is not None:
                raise RuntimeError(f"the server stopped:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"the server did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


@pytest.fixture(scope="module")
def server(ml100k_export, tmp_path_factory):
    running = Server(ml100k_export, tmp_path_factory.mktemp("http_log") / "server.log")
    yield running
    running.stop()


def call(
    server: Server, method: str, path: str, body=None, token: str | None = TOKEN, raw: bytes | None = None
):
    """(status, parsed JSON body) of one request to the server."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with OPENER.open(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_health_is_open_and_every_other_endpoint_needs_the_token(server):
    status, health = call(server, "GET", "/health", token=None)
    assert status == 200 and health["status"] == "ok" and health["model"] == "multitask"
    assert health["movies"] == 1682 and health["index"] == "scann" and health["ranking"] is True
    for path in ("/recommend?user_id=1", "/similar?movie_id=50", "/v1/models/scann", "/movies?query=star"):
        status, body = call(server, "GET", path, token=None)
        assert status == 401 and "token" in body["error"]
        assert call(server, "GET", path, token="wrong")[0] == 401
        assert call(server, "GET", path)[0] == 200
    page = urllib.request.Request(server.url + "/")
    with OPENER.open(page, timeout=10) as response:  # the page itself holds no data: open
        assert response.status == 200 and b"<script>" in response.read()


def test_recommend_answers_as_the_export_does_in_process(server, ml100k_export, seen_by_user_1):
    from tfrs_movies.serving.load import load_export

    status, answer = call(server, "GET", "/recommend?user_id=1&k=10")
    assert status == 200 and answer["user_id"] == "1" and answer["cold_start"] is False
    assert answer["stages"] == ["retrieval", "ranking"] and "two stages" in answer["note"]
    items = answer["items"]
    assert len(items) == 10 and not {item["movie_id"] for item in items} & seen_by_user_1
    fields = {"movie_id", "title", "year", "score", "retrieval_score", "rating", "stage", "because"}
    assert all(set(item) >= fields for item in items)
    expected = load_export(ml100k_export).recommend(1, 10).frame
    assert [item["movie_id"] for item in items] == expected["movie_id"].tolist()
    np.testing.assert_allclose([item["score"] for item in items], expected["score"], rtol=1e-6)
    assert [item["title"] for item in items] == expected["title"].tolist()
    # brute force, the seen movies kept, one stage
    status, exact = call(
        server, "GET", "/recommend?user_id=1&k=5&index=brute_force&include_seen=true&candidates=20"
    )
    assert status == 200 and exact["index"] == "brute_force" and len(exact["items"]) == 5


def test_a_batch_and_an_unknown_user(server):
    status, answer = call(server, "POST", "/recommend", {"user_ids": [1, "2", 99999], "k": 3})
    assert status == 200 and [r["user_id"] for r in answer["results"]] == ["1", "2", "99999"]
    assert [r["cold_start"] for r in answer["results"]] == [False, False, True]
    assert all(len(r["items"]) == 3 for r in answer["results"])
    assert answer["results"][2]["stages"] == ["popularity"] and "unknown" in answer["results"][2]["note"]
    single = call(server, "GET", "/recommend?user_id=2&k=3")[1]
    assert single["items"] == answer["results"][1]["items"]


def test_cold_start_from_features_and_from_watched_movies(server):
    status, answer = call(server, "POST", "/recommend", {"features": {"age": 25, "gender": "F"}, "k": 5})
    assert status == 200 and answer["cold_start"] is True and answer["user_id"] is None
    assert "query tower" in answer["note"] and len(answer["items"]) == 5
    other = call(
        server, "POST", "/recommend", {"features": {"age": 60, "gender": "M", "occupation": "retired"}}
    )[1]
    assert [i["movie_id"] for i in other["items"]] != [i["movie_id"] for i in answer["items"]]
    status, answer = call(server, "POST", "/recommend", {"watched": [50, 181, 172], "k": 10})
    assert status == 200 and answer["cold_start"] is True and "folded in" in answer["note"]
    assert not {50, 181, 172} & {item["movie_id"] for item in answer["items"]}
    status, body = call(server, "POST", "/recommend", {"features": {"gender": "X"}})
    assert status == 400 and "gender" in body["error"]


def test_similar_pair_movies_and_user(server):
    status, similar = call(server, "GET", "/similar?movie_id=50&k=5")
    assert (
        status == 200 and len(similar["items"]) == 5 and 50 not in {i["movie_id"] for i in similar["items"]}
    )
    status, pair = call(server, "GET", "/pair?user_a=1&user_b=2&k=5&aggregation=least_misery")
    assert status == 200 and pair["aggregation"] == "least_misery" and len(pair["items"]) == 5
    assert {"score_1", "score_2"} <= set(pair["items"][0])
    status, movies = call(server, "GET", "/movies?query=star%20wars")
    assert status == 200 and movies["items"][0] == {"movie_id": 50, "title": "Star Wars (1977)", "year": 1977}
    assert call(server, "GET", "/movies?movie_id=50")[1]["items"][0]["movie_id"] == 50
    status, user = call(server, "GET", "/user?user_id=1&k=5")
    assert status == 200 and user["known"] and user["watched"] == 272 and len(user["items"]) == 5
    status, features = call(server, "GET", "/features")
    assert status == 200 and "writer" in features["inputs"]["occupation"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "names"),
    [
        ("GET", "/recommend?user_id=1&k=0", None, 400, "k"),
        ("GET", f"/recommend?user_id=1&k={K_MAX + 1}", None, 400, "k"),
        ("GET", "/recommend?user_id=1&k=ten", None, 400, "k"),
        ("GET", "/recommend?user_id=abc", None, 400, "user id"),
        ("GET", "/recommend", None, 400, "user_id"),
        ("GET", "/recommend?user_id=1&index=annoy", None, 400, "index"),
        ("GET", "/recommend?user_id=1&candidates=5000", None, 400, "candidates"),
        ("GET", "/recommend?user_id=1&explain=3", None, 400, "explanations"),
        ("GET", "/similar?movie_id=999999", None, 400, "movie id"),
        ("GET", "/similar?movie_id=1.5", None, 400, "movie id"),
        ("GET", "/pair?user_a=1&user_b=2&aggregation=median", None, 400, "aggregation"),
        ("POST", "/recommend", {"user_ids": list(range(1, MAX_BATCH_USERS + 2))}, 400, "user_ids"),
        ("POST", "/recommend", {"user_ids": [1], "colour": "red"}, 400, "colour"),
        ("POST", "/recommend", {"watched": [50, 999999]}, 400, "movie id"),
        ("POST", "/recommend", {"user_ids": [1], "watched": [50]}, 400, "user_ids"),
        ("POST", "/recommend", {"user_ids": [1], "k": "many"}, 400, "k"),
        ("GET", "/no/such/endpoint", None, 404, "endpoint"),
    ],
)
def test_bad_requests_are_4xx_naming_the_parameter(server, method, path, body, status, names):
    got, answer = call(server, method, path, body)
    assert got == status and set(answer) == {"error"} and names in answer["error"]
    assert "Traceback" not in answer["error"] and "\n" not in answer["error"]


def test_bodies_over_the_cap_and_broken_json_are_refused(server):
    big = {"user_ids": [1] * 10, "pad": "x" * MAX_BODY_BYTES}
    status, answer = call(server, "POST", "/recommend", big)
    assert status == 413 and str(MAX_BODY_BYTES) in answer["error"]
    status, answer = call(server, "POST", "/recommend", raw=b"{not json")
    assert status == 400 and "error" in answer
    status, answer = call(server, "POST", "/v1/models/ranking:predict", raw=b"[1,")
    assert status == 400 and "JSON" in answer["error"]


# ----- TensorFlow Serving's REST dialect, against the SavedModels called directly ----------------------
def _direct(export: Path, name: str, signature: str = "serving_default", **inputs):
    import tensorflow as tf

    if name == "scann":
        from scann import scann_ops  # noqa: F401  (registers the ops)
    model = tf.saved_model.load(str(export / name))
    out = model.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {key: value.numpy() for key, value in out.items()}


@pytest.mark.parametrize("index", ["brute_force", "scann"])
def test_tf_serving_columnar_predict_is_the_saved_model(server, ml100k_export, index):
    import tensorflow as tf

    inputs = {"user_id": ["1", "2"], "k": 10, "exclude": [["50", "181"], ["1", ""]]}
    status, answer = call(server, "POST", f"/v1/models/{index}:predict",
                          {"signature_name": "serving_default", "inputs": inputs})  # fmt: skip
    assert status == 200 and set(answer) == {"outputs"}
    direct = _direct(ml100k_export, index, user_id=inputs["user_id"], k=tf.constant(10, tf.int32),
                     exclude=inputs["exclude"])  # fmt: skip
    assert answer["outputs"]["movie_ids"] == direct["movie_ids"].astype(str).tolist()
    assert answer["outputs"]["scores"] == direct["scores"].tolist()  # float32 values, exactly
    assert not {"50", "181"} & set(answer["outputs"]["movie_ids"][0])
    # the versioned path answers the same
    same = call(server, "POST", f"/v1/models/{index}/versions/1:predict", {"inputs": inputs})[1]
    assert same == answer


def test_tf_serving_row_format_and_other_signatures(server, ml100k_export):
    import tensorflow as tf

    instances = [{"user_id": "1", "movie_id": "50"}, {"user_id": "2", "movie_id": "1"}]
    status, answer = call(server, "POST", "/v1/models/ranking:predict", {"instances": instances})
    direct = _direct(ml100k_export, "ranking", user_id=["1", "2"], movie_id=["50", "1"])
    assert status == 200 and answer["predictions"] == [
        {name: direct[name][i].item() for name in direct} for i in range(2)
    ]
    # the query tower (row format, several inputs), then its embedding through from_embedding
    row = {"user_id": "", "age": 25.0, "age_bucket": "25-34", "gender": "F", "occupation": "writer"}
    status, answer = call(server, "POST", "/v1/models/query_tower:predict", {"instances": [row]})
    direct = _direct(ml100k_export, "query_tower", **{k: [v] for k, v in row.items()})
    assert status == 200 and answer["predictions"] == direct["embedding"].tolist()
    body = {"signature_name": "from_embedding", "inputs": {"embedding": answer["predictions"], "k": 5,
                                                           "exclude": [[]]}}  # fmt: skip
    status, answer = call(server, "POST", "/v1/models/brute_force:predict", body)
    embedding = tf.constant(direct["embedding"])
    direct = _direct(ml100k_export, "brute_force", "from_embedding", embedding=embedding,
                     k=tf.constant(5, tf.int32), exclude=tf.zeros((1, 0), tf.string))  # fmt: skip
    assert status == 200 and answer["outputs"]["movie_ids"] == direct["movie_ids"].astype(str).tolist()


def test_tf_serving_status_metadata_and_errors(server):
    status, answer = call(server, "GET", "/v1/models/scann")
    assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    status, meta = call(server, "GET", "/v1/models/brute_force/metadata")
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and set(signatures) == {"serving_default", "from_embedding"}
    inputs = signatures["serving_default"]["inputs"]
    assert inputs["user_id"]["dtype"] == "DT_STRING" and inputs["k"]["dtype"] == "DT_INT32"
    assert inputs["exclude"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}] * 2
    assert signatures["serving_default"]["outputs"]["scores"]["dtype"] == "DT_FLOAT"
    assert call(server, "GET", "/v1/models/nope")[0] == 404
    assert call(server, "POST", "/v1/models/nope:predict", {"inputs": {}})[0] == 404
    bad = [
        ({"signature_name": "nope", "inputs": {}}, 404, "nope"),
        ({"instances": [{"user_id": "1", "k": 3, "exclude": [""]}]}, 400, "'k'"),
        ({"inputs": {"user_id": ["1"], "k": 3}}, 400, "'exclude'"),
        ({"inputs": {"user_id": [1], "k": 3, "exclude": [[""]]}}, 400, "'user_id'"),
        ({"inputs": {"user_id": ["1"], "k": 2.5, "exclude": [[""]]}}, 400, "'k'"),
        ({"inputs": {"user_id": ["1"], "k": K_MAX + 1, "exclude": [[""]]}}, 400, "k_max"),
        ({"inputs": {}, "instances": []}, 400, "exactly one"),
    ]
    for body, want, names in bad:
        status, answer = call(server, "POST", "/v1/models/brute_force:predict", body)
        assert (status, set(answer)) == (want, {"error"}) and names in answer["error"], (body, answer)


# ----- load, logging ---------------------------------------------------------------------------------
def test_bounded_load_from_several_threads_loses_nothing(server):
    users = [1 + (i * 7) % 943 for i in range(320)]
    answers: dict[int, tuple[int, dict]] = {}
    lock = threading.Lock()

    def client(part: list[int]) -> None:
        for user in part:
            got = call(
                server, "GET", f"/recommend?user_id={user}&k=5&index={'scann' if user % 2 else 'brute_force'}"
            )
            with lock:
                answers[len(answers)] = (user, got)

    threads = [threading.Thread(target=client, args=(users[i::8],)) for i in range(8)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert time.monotonic() - start < 120 and not any(t.is_alive() for t in threads)
    assert len(answers) == len(users)
    for user, (status, answer) in answers.values():
        assert status == 200 and answer["user_id"] == str(user) and len(answer["items"]) == 5
    batching = call(server, "GET", "/health")[1]["micro_batching"]
    for stage in ("index", "ranking"):  # concurrent searches, and their ranking calls, were batched
        stats = batching[stage]
        assert stats["requests"] >= len(users) and stats["largest"] > 1 and stats["calls"] < stats["requests"]


def test_one_log_line_per_request(server):
    call(server, "GET", "/similar?movie_id=181&k=3")
    time.sleep(0.2)
    lines = [line for line in server.log_path.read_text().splitlines() if "/similar?movie_id=181&k=3" in line]
    assert len(lines) == 1 and " 200 " in lines[0] and "ms" in lines[0]


# ----- the page in a real headless browser -----------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """Headless Chromium driven over the DevTools protocol (a local websocket)."""

    def __init__(self, profile: Path):
        from websockets.sync.client import connect

        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError("Chromium did not start")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.loads(OPENER.open(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.next_id = 0

    def send(self, method: str, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"the page never satisfied: {expression}")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) in the middle of the element."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_the_page_in_headless_chromium(server, seen_by_user_1, tmp_path):
    browser = Browser(tmp_path / "profile")
    try:
        browser.send("Page.enable")
        # the token travels in the fragment, which never reaches the server
        browser.send("Page.navigate", url=f"{server.url}/?user=1#token={TOKEN}")
        browser.wait_for("document.querySelectorAll('#recs-body tr').length === 10")
        shown = browser.evaluate(
            "[...document.querySelectorAll('#recs-body tr')].map(r => Number(r.dataset.movieId))"
        )
        assert len(set(shown)) == 10 and not set(shown) & seen_by_user_1
        expected = call(server, "GET", "/recommend?user_id=1&k=10")[1]
        assert shown == [item["movie_id"] for item in expected["items"]]
        assert "rated 272 movies" in browser.evaluate("document.getElementById('profile-title').textContent")
        # click the first recommendation: its similar movies appear
        first = shown[0]
        browser.click("#recs-body tr:first-child a.movie")
        browser.wait_for(f"document.getElementById('similar').dataset.movieId === '{first}'"
                         " && document.querySelectorAll('#similar-list li').length === 10")  # fmt: skip
        similar = browser.evaluate(
            "[...document.querySelectorAll('#similar-list li')].map(l => Number(l.dataset.movieId))"
        )
        assert similar == [
            item["movie_id"] for item in call(server, "GET", f"/similar?movie_id={first}&k=10")[1]["items"]
        ]
        # and clicking a similar movie goes on to its own similar movies
        browser.click("#similar-list li:first-child a.movie")
        browser.wait_for(f"document.getElementById('similar').dataset.movieId === '{similar[0]}'")
        assert browser.evaluate("document.getElementById('error').textContent") == ""
    finally:
        browser.close()
