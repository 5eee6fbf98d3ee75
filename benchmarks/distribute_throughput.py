"""Training examples per second of the retrieval model under each ``train.strategy`` on this machine.

    python benchmarks/distribute_throughput.py [--ratings 200000] [--epochs 2]

Three runs on one generated world (retrieval, batch 1024 global, embedding 64, in-batch softmax), each
in its own process(es): ``default`` (one device), ``mirrored`` over two logical CPU devices, and
``multi_worker`` as two worker processes on 127.0.0.1 (TF_CONFIG). The figure is the last epoch's
(the first one includes tracing); on one machine the replicas share its cores, so this measures the cost
of splitting and all-reducing, not a speed-up. Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import tfrs_movies  # noqa: F401  (legacy Keras before TensorFlow loads)

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]


def _run(strategy: str, ratings: int, epochs: int, devices: int, out: str) -> None:
    import tensorflow as tf

    if devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    from tfrs_movies.config import load_config
    from tfrs_movies.data.synthetic import generate_world
    from tfrs_movies.models.registry import build_model

    world = generate_world(n_users=max(300, ratings // 100), n_movies=max(400, ratings // 200),
                           n_ratings=ratings, seed=0)  # fmt: skip
    train = world.dataset.ratings
    config = load_config(None, [f"train.strategy={strategy}", f"train.epochs={epochs}", "train.verbose=0",
                                "train.batch_size=1024", "model.embedding_dim=64"])  # fmt: skip

    class EpochTimer(tf.keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    model = build_model(config)
    model.fit(train, world.dataset, None, extra_callbacks=[timer])
    strategy_obj = model.model.distribute_strategy
    Path(out).write_text(json.dumps({
        "strategy": strategy, "replicas": strategy_obj.num_replicas_in_sync, "examples": len(train),
        "epoch_seconds": [round(s, 2) for s in timer.seconds],
        "examples_per_second": round(len(train) / timer.seconds[-1]),
    }))  # fmt: skip


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _spawn(args: list[str], env_extra: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2", **env_extra}
    if "TF_CONFIG" not in env_extra:
        env.pop("TF_CONFIG", None)
    return subprocess.Popen([sys.executable, str(HERE), "--child", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ratings", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        strategy, ratings, epochs, devices, out = args.child
        _run(strategy, int(ratings), int(epochs), int(devices), out)
        return
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"distribute_throughput_{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    common = [str(args.ratings), str(args.epochs)]
    plans = {
        "default": [(["default", *common, "1", str(tmp / "default.json")], {})],
        "mirrored": [(["mirrored", *common, "2", str(tmp / "mirrored.json")], {})],
    }
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    plans["multi_worker"] = [
        (["multi_worker", *common, "1", str(tmp / f"multi_worker{i}.json")],
         {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]  # fmt: skip
    for name, plan in plans.items():
        procs = [_spawn(a, e) for a, e in plan]
        try:
            for proc in procs:
                _, err = proc.communicate(timeout=args.timeout)
                if proc.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{err[-3000:]}")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        print(json.loads(Path(plan[0][0][-1]).read_text()), flush=True)


if __name__ == "__main__":
    main()
