"""Every writer, killed part-way, leaves the old complete version or nothing, and the next writer does not
trip over what it left: files, folders, the Parquet cache, generated datasets, figures, tuning trials,
and a run killed during its export (incomplete: the report skips it and names it)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tfrs_movies import io

REPO = Path(__file__).resolve().parents[1]


class Fault(RuntimeError):
    """The fault injected into a writer."""


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_fault_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    io.atomic_write_json(target, {"v": 1})
    with pytest.raises(Fault), io.atomic_file(target) as tmp:
        tmp.write_text('{"v": 2, "half', encoding="utf-8")
        raise Fault
    assert json.loads(target.read_text()) == {"v": 1} and _temporaries(tmp_path) == []
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_fault_midway_leaves_the_old_folder(tmp_path):
    target = tmp_path / "export"
    with io.atomic_directory(target) as tmp:
        (tmp / "manifest.json").write_text("old")
    with pytest.raises(Fault), io.atomic_directory(target) as tmp:
        (tmp / "manifest.json").write_text("new")
        raise Fault
    assert (target / "manifest.json").read_text() == "old" and _temporaries(tmp_path) == []


def test_a_killed_writer_leaves_the_old_file_and_the_next_run_removes_its_temporary(tmp_path):
    """SIGKILL while the new version is half written: the old one stays, the temporary is the dead
    writer's, and the next clean-up removes it (a live writer's is left alone)."""
    target = tmp_path / "ratings.parquet"
    target.write_text("old complete version")
    script = textwrap.dedent(f"""
        import sys, time
        from tfrs_movies import io
        with io.atomic_file({str(target)!r}) as tmp:
            with open(tmp, "w") as handle:
                handle.write("half of the new version")
                handle.flush()
                print("writing", flush=True)
                time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(left) == 1 and io.is_stale_temporary(left[0]) is False  # its writer still runs
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert target.read_text() == "old complete version"
    assert io.is_stale_temporary(left[0])
    with io.atomic_file(tmp_path / "other.txt") as mine:  # a live writer's temporary: kept
        mine.write_text("x")
        assert io.remove_stale_temporaries(tmp_path) == left
        assert mine.exists()
    assert _temporaries(tmp_path) == []


def test_stale_temporaries_by_pid_and_legacy_names_by_age(tmp_path):
    dead = _dead_pid()
    export = tmp_path / f".export.tmp-{dead}-0123abcd"
    export.mkdir()
    (export / "manifest.json").write_text("{}")
    cache = tmp_path / f".ratings-abc.parquet.tmp-{dead}-89abcdef.parquet"
    cache.write_bytes(b"PAR1")
    legacy = tmp_path / ".export.tmp-0123abcd"  # before pids were in the names: by age
    legacy.mkdir()
    part = tmp_path / ".ml-100k.zip.k2j4h_8a.part"  # an earlier version's download part
    part.write_bytes(b"PK")
    live = tmp_path / f".model.tmp-{os.getpid()}-0123abcd"
    live.mkdir()
    data = tmp_path / ".cache"  # not a temporary
    data.mkdir()
    assert sorted(io.remove_stale_temporaries(tmp_path)) == sorted([export, cache])
    assert legacy.exists() and part.exists() and live.exists() and data.exists()
    old = os.stat(legacy).st_mtime - 2 * io.LEGACY_AGE_S
    for path in (legacy, part):
        os.utime(path, (old, old))
    assert sorted(io.remove_stale_temporaries(tmp_path)) == sorted([legacy, part])


def test_parquet_cache_writer_cleans_a_killed_writers_part_and_a_fault_leaves_nothing(tmp_path):
    import pyarrow as pa

    from tfrs_movies.data.cache import AtomicParquetWriter, read_cached, write_atomically

    part = tmp_path / f".netflix-abc.parquet.tmp-{_dead_pid()}-0123abcd.parquet"
    part.write_bytes(b"gigabytes of a killed parse")
    frame = pd.DataFrame({"a": [1, 2, 3]})
    path = write_atomically(frame, tmp_path / "netflix-abc.parquet", info={"n": 3})
    assert not part.exists()
    schema = pa.schema([("a", pa.int64())])
    with pytest.raises(Fault), AtomicParquetWriter(tmp_path / "netflix-def.parquet", schema) as writer:
        writer.write(pa.table({"a": [4, 5]}))
        raise Fault
    assert not (tmp_path / "netflix-def.parquet").exists() and _temporaries(tmp_path) == []
    assert read_cached(path)[0]["a"].tolist() == [1, 2, 3]


