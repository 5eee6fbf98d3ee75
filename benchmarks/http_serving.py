"""HTTP serving under load: ``python -m tfrs_movies.serve`` on 127.0.0.1, 1 / 8 / 32 concurrent clients.

    python benchmarks/http_serving.py --export runs/two_stage/export            # + the 1M-movie catalogue
    python benchmarks/http_serving.py --export runs/two_stage/export --movies 0 --no-doc

Two exports are served: ``--export`` (an ML-100K run's, e.g. configs/ml100k_two_stage.yaml: served as
it is, two stages when it has a ranking model) and a generated 1,000,000-movie catalogue built as
benchmarks/serving_speed.py generates it (64-d vectors from 1,000 Gaussian clusters, 1,000 users whose
query tower is an embedding lookup, 20 seen movies each, ScaNN with that benchmark's tuned setting,
both indexes fetching k_max + seen candidates, served through the export's ``TopKModule``), written
as an export folder. For each export and
index: the in-process call (``Exported.recommend`` in one thread: the floor), then the server in a
subprocess (logging one line per request, micro-batching on) under a bounded load from 1, 8 and 32
clients, each with its own keep-alive connection, all in this process on asyncio: ``GET
/recommend?user_id=U&k=10&index=I`` for users drawn in turn. Reported: requests/s, p50 / p99 latency,
errors, the mean index batch (searches per index call) and the HTTP overhead (p50 over HTTP with one
client / p50 in process). The clients share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfrs_movies  # noqa: E402, F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

HEADING = "HTTP serving (issue 14)"
CLIENTS = (1, 8, 32)
K = 10
# Requests per load level, and the most seconds one level may take (whichever comes first).
REQUESTS = {1: 400, 8: 2000, 32: 4000}
MAX_SECONDS = 20.0
IN_PROCESS_CALLS = 300
# ScaNN at 1M movies: benchmarks/serving_speed.py's tuned setting (docs/BENCHMARKS.md, recall@10 0.974).
SCANN_1M = {
    "num_leaves": 1000,
    "num_leaves_to_search": 10,
    "num_reordering_candidates": 120,
    "training_iterations": 12,
    "dimensions_per_block": 2,
}
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never a proxy


def generated_export(n_movies: int, out: Path, say) -> Path:
    """A 1M-movie export folder: serving_speed's catalogue and query tower, the export's TopKModule graph
    for both indexes."""
    import pandas as pd
    import scipy.sparse as sp
    import tensorflow as tf
    from serving_speed import K_MAX, N_EXCLUDE, N_USERS, UserQuery, build_index, generate

    from tfrs_movies.features.preprocessing import ids_as_strings
    from tfrs_movies.serving.export import TopKModule

    movies, user_vectors = generate(n_movies)
    users, catalogue = np.arange(N_USERS), np.arange(n_movies)
    rng = np.random.default_rng(1)
    seen = np.sort(np.stack([rng.choice(n_movies, N_EXCLUDE, replace=False) for _ in users]), axis=1)
    ids = tf.constant(ids_as_strings(catalogue))
    fetch = K_MAX + N_EXCLUDE
    out.mkdir(parents=True)
    for name in ("brute_force", "scann"):
        start = time.perf_counter()
        index = build_index(name, movies, ids, fetch, SCANN_1M)
        module = TopKModule(UserQuery(users, user_vectors), index, catalogue, fetch, K_MAX)
        tf.saved_model.save(
            module,
            str(out / name),
            signatures={"serving_default": module.serving_default},
            options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]),
        )
        say(f"[{n_movies:,}] {name} built and saved in {time.perf_counter() - start:.1f}s")
        del module, index
    pd.DataFrame({"movie_id": catalogue, "title": [f"movie {i}" for i in catalogue], "year": ""}).to_csv(
        out / "movies.csv", index=False
    )
    # No similar lists (this benchmark asks only for recommendations): a zero-width table.
    np.savez(out / "similar.npz", movie_ids=np.zeros((n_movies, 0), np.int64), scores=np.zeros((n_movies, 0)))
    matrix = sp.csr_matrix(
        (np.ones(seen.size), seen.reshape(-1), np.arange(0, seen.size + 1, N_EXCLUDE)),
        shape=(len(users), n_movies),
    )
    np.savez(
        out / "seen.npz",
        users=users,
        catalogue=catalogue,
        indptr=matrix.indptr.astype(np.int64),
        indices=matrix.indices.astype(np.int64),
    )
    np.save(out / "popularity.npy", np.asarray(matrix.sum(axis=0)).reshape(-1).astype(np.float32))
    manifest = {
        "format": 1,
        "model": "generated (benchmarks/serving_speed.py)",
        "form": "dot",
        "top_n_is_ranking": False,
        "movie_vectors": False,
        "k_max": K_MAX,
        "max_seen": N_EXCLUDE,
        "user_features": [],
        "user_feature_inputs": {},
        "vocabulary": {"users": len(users), "movies": n_movies},
        "indexes": {
            "brute_force": {"candidates_fetched": fetch},
            "scann": {"candidates_fetched": fetch, **SCANN_1M},
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def in_process(export: Path, index: str, users: np.ndarray) -> dict:
    """``Exported.recommend`` called one at a time in this process: p50 / p99 ms and calls/s."""
    from tfrs_movies.serving.load import load_export

    exported = load_export(export)
    for user in users[:20]:
        exported.recommend(int(user), K, index)
    times = []
    for user in users[:IN_PROCESS_CALLS]:
        start = time.perf_counter()
        exported.recommend(int(user), K, index)
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1e3
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "rps": 1e3 / ms.mean()}


async def _client(port: int, paths: list[str], next_path, latencies: list, errors: list, deadline: float):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            path = next_path()
            if path is None:
                return
            start = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200") or b'"items":[{' not in body:
                errors.append(head.split(b"\r\n")[0])
    finally:
        writer.close()


def load(port: int, paths: list[str], clients: int, total: int) -> dict:
    """``total`` requests (or MAX_SECONDS) from ``clients`` concurrent keep-alive connections."""
    counter = iter(range(total))

    def next_path():
        i = next(counter, None)
        return None if i is None else paths[i % len(paths)]

    latencies: list[float] = []
    errors: list = []

    async def run() -> float:
        start = time.perf_counter()
        deadline = start + MAX_SECONDS
        await asyncio.gather(
            *(_client(port, paths, next_path, latencies, errors, deadline) for _ in range(clients))
        )
        return time.perf_counter() - start

    seconds = asyncio.run(run())
    ms = np.asarray(latencies) * 1e3
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / seconds,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }


def batching(port: int) -> dict:
    return json.loads(OPENER.open(f"http://127.0.0.1:{port}/health", timeout=30).read())["micro_batching"][
        "index"
    ]


def serve(export: Path, log: Path) -> tuple[subprocess.Popen, int]:
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tfrs_movies.serve", "--model", str(export), "--port", "0"],
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = re.search(r"on http://127\.0\.0\.1:(\d+)/", log.read_text())
        if found:
            try:
                OPENER.open(f"http://127.0.0.1:{found.group(1)}/health", timeout=5).read()
                return process, int(found.group(1))
            except OSError:
                pass
        if process.poll() is not None:
            break
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"the server did not start:\n{log.read_text()[-2000:]}")


def measure(name: str, export: Path, workdir: Path, say) -> list[dict]:
    import pandas as pd

    with np.load(export / "seen.npz") as seen:
        users = seen["users"]
    order = np.random.default_rng(0).permutation(users)
    manifest = json.loads((export / "manifest.json").read_text())
    indexes = [i for i in ("brute_force", "scann") if (export / i / "saved_model.pb").is_file()]
    movies = len(pd.read_csv(export / "movies.csv", usecols=["movie_id"]))
    rows = []
    for index in indexes:
        floor = in_process(export, index, order)
        say(f"[{name}] {index} in process: p50 {floor['p50']:.2f} ms, {floor['rps']:,.0f} calls/s")
        rows.append({"export": name, "movies": movies, "index": index, "clients": "in process", **floor})
    process, port = serve(export, workdir / f"{name}.log")
    try:
        for index in indexes:
            paths = [f"/recommend?user_id={u}&k={K}&index={index}" for u in order]
            load(port, paths, 4, 200)  # warm-up
            for clients in CLIENTS:
                before = batching(port)
                row = load(port, paths, clients, REQUESTS[clients])
                after = batching(port)
                calls = after["calls"] - before["calls"]
                row["batch"] = (after["requests"] - before["requests"]) / calls if calls else float("nan")
                rows.append({"export": name, "movies": movies, "index": index, **row})
                say(
                    f"[{name}] {index} x{clients}: {row['rps']:,.0f} req/s, p50 {row['p50']:.1f} ms, "
                    f"p99 {row['p99']:.1f} ms, errors {row['errors']}, batch {row['batch']:.1f}"
                )
    finally:
        process.terminate()
        process.wait(timeout=30)
    stages = "two stages (index, then the ranking model)" if (export / "ranking").is_dir() else "one stage"
    rows[0]["what"] = f"{manifest.get('model')}, {stages}"
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| export | index | clients | requests | errors | requests/s | p50 ms | p99 ms | mean index batch "
        "| HTTP p50 / in-process p50 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    floors = {(r["export"], r["index"]): r for r in rows if r["clients"] == "in process"}
    for r in rows:
        where = f"{r['export']} ({r['movies']:,} movies)"
        if r["clients"] == "in process":
            lines.append(
                f"| {where} | {r['index']} | in process, 1 thread | {IN_PROCESS_CALLS} | | "
                f"{r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | | |"
            )
            continue
        floor = floors[(r["export"], r["index"])]
        ratio = f"{r['p50'] / floor['p50']:.1f}x" if r["clients"] == 1 else ""
        batch = "" if math.isnan(r["batch"]) else f"{r['batch']:.1f}"
        lines.append(
            f"| {where} | {r['index']} | {r['clients']} | {r['requests']:,} | {r['errors']} | "
            f"{r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {batch} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", type=Path, help="an ML-100K run's export folder")
    parser.add_argument("--movies", type=int, default=1_000_000, help="generated catalogue size (0: none)")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    load_avg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory(prefix="http_serving_") as tmp:
        workdir = Path(tmp)
        if args.export is not None:
            rows += measure("ML-100K", args.export, workdir, say)
        if args.movies:
            export = generated_export(args.movies, workdir / "generated", say)
            rows += measure("generated", export, workdir, say)
            shutil.rmtree(export, ignore_errors=True)
    body = table(rows)
    print(body)
    if not args.no_doc:
        from docs_section import replace_section

        command = "python benchmarks/http_serving.py" + (f" --export {args.export}" if args.export else "")
        command += "" if args.movies == 1_000_000 else f" --movies {args.movies}"
        whats = "; ".join(f"{r['export']}: {r['what']}" for r in rows if "what" in r)
        intro = (
            f"Measured {date.today()} on {os.cpu_count()} cores ({platform.machine()}), load average "
            f"before the run {load_avg} (the machine is shared), Python {platform.python_version()}, "
            f"by `{command}`. "
            f"Served: {whats}. {__doc__.split(chr(10) + chr(10), 2)[2].strip()}"
        )
        replace_section(HEADING, f"{intro}\n\n{body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
