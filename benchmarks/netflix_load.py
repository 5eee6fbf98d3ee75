"""Benchmark the Netflix Prize loader on a generated Netflix-format dataset.

Generates ``--ratings`` ratings (default 10 million) in the real layout (``combined_data_1..4.txt``,
``movie_titles.csv``, ``probe.txt``, ``qualifying.txt``), then times and measures the peak memory of:

(a) the first read: text -> Parquet cache -> canonical frame (``load_netflix`` with an empty cache);
(a') the text -> cache conversion alone (``convert_ratings``: the streaming part, no final frame);
(b) a cached read (``load_netflix`` when the cache is there).

Each phase runs in a fresh Python process, and its peak memory is that process's RSS high-water mark
(``VmHWM`` in ``/proc/self/status``), so one phase cannot inherit another's memory. The results are
printed and written into the ``## Netflix-format loading`` section of ``docs/BENCHMARKS.md``.

    python benchmarks/netflix_load.py                    # 10M ratings, temp dir, updates the doc
    python benchmarks/netflix_load.py --ratings 200000 --no-doc
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "BENCHMARKS.md"
SECTION = "## Netflix-format loading"


def _peak_rss_mb() -> float:
    """This process's resident-set high-water mark, in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource  # not Linux: ru_maxrss (kilobytes on Linux, bytes on macOS)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (
        1024 * (1024 if sys.platform == "darwin" else 1)
    )


