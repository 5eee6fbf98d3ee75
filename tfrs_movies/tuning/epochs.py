"""The Keras callback of :mod:`tfrs_movies.tuning.pruning`: each epoch's validation figure reported to
the trial's pruner (kept apart so that the pruner's settings load without TensorFlow)."""

from __future__ import annotations

import tensorflow as tf

from tfrs_movies.tuning.pruning import Curve, Pruning, TrialPruned, local_trial


class ReportEpochs(tf.keras.callbacks.Callback):
    """Records each epoch's ``val_<metric>`` (:attr:`curve`) and, with a pruner, raises
    :class:`TrialPruned` when the pruner stops the trial. A model that fits twice (a refit, a hybrid's
    components) reports an epoch once: its first fit's."""

    def __init__(self, pruning: Pruning) -> None:
        super().__init__()
        self.pruning = pruning
        self.curve: Curve = {}
        self.trial = local_trial(pruning) if pruning.spec.enabled else None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(f"val_{self.pruning.metric}")
        if value is None or epoch in self.curve:
            return
        self.curve[epoch] = float(value)
        if self.trial is None:
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            raise TrialPruned(epoch, self.curve)
