"""The attention sequence model (issue 5) on leave_last_out: variants on validation, final test figures.

    python benchmarks/sequence_quality.py tune causal_both windows_seed004   # validation only
    python benchmarks/sequence_quality.py final                              # configs/ml100k_sequence.yaml
    python benchmarks/sequence_quality.py ml1m                               # the same on generated ML-1M
    python benchmarks/sequence_quality.py report                             # table + docs/BENCHMARKS.md

``tune`` fits a variant on train and measures it on the validation item (the second-to-last rating of
each user), never on test; every choice in the shipped config was made from these figures. ``final`` and
``ml1m`` run the shipped config end to end (``run_experiment``: test figures in the run's metrics.json).
Results accumulate in ``runs/benchmarks/sequence/results.json``; ``report`` prints them as a table and
writes the "Sequence model (issue 5)" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_section import replace_section  # noqa: E402

import tfrs_movies  # noqa: E402,F401
from tfrs_movies.config import load_config  # noqa: E402
from tfrs_movies.io import atomic_write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "runs" / "benchmarks" / "sequence" / "results.json"
CONFIG = "configs/ml100k_sequence.yaml"
HEADING = "Sequence model (issue 5)"
SYNTH = ["--format", "ml-1m", "--ratings", "60000", "--seed", "11"]

# name -> (what, config file, overrides). Every variant is measured on the validation item only.
VARIANTS: dict[str, tuple[str, str, dict]] = {
    "causal_both": ("SASRec-style causal encoder, every position, full softmax + rating head (shipped)",
                    CONFIG, {}),
    "causal_retrieval": ("the same without the rating head", CONFIG, {"model.params.heads": "retrieval"}),
    "causal_genres": ("the same with genres and year in the movie encoder", CONFIG,
                      {"model.movie_features": ["id", "genres", "year"]}),
    "causal_demographics": ("the same with gender, age, occupation concatenated to the query", CONFIG,
                            {"model.user_features": ["gender", "age", "occupation"]}),
    "windows_seed004": (
        "seed 004 windows (4 movies, step 2, 3 heads, dense 256-128 LeakyReLU/BN/dropout 0.1) + rating head",
        CONFIG,
        {"model.params.mode": "windows", "model.params.num_heads": 3,
         "model.params.query_layers": [256, 128], "model.params.repeat": 1},
    ),
    "seed004_rating": (
        "seed 004 reproduction: windows, rating head only, Adagrad 0.01, batch 32, 10 epochs",
        "configs/seed004_attention_rating.yaml",
        {},
    ),
}  # fmt: skip


def _load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def _store(key: str, record: dict) -> None:
    results = _load()
    results[key] = record
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS, results)


def _round(metrics: dict) -> dict:
    return {k: round(float(v), 4) for k, v in metrics.items() if k in ("hr@10", "ndcg@10", "rmse", "mae")}


def tune(name: str) -> dict:
    """Fit variant ``name`` on train; its figures on the validation item."""
    from tfrs_movies.models.registry import build_model
    from tfrs_movies.training.experiment import build_split, evaluate, resolve_dataset

    what, path, overrides = VARIANTS[name]
    config = load_config(REPO / path, {"train.verbose": 0, "export.enabled": False, **overrides})
    dataset = resolve_dataset(config, say=lambda *_: None)
    split = build_split(config, dataset)
    model = build_model(config)
    start = time.perf_counter()
    model.fit(split.train, dataset, split.valid)
    seconds = time.perf_counter() - start
    record = {"what": what, "config": path, "overrides": overrides, "train_seconds": round(seconds, 1),
              "best_epoch": model.history.get("best_epoch", [None])[0],
              "valid": _round(evaluate(model, split, config, on="valid"))}  # fmt: skip
    _store(f"tune/{name}", record)
    return record


def final(
    dataset_args: list[str] | None = None,
    key: str = "final/ml-100k",
    from_run: str | None = None,
    config_path: str = CONFIG,
) -> dict:
    """``configs/ml100k_sequence.yaml`` end to end (test figures), on ML-100K or the given data."""
    from tfrs_movies.training.experiment import run_experiment

    overrides = dict(a.split("=", 1) for a in dataset_args or [])
    if from_run is None:
        run_dir = REPO / "runs" / "benchmarks" / "sequence" / key.replace("/", "_")
        config = load_config(REPO / config_path, {**overrides, "train.verbose": 0, "run_dir": str(run_dir)})
        run_experiment(config, say=print)
    else:  # a run of the same config made earlier (python -m tfrs_movies.train --config ...)
        run_dir = Path(from_run)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "model" / "history.json").read_text())
    best = history.get("best_epoch", [len(history["loss"])])[0] - 1
    record = {
        "command": f"python -m tfrs_movies.train --config {config_path}"
        + "".join(f" --set {k}={v}" for k, v in overrides.items()),
        "test": _round(metrics),
        "valid_at_best_epoch": {
            m: round(history[f"val_{m}"][best], 4)
            for m in ("hr@10", "ndcg@10", "rmse")
            if f"val_{m}" in history
        },
        "train_seconds": metrics["train_seconds"],
        "best_epoch": metrics.get("best_epoch"),
        "sizes": metrics["sizes"],
    }
    _store(key, record)
    return record


def baselines(dataset_args: list[str], key: str) -> dict:
    """Popularity and EASE on the same leave_last_out split (test figures), for reference."""
    from tfrs_movies.training.experiment import run_experiment

    overrides = dict(a.split("=", 1) for a in dataset_args)
    out = {}
    for name in ("popularity", "ease"):
        run_dir = REPO / "runs" / "benchmarks" / "sequence" / f"{key.replace('/', '_')}_{name}"
        config = load_config(None, {**overrides, "model.name": name, "data.split.kind": "leave_last_out",
                                    "run_dir": str(run_dir), "train.verbose": 0})  # fmt: skip
        out[name] = _round(run_experiment(config, say=lambda *_: None).metrics)
    _store(f"{key}/baselines", out)
    return out


def ml1m(from_run: str | None = None) -> dict:
    data = Path("/tmp/synth-ml1m-seq")
    if not (data / "ml-1m" / "ratings.dat").exists() and not (data / "ratings.dat").exists():
        subprocess.run(
            [sys.executable, "-m", "tfrs_movies.data", "synth", *SYNTH, "--out", str(data)], check=True
        )
    args = ["data.name=ml-1m", f"data.dir={data}"]
    record = final(args, "final/synthetic-ml-1m", from_run)
    record["data"] = f"python -m tfrs_movies.data synth {' '.join(SYNTH)} --out {data}"
    _store("final/synthetic-ml-1m", record)
    baselines(args, "final/synthetic-ml-1m")
    return record


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _row(cells) -> str:
    return "| " + " | ".join(_fmt(c) for c in cells) + " |"


INTRO = (
    "Split `leave_last_out` (EVALUATION.md): per user, by (timestamp, movie id), the last rating is test, "
    "the one before it validation, the rest train; full ranking of the whole catalogue with the user's "
    "train + validation movies removed (HR@10 = Recall@10 with one test item). Reference on ML-100K "
    "(EVALUATION.md): best HR@10 0.1018 (implicit BPR), best NDCG@10 0.0494 (implicit ALS), EASE "
    "0.0912 / 0.0417, popularity 0.0498 / 0.0257."
)


NOTES = """\
What the shipped config is (`configs/ml100k_sequence.yaml`, `model.name: sequence`): each user's 50 most
recent movies (left padded, positions counted back from the most recent), their ratings added as a
half-star embedding, two blocks of causal Keras `MultiHeadAttention` (2 heads, residuals, layer
normalisation, dropout 0.2); every position is trained to predict the next movie with a softmax over the
whole catalogue (the movie embeddings are shared between the history and the candidates), and the rating
of that next movie through a target-attention rating head (weight 0.1); Adam 0.001, batch 128, 5 passes
over the sequences per epoch, early stopping on validation NDCG@10. The query tower (the state of the
most recent slot) is what the brute-force / ScaNN SavedModels serve; the served history is train +
validation. The seed 004 window variant uses the same code with `model.params.mode: windows`.

