"""TensorBoard HParams: the experiment's config at the root, one session per finished trial.

    tensorboard --logdir <tune_dir>/tensorboard      # the HPARAMS tab: table, parallel coordinates

Each trial's folder ``<tune_dir>/tensorboard/<trial id>`` holds ``hp.hparams`` (its hyperparameters)
and one scalar per figure (``valid/rmse``, ``train/rmse``, ...). The root's ``hp.hparams_config`` is
rewritten at the end of every invocation, so it lists every axis and every figure seen so far.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfrs_movies.training.tensorboard import hparam_value, write_session


def write_trial(logdir: Path, record: dict[str, Any]) -> Path:
    """One HParams session for a finished trial (its hyperparameters and figures)."""
    path = Path(logdir) / record["trial_id"]
    return write_session(path, record["params"], _figures(record), record["trial_id"])


def _figures(record: dict[str, Any]) -> dict[str, float]:
    out = {f"valid/{k}": float(v) for k, v in record.get("valid", {}).items() if k != "users"}
    out.update({f"train/{k}": float(v) for k, v in record.get("train", {}).items()})
    if record.get("train_seconds") is not None:
        out["train_seconds"] = float(record["train_seconds"])
    return out


def write_config(logdir: Path, records: list[dict[str, Any]], metric: str) -> Path:
    """The root's ``hparams_config``: every axis (its values seen) and every figure, ``metric`` first."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    for old in logdir.glob("events.out.tfevents.*"):  # only the root's own files: one config at a time
        old.unlink()
    values: dict[str, set] = {}
    for record in records:
        for name, value in record["params"].items():
            values.setdefault(name, set()).add(hparam_value(value))
    hparams = []
    for name, seen in values.items():
        kinds = {type(v) for v in seen}
        domain = hp.Discrete(sorted(seen)) if len(kinds) == 1 else None
        hparams.append(hp.HParam(name, domain))
    scalars = sorted({s for r in records for s in _figures(r)}, key=lambda s: (s != f"valid/{metric}", s))
    metrics = [hp.Metric(s, display_name=s) for s in scalars]
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        hp.hparams_config(hparams=hparams, metrics=metrics)
    writer.flush()
    writer.close()
    return logdir
