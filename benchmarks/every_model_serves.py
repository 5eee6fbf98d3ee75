"""Every registered model, trained as a new user would and served from its export, on ML-100K ``u1``.

    python benchmarks/every_model_serves.py [--models ease svd ...] [--out runs/every_model]

For each model: ``python -m tfrs_movies.train --model NAME --epochs 1`` on the u1 files, then
``python -m tfrs_movies.recommend --model <run>/export --user 1 --k 10 --format json`` in a fresh
process; checks that ten movies come back and none of them is one user 1 rated in u1.base. Prints one
row per model: train and recommend seconds, the indexes exported, the export's form, and whether the
answer held.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tfrs_movies.data import find_data_dir  # noqa: E402
from tfrs_movies.models.registry import model_names  # noqa: E402

U1 = ["--set", "data.split.kind=files", "--set", "data.split.train=u1.base",
      "--set", "data.split.test=u1.test"]  # fmt: skip


def run(name: str, out: Path, data_dir: Path) -> dict:
    run_dir = out / name
    start = time.perf_counter()
    train = subprocess.run(
        [sys.executable, "-m", "tfrs_movies.train", "--model", name, "--epochs", "1", "--dataset", "ml-100k",
         "--data-dir", str(data_dir), "--run-dir", str(run_dir), *U1],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    train_s = time.perf_counter() - start
    row = {"model": name, "train_s": round(train_s, 1)}
    if train.returncode != 0:
        return {**row, "ok": False, "error": (train.stderr.strip().splitlines() or ["?"])[-1]}
    start = time.perf_counter()
    answer = subprocess.run(
        [sys.executable, "-m", "tfrs_movies.recommend", "--model", str(run_dir / "export"), "--user", "1",
         "--k", "10", "--format", "json"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    row["recommend_s"] = round(time.perf_counter() - start, 1)
    if answer.returncode != 0:
        return {**row, "ok": False, "error": (answer.stderr.strip().splitlines() or ["?"])[-1]}
    movies = [r["movie_id"] for r in json.loads(answer.stdout)]
    seen = pd.read_csv(data_dir / "u1.base", sep="\t", names=["u", "m", "r", "t"]).query("u == 1").m
    manifest = json.loads((run_dir / "export" / "manifest.json").read_text())
    return {
        **row,
        "form": manifest["form"],
        "indexes": "+".join(manifest["indexes"]),
        "ok": len(movies) == 10 and not set(movies) & set(seen),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--out", default="runs/every_model")
    args = parser.parse_args()
    data_dir = find_data_dir("ml-100k")
    rows = []
    for name in args.models or model_names():
        rows.append(run(name, Path(args.out), data_dir))
        print(json.dumps(rows[-1]), flush=True)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
