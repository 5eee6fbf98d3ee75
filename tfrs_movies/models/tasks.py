"""A retrieval task whose in-batch negatives are the candidates of the whole global batch.

TFRS's ``tfrs.tasks.Retrieval`` scores each replica's queries against that replica's candidates only:
with N replicas and a global batch of B, every query sees B/N - 1 in-batch negatives instead of B - 1,
so the loss (and what the model learns) changes with the number of devices. :class:`CrossReplicaRetrieval`
all-gathers the candidate embeddings of every replica (with their ids, for removing accidental hits,
and their sampling probabilities, for the logQ correction) through
``tf.distribute.get_replica_context().all_gather``, whose gradient sends each replica the part of the
other replicas' gradients that belongs to its own candidates. Each replica's labels are offset by the
number of candidates of the replicas before it. The sum of the replicas' losses is then the loss of one
device on the whole global batch, and so are the summed gradients (what the optimizer applies under
``MirroredStrategy`` / ``MultiWorkerMirroredStrategy``).

On one replica (the default strategy) nothing is gathered and the task computes exactly what
``tfrs.tasks.Retrieval(temperature, remove_accidental_hits)`` computes, loss reduced by SUM.

Extra negatives shared by every replica (e.g. the whole catalogue for a full softmax) are passed apart
(``extra_*``) and appended after the gathered batch, never gathered.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow_recommenders.layers.loss import (
    HardNegativeMining,
    RemoveAccidentalHits,
    SamplingProbablityCorrection,
)

# Candidate ids travel across replicas as 64-bit hashes (collectives do not carry strings); only their
# equality is used (accidental hits), and two ids collide with probability about 2**-62.
_ID_BUCKETS = 2**62


def id_codes(ids: tf.Tensor) -> tf.Tensor:
    """String ids -> int64 codes equal exactly when the ids are (up to hash collisions); ints unchanged."""
    if ids.dtype == tf.string:
        return tf.strings.to_hash_bucket_fast(ids, _ID_BUCKETS)
    return tf.cast(ids, tf.int64)


def gather_across_replicas(tensors: list[tf.Tensor]) -> tuple[list[tf.Tensor], tf.Tensor]:
    """``(every replica's tensors concatenated along axis 0 in replica order, the number of rows of the
    replicas before this one)``; on one replica, ``(tensors, 0)``. Replicas may hold different numbers
    of rows (a last, partial batch). Differentiable."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tensors, tf.constant(0, tf.int32)
    # Placed on this replica's device: an input tensor passed through untouched has no device, and a
    # multi-worker gather sends to where its input lives.
    tensors = [tf.identity(t) for t in tensors]
    rows = ctx.all_gather(tf.shape(tensors[0])[:1], axis=0)  # (num_replicas,)
    offset = tf.reduce_sum(rows[: ctx.replica_id_in_sync_group])
    # One gather per tensor: a batched gather concatenates its inputs, which needs one dtype.
    return [ctx.all_gather(t, axis=0) for t in tensors], offset


class CrossReplicaRetrieval(tf.keras.layers.Layer):
    """Softmax retrieval loss over the global batch's candidates; see the module docstring.

    ``call(query_embeddings (q, d), candidate_embeddings (q, d), candidate_sampling_probability (q,),
    candidate_ids (q,), extra_embeddings (e, d), extra_sampling_probability (e,), extra_ids (e,))``:
    row i of the candidates is query i's positive. Returns this replica's loss, summed over its queries.
    """

    def __init__(self, temperature: float | None = None, remove_accidental_hits: bool = False,
                 num_hard_negatives: int | None = None, name: str | None = None) -> None:  # fmt: skip
        super().__init__(name=name)
        self.temperature = temperature
        self.remove_accidental_hits = remove_accidental_hits
        # TFRS's num_hard_negatives: each query's softmax keeps its positive and its k highest negatives.
        self._hard = HardNegativeMining(num_hard_negatives) if num_hard_negatives else None
        self.loss = tf.keras.losses.CategoricalCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.SUM
        )
        self._correction = SamplingProbablityCorrection()
        self._hits = RemoveAccidentalHits()

    def call(
        self,
        query_embeddings: tf.Tensor,
        candidate_embeddings: tf.Tensor,
        candidate_sampling_probability: tf.Tensor | None = None,
        candidate_ids: tf.Tensor | None = None,
        extra_embeddings: tf.Tensor | None = None,
        extra_sampling_probability: tf.Tensor | None = None,
        extra_ids: tf.Tensor | None = None,
    ) -> tf.Tensor:
        if self.remove_accidental_hits and candidate_ids is None:
            raise ValueError("remove_accidental_hits needs candidate_ids")
        correct = candidate_sampling_probability is not None
        local = [candidate_embeddings]
        if correct:
            local.append(tf.cast(candidate_sampling_probability, tf.float32))
        if self.remove_accidental_hits:
            local.append(id_codes(candidate_ids))
        gathered, offset = gather_across_replicas(local)
        candidates = gathered[0]
        probability = gathered[1] if correct else None
        ids = gathered[-1] if self.remove_accidental_hits else None
        if extra_embeddings is not None:
            candidates = tf.concat([candidates, extra_embeddings], 0)
            if correct:
                probability = tf.concat([probability, tf.cast(extra_sampling_probability, tf.float32)], 0)
            if self.remove_accidental_hits:
                ids = tf.concat([ids, id_codes(extra_ids)], 0)

        scores = tf.linalg.matmul(query_embeddings, candidates, transpose_b=True)
        positives = tf.cast(offset, tf.int32) + tf.range(tf.shape(query_embeddings)[0])
        labels = tf.one_hot(positives, tf.shape(candidates)[0], dtype=scores.dtype)
        # The order of TFRS's Retrieval task: temperature, logQ correction, accidental hits, hard negatives.
        if self.temperature is not None:
            scores = scores / self.temperature
        if correct:
            scores = self._correction(scores, probability)
        if self.remove_accidental_hits:
            scores = self._hits(labels, scores, ids)
        if self._hard is not None:
            scores, labels = self._hard(scores, labels)
        return self.loss(y_true=labels, y_pred=scores)


class GlobalBatchLoss:
    """Marks a Keras model whose loss under N replicas adds up to one device's loss on the global batch
    (and whose loss objects reduce by SUM or NONE, as Keras requires under a strategy);
    :func:`tfrs_movies.training.fit.fit_keras` refuses a distribution strategy for any other model."""


def global_batch_share(
    local_mean: tf.Tensor, local_count: tf.Tensor, regularization: list[tf.Tensor]
) -> tf.Tensor:
    """This replica's share of a mean loss over the global batch, for ``tfrs.Model.train_step``.

    ``local_mean`` is the mean over this replica's ``local_count`` examples; the shares
    ``local_mean * local_count / global_count`` of the replicas add up to the global batch's mean (what
    one device computes, whatever the split, a last partial batch included). ``tfrs.Model.train_step``
    adds the model's ``regularization`` (``model.losses``) on every replica, so ``(1/N - 1)`` of it is
    taken off here: it counts once in the sum the optimizer applies. On one replica: ``local_mean``.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return local_mean
    count = tf.cast(local_count, local_mean.dtype)
    share = tf.math.multiply_no_nan(local_mean, count / ctx.all_reduce(tf.distribute.ReduceOp.SUM, count))
    if regularization:
        share += (1.0 / ctx.num_replicas_in_sync - 1.0) * tf.add_n([tf.reduce_sum(r) for r in regularization])
    return share
