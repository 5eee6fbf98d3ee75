"""Scale benchmark: generated Netflix-layout data of 1M / 10M / 100M ratings, the probe split, one epoch
of the retrieval model (batch 1024, embedding 64, in-batch softmax) and of the seed 002 ranking model
(``configs/seed002_netflix_dot_sigmoid.yaml``), streamed from index shards above ``train.stream_above``.

For each size and model, in a fresh process (so peak memory is that model's alone):
load time (cached Parquet read of the Netflix files, the first read converts the text), peak RSS of the
whole process, training examples per second over the epoch (Keras ``fit`` time; the shard writing is
reported beside it), evaluation time: full ranking of a seeded sample of ``--eval-users`` probe users
(their seen movies removed) and, for the rating model, the probe RMSE over every probe pair.

``--profile`` adds what bounds each model's step: the matmul rate of this machine, the FLOPs of one
example, the input pipeline alone (an epoch's batches without the model) and the model alone (train
steps on batches cached in memory, with the configured optimizer and with the others that change the
sparse update: Adam, LazyAdam, Adagrad).

    python benchmarks/scale.py --ratings 1000000 10000000 --profile
    python benchmarks/scale.py --ratings 100000000 --data-root /tmp/scale

Results print as a table (one JSON line per run as well, ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NETFLIX_USERS, NETFLIX_MOVIES, NETFLIX_RATINGS = 480_189, 17_770, 100_480_507
MODELS = ("retrieval", "seed002")


def sizes_for(n_ratings: int) -> tuple[int, int]:
    """Users and movies in the Netflix Prize's proportions (100M ratings: 480,189 x 17,770)."""
    users = max(100, round(NETFLIX_USERS * n_ratings / NETFLIX_RATINGS))
    return users, NETFLIX_MOVIES if n_ratings >= 1_000_000 else max(100, n_ratings // 100)


def generate(n_ratings: int, root: Path) -> Path:
    out = root / f"netflix-{n_ratings}"
    if not (out / "movie_titles.csv").exists():
        from tfrs_movies.data.synth_formats import write_synthetic

        users, movies = sizes_for(n_ratings)
        start = time.perf_counter()
        written = write_synthetic("netflix", out, n_ratings, seed=0, users=users, movies=movies)
        written["seconds"] = round(time.perf_counter() - start, 1)
        (out / "written.json").write_text(json.dumps(written))
    return out


def config_for(model: str, overrides: dict) -> dict:
    from tfrs_movies.config import load_config

    # One epoch, no early stopping: no validation carved out of train.
    common = {"train.epochs": 1, "train.verbose": 0, "data.name": "netflix", "data.split.kind": "probe",
              "data.split.validation_fraction": 0.0}  # fmt: skip
    if model == "retrieval":
        return load_config(None, {**common, "model.name": "retrieval", "model.embedding_dim": 64,
                                  "train.batch_size": 1024, **overrides})  # fmt: skip
    return load_config(REPO / "configs" / "seed002_netflix_dot_sigmoid.yaml", {**common, **overrides})


def peak_gb(reset: bool = True) -> float:
    """Peak RSS since the last reset (Linux VmHWM, reset through clear_refs), else since the start."""
    try:
        status = Path("/proc/self/status").read_text()
        peak = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:"))) / 1e6
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        return peak
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


class StepClock:
    """A Keras callback: times the batches after the 20th, stops the epoch after ``max_steps``."""

    def __new__(cls, max_steps: int | None = None):
        import tensorflow as tf

        class _Clock(tf.keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.steps, self.max_steps, self.t20, self.t_end = 0, max_steps, None, None

            def on_train_batch_end(self, batch, logs=None) -> None:
                self.steps += 1
                now = time.perf_counter()
                if self.steps == 20:
                    self.t20 = now
                self.t_end = now
                if self.max_steps and self.steps >= self.max_steps:
                    self.model.stop_training = True

            def rate(self, batch_size: int) -> float:
                return (self.steps - 20) * batch_size / (self.t_end - self.t20)

        return _Clock()


def child(args: argparse.Namespace) -> dict:
    """One model on one dataset: the figures of the table."""
    import numpy as np

    from tfrs_movies import schema as S
    from tfrs_movies.data import load_dataset
    from tfrs_movies.data.splits import build_split
    from tfrs_movies.evaluation.metrics import rmse
    from tfrs_movies.evaluation.ranking import FullRankingEvaluator
    from tfrs_movies.models.registry import build_model

    out: dict = {"ratings": args.n, "model": args.model}
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    config = config_for(args.model, overrides)
    start = time.perf_counter()
    dataset = load_dataset("netflix", args.data_dir)
    out["load_s"] = round(time.perf_counter() - start, 1)
    out["load_peak_gb"] = round(peak_gb(), 2)
    start = time.perf_counter()
    split = build_split(config, dataset)
    out["split_s"] = round(time.perf_counter() - start, 1)
    train, test = split.train, split.test
    # The split holds what training needs. A copy, not a slice: under pandas' copy-on-write an empty
    # slice is a view that keeps the whole frame's arrays alive (2.8 GB at 100M ratings).
    dataset.ratings = dataset.ratings.iloc[:0].copy()
    del split
    out["split_peak_gb"] = round(peak_gb(), 2)
    out["train_rows"] = len(train)
    model = build_model(config)
    clock = StepClock(args.max_steps)
    start = time.perf_counter()
    model.fit(train, dataset, None, extra_callbacks=[clock])
    fit_s = time.perf_counter() - start
    keras_s = float(model.history["train_seconds"][0])
    out["fit_s"] = round(fit_s, 1)
    out["epoch_s"] = round(keras_s, 1)
    out["steps"] = clock.steps
    # Steady state: from the 20th batch to the last (the first batches trace the graph, fill the buffer).
    out["examples_per_s"] = round(clock.rate(config["train"]["batch_size"]))
    out["streamed"] = len(train) > config["train"]["stream_above"]
    out["train_peak_gb"] = round(peak_gb(), 2)

    rng = np.random.default_rng(0)
    users = np.sort(test[S.USER_ID].unique())
    sample = np.sort(rng.choice(users, min(args.eval_users, len(users)), replace=False))
    start = time.perf_counter()
    in_sample = train[S.USER_ID].isin(sample).to_numpy()
    evaluator = FullRankingEvaluator(
        train[in_sample], test[test[S.USER_ID].isin(sample)], model.catalogue, ks=(10, 20)
    )
    metrics = evaluator.evaluate(model.score)
    out["eval_users"] = len(sample)
    out["eval_s"] = round(time.perf_counter() - start, 1)
    out["recall@20"] = round(float(metrics["recall@20"]), 4)
    out["ndcg@10"] = round(float(metrics["ndcg@10"]), 4)
    if args.model != "retrieval":
        start = time.perf_counter()
        parts = [
            model.predict(
                test[S.USER_ID].to_numpy()[i : i + 65536], test[S.MOVIE_ID].to_numpy()[i : i + 65536]
            )
            for i in range(0, len(test), 65536)
        ]
        lo, hi = dataset.rating_scale
        pred = np.clip(np.concatenate(parts), lo, hi)
        out["probe_rmse"] = round(float(rmse(test[S.RATING].to_numpy(), pred)), 4)
        out["probe_rmse_s"] = round(time.perf_counter() - start, 1)
    out["probe_pairs"] = len(test)
    out["eval_peak_gb"] = round(peak_gb(), 2)
    if args.profile:
        out.update(profile_step(model, train, config))
    out["peak_gb"] = max(v for k, v in out.items() if k.endswith("_peak_gb"))
    return out


def matmul_gflops(n: int = 1024, d: int = 64, reps: int = 200) -> float:
    """The float32 rate of the retrieval step's matmul shape ((n, d) @ (d, n)) on this machine."""
    import tensorflow as tf

    a, b = tf.random.normal((n, d)), tf.random.normal((n, d))
    step = tf.function(lambda: tf.matmul(a, b, transpose_b=True))
    for _ in range(10):
        step()
    start = time.perf_counter()
    for _ in range(reps):
        step().numpy()
    return 2 * n * n * d * reps / (time.perf_counter() - start) / 1e9


def training_batches(model, train, config):
    """The batches the model's fit draws (the same pipeline), and their shard set to clean up."""
    import numpy as np
    import tensorflow as tf

    from tfrs_movies.features.pipeline import training_dataset
    from tfrs_movies.models.retrieval import SAMPLING_PROBABILITY

    cfg = config["train"]
    # The retrieval model's extra column is its sampling probability, the ranking model's its target.
    extra = ({SAMPLING_PROBABILITY: np.ones(len(train), np.float32)} if config["model"]["name"] == "retrieval"
             else model._targets(train))  # fmt: skip
    data, shards = training_dataset(
        train, model.users, model.catalogue, extra, cfg["batch_size"], seed=1,
        shuffle_buffer=cfg["shuffle_buffer"], stream_above=cfg["stream_above"],
    )  # fmt: skip
    return data.map(model.space.join, num_parallel_calls=tf.data.AUTOTUNE), shards


def dense_flops(keras_model) -> int:
    """Forward FLOPs per example of the towers' Dense layers (2 * inputs * outputs each)."""
    import tensorflow as tf

    layers = [m for m in keras_model.submodules if isinstance(m, tf.keras.layers.Dense)]
    return sum(2 * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1]) for layer in layers)


