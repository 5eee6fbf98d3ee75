"""The fit loop for the TFRS models: Keras ``fit`` plus validation early stopping and TensorBoard.

Early stopping watches ``train.early_stopping.metric`` on the validation ratings carved out of train
and restores the best epoch's weights at the end. Two kinds of metric:

- a full-ranking metric (``recall@20``, ``ndcg@10``, ...), computed by the same evaluator as the
  headline figures (seen movies removed) from the model's ``score``;
- a rating metric (``rmse`` or ``mae``), computed from the model's ``predict`` on the validation
  (user, movie) pairs, predictions clipped to the rating scale as in the headline figures.

Which way is better comes from the metric table (:mod:`tfrs_movies.evaluation.metrics_table`).

Under a distribution strategy (``train.strategy``, :mod:`tfrs_movies.training.distribute`) the model
was built in the strategy's scope; ``fit_keras`` shards the data per worker, the early-stopping figures
are computed on the chief and broadcast, and only the chief writes into the run directory.

Checkpoints and resume: with a run directory, :class:`Checkpointing` saves ``<run_dir>/checkpoints``
(``tf.train.CheckpointManager``: written under temporary names, then the ``checkpoint`` index file is
replaced, so a kill leaves the previous checkpoint valid) at every epoch's end and, with
``train.checkpoint_every`` N > 0, every N steps within an epoch. A checkpoint holds the model's weights,
the optimizer's state, the epochs and steps done, the early-stopping state (best figure, its epoch and
weights, epochs without improvement, whether it stopped) and the history so far. ``fit_keras`` over a
run directory that holds one resumes from it (one line says where): the shuffle order is the one the
uninterrupted run would have drawn (the seeded shuffle's seed generator is advanced by one draw per
epoch done, the batches of a part-done epoch are skipped), so on the CPU the resumed run ends with the
same weights and figures as an uninterrupted one. TensorBoard stays one run: the killed run's epoch
summaries from the resumed epoch on are removed before training continues (:func:`truncate_events`).

The console: one short line per epoch (:class:`EpochProgress`: the loss, the watched validation metric,
the time; Keras's progress bar on a terminal), and once training is over one line saying what early
stopping did (:meth:`ValidationEarlyStopping.decision`), also written to TensorBoard as text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.config import ConfigError
from tfrs_movies.evaluation import metrics_table as M
from tfrs_movies.evaluation.metrics import mae, rmse
from tfrs_movies.evaluation.ranking import FullRankingEvaluator
from tfrs_movies.models.tasks import GlobalBatchLoss
from tfrs_movies.training import distribute as D
from tfrs_movies.training.tensorboard import write_text

CHECKPOINTS = "checkpoints"  # <run_dir>/checkpoints/<model>-<config digest> (checkpoint_folder)
KEEP_CHECKPOINTS = 2
# The Keras TensorBoard callback's writers (epoch summaries at step = epoch index).
TENSORBOARD_RUNS = ("train", "validation")
EARLY_STOPPING_RUN = "validation/early_stopping"  # its decision, as text

# Rating metrics ``predict``-based early stopping can watch (from the metric table).
RATING_METRICS = M.RATING_METRICS


def is_rating_metric(metric: str) -> bool:
    return metric in RATING_METRICS


def metric_k(metric: str) -> int:
    """``"recall@20"`` -> 20 (a ValueError naming the known metrics for anything else)."""
    return M.cutoff(metric)


class ValidationEarlyStopping(tf.keras.callbacks.Callback):
    """After each epoch: compute the validation metrics (``_validation_metrics``), log them as
    ``val_<name>``, stop after ``patience`` epochs without improvement of ``metric`` (by more than
    ``min_delta``, in the metric's direction from the metric table), restore the best weights at the end.
    """

    def __init__(self, recommender: Any, metric: str, patience: int, min_delta: float = 0.0) -> None:
        super().__init__()
        self.higher_is_better = M.higher_is_better(metric)  # an unknown name: one line naming the known
        self.recommender = recommender
        self.metric = metric
        self.patience = patience
        self.min_delta = min_delta
        self.best = -math.inf if self.higher_is_better else math.inf
        self.best_epoch = -1
        self.best_weights: list[np.ndarray] | None = None
        self.wait = 0
        self.restore_at_end = True  # False while a resumed run trains the rest of a part-done epoch

    def _validation_metrics(self) -> dict[str, float]:
        raise NotImplementedError

    def _improved(self, current: float) -> bool:
        if self.higher_is_better:
            return current > self.best + self.min_delta
        return current < self.best - self.min_delta

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        self.recommender.on_weights_changed()
        # Multi-worker: the chief evaluates, every worker gets its figure (same stop, same best weights).
        strategy = self.model.distribute_strategy
        metrics = self._validation_metrics() if D.is_chief(strategy) else {}
        for name, value in metrics.items():
            if name != "users":
                logs[f"val_{name}"] = value
        current = D.from_chief(strategy, metrics.get(self.metric))
        if self._improved(current):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None and self.restore_at_end:
            self.model.set_weights(self.best_weights)
            self.recommender.on_weights_changed()

    @property
    def stopped(self) -> bool:
        """Whether ``patience`` epochs without improvement stopped training."""
        return self.wait > 0 and self.wait >= self.patience

    def last_epoch(self, epochs: int) -> int:
        """The last epoch trained (0-based) of a training of ``epochs`` epochs, once it is over."""
        return self.best_epoch + self.wait if self.stopped else epochs - 1

    def decision(self, epochs: int, model: str = "") -> str | None:
        """What early stopping did, in one line, once a training of ``epochs`` epochs of ``model`` (its
        name, shown when given: a blend or hybrid trains several) is over; None when no epoch was
        validated. E.g. ``early stopping (retrieval): ndcg@10 did not improve for 3 epochs; stopped
        after epoch 5 of 10, restored epoch 2 (ndcg@10 0.4123)``."""
        if self.best_epoch < 0:
            return None
        head = f"early stopping ({model})" if model else "early stopping"
        best, kept = f"{self.metric} {self.best:.4f}", self.best_epoch + 1
        if self.stopped:
            waited = f"{self.wait} epoch{'s' if self.wait > 1 else ''}"
            return (
                f"{head}: {self.metric} did not improve for {waited}; stopped after epoch "
                f"{self.last_epoch(epochs) + 1} of {epochs}, restored epoch {kept} ({best})"
            )
        trained = f"{epochs} epoch{'s' if epochs > 1 else ''}"
        if kept < epochs:
            return f"{head}: did not stop ({trained}); restored epoch {kept}, the best ({best})"
        return f"{head}: did not stop ({trained}); the last epoch is the best ({best})"


class FullRankingEarlyStopping(ValidationEarlyStopping):
    """Full-ranking metrics of the validation users (every catalogue movie scored)."""

    def __init__(self, recommender: Any, evaluator: FullRankingEvaluator, metric: str, patience: int,
                 min_delta: float = 0.0, batch_size: int = 512) -> None:  # fmt: skip
        super().__init__(recommender, metric, patience, min_delta)
        self.evaluator = evaluator
        self.batch_size = batch_size

    def _validation_metrics(self) -> dict[str, float]:
        return self.evaluator.evaluate(self.recommender.score, batch_size=self.batch_size)


class RatingEarlyStopping(ValidationEarlyStopping):
    """RMSE and MAE of ``recommender.predict`` on the validation pairs (clipped)."""

    def __init__(self, recommender: Any, valid: pd.DataFrame, metric: str, patience: int,
                 min_delta: float = 0.0) -> None:  # fmt: skip
        if not is_rating_metric(metric):
            raise ValueError(f"rating early stopping watches one of {list(RATING_METRICS)}, got {metric!r}")
        super().__init__(recommender, metric, patience, min_delta)
        self.users = valid[S.USER_ID].to_numpy()
        self.movies = valid[S.MOVIE_ID].to_numpy()
        self.ratings = valid[S.RATING].to_numpy()

    def _validation_metrics(self) -> dict[str, float]:
        predicted = self.recommender.predict(self.users, self.movies)
        clip = self.recommender.rating_scale
        return {"rmse": rmse(self.ratings, predicted, clip), "mae": mae(self.ratings, predicted, clip)}


def _live_terminal() -> bool:
    """Whether standard output redraws a progress bar in place (a terminal, a notebook)."""
    return sys.stdout.isatty() or "ipykernel" in sys.modules


class EpochProgress(tf.keras.callbacks.ProgbarLogger):
    """The console during ``fit``: only the ``shown`` figures of the logs (the loss, the watched
    validation metric), each as the logs hold it (the value the history and TensorBoard get).

    ``train.verbose`` 1 on a terminal or in a notebook: Keras's progress bar. ``train.verbose`` 2, or
    1 where the output is no terminal (a log file, CI, a pipe): one line per epoch, e.g.
    ``epoch 2/10 - 3.1s - loss: 5.4321 - val_recall@20: 0.2975`` (the time includes validation).
    ``train.verbose`` 0: nothing. Goes after the callbacks that add figures to the logs.
    """

    def __init__(self, shown: Sequence[str]) -> None:
        super().__init__(count_mode="steps", stateful_metrics=list(shown))
        self.shown = tuple(shown)
        self.one_line = False
        self._started = 0.0

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        self.one_line = self.verbose == 2 or (self.verbose == 1 and not _live_terminal())
        self._call_batch_hooks = self._call_batch_hooks and not self.one_line  # nothing drawn per step

    def _kept(self, logs: dict | None) -> dict:
        return {name: logs[name] for name in self.shown if name in (logs or {})}

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()
        if not self.one_line:
            super().on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self.one_line:  # (called anyway when another callback has batch hooks)
            super().on_train_batch_end(batch, self._kept(logs))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        kept = self._kept(logs)
        if not self.one_line:
            super().on_epoch_end(epoch, kept)
            return
        figures = "".join(f" - {name}: {float(value):.4f}" for name, value in kept.items())
        seconds = time.perf_counter() - self._started
        print(f"epoch {epoch + 1}/{self.epochs} - {seconds:.1f}s{figures}", flush=True)


def make_early_stopping(
    recommender: Any, train: pd.DataFrame, valid: pd.DataFrame
) -> ValidationEarlyStopping:
    """The callback ``train.early_stopping`` asks for (a rating metric needs a rating model)."""
    config = recommender.config
    stop_cfg = config["train"]["early_stopping"]
    metric = stop_cfg["metric"]
    kind = M.metric(metric).kind  # an unknown name: one line naming the known metrics
    if kind != M.TOP_N and not is_rating_metric(metric):
        raise ValueError(
            f"train.early_stopping.metric {metric!r} is not computed by early stopping here; use a top-N "
            f"metric (e.g. recall@20) or one of {list(RATING_METRICS)}"
        )
    if is_rating_metric(metric):
        if not recommender.predicts_ratings:
            raise ValueError(
                f"train.early_stopping.metric {metric!r} needs a rating model; "
                f"{recommender.name!r} does not predict ratings"
            )
        return RatingEarlyStopping(recommender, valid, metric, stop_cfg["patience"], stop_cfg["min_delta"])
    ks = sorted(set(config["eval"]["ks"]) | {metric_k(metric)})
    evaluator = FullRankingEvaluator(train, valid, recommender.catalogue, ks=ks)
    return FullRankingEarlyStopping(
        recommender, evaluator, metric, stop_cfg["patience"], stop_cfg["min_delta"],
        config["eval"]["batch_size"],
    )  # fmt: skip


class _StopperState(tf.Module):
    """One early-stopping callback's state as variables (so a checkpoint holds it)."""

    def __init__(self, weights: list[np.ndarray]) -> None:
        super().__init__()
        self.best = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False)
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_weights = [tf.Variable(w, trainable=False) for w in weights]

    def store(self, stopper: ValidationEarlyStopping) -> None:
        self.best.assign(stopper.best)
        self.best_epoch.assign(stopper.best_epoch)
        self.wait.assign(stopper.wait)
        if stopper.best_weights is not None:
            for variable, value in zip(self.best_weights, stopper.best_weights, strict=True):
                variable.assign(value)

    def load(self, stopper: ValidationEarlyStopping) -> None:
        stopper.best = float(self.best.numpy())
        stopper.best_epoch = int(self.best_epoch.numpy())
        stopper.wait = int(self.wait.numpy())
        stopper.best_weights = [v.numpy() for v in self.best_weights] if stopper.best_epoch >= 0 else None


