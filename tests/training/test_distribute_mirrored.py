"""``train.strategy: mirrored`` end to end: MirroredStrategy over two logical CPU devices through the
Python API (:func:`tfrs_movies.training.experiment.run_experiment`), for the retrieval model and for the
ranking model (seed 002's head) against the default strategy.

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
# Seed 002's head for the ranking run (a scaled sigmoid of the dot product, MSE, early stopping on RMSE).
EXTRA = {"retrieval": [], "ranking": ["model.params.head=dot_sigmoid", "train.early_stopping.metric=rmse",
                                      "train.optimizer=adam", "train.learning_rate=0.01"]}  # fmt: skip


def _child(root: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfrs_movies.config import load_config
    from tfrs_movies.training.experiment import run_experiment

    out = {}
    # Retrieval's equivalence to one device is tested with two workers (test_distribute_multi_worker.py).
    runs = [("retrieval", "mirrored"), ("ranking", "mirrored"), ("ranking", "default")]
    for model, strategy in runs:
        run_dir = Path(root) / f"{model}-{strategy}"
        config = load_config(None, [*TINY, *EXTRA[model], f"model.name={model}", f"train.strategy={strategy}",
                                    f"run_dir={run_dir}"])  # fmt: skip
        result = run_experiment(config, say=lambda _: None)
        keras_model = result.model.model
        # The trainable weights (a ranking model's weights also hold its loss tracker's counts).
        weights = {f"{i:03d}": np.asarray(w) for i, w in enumerate(keras_model.trainable_weights)}
        np.savez(run_dir / "weights.npz", **weights)
        out[f"{model}-{strategy}"] = {"replicas": keras_model.distribute_strategy.num_replicas_in_sync,
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
    assert figures["ranking-default"]["replicas"] == 1
    for model in ("retrieval", "ranking"):
        assert figures[f"{model}-mirrored"]["replicas"] == 2
        run = root / f"{model}-mirrored"
        assert "strategy: mirrored" in (run / "config.yaml").read_text()
        metrics = json.loads((run / "metrics.json").read_text())
        assert 0.0 < metrics["recall@10"] <= 1.0 and metrics["users"] == 80
        assert (run / "model" / "model.json").exists()
        assert list((run / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert json.loads((root / "ranking-mirrored" / "metrics.json").read_text())["rmse"] < 1.5


@pytest.mark.slow
def test_two_replicas_of_the_ranking_model_learn_what_one_device_learns(runs):
    """Same global batches, each replica's share of the global batch's mean loss: the same trainable
    weights, up to float32 rounding in the order the gradients are summed, and the same figures."""
    root, _ = runs
    two, one = root / "ranking-mirrored", root / "ranking-default"
    with np.load(two / "weights.npz") as a, np.load(one / "weights.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-5, err_msg=key)
    mirrored = json.loads((two / "metrics.json").read_text())
    default = json.loads((one / "metrics.json").read_text())
    assert mirrored["rmse"] == pytest.approx(default["rmse"], abs=1e-4)
    for name in ("recall@10", "ndcg@10"):
        assert mirrored[name] == pytest.approx(default[name], abs=0.01), name


if __name__ == "__main__":
    import tfrs_movies  # noqa: F401  (legacy Keras before TensorFlow loads)

    _child(sys.argv[1])
