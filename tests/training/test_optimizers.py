"""LazyAdam: Adam on the rows a sparse gradient touches, nothing on the others."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfrs_movies  # noqa: F401  (legacy Keras before TensorFlow)
from tfrs_movies.config import ConfigError, load_config
from tfrs_movies.training.optimizers import OPTIMIZERS, LazyAdam, make_optimizer


def _train(optimizer: tf.keras.optimizers.Optimizer, batches: list[np.ndarray]) -> np.ndarray:
    """A (6, 3) table trained by a few embedding lookups (sparse gradients) and returned."""
    table = tf.Variable(np.arange(18, dtype=np.float32).reshape(6, 3) / 10)
    for rows in batches:
        with tf.GradientTape() as tape:
            looked_up = tf.nn.embedding_lookup(table, rows)
            loss = tf.reduce_sum(tf.square(looked_up - 1.0))
        grad = tape.gradient(loss, [table])
        assert isinstance(grad[0], tf.IndexedSlices)
        optimizer.apply_gradients(zip(grad, [table], strict=True))
    return table.numpy()


def test_lazy_adam_equals_adam_when_every_row_is_in_every_batch() -> None:
    # Rows repeat within a batch: Keras sums duplicates before the update, as for Adam.
    batches = [np.array([0, 1, 2, 3, 4, 5, 5, 2])] * 4
    lazy = _train(LazyAdam(learning_rate=0.1), batches)
    dense = _train(tf.keras.optimizers.Adam(learning_rate=0.1), batches)
    # Float32 rounding only: Adam writes m + (g - m)(1 - b1), LazyAdam b1 m + (1 - b1) g.
    np.testing.assert_allclose(lazy, dense, rtol=2e-5)


def test_lazy_adam_leaves_untouched_rows_where_adam_moves_them() -> None:
    start = np.arange(18, dtype=np.float32).reshape(6, 3) / 10
    batches = [np.array([0, 1, 2, 3, 4, 5]), np.array([0, 1])]
    lazy = _train(LazyAdam(learning_rate=0.1), batches)
    dense = _train(tf.keras.optimizers.Adam(learning_rate=0.1), batches)
    first = _train(LazyAdam(learning_rate=0.1), batches[:1])
    # Rows 2..5 were missed by the second batch: LazyAdam keeps them, Adam's momentum moves them on.
    np.testing.assert_array_equal(lazy[2:], first[2:])
    assert not np.allclose(dense[2:], first[2:])
    np.testing.assert_allclose(lazy[:2], dense[:2], rtol=2e-5)
    assert not np.allclose(lazy, start)


def test_lazy_adam_on_dense_gradients_is_adam() -> None:
    def run(optimizer: tf.keras.optimizers.Optimizer) -> np.ndarray:
        w = tf.Variable([[1.0, -2.0], [0.5, 3.0]])
        for _ in range(3):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(w @ tf.constant([[1.0], [2.0]])))
            optimizer.apply_gradients(zip(tape.gradient(loss, [w]), [w], strict=True))
        return w.numpy()

    np.testing.assert_array_equal(run(LazyAdam(0.01)), run(tf.keras.optimizers.Adam(0.01)))


def test_every_config_optimizer_is_built_by_name() -> None:
    for name in OPTIMIZERS:
        assert make_optimizer(name, 0.01).learning_rate.numpy() == pytest.approx(0.01)
        load_config(None, {"train.optimizer": name})
    with pytest.raises(ConfigError):
        load_config(None, {"train.optimizer": "lazyadam"})