class Checkpointing(tf.keras.callbacks.Callback):
    """Save the training state into ``write_to`` (at each epoch's end and every ``every`` steps when
    ``every`` > 0) and resume from the latest checkpoint in ``read_from`` (the chief's folder: under
    multi-worker training every worker restores the chief's checkpoint and saves into its own folder).

    Use: :meth:`restore` (before training), then :meth:`fit` in place of ``model.fit``.
    """

    def __init__(self, model: tf.keras.Model, stoppers: list[ValidationEarlyStopping], read_from: Path,
                 write_to: Path, every: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.keras_model, self.stoppers, self.read_from, self.every = model, stoppers, Path(read_from), every
        self.epoch = 0  # epochs done
        self.step = 0  # steps done within epoch ``self.epoch``
        self.stopped = False
        self.history: dict[str, list[float]] = {}
        self.resumed = False
        self._progress = tf.Variable([0, 0, 0], dtype=tf.int64, trainable=False)  # epoch, step, stopped
        self._history = tf.Variable("{}", dtype=tf.string, trainable=False)
        weights = model.get_weights() if stoppers else []
        self._stopper_states = [_StopperState(weights) for _ in stoppers]
        self._checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, progress=self._progress, history=self._history,
            stoppers=self._stopper_states,
        )  # fmt: skip
        self._manager = tf.train.CheckpointManager(self._checkpoint, str(write_to), KEEP_CHECKPOINTS)
        self._skip = tf.Variable(0, dtype=tf.int64, trainable=False)  # batches to skip (a part-done epoch)
        self._epoch_offset = 0  # steps of the current epoch done before this process
        self._steps: int | None = None  # steps per epoch, when the data says

    def restore(self, epochs: int) -> None:
        """Load the latest checkpoint of ``read_from`` if there is one (and say so in one line)."""
        latest = tf.train.latest_checkpoint(str(self.read_from))
        if latest is None:
            return
        self._checkpoint.restore(latest).expect_partial()
        self.epoch, self.step, stopped = (int(v) for v in self._progress.numpy())
        self.stopped = bool(stopped)
        self.history = json.loads(self._history.numpy().decode("utf-8"))
        for state, stopper in zip(self._stopper_states, self.stoppers, strict=True):
            state.load(stopper)
        self.resumed = True
        where = "training was over" if self.stopped or self.epoch >= epochs else (
            f"continuing at epoch {self.epoch + 1} of {epochs}, step {self.step + 1}")  # fmt: skip
        print(f"resumed from checkpoint {latest}: {self.epoch} epochs and {self.step} steps done; {where}",
              flush=True)  # fmt: skip

    def fit(self, data: tf.data.Dataset, epochs: int, callbacks: list[tf.keras.callbacks.Callback],
            verbose: int) -> dict[str, list[float]]:  # fmt: skip
        """``model.fit`` from where the checkpoint left off; returns the whole run's history.

        The data's order: ``fit`` draws one shuffle seed per iterator it makes, one more than epochs
        (its first iterator is made and dropped); epoch ``e`` of an uninterrupted run reads draw ``e + 1``.
        Resuming at the start of epoch ``e``: ``e`` draws are made here, then ``fit`` draws as usual.
        Resuming within epoch ``e``: ``e + 1`` draws are made here, and two ``fit`` calls (the rest of
        epoch ``e``, then the epochs after it; Keras would take the first epoch's step count for every
        epoch of one call) read a wrapper whose iterators draw only when read (``flat_map``), skipping
        the steps done in its first epoch.
        """
        model = self.keras_model
        callbacks = [*callbacks, self]
        cardinality = int(data.cardinality().numpy())
        self._steps = cardinality if cardinality >= 0 else None
        if self.step and not self.over(epochs):
            for _ in range(self.epoch + 1):
                iter(data)  # one seed draw of the shuffle per iterator made
            self._skip.assign(self.step)
            self._epoch_offset = self.step
            skip, whole = self._skip, data
            data = tf.data.Dataset.from_tensors(0).flat_map(lambda _: whole.skip(skip))
            for stopper in self.stoppers:
                stopper.restore_at_end = False  # the best weights come back once training is over
            try:
                model.fit(data, epochs=self.epoch + 1, initial_epoch=self.epoch, callbacks=callbacks,
                          verbose=verbose)  # fmt: skip
            finally:
                for stopper in self.stoppers:
                    stopper.restore_at_end = True
        elif not self.over(epochs):
            for _ in range(self.epoch):
                iter(data)  # one seed draw of the shuffle per iterator made
        if not self.over(epochs):
            model.fit(data, epochs=epochs, initial_epoch=self.epoch, callbacks=callbacks, verbose=verbose)
        else:  # the killed run had finished training, or the rest of its epoch finished it
            for stopper in self.stoppers:
                stopper.set_model(model)
                stopper.on_train_end()
        return self.history

    def over(self, epochs: int) -> bool:
        """Whether training is over: early stopping stopped it, or every epoch is done."""
        return self.stopped or self.epoch >= epochs

    def _save(self, epoch: int, step: int) -> None:
        self._progress.assign([epoch, step, int(self.stopped)])
        self._history.assign(json.dumps(self.history))
        for state, stopper in zip(self._stopper_states, self.stoppers, strict=True):
            state.store(stopper)
        self._manager.save(checkpoint_number=epoch * 1_000_000_000 + step)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        done = self._epoch_offset + batch + 1
        # Not at an epoch's last step: the epoch-end checkpoint follows (after validation), and a
        # checkpoint with every step done but the epoch's end not would resume into an empty epoch.
        steps = self._steps or (self.params or {}).get("steps")
        if self.every > 0 and done % self.every == 0 and (steps is None or done < steps):
            self._save(self.epoch, done)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        self._epoch_offset = 0
        self._skip.assign(0)
        self.stopped = bool(self.model.stop_training)
        self.epoch, self.step = epoch + 1, 0
        self._save(epoch + 1, 0)


