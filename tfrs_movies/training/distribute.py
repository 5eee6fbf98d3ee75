"""Training beyond one device: ``train.strategy`` -> a ``tf.distribute`` strategy, and its rules.

- ``default``: TensorFlow's default strategy (one device, nothing changes).
- ``mirrored``: :class:`tf.distribute.MirroredStrategy` over this machine's GPUs, or over its logical
  CPU devices when it has no GPU (one replica on a plain CPU machine; several when the process split
  the CPU with ``tf.config.set_logical_device_configuration`` before TensorFlow started).
- ``multi_worker``: :class:`tf.distribute.MultiWorkerMirroredStrategy`, one process per worker, the
  cluster and this worker's place in it read from the standard ``TF_CONFIG`` environment variable,
  e.g. ``{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker",
  "index": 0}}`` (no ``TF_CONFIG``: a cluster of one). Every worker runs the same command.

The rules every strategy follows here:

- ``train.batch_size`` is the *global* batch: each step takes ``batch_size`` examples, split across
  the replicas (``batch_size / num_replicas`` each), so one worker and N workers take the same steps.
- Each worker reads its own part of every global batch: the dataset is sharded by tf.data's auto-shard
  with the ``DATA`` policy (the datasets here are built from in-memory arrays, not files, so there
  are no files to hand out), :func:`shard_by_data`.
- Models are built (variables created, optimizer compiled) under ``strategy.scope()``.
- Only the chief writes the run's artifacts; another worker writes into a temporary directory that is
  removed afterwards (the TensorFlow multi-worker guide's pattern), :func:`write_dir`.
- Early stopping evaluates on the chief; the chief's figure is broadcast to the other workers so that
  every worker stops at the same epoch and keeps the same best weights, :func:`from_chief`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfrs_movies.config import ConfigError

STRATEGIES = ("default", "mirrored", "multi_worker")

# One strategy object per kind and process: MultiWorkerMirroredStrategy configures the process's
# collective ops once, so a refit in the same process must reuse it.
_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


def tf_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG`` (``{}`` when unset); malformed: a one-line ConfigError."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"train.strategy multi_worker: TF_CONFIG is not valid JSON ({err})") from None
    cluster, task = parsed.get("cluster"), parsed.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict) or not {"type", "index"} <= set(task):
        raise ConfigError(
            "train.strategy multi_worker: TF_CONFIG needs 'cluster' ({'worker': ['host:port', ...]}) "
            "and 'task' ({'type': 'worker', 'index': i})"
        )
    members = cluster.get(task["type"])
    if not isinstance(members, list) or not 0 <= int(task["index"]) < len(members):
        raise ConfigError(
            f"train.strategy multi_worker: TF_CONFIG task {task['type']}:{task['index']} not in its cluster"
        )
    return parsed


def local_devices() -> list[str]:
    """The devices MirroredStrategy mirrors over: every GPU, else every logical CPU device."""
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def strategy_for(config: dict[str, Any]) -> tf.distribute.Strategy:
    """The strategy ``train.strategy`` names (created once per process and kind)."""
    kind = config["train"].get("strategy", "default")
    if kind not in STRATEGIES:
        raise ConfigError(f"config key 'train.strategy' must be one of {list(STRATEGIES)}, got {kind!r}")
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind not in _STRATEGIES:
        if kind == "mirrored":
            _STRATEGIES[kind] = tf.distribute.MirroredStrategy(devices=local_devices())
        else:
            tf_config()  # a malformed TF_CONFIG is a one-line error, not a TensorFlow traceback
            _STRATEGIES[kind] = tf.distribute.MultiWorkerMirroredStrategy()
    return _STRATEGIES[kind]


def _task(strategy: tf.distribute.Strategy) -> tuple[str | None, int | None, dict[str, Any]]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None, None, {}
    return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many worker processes train together (1 unless multi-worker with a cluster)."""
    _, _, cluster = _task(strategy)
    return max(1, sum(len(cluster.get(kind, [])) for kind in ("chief", "worker")))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's artifacts: the ``chief`` task, else worker 0, else the
    only process."""
    task_type, task_id, cluster = _task(strategy)
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


@contextlib.contextmanager
def write_dir(path: str | Path, strategy: tf.distribute.Strategy) -> Iterator[Path]:
    """``path`` on the chief; on another worker a temporary directory, removed on exit (workers must
    still write, e.g. TensorBoard and checkpoints take part in collectives, but never where the chief
    writes)."""
    if is_chief(strategy):
        yield Path(path)
        return
    _, task_id, _ = _task(strategy)
    temp = Path(tempfile.mkdtemp(prefix=f"tfrs_movies-worker{task_id}-"))
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def shard_by_data(data: tf.data.Dataset) -> tf.data.Dataset:
    """``data`` with tf.data auto-sharding by ``DATA``: every worker reads the same pipeline and keeps
    its own part of each global batch (there are no files to shard by)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options)


def from_chief(strategy: tf.distribute.Strategy, value: float | None) -> float:
    """The chief's ``value`` on every worker (the others pass anything, e.g. ``None``); one
    all-reduce, so every worker must call it at the same point."""
    if num_workers(strategy) == 1:
        return float(value)
    mine = float(value) if is_chief(strategy) and value is not None else 0.0

    def first_replica_only() -> tf.Tensor:
        ctx = tf.distribute.get_replica_context()
        first = tf.equal(ctx.replica_id_in_sync_group, 0)
        share = tf.where(first, tf.constant(mine, tf.float64), tf.constant(0.0, tf.float64))
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, share)

    result = strategy.run(first_replica_only)
    return float(strategy.experimental_local_results(result)[0].numpy())
