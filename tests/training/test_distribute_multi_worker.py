"""``train.strategy``: the config key, TF_CONFIG, chief rules, and two real worker processes.

The cluster test starts two workers of MultiWorkerMirroredStrategy on free 127.0.0.1 ports (TF_CONFIG
per worker; nothing leaves the machine), each training the retrieval model a few steps on a tiny
generated world with early stopping on validation (evaluated on the chief, broadcast), and one process
with the default strategy on the same global batches. Every process has a timeout and is killed if
still alive when the test ends.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.training import distribute as D

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
TIMEOUT_S = 90
# Two workers against one process on the same global batches: the same sums of gradients, added up in
# another order (ring all-reduce vs one device): equal up to float32 rounding (measured: 1.4e-7 on
# weights of magnitude 0.25 after 2 epochs of 9 Adagrad steps).
ATOL = 1e-5


# ----- in-process: the config key, TF_CONFIG and the chief rules --------------------------------------
def test_the_strategy_key_is_validated_in_one_line():
    assert load_config(None, ["train.strategy=multi_worker"])["train"]["strategy"] == "multi_worker"
    with pytest.raises(ConfigError, match=r"^config key 'train.strategy' must be one of .*'tpu'$"):
        load_config(None, ["train.strategy=tpu"])


def test_default_strategy_is_tensorflows_default_and_the_chief():
    strategy = D.strategy_for(load_config(None, []))
    assert strategy is tf.distribute.get_strategy()
    assert D.is_chief(strategy) and D.num_workers(strategy) == 1
    assert D.from_chief(strategy, 0.25) == 0.25
    with D.write_dir("some/run", strategy) as out:
        assert out == Path("some/run")


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", "not valid JSON"),
        ('{"cluster": {"worker": ["a:1"]}}', "needs 'cluster'"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "worker:3 not in"),
    ],
)
def test_a_bad_tf_config_is_one_line_naming_it(monkeypatch, raw, message):
    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(ConfigError, match=message) as err:
        D.tf_config()
    assert "TF_CONFIG" in str(err.value) and "\n" not in str(err.value)


def test_worker_zero_is_the_chief_unless_there_is_a_chief(monkeypatch):
    class Resolver:
        def __init__(self, task_type, task_id, cluster):
            self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

        def cluster_spec(self):
            return tf.train.ClusterSpec(self._cluster)

    class Fake:
        def __init__(self, *args):
            self.cluster_resolver = Resolver(*args)

    workers = {"worker": ["a:1", "b:1"]}
    assert D.is_chief(Fake("worker", 0, workers)) and not D.is_chief(Fake("worker", 1, workers))
    with_chief = {"chief": ["c:1"], **workers}
    assert D.is_chief(Fake("chief", 0, with_chief)) and not D.is_chief(Fake("worker", 0, with_chief))
    assert D.num_workers(Fake("chief", 0, with_chief)) == 3
    # A non-chief worker writes into a temporary directory, removed afterwards.
    with D.write_dir("run", Fake("worker", 1, workers)) as out:
        assert out != Path("run") and out.is_dir()
    assert not out.exists()


# ----- two worker processes --------------------------------------------------------------------------
def _worker(strategy: str, out: str, run_dir: str) -> None:
    """Train the retrieval model a few steps; write its weights, history and whether it was chief."""
    from tfrs_movies.data.splits import random_split, with_validation
    from tfrs_movies.data.synthetic import generate_world
    from tfrs_movies.models.registry import build_model
    from tfrs_movies.models.state import keras_weights

    world = generate_world(n_users=60, n_movies=40, n_ratings=1500, seed=3)
    split = with_validation(random_split(world.dataset.ratings, 0.2, seed=42), 0.1)
    config = load_config(None, [f"train.strategy={strategy}", "train.epochs=2", "train.batch_size=128",
                                "train.verbose=0", "model.embedding_dim=16"])  # fmt: skip
    model = build_model(config)
    model.fit(split.train, world.dataset, split.valid, run_dir=run_dir)
    keras_model = model.model
    np.savez(out, **keras_weights(keras_model))
    Path(out).with_suffix(".json").write_text(json.dumps({
        "history": model.history,
        "replicas": keras_model.distribute_strategy.num_replicas_in_sync,
        "workers": D.num_workers(keras_model.distribute_strategy),
        "chief": D.is_chief(keras_model.distribute_strategy),
        "rows": len(split.train),
    }))  # fmt: skip


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start(strategy: str, out: Path, run_dir: Path, tmp: Path, tf_config: dict | None) -> subprocess.Popen:
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(tmp)}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    log = open(out.with_suffix(".log"), "w")  # noqa: SIM115  (closed with the process, below)
    return subprocess.Popen([sys.executable, str(HERE), strategy, str(out), str(run_dir)], cwd=REPO,
                            env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = {}
    try:
        for i in range(2):
            tf_config = {"cluster": cluster, "task": {"type": "worker", "index": i}}
            procs[f"worker{i}"] = _start("multi_worker", root / f"worker{i}.npz", root / "run",
                                         root / f"tmp{i}", tf_config)  # fmt: skip
        procs["single"] = _start("default", root / "single.npz", root / "single_run", root / "tmp_s", None)
        for name, proc in procs.items():
            try:
                rc = proc.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} did not finish in {TIMEOUT_S} s")
            log = (root / f"{name}.log").read_text()
            assert rc == 0, f"{name} exited {rc}:\n{log[-3000:]}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()

    def load(name):
        with np.load(root / f"{name}.npz") as arrays:
            weights = {k: arrays[k] for k in arrays.files}
        return weights, json.loads((root / f"{name}.json").read_text())

    return root, {name: load(name) for name in procs}


@pytest.mark.slow
def test_two_workers_finish_with_identical_weights(cluster_run):
    root, runs = cluster_run
    (w0, info0), (w1, info1) = runs["worker0"], runs["worker1"]
    assert info0["workers"] == info1["workers"] == 2 and info0["replicas"] == 2
    assert info0["chief"] and not info1["chief"]
    # Both ran both epochs with the same losses; the chief alone evaluated (val_ figures), the other
    # worker stopped and restored the best epoch on the chief's figure.
    h0, h1 = info0["history"], info1["history"]
    assert len(h0["loss"]) == 2 and h0["loss"] == h1["loss"] and h0["best_epoch"] == h1["best_epoch"]
    assert "val_recall@20" in h0 and not [k for k in h1 if k.startswith("val_")]
    assert w0.keys() == w1.keys() and len(w0) >= 2
    for key in w0:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)


@pytest.mark.slow
def test_one_worker_on_the_same_global_batches_reaches_the_same_weights(cluster_run):
    _, runs = cluster_run
    (w0, info0), (single, info) = runs["worker0"], runs["single"]
    assert info["replicas"] == 1 and info["workers"] == 1
    steps = 2 * -(-info["rows"] // 128)
    assert steps >= 10  # a few steps, not one
    moved = max(float(np.abs(single[k]).max()) for k in single)
    for key in single:
        np.testing.assert_allclose(w0[key], single[key], rtol=0, atol=ATOL * max(1.0, moved), err_msg=key)
    np.testing.assert_allclose(info0["history"]["loss"], info["history"]["loss"], rtol=1e-4)


@pytest.mark.slow
def test_only_the_chief_writes_the_run_directory(cluster_run):
    root, _ = cluster_run
    events = sorted((root / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and len({p.parent for p in events}) == len(events)  # one writer per folder
    # The other worker's temporary run directory is gone.
    assert not [p for p in (root / "tmp1").iterdir() if p.name.startswith("tfrs_movies-worker")]


if __name__ == "__main__":
    import tfrs_movies  # noqa: F401  (legacy Keras before TensorFlow loads)

    _worker(*sys.argv[1:4])