def checkpoint_folder(recommender: Any) -> str:
    """``<model name>-<digest of its config>``: one folder per model trained in a run (a hybrid's
    components each have theirs), the same for the same config run again."""
    text = json.dumps(recommender.config, sort_keys=True, default=str)
    return f"{recommender.name}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:10]}"


def _report_early_stopping(stoppers: list[ValidationEarlyStopping], epochs: int, model: str,
                           logdir: Path | None, chief: bool) -> None:  # fmt: skip
    """Each stopper's decision printed (by the chief) and, with a logdir, written to TensorBoard as the
    ``early_stopping`` text of the run ``validation/early_stopping`` at the last epoch trained (a folder
    of its own: Keras's writer of ``validation`` is closed, and each folder keeps one writer)."""
    for stopper in stoppers:
        line = stopper.decision(epochs, model)
        if line is None:
            continue
        if chief:
            print(line, flush=True)
        if logdir is not None:
            write_text(logdir / EARLY_STOPPING_RUN, "early_stopping", line, stopper.last_epoch(epochs))


def truncate_events(logdir: str | Path, first_step: int) -> None:
    """Drop the summaries at ``step >= first_step`` from the Keras TensorBoard event files under
    ``logdir`` (its ``train`` and ``validation`` runs): what a killed run wrote for the epochs that are
    trained again. Each file is rewritten atomically; a record cut short by the kill ends the file."""
    from tfrs_movies.io import atomic_file

    for run in TENSORBOARD_RUNS:
        for path in sorted((Path(logdir) / run).glob("events.out.tfevents.*")):
            kept, dropped = [], 0
            try:
                for event in tf.compat.v1.train.summary_iterator(str(path)):
                    if event.HasField("summary") and event.step >= first_step:
                        dropped += 1
                    else:
                        kept.append(event.SerializeToString())
            except tf.errors.DataLossError:
                dropped += 1
            if not dropped:
                continue
            with atomic_file(path) as tmp:
                with tf.io.TFRecordWriter(str(tmp)) as writer:
                    for record in kept:
                        writer.write(record)
                os.utime(tmp)