def time_steps(keras_model, cached: list, optimizer=None) -> float:
    """Examples per second of train steps (loss, gradients, update) on batches held in memory."""
    import tensorflow as tf

    optimizer = optimizer or keras_model.optimizer

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = keras_model.compute_loss(batch, training=True)
        grads = tape.gradient(loss, keras_model.trainable_variables)
        optimizer.apply_gradients(zip(grads, keras_model.trainable_variables, strict=True))
        return loss

    for batch in cached[:5]:
        step(batch)
    start = time.perf_counter()
    for batch in cached:
        step(batch)
    return sum(int(b["rating"].shape[0]) for b in cached) / (time.perf_counter() - start)


def profile_step(model, train, config) -> dict:
    """What bounds the step: the input pipeline alone, the model alone (train steps on cached batches,
    with the configured optimizer and with each other one that changes the sparse update), and the FLOP
    limit (FLOPs per example against this machine's measured matmul rate)."""
    from tfrs_movies.training.optimizers import make_optimizer

    data, shards = training_batches(model, train, config)
    start, rows = time.perf_counter(), 0
    for batch in data:
        rows += int(batch["rating"].shape[0])
    pipeline_rate = rows / (time.perf_counter() - start)
    cached = list(data.take(300))
    if shards is not None:
        shards.cleanup()
    keras_model, cfg = model.model, config["train"]
    out = {"pipeline_examples_per_s": round(pipeline_rate),
           "model_cached_examples_per_s": round(time_steps(keras_model, cached))}  # fmt: skip
    for name in ("adam", "lazy_adam", "adagrad"):
        if name != cfg["optimizer"]:
            rate = time_steps(keras_model, cached, make_optimizer(name, cfg["learning_rate"]))
            out[f"model_cached_{name}_examples_per_s"] = round(rate)
    b, d = cfg["batch_size"], config["model"]["embedding_dim"]
    gflops = matmul_gflops(b, d)
    # The score of one example: against the whole batch's candidates (retrieval, a (b, d) x (d, b)
    # matmul: 2*b*d FLOPs per example), or one dot product (ranking: 2*d). Backward: twice forward.
    head = 2 * b * d if config["model"]["name"] == "retrieval" else 2 * d
    flops_per_example = 3 * (head + dense_flops(keras_model))
    out.update({
        "matmul_gflops": round(gflops, 1),
        "flops_per_example": flops_per_example,
        "flop_limit_examples_per_s": round(gflops * 1e9 / flops_per_example),
    })  # fmt: skip
    return out