def test_synth_killed_midway_keeps_the_old_dataset_and_the_next_synth_works(tmp_path, monkeypatch):
    from tfrs_movies.data import synth_formats
    from tfrs_movies.data.movielens import load_ml100k

    out = tmp_path / "ml-100k"
    synth_formats.write_synthetic("ml-100k", out, 3000, seed=1)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    form = synth_formats.SYNTH_FORMATS["ml-100k"]

    def half_then_fault(dataset, folder, seed):
        (Path(folder) / "u.data").write_text("1\t2\t3\t4\n")  # a first file half-written...
        raise Fault

    broken = dataclasses.replace(form, writer=half_then_fault)
    monkeypatch.setitem(synth_formats.SYNTH_FORMATS, "ml-100k", broken)
    with pytest.raises(Fault):
        synth_formats.write_synthetic("ml-100k", out, 3000, seed=2)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and _temporaries(tmp_path) == []
    monkeypatch.undo()
    synth_formats.write_synthetic("ml-100k", out, 3000, seed=2)
    synth_formats.write_synthetic("ml-100k", tmp_path / "fresh", 3000, seed=2)
    assert (out / "u.data").read_bytes() == (tmp_path / "fresh" / "u.data").read_bytes() != before["u.data"]
    assert len(load_ml100k(out).ratings) > 0


def test_figures_are_written_atomically(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfrs_movies.tuning import plots

    target = tmp_path / "plots" / "curve.png"
    fig = plt.figure()
    plots._save(fig, target)
    good = target.read_bytes()
    assert good[:4] == b"\x89PNG"
    fig = plt.figure()

    def fault(self, path, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise Fault

    monkeypatch.setattr(type(fig), "savefig", fault)
    with pytest.raises(Fault):
        plots._save(fig, target)
    assert target.read_bytes() == good and _temporaries(target.parent) == []


def test_tuning_keeps_a_killed_trial_with_checkpoints_and_restarts_others(tmp_path):
    from tfrs_movies.training import status
    from tfrs_movies.tuning.store import TuningDir

    store = TuningDir(tmp_path)
    killed = store.trial_dir("a")
    (killed / "checkpoints").mkdir(parents=True)
    status.mark_running(killed)
    early = store.trial_dir("b")  # killed before its first checkpoint
    early.mkdir(parents=True)
    status.mark_running(early)
    (early / "config.yaml").write_text("x")
    assert store.prepare("a") == killed and (killed / "checkpoints").is_dir()
    assert store.prepare("b") == early and list(early.iterdir()) == []


TINY = ["data.name=synthetic", "data.synthetic.users=60", "data.synthetic.movies=50",
        "data.synthetic.ratings=2000", "train.verbose=0", "model.name=popularity"]  # fmt: skip


@pytest.mark.slow
def test_a_run_killed_during_export_is_incomplete_skipped_by_report_and_finished_by_the_same_command(
    tmp_path, monkeypatch, capsys
):
    from tfrs_movies.config import load_config
    from tfrs_movies.report import main as report
    from tfrs_movies.serving import export
    from tfrs_movies.training.experiment import run_experiment

    done, killed = tmp_path / "done", tmp_path / "killed"
    run_experiment(load_config(None, [*TINY, f"run_dir={done}"]), say=lambda _: None)
    real = export.atomic_write_json

    def fault(path, obj):  # the export's manifest: the kill lands once the rest of the export is written
        raise Fault

    monkeypatch.setattr(export, "atomic_write_json", fault)
    with pytest.raises(Fault):
        run_experiment(load_config(None, [*TINY, f"run_dir={killed}"]), say=lambda _: None)
    monkeypatch.setattr(export, "atomic_write_json", real)
    # What a SIGKILL at that moment leaves: metrics.json and model/, the RUNNING marker, and the export's
    # temporary folder (an exception removes its own; a kill cannot).
    leftover = killed / f".export.tmp-{_dead_pid()}-0123abcd"
    leftover.mkdir()
    assert (killed / "metrics.json").exists() and not (killed / "export").exists()
    assert (killed / "RUNNING").exists() and not (done / "RUNNING").exists()
    capsys.readouterr()
    assert report([str(done), str(killed), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr()
    assert f"skipped 1 incomplete run(s) (killed or still being written): {killed}" in out.err
    assert "| done |" in out.out and "| killed |" not in out.out
    run_experiment(load_config(None, [*TINY, f"run_dir={killed}"]), say=lambda _: None)
    assert (killed / "export" / "manifest.json").exists() and not (killed / "RUNNING").exists()
    assert _temporaries(killed) == []
    assert report([str(done), str(killed), "--out", str(tmp_path / "report")]) == 0
    assert "| killed |" in capsys.readouterr().out
