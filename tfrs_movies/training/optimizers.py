"""Optimizers by name (``train.optimizer``), and a lazy Adam for large embedding tables.

Keras's Adam turns a sparse gradient (the rows of an embedding table a batch looked up) into dense
work: every step it decays the first and second moments of *every* row and moves every row by its
momentum. With 480,189 users x 32 that is several passes over 61 MB per step whatever the batch, and
it bounds the Netflix-size step (docs/BENCHMARKS.md, "Seed 002 at 100M"). ``LazyAdam`` updates only
the rows the batch touched, as TensorFlow Addons' ``LazyAdam`` and the embedding optimizers of large
recommenders do; dense gradients (the towers' layers) get plain Adam. The two agree exactly while
every row is in every batch; they differ for rows a batch misses, which Adam keeps moving by their
decaying momentum and LazyAdam leaves where they are.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


class LazyAdam(tf.keras.optimizers.Adam):
    """Adam whose sparse updates touch only the rows in the gradient's indices.

    ``update_step(gradient, variable)``: for ``tf.IndexedSlices`` of values ``(n, d)`` on a table
    ``(rows, d)`` (indices already unique: Keras sums duplicate rows before calling this), the
    moments and the variable change at those ``n`` rows only; anything else is Adam's own step.
    """

    def update_step(self, gradient, variable) -> None:
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = (
            tf.cast(self.learning_rate, dtype)
            * tf.sqrt(1 - tf.pow(beta_2, step))
            / (1 - tf.pow(beta_1, step))
        )
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        # The same epsilon as Adam's own step, so the two agree on rows every batch touches.
        epsilon = self.epsilon * tf.sqrt(1 - tf.pow(beta_2, step)) if self.adaptive_epsilon else self.epsilon
        rows, values = gradient.indices, gradient.values
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))
        return None


OPTIMIZERS: dict[str, Callable[..., tf.keras.optimizers.Optimizer]] = {
    "adagrad": tf.keras.optimizers.Adagrad,
    "adam": tf.keras.optimizers.Adam,
    "lazy_adam": LazyAdam,
    "sgd": tf.keras.optimizers.SGD,
}


def make_optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
    """The optimizer ``train.optimizer`` names, at ``learning_rate``."""
    return OPTIMIZERS[name](learning_rate=learning_rate)
