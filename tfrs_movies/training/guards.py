"""Checks on a fit that has just ended: a loss that stopped being a number ends the run as an error.

``history`` is the model's training record (``Recommender.history``: name -> one value per epoch).
Every entry whose name ends in ``loss`` (``loss``, ``val_loss``, ``rating_loss``...) must be finite;
Keras's ``TerminateOnNaN`` would only stop early and let the run write figures of a broken model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite. The message is one line naming the epoch."""


def check_finite_losses(history: Mapping[str, Sequence[float]], model: str) -> None:
    """Raise :class:`TrainingDivergedError` at the first non-finite loss in ``history``."""
    for name, values in history.items():
        if not name.endswith("loss"):
            continue
        for epoch, value in enumerate(values if isinstance(values, Sequence) else [values], start=1):
            if not math.isfinite(float(value)):
                raise TrainingDivergedError(
                    f"training diverged: model {model!r} had {name} = {float(value)} at epoch {epoch}; "
                    "no metrics or model were written (try a lower train.learning_rate)"
                )