def table(rows: list[dict]) -> str:
    cols = [("ratings", "ratings"), ("model", "model"), ("load_s", "load s"), ("train_rows", "train rows"),
            ("fit_s", "fit s"), ("epoch_s", "epoch s"), ("steps", "steps"), ("examples_per_s", "examples/s"),
            ("eval_users", "eval users"), ("eval_s", "eval s"), ("recall@20", "recall@20"),
            ("ndcg@10", "ndcg@10"), ("probe_rmse", "probe RMSE"), ("peak_gb", "peak GB")]  # fmt: skip
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [
            f"{r[k]:,}" if isinstance(r.get(k), int) and k != "ratings" else str(r.get(k, ""))
            for k, _ in cols
        ]
        cells[0] = f"{r['ratings'] / 1e6:g}M"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ratings", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--data-root", type=Path, default=Path("/tmp/tfrs_movies_scale"))
    parser.add_argument("--eval-users", type=int, default=10_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, key=value")
    parser.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many batches")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import tfrs_movies  # noqa: F401  (legacy Keras before TensorFlow)

    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0
    rows = []
    for n in args.ratings:
        data_dir = generate(n, args.data_root)
        for model in args.models:
            cmd = [sys.executable, __file__, "--child", "--model", model, "--n", str(n), "--data-dir",
                   str(data_dir), "--eval-users", str(args.eval_users)]  # fmt: skip
            cmd += ["--profile"] if args.profile else []
            cmd += ["--max-steps", str(args.max_steps)] if args.max_steps else []
            cmd += ["--set", *args.set] if args.set else []
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not found:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{model} at {n:,} ratings failed (exit {proc.returncode})")
            row = json.loads(found[-1][len("RESULT ") :])
            rows.append(row)
            print(json.dumps(row) if args.json else row, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
