"""Checkpoints and resume: a training killed with SIGKILL and run again by the same command continues
from its last checkpoint and ends with the figures of an uninterrupted run (exactly, on the CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# A small generated world, slow enough per epoch (small batches) for a kill to land mid-training.
SMALL = ["--dataset", "synthetic", "--set", "data.synthetic.users=150", "--set", "data.synthetic.movies=120",
         "--set", "data.synthetic.ratings=8000", "--set", "train.verbose=0", "--epochs", "3",
         "--batch-size", "32", "--set", "export.enabled=false"]  # fmt: skip


def _train(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "-m", "tfrs_movies.train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


def _kill_after_checkpoint(args: list[str], cwd: Path, checkpoints: Path) -> None:
    """Start training and SIGKILL it as soon as a checkpoint index file appears under ``checkpoints``."""
    process = _train(args, cwd)
    deadline = time.monotonic() + 240
    while not list(checkpoints.glob("*/checkpoint")):
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _killed_after_checkpoint(monkeypatch, when, action) -> None:
    """Run ``action`` with every checkpoint save followed by a kill (``KeyboardInterrupt``: nothing after
    that save happens) once ``when(epoch, step, saves so far)`` holds; saving is restored after."""
    from tfrs_movies.training import fit

    save, saves = fit.Checkpointing._save, []

    def save_then_die(self, epoch, step):
        save(self, epoch, step)
        saves.append((epoch, step))
        if when(epoch, step, len(saves)):
            raise KeyboardInterrupt

    monkeypatch.setattr(fit.Checkpointing, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        action()
    monkeypatch.setattr(fit.Checkpointing, "_save", save)


def _scalars(logdir: Path) -> dict[str, list[int]]:
    """tag -> the steps of its summaries, over every event file of ``logdir``."""
    import tensorflow as tf

    steps: dict[str, list[int]] = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return steps


@pytest.mark.slow
def test_sigkill_then_the_same_command_resumes_and_matches_an_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    _finish(_train([*SMALL, "--run-dir", str(straight)], REPO))
    assert not (straight / "checkpoints").exists() and not (straight / "RUNNING").exists()

    killed = tmp_path / "killed"
    args = [*SMALL, "--set", "train.checkpoint_every=100", "--run-dir", str(killed)]
    _kill_after_checkpoint(args, REPO, killed / "checkpoints")
    assert (killed / "RUNNING").exists() and not (killed / "metrics.json").exists()
    output = _finish(_train(args, REPO))
    assert "resumed from checkpoint" in output, output

    expected = json.loads((straight / "metrics.json").read_text())
    got = json.loads((killed / "metrics.json").read_text())
    for name in ("recall@10", "recall@20", "ndcg@10", "map@10", "best_epoch"):
        assert got[name] == expected[name], name  # exact: same weights, same order of batches
    assert not (killed / "RUNNING").exists() and not (killed / "checkpoints").exists()
    # TensorBoard: one run, each epoch once.
    for run in ("train", "validation"):
        steps = _scalars(killed / "tensorboard" / run)
        assert steps and all(sorted(s) == list(range(3)) for s in steps.values()), (run, steps)


def test_truncate_events_drops_the_epochs_trained_again(tmp_path):
    import tensorflow as tf

    from tfrs_movies.training.fit import truncate_events

    for run in ("train", "validation"):
        writer = tf.summary.create_file_writer(str(tmp_path / run))
        with writer.as_default():
            for step in range(5):
                tf.summary.scalar("epoch_loss", 1.0 / (step + 1), step=step)
        writer.close()
    truncate_events(tmp_path, 3)
    for run in ("train", "validation"):
        assert _scalars(tmp_path / run) == {"epoch_loss": [0, 1, 2]}
        assert not [p for p in (tmp_path / run).iterdir() if p.name.startswith(".")]


def _run_dir_of(root: Path, name: str, config: dict, pid: int | None) -> Path:
    """A run directory of ``config`` whose writer is ``pid`` (None: complete)."""
    from tfrs_movies import config as C
    from tfrs_movies.io import atomic_write_json

    path = root / name
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(C.dump({**config, "run_dir": str(path)}))
    if pid is not None:
        atomic_write_json(path / "RUNNING", {"pid": pid, "host": os.uname().nodename, "started": 0})
    return path


def test_the_same_command_finds_its_killed_run_and_nothing_else(tmp_path, monkeypatch):
    from tfrs_movies.config import load_config
    from tfrs_movies.training.experiment import default_run_dir

    monkeypatch.chdir(tmp_path)
    config = load_config(None, ["data.name=synthetic", "train.epochs=3"])
    other = load_config(None, ["data.name=synthetic", "train.epochs=4"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs = Path("runs")
    _run_dir_of(runs, "synthetic-retrieval-20260101-000000", config, dead.pid)  # older killed run
    killed = _run_dir_of(runs, "synthetic-retrieval-20260102-000000", config, dead.pid)
    _run_dir_of(runs, "synthetic-retrieval-20260103-000000", other, dead.pid)  # another config
    _run_dir_of(runs, "synthetic-retrieval-20260104-000000", config, None)  # complete
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _run_dir_of(runs, "synthetic-retrieval-20260105-000000", config, live.pid)  # still running
        assert default_run_dir(config) == killed
        assert default_run_dir(other).name == "synthetic-retrieval-20260103-000000"
        fresh = default_run_dir(load_config(None, ["data.name=synthetic", "train.epochs=5"]))
        assert fresh.parent == runs and not fresh.exists()
    finally:
        live.kill()
        live.wait()


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [(2, 0), (1, 50)], ids=["epoch-end", "mid-epoch"])
def test_a_tuning_trial_resumes_with_its_early_stopping_state(tmp_path, monkeypatch, kill_at):
    """A trial (evaluated on validation, early stopping on) killed after a checkpoint at ``kill_at``
    (epochs done, steps into the next) ends with the figures and history of an uninterrupted one."""
    from tfrs_movies.config import load_config
    from tfrs_movies.tuning.trial import run_trial

    overrides = ["data.name=synthetic", "data.synthetic.users=100", "data.synthetic.movies=80",
                 "data.synthetic.ratings=6000", "train.verbose=0", "train.epochs=4", "train.batch_size=64",
                 "train.checkpoint_every=50", "train.early_stopping.patience=1"]  # fmt: skip
    straight = run_trial(load_config(None, overrides), tmp_path / "straight")
    _killed_after_checkpoint(monkeypatch, lambda epoch, step, _: (epoch, step) == kill_at,
                             lambda: run_trial(load_config(None, overrides), tmp_path / "killed"))
    resumed = run_trial(load_config(None, overrides), tmp_path / "killed")
    assert resumed["valid"] == straight["valid"] and resumed.get("best_epoch") == straight.get("best_epoch")
    history = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("straight", "killed")]
    assert history[0] == {**history[1], "train_seconds": history[0]["train_seconds"]}


@pytest.mark.slow
def test_a_hybrids_components_keep_their_own_checkpoints(tmp_path, monkeypatch):
    """Two Keras components in one run: each resumes from its own checkpoint folder (the first, done,
    is restored; the second, killed after its first epoch, continues), with the uninterrupted figures."""
    from tfrs_movies.config import load_config
    from tfrs_movies.training.experiment import run

    overrides = {"data.name": "synthetic", "data.synthetic.users": 80, "data.synthetic.movies": 60,
                 "data.synthetic.ratings": 3000, "train.verbose": 0, "train.epochs": 2,
                 "train.batch_size": 128, "model.name": "hybrid", "model.params.components": [
                     {"model": "retrieval", "set": {"model.embedding_dim": 8}},
                     {"model": "retrieval", "set": {"model.embedding_dim": 16}}]}  # fmt: skip
    straight = run(load_config(None, {**overrides, "run_dir": str(tmp_path / "a")}), "valid", lambda _: None)
    # Killed after the third save: the second component's first epoch.
    killed = load_config(None, {**overrides, "run_dir": str(tmp_path / "b")})
    _killed_after_checkpoint(monkeypatch, lambda _e, _s, saves: saves == 3,
                             lambda: run(killed, "valid", lambda _: None))
    assert len(list((tmp_path / "b" / "checkpoints").iterdir())) == 2
    resumed = run(load_config(None, {**overrides, "run_dir": str(tmp_path / "b")}), "valid", lambda _: None)
    figures = [{k: v for k, v in r.metrics.items() if k != "train_seconds"} for r in (straight, resumed)]
    assert figures[0] == figures[1]


@pytest.mark.slow
def test_a_killed_tuning_reuses_finished_trials_and_resumes_the_running_one(tmp_path, monkeypatch, capsys):
    from tfrs_movies.config import load_config
    from tfrs_movies.tuning.grid import SearchSpace
    from tfrs_movies.tuning.runner import TuneOptions, tune
    from tfrs_movies.tuning.store import TuningDir

    base = load_config(None, ["data.name=synthetic", "data.synthetic.users=80", "data.synthetic.movies=60",
                              "data.synthetic.ratings=3000", "train.verbose=0", "train.epochs=2",
                              "train.batch_size=128"])  # fmt: skip
    space = SearchSpace(axes={"model.embedding_dim": [4, 8]}, fixed={"model.name": "retrieval"})
    options = {"metric": "recall@10", "final_test": False}
    tune(base, space, TuneOptions(tmp_path / "straight", **options), say=lambda _: None)
    # Killed after the third save: the second trial's first epoch.
    _killed_after_checkpoint(monkeypatch, lambda _e, _s, saves: saves == 3,
                             lambda: tune(base, space, TuneOptions(tmp_path / "killed", **options),
                                          say=lambda _: None))  # fmt: skip
    finished = TuningDir(tmp_path / "killed").finished()
    assert len(finished) == 1
    capsys.readouterr()
    again = tune(base, space, TuneOptions(tmp_path / "killed", **options), say=lambda _: None)
    assert again.reused == 1 and len(again.ran) == 1
    assert "resumed from checkpoint" in capsys.readouterr().out
    straight = {r["trial_id"]: r["valid"] for r in TuningDir(tmp_path / "straight").records()}
    assert {r["trial_id"]: r["valid"] for r in TuningDir(tmp_path / "killed").records()} == straight
