"""The tuning directory: what makes a tuning run resumable.

    <tune_dir>/tuning.json              the base config the trials were run with (checked on resume)
    <tune_dir>/trials/<id>/result.json  written last, atomically: a trial with it is finished
    <tune_dir>/trials/<id>/...          config.yaml, metrics.json (validation), model/, tensorboard/,
                                        RUNNING and checkpoints/ while the trial trains
    <tune_dir>/results.csv              one row per finished trial, rebuilt from the result files
    <tune_dir>/tensorboard/             HParams (see :mod:`tfrs_movies.tuning.hparams`)
    <tune_dir>/plots/*.png, best.json, best/   (see :mod:`tfrs_movies.tuning.runner`)

The per-trial ``result.json`` files are the truth; the CSV is rewritten from them after every trial,
so a run killed at any moment leaves either a finished trial or one that is run again: from its last
checkpoint when it had one (the trial's folder is kept; see :mod:`tfrs_movies.training.fit`), else
from the start. Temporaries a killed writer left in the tuning directory are removed on the next start.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tfrs_movies import config as C
from tfrs_movies.io import atomic_write_json, atomic_write_text, remove_stale_temporaries
from tfrs_movies.training import status

OK, FAILED, PRUNED = "ok", "failed", "pruned"  # pruned: stopped early by the pruner, never rerun


@dataclass(frozen=True)
class TuningDir:
    root: Path

    @property
    def trials(self) -> Path:
        return self.root / "trials"

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    def trial_dir(self, tid: str) -> Path:
        return self.trials / tid

    def check_base(self, base: dict[str, Any]) -> None:
        """Record the base config, or refuse to mix trials of another base config into this folder."""
        manifest = self.root / "tuning.json"
        remove_stale_temporaries(self.root)
        base = {k: v for k, v in C.merge(base, {}).items() if k != "run_dir"}
        if not manifest.exists():
            atomic_write_json(manifest, {"base_config": base})
            return
        old = json.loads(manifest.read_text(encoding="utf-8"))["base_config"]
        old_flat, new_flat = C.flatten(old), C.flatten(base)
        # Keys on one side only are config keys added (or removed) by a newer version of the project.
        for key in sorted(set(old_flat) & set(new_flat)):
            if old_flat.get(key) != new_flat.get(key):
                raise C.ConfigError(
                    f"{self.root} holds trials of another base config ({key}: {old_flat.get(key)!r} there, "
                    f"{new_flat.get(key)!r} now); use another --tune-dir"
                )

    def records(self) -> list[dict[str, Any]]:
        """Every trial's result record (finished or failed), oldest first."""
        out = []
        for path in sorted(self.trials.glob("*/result.json")):
            out.append(json.loads(path.read_text(encoding="utf-8")))
        return sorted(out, key=lambda r: (r.get("finished_at", 0), r["trial_id"]))

    def finished(self) -> dict[str, dict[str, Any]]:
        """Trials that ended well, by id (failed ones are run again on resume)."""
        return {r["trial_id"]: r for r in self.records() if r["status"] == OK}

    def pruned(self) -> dict[str, dict[str, Any]]:
        """Trials the pruner stopped, by id (not run again on resume either)."""
        return {r["trial_id"]: r for r in self.records() if r["status"] == PRUNED}

    def prepare(self, tid: str) -> Path:
        """The folder for a trial about to (re)start: a killed try's folder with checkpoints is kept (the
        trial resumes from them), anything else left over (a failed try, a try killed before its first
        checkpoint) is removed."""
        path = self.trial_dir(tid)
        killed = not status.is_complete(path) and not (path / "result.json").exists()
        if killed and (path / "checkpoints").is_dir():
            return path
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def record(self, record: dict[str, Any]) -> None:
        """Mark a trial finished (its ``result.json``) and rewrite the results CSV."""
        atomic_write_json(self.trial_dir(record["trial_id"]) / "result.json", record)
        self.write_csv()

    def write_csv(self) -> Path:
        frame = results_frame(self.records())
        atomic_write_text(self.results_csv, frame.to_csv(index=False))
        return self.results_csv


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def results_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial: id, status, every hyperparameter, ``valid_*``, ``train_*``, seconds, size."""
    rows = []
    for r in records:
        row: dict[str, Any] = {"trial_id": r["trial_id"], "status": r["status"]}
        row.update({name: _cell(value) for name, value in r["params"].items()})
        row.update({key: _cell(value) for key, value in r["overrides"].items() if key not in r["params"]})
        row.update({f"valid_{k}": v for k, v in r.get("valid", {}).items()})
        row.update({f"train_{k}": v for k, v in r.get("train", {}).items()})
        row["train_seconds"] = r.get("train_seconds")
        row["best_epoch"] = r.get("best_epoch")
        row["pruned_at_epoch"] = r.get("pruned_at_epoch")
        row["parameters"] = r.get("parameters")
        row["error"] = r.get("error", "")
        rows.append(row)
    return pd.DataFrame(rows)