def _phase(args: argparse.Namespace) -> dict:
    """Run one phase in this (fresh) process and return its measurements."""
    from tfrs_movies import schema as S
    from tfrs_movies.data import netflix  # imported before the clock starts: imports are not loading

    out = Path(args.out)
    cache_dir = out / ".bench-cache"
    result: dict = {"phase": args.phase, "baseline_rss_mb": _peak_rss_mb()}
    start = time.perf_counter()
    if args.phase == "generate":
        from tfrs_movies.data.synthetic import generate_world

        n_users, n_movies = _shape(args.ratings)
        world = generate_world(n_users=n_users, n_movies=n_movies, n_ratings=args.ratings, seed=args.seed)
        files = netflix.write_netflix(world.dataset, out, layout="combined", n_files=4, seed=args.seed)
        result.update(
            rows=len(files.ratings),
            users=int(files.ratings[S.USER_ID].nunique()),
            movies=len(files.movies),
            text_bytes=sum(p.stat().st_size for p in files.rating_files),
            probe_pairs=len(files.probe_pairs),
        )
    elif args.phase in ("convert", "convert1"):
        from tfrs_movies.data.errors import BadLines

        _, files = netflix.rating_files(out)
        files = files[:1] if args.phase == "convert1" else files
        dest = Path(tempfile.mkdtemp(dir=out)) / "ratings.parquet"
        info = netflix.convert_ratings(files, dest, BadLines("error"), chunk_bytes=args.chunk_bytes)
        text = sum(p.stat().st_size for p in files)
        result.update(rows=info["ratings"], cache_bytes=dest.stat().st_size, text_bytes=text)
        shutil.rmtree(dest.parent)
    else:  # first / cached
        ds = netflix.load_netflix(out, cache_dir=cache_dir, chunk_bytes=args.chunk_bytes)
        expected = "written" if args.phase == "first" else "hit"
        if ds.report["cache"] != expected:
            raise RuntimeError(f"phase {args.phase}: cache was {ds.report['cache']!r}, expected {expected!r}")
        result.update(
            rows=len(ds.ratings),
            frame_bytes=int(ds.ratings.memory_usage(index=False, deep=True).sum()),
            cache_bytes=Path(ds.report["cache_file"]).stat().st_size,
        )
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def _shape(n_ratings: int) -> tuple[int, int]:
    """Users and movies for a world of ``n_ratings`` (10M -> 50,000 x 5,000: about 200 ratings a user)."""
    n_users = max(200, n_ratings // 200)
    n_movies = min(17_770, max(500, n_ratings // 2_000))
    return n_users, n_movies


def _run_phase(phase: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--out", str(args.out), "--ratings", str(args.ratings),
           "--seed", str(args.seed), "--chunk-bytes", str(args.chunk_bytes)]  # fmt: skip
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _machine() -> dict:
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count())
    import numpy
    import pandas
    import pyarrow

    return {
        "nproc": nproc,
        "ram_gib": round(mem_kb / 1024**2, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "versions": f"numpy {numpy.__version__}, pandas {pandas.__version__}, pyarrow {pyarrow.__version__}",
        "os": f"{platform.system()} {platform.release()}",
        "load": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def _table(gen: dict, rows: list[dict]) -> str:
    lines = [
        "| phase | rows | wall time (s) | rows / s | peak RSS (MiB) | peak RSS above imports (MiB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in [gen, *rows]:
        lines.append(
            f"| {LABELS[r['phase']]} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} "
            f"| {r['peak_rss_mb']:,.0f} | {r['peak_rss_mb'] - r['baseline_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


LABELS = {
    "generate": "generate + write the text (synthetic world)",
    "first": "(a) first read: text -> cache -> frame",
    "convert": "(a') text -> cache only (the streaming part)",
    "convert1": "(a'') the same on combined_data_1.txt alone",
    "cached": "(b) cached read: cache -> frame",
}


def _section(args: argparse.Namespace, machine: dict, gen: dict, rows: list[dict], command: str) -> str:
    by = {r["phase"]: r for r in rows}
    first, convert, convert1, cached = by["first"], by["convert"], by["convert1"], by["cached"]
    mib = 1024**2
    text_mib = gen["text_bytes"] / mib
    stream_mib = convert["peak_rss_mb"] - convert["baseline_rss_mb"]
    stream1_mib = convert1["peak_rss_mb"] - convert1["baseline_rss_mb"]
    text1_mib = convert1["text_bytes"] / mib
    share = cached["cache_bytes"] / gen["text_bytes"]
    return f"""{SECTION}

Measured {dt.date.today().isoformat()} on {machine["nproc"]} cores (`nproc`), {machine["ram_gib"]} GiB RAM,
{machine["cpu"]}; {machine["os"]}, Python {machine["python"]}, {machine["versions"]}. Load average
(1, 5, 15 min) when the run ended: {machine["load"]} (other work shared the machine, so times are upper
bounds).

Command:

```
{command}
```

The dataset is generated in the real Netflix Prize layout (`combined_data_1..4.txt`, `movie_titles.csv`,
`probe.txt`, `qualifying.txt`): {gen["rows"]:,} ratings by {gen["users"]:,} customers (ids up to 2,649,429)
of {gen["movies"]:,} movies; the rating text is {text_mib:,.0f} MiB. Each phase runs in a fresh process;
peak RSS is that process's high-water mark (`VmHWM`), and "above imports" subtracts the RSS after
importing numpy, pandas, pyarrow and the loader. Times exclude interpreter start-up and imports; (a) and
(b) are whole `load_netflix` calls (movie titles and the probe count included). Parser chunk size
{args.chunk_bytes / mib:g} MiB.

{_table(gen, rows)}

- The Parquet cache is {cached["cache_bytes"] / mib:,.0f} MiB ({share:.0%} of the text); the final canonical
  frame is {first["frame_bytes"] / mib:,.0f} MiB (int64 user, movie and timestamp, float32 rating).
- Memory of the streaming conversion does not grow with the text: {stream_mib:,.0f} MiB above imports for
  all {text_mib:,.0f} MiB of text (a'), {stream1_mib:,.0f} MiB for the {text1_mib:,.0f} MiB of
  `combined_data_1.txt` alone (a''). It holds one chunk and about two row groups at a time, so the real
  2 GB text needs the same.
- The first read (a) and the cached read (b) add the final frame, which any loader must return; the
  cache is decoded a row group at a time into preallocated arrays, so there is no second copy of it.
- A second load (b) is {first["seconds"] / cached["seconds"]:.0f}x faster than the first (a).
"""


def _write_doc(section: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip() + "\n\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratings", type=int, default=10_000_000, help="ratings to generate (default 10M)")
    parser.add_argument("--out", type=Path, help="dataset folder (default: a temp dir, removed afterwards)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--chunk-bytes", type=int, default=None, help="parser chunk size (default: the loader's)"
    )
    parser.add_argument("--no-doc", action="store_true", help=f"do not update {DOC.relative_to(REPO)}")
    parser.add_argument("--phase", choices=sorted(LABELS), help=argparse.SUPPRESS)  # internal: one phase
    args = parser.parse_args(argv)

    if args.chunk_bytes is None:
        from tfrs_movies.data.netflix import DEFAULT_CHUNK_BYTES

        args.chunk_bytes = DEFAULT_CHUNK_BYTES
    if args.phase:
        print(json.dumps(_phase(args)))
        return 0

    command = "python benchmarks/netflix_load.py" + (
        "" if args.ratings == 10_000_000 else f" --ratings {args.ratings}"
    )
    owned = args.out is None
    args.out = Path(tempfile.mkdtemp(prefix="netflix-bench-")) if owned else args.out
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        print(f"generating {args.ratings:,} ratings into {args.out} ...", flush=True)
        gen = _run_phase("generate", args)
        shutil.rmtree(args.out / ".bench-cache", ignore_errors=True)
        rows = []
        for phase in ("first", "cached", "convert", "convert1"):
            print(f"{LABELS[phase]} ...", flush=True)
            rows.append(_run_phase(phase, args))
        rows.sort(key=lambda r: ["first", "convert", "convert1", "cached"].index(r["phase"]))
        machine = _machine()
        print()
        print(_table(gen, rows))
        section = _section(args, machine, gen, rows, command)
        if not args.no_doc:
            _write_doc(section)
            print(f"\nwrote the section into {DOC}")
    finally:
        if owned:
            shutil.rmtree(args.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
