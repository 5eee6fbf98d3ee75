"""Towers: the networks that turn raw features into embeddings.

Each tower takes a batch of raw features and returns ``(batch, output_dim)`` float32 embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import tensorflow as tf

from tfrs_movies.features.preprocessing import id_lookup


class IdTower(tf.keras.Model):
    """String ids -> ``StringLookup`` (OOV slot 0) -> ``Embedding`` -> optional dense stack.

    Input: ``(batch,)`` string tensor of ids. Output: ``(batch, d)`` where ``d`` is the last of
    ``layers`` or ``embedding_dim`` when there are none. With ``normalize`` the output is L2-unit
    (cosine similarity instead of dot product).
    """

    def __init__(
        self,
        vocabulary: Iterable,
        embedding_dim: int,
        layers: Sequence[int] = (),
        l2: float = 0.0,
        normalize: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.lookup = id_lookup(vocabulary)
        regularizer = tf.keras.regularizers.l2(l2) if l2 > 0 else None
        self.embedding = tf.keras.layers.Embedding(
            self.lookup.vocabulary_size(), embedding_dim, embeddings_regularizer=regularizer
        )
        widths = list(layers)
        # ReLU between layers, linear at the top: the last layer is the embedding space itself.
        self.dense = [
            tf.keras.layers.Dense(w, activation="relu" if i < len(widths) - 1 else None)
            for i, w in enumerate(widths)
        ]
        self.normalize = normalize

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        x = self.embedding(self.lookup(ids))
        for layer in self.dense:
            x = layer(x)
        if self.normalize:
            x = tf.math.l2_normalize(x, axis=-1)
        return x