def fit_keras(
    recommender: Any,
    data: tf.data.Dataset,
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    run_dir: str | Path | None = None,
    extra_callbacks: list[tf.keras.callbacks.Callback] | None = None,
    epochs: int | None = None,
) -> dict[str, list[float]]:
    """Train ``recommender.model`` on ``data``; returns the Keras history (plus ``best_epoch``).

    ``epochs`` overrides ``train.epochs`` (e.g. a refit on train + validation for the best epoch count).
    ``data`` is batched by the global batch (``train.batch_size``); under a strategy each worker keeps its
    part of every batch (auto-shard by data) and a non-chief worker writes into a temporary directory.
    """
    config = recommender.config
    cfg = config["train"]
    callbacks: list[tf.keras.callbacks.Callback] = []
    stopper = None
    if valid is not None and len(valid):
        stopper = make_early_stopping(recommender, train, valid)
        callbacks.append(stopper)  # first, so the val_ metrics are in the logs TensorBoard writes
    stoppers = [c for c in [*callbacks, *(extra_callbacks or [])] if isinstance(c, ValidationEarlyStopping)]
    strategy = recommender.model.distribute_strategy
    if cfg.get("strategy", "default") != "default" and not isinstance(recommender.model, GlobalBatchLoss):
        raise ConfigError(
            f"config key 'train.strategy' {cfg['strategy']!r} is not supported by model {recommender.name!r} "
            "(its loss is not split over replicas); use train.strategy=default"
        )
    epochs = epochs or cfg["epochs"]
    checkpointing, logdir = None, None
    with contextlib.ExitStack() as stack:
        callbacks += extra_callbacks or []
        if run_dir is not None:
            out = stack.enter_context(D.write_dir(run_dir, strategy))
            folder = Path(CHECKPOINTS) / checkpoint_folder(recommender)
            checkpointing = Checkpointing(
                recommender.model, stoppers, Path(run_dir) / folder, Path(out) / folder,
                cfg.get("checkpoint_every", 0),
            )  # fmt: skip
            checkpointing.restore(epochs)
            if checkpointing.resumed and not checkpointing.over(epochs):
                truncate_events(Path(out) / "tensorboard", checkpointing.epoch)
            logdir = Path(out) / "tensorboard"  # a resumed run's graph is already there
            graph = not checkpointing.resumed
            # After the callbacks that add figures to the logs (early stopping's val_ figures).
            board = tf.keras.callbacks.TensorBoard(str(logdir), update_freq="epoch", write_graph=graph)
            callbacks.append(board)
        callbacks.append(EpochProgress(["loss", *(f"val_{s.metric}" for s in stoppers)]))
        start = time.perf_counter()
        if checkpointing is None:
            history = recommender.model.fit(
                D.shard_by_data(data), epochs=epochs, callbacks=callbacks, verbose=cfg["verbose"]
            ).history
        else:
            history = checkpointing.fit(D.shard_by_data(data), epochs, callbacks, cfg["verbose"])
        _report_early_stopping(stoppers, epochs, recommender.name, logdir, D.is_chief(strategy))
    out = {k: [float(v) for v in values] for k, values in history.items()}
    out["train_seconds"] = [time.perf_counter() - start]
    if stopper is not None and stopper.best_epoch >= 0:
        out["best_epoch"] = [stopper.best_epoch + 1]
    return out
