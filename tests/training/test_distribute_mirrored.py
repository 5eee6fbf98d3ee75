"""``train.strategy: mirrored`` end to end: MirroredStrategy over two logical CPU devices through the
Python API (:func:`tfrs_movies.training.experiment.run_experiment`), against the default strategy.

Two logical CPU devices must be configured before TensorFlow starts, so both runs happen in a child
process (this file run as a script); the assertions are here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
TINY = ["data.name=synthetic", "data.synthetic.users=80", "data.synthetic.movies=60",
        "data.synthetic.ratings=3000", "train.epochs=2", "train.batch_size=256", "train.verbose=0",
        "export.enabled=false", "model.embedding_dim=16"]  # fmt: skip


def _child(root: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfrs_movies.config import load_config
    from tfrs_movies.models.state import keras_weights
    from tfrs_movies.training.experiment import run_experiment

    out = {}
    for strategy in ("mirrored", "default"):
        run_dir = Path(root) / strategy
        config = load_config(None, [*TINY, f"train.strategy={strategy}", f"run_dir={run_dir}"])
        result = run_experiment(config, say=lambda _: None)
        keras_model = result.model.model
        np.savez(run_dir / "weights.npz", **keras_weights(keras_model))
        out[strategy] = {"replicas": keras_model.distribute_strategy.num_replicas_in_sync,
                         "history": result.model.history}  # fmt: skip
    (Path(root) / "figures.json").write_text(json.dumps(out))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirrored")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    done = subprocess.run([sys.executable, str(HERE), str(root)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root, json.loads((root / "figures.json").read_text())


@pytest.mark.slow
def test_mirrored_over_two_devices_trains_evaluates_and_saves_the_run(runs):
    root, figures = runs
    assert figures["mirrored"]["replicas"] == 2 and figures["default"]["replicas"] == 1
    config = (root / "mirrored" / "config.yaml").read_text()
    assert "strategy: mirrored" in config
    metrics = json.loads((root / "mirrored" / "metrics.json").read_text())
    assert 0.0 < metrics["recall@10"] <= 1.0 and metrics["users"] == 80
    assert (root / "mirrored" / "model" / "model.json").exists()
    assert list((root / "mirrored" / "tensorboard" / "train").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_two_replicas_learn_what_one_device_learns(runs):
    """Same global batches, in-batch negatives gathered across the replicas: the same weights (up to
    float32 rounding in the order the gradients are summed) and the same figures."""
    root, figures = runs
    with np.load(root / "mirrored" / "weights.npz") as a, np.load(root / "default" / "weights.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(figures["mirrored"]["history"]["loss"], figures["default"]["history"]["loss"],
                               rtol=1e-5)  # fmt: skip
    mirrored = json.loads((root / "mirrored" / "metrics.json").read_text())
    default = json.loads((root / "default" / "metrics.json").read_text())
    for name in ("recall@10", "ndcg@10", "recall@20"):
        assert mirrored[name] == pytest.approx(default[name], abs=0.01), name


if __name__ == "__main__":
    import tfrs_movies  # noqa: F401  (legacy Keras before TensorFlow loads)

    _child(sys.argv[1])
