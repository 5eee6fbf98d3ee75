"""In-batch negatives gathered across replicas: 2 replicas compute one device's loss and gradients.

The two replicas are MirroredStrategy over two logical CPU devices, which must be configured before
TensorFlow starts: the comparison runs in a child process (this file run as a script) so the test
process keeps its own devices. The child writes the figures as JSON; the assertions are here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
# A child TensorFlow process (about 10 s): outside the fast lane, which is already near its 2 minutes.
pytestmark = pytest.mark.slow


def _compare(strategy, batch: int, rng) -> dict:
    """Loss and gradients of one global batch on one device and over ``strategy``'s 2 replicas."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from tfrs_movies.models.tasks import CrossReplicaRetrieval

    n_users, n_movies, dim, n_extra = 30, 12, 8, 5
    user_init = rng.normal(size=(n_users, dim)).astype(np.float32)
    movie_init = rng.normal(size=(n_movies, dim)).astype(np.float32)
    users = rng.integers(0, n_users, batch)
    movies = rng.integers(0, 4, batch)  # few movies: the batch repeats them (accidental hits)
    probability = rng.uniform(0.05, 0.5, batch).astype(np.float32)
    ids = np.array([str(m) for m in movies], dtype=object)
    extra = np.arange(n_movies - n_extra, n_movies)  # shared negatives (like the full-softmax catalogue)
    extra_probability = np.full(n_extra, 0.01, np.float32)
    extra_ids = np.array([str(m) for m in extra], dtype=object)

    def loss_fn(task, tables, u, m, p, i, tfrs_task):
        q, c, e = tf.gather(tables[0], u), tf.gather(tables[1], m), tf.gather(tables[1], extra)
        if tfrs_task:  # TFRS's Retrieval: the shared negatives after the (local) batch
            return task(q, tf.concat([c, e], 0), compute_metrics=False,
                        candidate_sampling_probability=tf.concat([p, extra_probability], 0),
                        candidate_ids=tf.concat([i, extra_ids], 0))  # fmt: skip
        return task(q, c, candidate_sampling_probability=p, candidate_ids=i, extra_embeddings=e,
                    extra_sampling_probability=extra_probability, extra_ids=extra_ids)  # fmt: skip

    def one_device(task, tfrs_task=False):
        tables = [tf.Variable(user_init), tf.Variable(movie_init)]
        with tf.GradientTape() as tape:
            loss = loss_fn(task, tables, users, movies, probability, ids, tfrs_task)
        return float(loss), [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, tables)]

    def two_replicas(make_task, tfrs_task=False):
        with strategy.scope():
            tables = [tf.Variable(user_init), tf.Variable(movie_init)]
            task = make_task()
        data = tf.data.Dataset.from_tensor_slices((users, movies, probability, ids)).batch(batch)
        inputs = next(iter(strategy.experimental_distribute_dataset(data)))

        @tf.function
        def step(u, m, p, i):
            with tf.GradientTape() as tape:
                loss = loss_fn(task, tables, u, m, p, i, tfrs_task)
            return loss, [tf.convert_to_tensor(g) for g in tape.gradient(loss, tables)]

        loss, grads = strategy.run(step, args=inputs)
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
        summed = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None).numpy() for g in grads]
        sizes = [int(tf.shape(x)[0]) for x in strategy.experimental_local_results(inputs[0])]
        return float(total), summed, sizes

    def ours():
        return CrossReplicaRetrieval(temperature=0.1, remove_accidental_hits=True)

    def theirs():
        return tfrs.tasks.Retrieval(temperature=0.1, remove_accidental_hits=True)

    def max_diff(a, b):
        return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))

    loss_1, grads_1 = one_device(ours())
    loss_tfrs_1, grads_tfrs_1 = one_device(theirs(), tfrs_task=True)
    loss_2, grads_2, sizes = two_replicas(ours)
    loss_tfrs_2, _, _ = two_replicas(theirs, tfrs_task=True)
    return {
        "sizes": sizes,
        "loss_1": loss_1,
        "loss_2": loss_2,
        "loss_tfrs_1": loss_tfrs_1,
        "loss_tfrs_2": loss_tfrs_2,
        "grad_diff_ours_vs_tfrs_1": max_diff(grads_1, grads_tfrs_1),
        "grad_diff_2_vs_1": max_diff(grads_1, grads_2),
        "grad_scale": max(float(np.abs(g).max()) for g in grads_1),
    }


def _child(out: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np

    # One strategy for every run (strategies over the same devices would share collective keys).
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    rng = np.random.default_rng(0)
    # 15: the replicas hold 8 and 7 queries (a last, partial batch).
    figures = {batch: _compare(strategy, batch, rng) for batch in (16, 15)}
    Path(out).write_text(json.dumps(figures))


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("cross_replica") / "figures.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(HERE), str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return {int(k): v for k, v in json.loads(out.read_text()).items()}


@pytest.mark.parametrize("batch", [16, 15])
def test_two_replicas_give_one_devices_loss_and_gradients(figures, batch):
    f = figures[batch]
    assert f["sizes"] == [batch - batch // 2, batch // 2]  # the global batch really was split
    assert f["loss_2"] == pytest.approx(f["loss_1"], rel=1e-5)
    assert f["grad_diff_2_vs_1"] <= 1e-5 * max(1.0, f["grad_scale"])


@pytest.mark.parametrize("batch", [16, 15])
def test_on_one_device_the_task_is_tfrs_retrieval(figures, batch):
    f = figures[batch]
    assert f["loss_1"] == pytest.approx(f["loss_tfrs_1"], rel=1e-6)
    assert f["grad_diff_ours_vs_tfrs_1"] <= 1e-6 * max(1.0, f["grad_scale"])


def test_tfrs_retrieval_alone_sees_only_the_local_candidates(figures):
    """What the task fixes: TFRS's Retrieval over 2 replicas is not the one-device loss."""
    f = figures[16]
    assert abs(f["loss_tfrs_2"] - f["loss_tfrs_1"]) > 1e-3 * abs(f["loss_tfrs_1"])


if __name__ == "__main__":
    import tfrs_movies  # noqa: F401  (legacy Keras before TensorFlow loads)

    _child(sys.argv[1])