Choices, all from the validation table: the causal encoder trained on every position beats seed 004's
windows of 4 (step 2) for top-N; the windows stay available (`mode: windows`, `window_length`,
`window_step`) and the seed reproduction uses them. Without the rating head the causal encoder is slightly
better on validation at the same 8 epochs; the shipped config keeps the head (weight 0.1), so that one
run gives the top-N and the rating figures on the same split and `--explain` has a target attention to
show. The first row's train seconds were measured while three sessions shared the 2 cores.

On the generated ML-1M layout the gap to EASE is far larger than on real data: the generator makes each
user watch roughly in release-year order (`tfrs_movies/data/synthetic.py`), an order signal that only a
sequence model can use. That run checks that the config carries over to another release's files
unchanged, not the size of the gain."""


def report(write: bool = True) -> str:
    results = _load()
    lines = [
        f"Measured {datetime.now():%Y-%m-%d} on {os.cpu_count()} cores ({platform.machine()}), shared with "
        "other jobs (train seconds are upper bounds). " + INTRO,
        "",
        "### Approaches tried on ML-100K (validation item only)",
        "",
        "| variant | what | valid HR@10 | valid NDCG@10 | valid RMSE | best epoch | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, rec in results.items():
        if key.startswith("tune/"):
            v = rec["valid"]
            cells = [f"`{key[5:]}`", rec["what"], v.get("hr@10"), v.get("ndcg@10"), v.get("rmse")]
            lines.append(_row(cells + [rec.get("best_epoch"), f"{rec['train_seconds']:.0f}"]))
    lines += [
        "",
        "### Test figures of the shipped config",
        "",
        "| data | command | test HR@10 | test NDCG@10 | test RMSE | test MAE | validation (best epoch) "
        "| train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, rec in results.items():
        if key.startswith("final/") and "test" in rec:
            t, v = rec["test"], rec["valid_at_best_epoch"]
            valid = ", ".join(f"{m} {_fmt(v[m])}" for m in ("hr@10", "ndcg@10", "rmse") if m in v)
            valid += f" (epoch {rec['best_epoch']})"
            cells = [key[6:], f"`{rec['command']}`", t.get("hr@10"), t.get("ndcg@10"), t.get("rmse")]
            lines.append(_row(cells + [t.get("mae"), valid, f"{rec['train_seconds']:.0f}"]))
    for key, rec in results.items():
        if key.startswith("tune/") and "test_seen" in rec:
            seen = ", ".join(f"{m} {_fmt(v)}" for m, v in rec["test_seen"].items())
            lines += ["", f"`{key[5:]}` was first run end to end, so its test figures were seen ({seen}); "
                      "its validation NDCG@10 still rose at the last epoch, which is why the shipped config "
                      "allows more epochs (early stopping picks the epoch on validation)."]  # fmt: skip
    for key, rec in results.items():
        if key.endswith("/baselines"):
            row = ", ".join(
                f"{n} HR@10 {_fmt(m.get('hr@10'))} / NDCG@10 {_fmt(m.get('ndcg@10'))}" for n, m in rec.items()
            )
            lines += ["", f"Baselines on the same split of {key.split('/')[1]}: {row}."]
    if "final/synthetic-ml-1m" in results:
        data = results["final/synthetic-ml-1m"].get("data", "")
        lines += ["", f"Generated ML-1M layout: `{data}` (`::` files, the config otherwise unchanged)."]
    lines += ["", NOTES]
    text = "\n".join(lines)
    if write:
        replace_section(HEADING, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["tune", "final", "ml1m", "report"])
    parser.add_argument("variants", nargs="*", help=f"for tune: any of {', '.join(VARIANTS)}")
    parser.add_argument("--no-doc", action="store_true", help="report: print only")
    parser.add_argument("--config", help=f"final: another config than {CONFIG}")
    parser.add_argument(
        "--from-run", help="final / ml1m: read an earlier run of the config instead of training"
    )
    args = parser.parse_args()
    if args.command == "tune":
        for name in args.variants or list(VARIANTS):
            print(name, json.dumps(tune(name)), flush=True)
    elif args.command == "final":
        path = args.config or CONFIG
        key = "final/ml-100k" if path == CONFIG else f"final/ml-100k {Path(path).stem}"
        print(json.dumps(final(key=key, from_run=args.from_run, config_path=path)))
    elif args.command == "ml1m":
        print(json.dumps(ml1m(args.from_run)))
    print(report(write=not args.no_doc) if args.command == "report" else "")


if __name__ == "__main__":
    main()
