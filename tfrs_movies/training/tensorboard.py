"""What a run writes for TensorBoard beside Keras's own epoch scalars.

``tensorboard --logdir <run_dir>/tensorboard`` then shows these runs (folders):

- ``train``: ``epoch_loss``, the figure the console prints, one point per epoch (Keras's TensorBoard
  callback): for the two-tower model the epoch's mean loss per training example, for the models built on
  ``MeanLossModel`` and the autoencoders the epoch's mean of their batch losses, for the sequence model
  (``tfrs.Model``'s own step) its last batch's; and the model's other training figures;
- ``validation``: every early-stopping figure per epoch (``epoch_recall@20``, ``epoch_rmse``, ...);
  ``validation/early_stopping``: the early-stopping decision as text (tag ``early_stopping``);
- ``test``: the test figures (``test/<name>``) and the run's HParams session (:func:`write_run_hparams`):
  the config's main keys (:func:`run_hparams`) against its test figures, so that
  ``tensorboard --logdir runs`` compares every run in the HParams dashboard;
- ``projector``: the movie vectors with their titles (:mod:`tfrs_movies.training.projector`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tfrs_movies.config import flatten

# The config keys an HParams session holds besides every ``model.*`` key (``model.params.*`` included).
# A key whose value is None (e.g. ``data.split.train`` under a random split) is left out.
RUN_KEYS = (
    "data.name", "data.split.kind", "data.split.train", "data.split.test", "seed", "train.epochs",
    "train.batch_size", "train.learning_rate", "train.optimizer", "train.early_stopping.metric",
)  # fmt: skip


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def run_hparams(config: dict[str, Any]) -> dict[str, Any]:
    """A run's hyperparameters for HParams: :data:`RUN_KEYS` and every ``model.*`` leaf of ``config``,
    by dotted name (``"model.embedding_dim"``: 64), None values left out."""
    keys = {key: _lookup(config, key) for key in RUN_KEYS}
    keys.update(flatten(config["model"], "model."))
    # None values and empty sections (``model.params: {}``) are no hyperparameters
    return {key: value for key, value in keys.items() if value is not None and value != {}}


def run_figures(metrics: dict[str, Any]) -> dict[str, float]:
    """The headline figures of ``metrics.json`` as ``test/<name>`` scalars: every float (the metrics,
    ``train_seconds``) and ``best_epoch`` where early stopping chose one."""
    out = {f"test/{name}": value for name, value in metrics.items() if isinstance(value, float)}
    if "best_epoch" in metrics:
        out["test/best_epoch"] = float(metrics["best_epoch"])
    return out


def write_run_hparams(logdir: str | Path, config: dict[str, Any], metrics: dict[str, Any],
                      session_id: str) -> Path:  # fmt: skip
    """The run's HParams session and test figures in the folder ``logdir`` (``<run_dir>/tensorboard/test``).

    No ``hparams_config`` is written: the HParams dashboard infers the hyperparameters and metrics from
    the sessions it finds, so a logdir holding several runs (of any models) lists them all.
    """
    return write_session(Path(logdir), run_hparams(config), run_figures(metrics), session_id)


def hparam_value(value: Any) -> bool | int | float | str:
    """HParams take bool, number or string: lists and mappings become their JSON text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def write_session(path: Path, params: dict[str, Any], figures: dict[str, float], session_id: str) -> Path:
    """One HParams session in the folder ``path`` (a run's or a tuning trial's): ``params`` (name ->
    value; lists and mappings as their JSON text) and one scalar per figure (tag -> value, at step 0)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(str(path))
    with writer.as_default():
        hp.hparams({name: hparam_value(v) for name, v in params.items()}, trial_id=session_id)
        for scalar, value in figures.items():
            tf.summary.scalar(scalar, value, step=0)
    writer.flush()
    writer.close()
    return Path(path)


def write_text(logdir: str | Path, tag: str, text: str, step: int) -> None:
    """One text summary (markdown) in the folder ``logdir``, at ``step``."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        tf.summary.text(tag, text, step=step)
    writer.flush()
    writer.close()
