"""TensorBoard tells the truth: the projector is found under a run's logdir, the epoch loss is the mean
per example that the console prints, the validation figures per epoch, an HParams session per run, and
early stopping says what it did (printed and as text); the console's epoch line is short."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrs_movies import schema as S
from tfrs_movies.config import load_config
from tfrs_movies.training.fit import EpochProgress, ValidationEarlyStopping
from tfrs_movies.training.projector import write_movie_projector
from tfrs_movies.training.tensorboard import run_hparams, write_run_hparams


# ----- reading TensorBoard back as TensorBoard does -------------------------------------------------
def _context(logdir: Path):
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    return base_plugin.TBContext(logdir=str(logdir), data_provider=provider, multiplexer=multiplexer)


def _get(app, route: str, method: str = "GET", body: dict | None = None, **query) -> bytes:
    """One request to a plugin route (what ``/data/plugin/<name><route>`` serves)."""
    from werkzeug.test import EnvironBuilder

    data = json.dumps(body) if body is not None else None
    environ = EnvironBuilder(path=route, method=method, query_string=query, data=data,
                             content_type="application/json").get_environ()  # fmt: skip
    status = []
    payload = b"".join(app[route](environ, lambda s, headers: status.append(s)))
    assert status[0].startswith("200"), (route, status, payload[:200])
    return payload


def _projector(logdir: Path):
    """The projector plugin over ``logdir``, once it says it is active (its check runs in a thread)."""
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin

    plugin = ProjectorPlugin(_context(logdir))
    deadline = time.monotonic() + 30
    while not plugin.is_active():
        assert time.monotonic() < deadline, "the projector plugin never became active"
        time.sleep(0.02)
    return plugin.get_plugin_apps()


def _summaries(run: Path) -> dict[str, list[tuple[int, float | str | None]]]:
    """Tag -> (step, value) of each summary in ``run``: a number, a text, or None (e.g. HParams data)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"tensors": 0})
    events.Reload()
    out = {}
    for tag in events.Tags()["tensors"]:
        values = [(e.step, tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
        out[tag] = [(step, _plain(v)) for step, v in values]
    return out


def _plain(value: np.ndarray) -> float | str | None:
    if value.ndim:
        return None
    return value.item().decode() if value.dtype == object else float(value)


def _movies(ids) -> pd.DataFrame:
    return pd.DataFrame({S.MOVIE_ID: ids, S.TITLE: [f"Movie {i} (1999)" for i in ids],
                         S.GENRES: [("Drama", "Comedy")] * len(ids)})  # fmt: skip


# ----- the projector ---------------------------------------------------------------------------------
def test_the_projector_is_active_under_the_logdir_and_lists_the_movie_vectors(tmp_path):
    ids = np.array([3, 1, 7, 9, 4])
    vectors = np.random.default_rng(0).normal(size=(5, 3))
    write_movie_projector(tmp_path / "tensorboard", ids, vectors, _movies(ids))
    app = _projector(tmp_path / "tensorboard")  # what `tensorboard --logdir <run>/tensorboard` reads
    assert json.loads(_get(app, "/runs")) == ["projector"]
    info = json.loads(_get(app, "/info", run="projector"))
    (embedding,) = info["embeddings"]
    assert embedding["tensorShape"] == [5, 3] and embedding["metadataPath"] == "metadata.tsv"
    metadata = _get(app, "/metadata", run="projector", name=embedding["tensorName"]).decode().splitlines()
    assert metadata[0] == "movie_id\ttitle\tgenres" and metadata[1] == "3\tMovie 3 (1999)\tDrama|Comedy"
    tensor = np.frombuffer(_get(app, "/tensor", run="projector", name=embedding["tensorName"]), np.float32)
    np.testing.assert_allclose(tensor.reshape(5, 3), vectors, rtol=1e-6)
    # Written again into the same folder: still one event file.
    write_movie_projector(tmp_path / "tensorboard", ids, vectors, _movies(ids))
    assert len(list((tmp_path / "tensorboard" / "projector").glob("events.out.tfevents.*"))) == 1


# ----- HParams -----------------------------------------------------------------------------------------
def test_each_run_is_an_hparams_session_and_runs_compare(tmp_path):
    from tensorboard.plugins.hparams.hparams_plugin import HParamsPlugin

    for name, lr, dim in (("a", 0.05, 32), ("b", 0.1, 64)):
        config = load_config(None, [f"train.learning_rate={lr}", f"model.embedding_dim={dim}"])
        metrics = {"recall@20": 0.3 + lr, "ndcg@10": 0.2, "users": 943, "best_epoch": 2, "model": "retrieval"}
        write_run_hparams(tmp_path / name / "tensorboard" / "test", config, metrics, name)
    assert run_hparams(config)["model.embedding_dim"] == 64 and "data.split.train" not in run_hparams(config)

    context = _context(tmp_path)  # `tensorboard --logdir runs`
    from tensorboard import context as tb_context

    assert "hparams" in context.data_provider.list_plugins(tb_context.RequestContext(), experiment_id="")
    app = HParamsPlugin(context).get_plugin_apps()
    experiment = json.loads(_get(app, "/experiment", "POST", {"experimentName": ""}))
    hparams = {h["name"]: h for h in experiment["hparamInfos"]}
    for key in ("model.name", "model.embedding_dim", "train.learning_rate", "train.batch_size",
                "train.epochs", "train.optimizer", "seed", "data.name", "data.split.kind"):  # fmt: skip
        assert key in hparams, key
    assert hparams["train.learning_rate"]["differs"] and not hparams["model.name"]["differs"]
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert metrics == {"test/recall@20", "test/ndcg@10", "test/best_epoch"}
    statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
    request = {"experimentName": "", "allowedStatuses": statuses, "colParams": [], "startIndex": 0,
               "sliceSize": 10}  # fmt: skip
    groups = json.loads(_get(app, "/session_groups", "POST", request))
    assert groups["totalSize"] == 2


# ----- early stopping's decision ---------------------------------------------------------------------
def _stopper(metric: str, best: float, best_epoch: int, wait: int, patience: int = 3):
    stopper = ValidationEarlyStopping(None, metric, patience)
    stopper.best, stopper.best_epoch, stopper.wait = best, best_epoch, wait
    return stopper


def test_early_stopping_says_what_it_did():
    stopped = _stopper("ndcg@10", 0.41234, 1, 3)
    assert stopped.decision(10) == ("early stopping: ndcg@10 did not improve for 3 epochs; stopped after "
                                    "epoch 5 of 10, restored epoch 2 (ndcg@10 0.4123)")  # fmt: skip
    assert stopped.last_epoch(10) == 4
    kept = _stopper("rmse", 0.91, 2, 1)
    assert (
        kept.decision(4)
        == "early stopping: did not stop (4 epochs); restored epoch 3, the best (rmse 0.9100)"
    )
    assert kept.last_epoch(4) == 3
    last = _stopper("recall@20", 0.3, 3, 0, patience=0)
    assert (
        last.decision(4)
        == "early stopping: did not stop (4 epochs); the last epoch is the best (recall@20 0.3000)"
    )
    single = _stopper("recall@20", 0.3, 0, 0, patience=0)
    assert single.decision(1).startswith("early stopping: did not stop (1 epoch); the last epoch")
    assert _stopper("recall@20", 0.0, -1, 0).decision(4) is None
    once = _stopper("mrr@10", 0.5, 1, 1, patience=1)
    assert once.decision(4, "autorec").startswith(
        "early stopping (autorec): mrr@10 did not improve for 1 epoch;"
    )


# ----- the console -------------------------------------------------------------------------------------
class _AddsValidation(tf.keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        logs["val_recall@20"] = 0.25 + epoch
        logs["val_ndcg@10"] = 0.5


def _tiny_fit(verbose: int) -> dict:
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    model.compile(tf.keras.optimizers.SGD(0.01), "mse")
    x = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    callbacks = [_AddsValidation(), EpochProgress(["loss", "val_recall@20"])]
    return model.fit(x, x[:, :1], batch_size=16, epochs=2, callbacks=callbacks, verbose=verbose).history


def test_off_a_terminal_each_epoch_is_one_short_line(capsys):
    history = _tiny_fit(verbose=1)  # captured output is no terminal
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    for epoch, line in enumerate(lines):
        head, seconds, loss, valid = line.split(" - ")
        assert head == f"epoch {epoch + 1}/2" and seconds.endswith("s")
        assert loss == f"loss: {history['loss'][epoch]:.4f}" and valid == f"val_recall@20: {0.25 + epoch:.4f}"
    assert "val_ndcg@10" in history  # the history keeps every figure; the line shows the watched one
    _tiny_fit(verbose=0)
    assert capsys.readouterr().out == ""


# ----- the retrieval loss ------------------------------------------------------------------------------
class _IdTower(tf.keras.Model):
    def __init__(self, key: str, ids: list[str]) -> None:
        super().__init__()
        self.key = key
        self.lookup = tf.keras.layers.StringLookup(vocabulary=ids)
        self.embedding = tf.keras.layers.Embedding(len(ids) + 1, 4)

    def call(self, features, training=False):
        return self.embedding(self.lookup(features[self.key]))


def test_the_retrieval_loss_is_the_epochs_mean_per_example():
    """Weights held still (learning rate 0): the logged loss is the summed loss of every batch over the
    number of examples, the last partial batch counted by its size."""
    from tfrs_movies.models.retrieval import TwoTowerRetrievalModel

    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    users, movies = [f"u{i}" for i in range(20)], [f"m{i}" for i in range(30)]
    rows = {S.USER_ID: rng.choice(users, 250), S.MOVIE_ID: rng.choice(movies, 250)}
    model = TwoTowerRetrievalModel(_IdTower(S.USER_ID, users), _IdTower(S.MOVIE_ID, movies),
                                   remove_accidental_hits=False, sampling_correction=False)  # fmt: skip
    model.compile(tf.keras.optimizers.SGD(0.0))
    data = tf.data.Dataset.from_tensor_slices(rows).batch(100)  # 100, 100, 50
    history = model.fit(data, epochs=2, verbose=0).history
    summed = [float(model.compute_loss(batch)) for batch in data]
    assert history["loss"] == pytest.approx([sum(summed) / 250] * 2, rel=1e-5)
    assert set(history) == {"loss"}  # no zero regularization, no total_loss repeating it
    assert float(model.epoch_loss.examples.numpy()) == 250  # reset at each epoch's start


# ----- one real run ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tfrs_movies.training.experiment import run

    out = tmp_path_factory.mktemp("run")
    config = load_config(None, [
        "data.name=synthetic", "data.synthetic.users=80", "data.synthetic.movies=60",
        "data.synthetic.ratings=3000", "train.epochs=4", "train.batch_size=256", "export.enabled=false",
        "train.early_stopping.patience=1", "model.embedding_dim=8",
    ])  # fmt: skip
    said = []
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = run(config, "test", said.append, out)
    return result, printed.getvalue().splitlines()


def test_a_runs_tensorboard_shows_what_the_console_printed(tiny_run):
    result, printed = tiny_run
    history, board = result.model.history, result.run_dir / "tensorboard"
    epochs = len(history["loss"])
    # The console: one short line per epoch (the loss per example, the watched metric, the time).
    lines = [line for line in printed if line.startswith("epoch ")]
    assert len(lines) == epochs and all(len(line) < 80 for line in lines), lines
    shown = f"loss: {history['loss'][0]:.4f} - val_recall@20: {history['val_recall@20'][0]:.4f}"
    assert lines[0].endswith(shown), (lines[0], shown)
    # TensorBoard's training loss is that figure, epoch by epoch.
    train = _summaries(board / "train")
    assert [s for s, _ in train["epoch_loss"]] == list(range(epochs))
    np.testing.assert_allclose([v for _, v in train["epoch_loss"]], history["loss"], rtol=1e-6)
    # Every validation figure, per epoch, under the validation run.
    valid = _summaries(board / "validation")
    figures = [k for k in history if k.startswith("val_")]
    assert "val_recall@20" in figures and "val_ndcg@10" in figures
    for name in figures:
        np.testing.assert_allclose([v for _, v in valid[f"epoch_{name[4:]}"]], history[name], rtol=1e-6)
    # Early stopping's decision: printed once and written as text at the last epoch trained.
    (decision,) = [line for line in printed if line.startswith("early stopping (retrieval): ")]
    kept = f"restored epoch {history['best_epoch'][0]}"
    assert kept in decision or (
        "the last epoch is the best" in decision and history["best_epoch"][0] == epochs
    )
    assert _summaries(board / "validation" / "early_stopping") == {"early_stopping": [(epochs - 1, decision)]}
    # The HParams session beside the test figures, and the projector under the same logdir.
    test = _summaries(board / "test")
    assert test["test/recall@20"] == [(0, pytest.approx(result.metrics["recall@20"]))]
    assert "_hparams_/session_start_info" in test
    app = _projector(board)
    (embedding,) = json.loads(_get(app, "/info", run="projector"))["embeddings"]
    assert embedding["tensorShape"] == [len(result.model.catalogue), 8]
