"""The Netflix Prize dataset: a streaming loader with a Parquet cache, and a writer for generated copies.

Layout (see ``FORMATS.md``): ``combined_data_1.txt`` … ``combined_data_4.txt`` or
``training_set/mv_0000001.txt`` …, where a ``MovieID:`` line opens a block of ``CustomerID,Rating,Date``
lines; ``movie_titles.csv`` (``MovieID,YearOfRelease,Title``, ISO-8859-1, year may be ``NULL``, the title
is everything after the second comma); ``probe.txt`` (``MovieID:`` then ``CustomerID`` lines) and
``qualifying.txt`` (``MovieID:`` then ``CustomerID,Date``).

The real ratings are about 2 GB of text, so the text is never held in memory: it is read in fixed-size
byte chunks cut at line ends, and each chunk is parsed with vectorised numpy over its raw bytes (no
Python object per line). Parsed chunks are appended to a Parquet cache file, which the first load then
reads back and every later load reads directly (seconds instead of minutes). Memory during the parse is
bounded by the chunk size, whatever the file size; only the final frame grows with the data.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tfrs_movies import schema as S
from tfrs_movies.data.cache import AtomicParquetWriter, cache_path_for, read_cached, remove_stale
from tfrs_movies.data.errors import BadLines, DataFormatError, MissingDataFileError
from tfrs_movies.data.imdb import deinvert_title, split_title_year

NAME = "netflix"
FORMAT = "Netflix Prize"
CUSTOMER_ID_MAX = 2_649_429  # the largest CustomerID in the real data
DEFAULT_CHUNK_BYTES = 4 << 20  # ~190k lines a chunk: fastest measured, ~85 MB above imports in all
_ROW_GROUP_ROWS = 1 << 18  # chunks are pooled into row groups of at least this (training_set: 17,770 files)
_PARSER_VERSION = "netflix-ratings-v1"  # bump when the parsed result would change: invalidates caches
_CACHE_KIND = "netflix-ratings"
_DAY = 86_400

RATINGS_SCHEMA = pa.schema(
    [(S.USER_ID, pa.int64()), (S.MOVIE_ID, pa.int64()), (S.RATING, pa.float32()), (S.TIMESTAMP, pa.int64())]
)

_NL, _CR, _COMMA, _COLON, _DASH, _ZERO = (ord(c) for c in "\n\r,:-0")


@dataclass(frozen=True)
class _LineKind:
    """What the lines inside a ``MovieID:`` block look like: ``CustomerID`` then a fixed-width tail."""

    name: str
    tail: int  # bytes after the CustomerID: ",R,YYYY-MM-DD" = 13, ",YYYY-MM-DD" = 11, nothing = 0
    rating: bool
    date: bool
    layout: str


_RATING_LINES = _LineKind("rating", 13, True, True, "CustomerID,Rating,Date")
_QUALIFYING_LINES = _LineKind("qualifying", 11, False, True, "CustomerID,Date")
_PROBE_LINES = _LineKind("probe", 0, False, False, "CustomerID")


@dataclass
class _Block:
    """The records parsed from one chunk: parallel arrays, one entry per valid record line."""

    movie: np.ndarray
    customer: np.ndarray
    rating: np.ndarray | None
    day: np.ndarray | None  # days since 1970-01-01


# --------------------------------------------------------------------------------------------- parsing


# Every chunk is parsed with this many zero bytes in front, so that reading a fixed offset back from a
# line's end never needs a bounds check (short lines read padding or the previous line, and fail the
# length checks anyway).
_PAD = 32


def _parse_uint(
    a: np.ndarray, s: np.ndarray, e: np.ndarray, max_digits: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Positive integers written in ``a[s:e]`` for each pair, and whether each was well formed.

    Digits are read right to left, one pass per digit position over all lines at once.
    """
    n = e - s
    ok = (n >= 1) & (n <= max_digits)
    val = np.zeros(len(s), np.int64)
    scale = 1
    for k in range(int(min(max_digits, n.max(initial=0)))):
        digit = a[e - 1 - k] - np.uint8(_ZERO)  # uint8 arithmetic: a non-digit wraps to > 9
        active = k < n
        ok &= (digit <= 9) | ~active
        val += np.where(active, digit, 0) * np.int64(scale)
        scale *= 10
    return val, ok & (val > 0)


def _calendar_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lookup tables for years 0..9999: leap flag, days from 1970-01-01 to each year's 1 January, and per
    (leap, month) the days before the month and the month's length. Gathers beat integer division."""
    years = np.arange(10_000)
    leap = ((years % 4 == 0) & (years % 100 != 0)) | (years % 400 == 0)
    lengths = np.where(leap, 366, 365)
    year_start = np.concatenate(([0], np.cumsum(lengths)[:-1])) - int(lengths[:1970].sum())
    month_len = np.array([[0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31],
                          [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]])  # fmt: skip
    month_start = np.concatenate((np.zeros((2, 1), int), np.cumsum(month_len, 1)[:, :-1]), 1)
    return leap.astype(np.int8), year_start.astype(np.int32), month_start.astype(np.int32), month_len


_LEAP, _YEAR_START, _MONTH_START, _MONTH_LEN = _calendar_tables()


def _parse_dates(a: np.ndarray, e: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days since the epoch for ``YYYY-MM-DD`` ending just before ``e``, and whether each is a real date."""
    d = {off: a[e - off] - np.uint8(_ZERO) for off in (10, 9, 8, 7, 5, 4, 2, 1)}  # uint8: non-digits > 9
    good = ok & (a[e - 6] == _DASH) & (a[e - 3] == _DASH)
    for digit in d.values():
        good &= digit <= 9
    year = np.where(good, d[10] * np.int16(1000) + d[9] * np.int16(100) + d[8] * np.int16(10) + d[7], 0)
    month = np.where(good, d[5] * np.uint8(10) + d[4], 0)
    day = np.where(good, d[2] * np.uint8(10) + d[1], 0)
    month = np.minimum(month, 13)  # keep the table lookups in range; invalid months fail below
    leap = _LEAP[year]
    good &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= _MONTH_LEN[leap, month % 13])
    days = _YEAR_START[year] + _MONTH_START[leap, month % 13] + day.astype(np.int32) - 1
    return np.where(good, days, 0).astype(np.int64), good


def _explain(text: str, kind: _LineKind) -> str:
    """What a rejected record line should have looked like (only called for bad lines, so plain Python)."""
    base = f"`{kind.layout}` or a `MovieID:` line"
    if text.endswith(":"):
        return "a `MovieID:` line with a positive integer MovieID"
    parts = text.split(",")
    want = 1 + kind.rating + kind.date
    if len(parts) != want:
        return f"{want} comma-separated field{'s' if want > 1 else ''} {base}"
    if not (parts[0].isascii() and parts[0].isdigit() and int(parts[0]) > 0):
        return f"CustomerID as a positive integer in {base}"
    if kind.rating and parts[1] not in ("1", "2", "3", "4", "5"):
        return f"Rating as an integer 1..5 in {base}"
    if kind.date:
        return f"Date as a valid YYYY-MM-DD in {base}"
    return base


def _parse_chunk(
    buf: bytes, kind: _LineKind, movie: int, first_line: int, path: Path, bad: BadLines
) -> tuple[_Block, int, int]:
    """Parse the whole lines in ``buf`` (after ``_PAD`` zero bytes); return the records, the movie open
    at the end and the number of lines.

    ``movie`` is the MovieID open when the chunk starts: 0 before any ``MovieID:`` line, -1 after a
    malformed one (its records are then rejected rather than credited to the previous movie).
    """
    a = np.frombuffer(buf, np.uint8)
    nl = np.flatnonzero(a == _NL)
    n_lines = len(nl)
    starts = np.empty(n_lines, np.int64)
    starts[:1] = _PAD
    starts[1:] = nl[:-1] + 1
    ends = nl - (a[nl - 1] == _CR)  # tolerate CRLF line ends
    blank = ends <= starts  # empty lines carry nothing: ignored, not errors
    is_header = (a[ends - 1] == _COLON) & ~blank

    h = np.flatnonzero(is_header)
    h_movie, h_ok = _parse_uint(a, starts[h], ends[h] - 1)
    h_movie = np.where(h_ok, h_movie, -1)

    r = np.flatnonzero(~(is_header | blank))
    s, e = starts[r], ends[r]
    customer, ok = _parse_uint(a, s, e - kind.tail)
    rating = day = None
    if kind.rating:
        ok &= a[e - 13] == _COMMA
        rating = a[e - 12] - np.uint8(_ZERO + 1)  # uint8: 1..5 become 0..4, anything else more
        ok &= rating <= 4
        rating = rating + np.uint8(1)
    if kind.date:
        ok &= a[e - 11] == _COMMA
        day, ok = _parse_dates(a, e, ok)

    # Each record belongs to the last header above it in this chunk, or to the one carried in.
    k = np.cumsum(is_header)[r] - 1 if len(h) else np.full(len(r), -1)
    rec_movie = np.where(k >= 0, h_movie[np.maximum(k, 0)], movie) if len(h) else np.full(len(r), movie)
    has_movie = rec_movie > 0
    keep = ok & has_movie
    end_movie = int(h_movie[-1]) if len(h) else movie

    if len(h) - int(h_ok.sum()) or not keep.all():
        _report_bad(buf, starts, ends, h[~h_ok], r[~ok], r[ok & ~has_movie], kind, first_line, path, bad)

    if not keep.all():
        rec_movie, customer = rec_movie[keep], customer[keep]
        rating = None if rating is None else rating[keep]
        day = None if day is None else day[keep]
    return _Block(movie=rec_movie, customer=customer, rating=rating, day=day), end_movie, n_lines


def _report_bad(
    buf: bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    bad_headers: np.ndarray,
    bad_records: np.ndarray,
    orphans: np.ndarray,
    kind: _LineKind,
    first_line: int,
    path: Path,
    bad: BadLines,
) -> None:
    """Raise for (error mode) or count (skip mode) the bad lines of a chunk, in file order."""
    why = {int(i): "header" for i in bad_headers}
    why.update({int(i): "record" for i in bad_records})
    why.update({int(i): "orphan" for i in orphans})
    for i in sorted(why):
        text = buf[starts[i] : ends[i]].decode("iso-8859-1")
        if why[i] == "header":
            expected = "a `MovieID:` line with a positive integer MovieID"
        elif why[i] == "orphan":
            expected = f"a valid `MovieID:` line before this `{kind.layout}` line"
        else:
            expected = _explain(text, kind)
        bad.bad(path, first_line + i + 1, expected, text)


def _iter_blocks(path: Path, kind: _LineKind, bad: BadLines, chunk_bytes: int) -> Iterator[_Block]:
    """Parse one file chunk by chunk; memory is bounded by ``chunk_bytes`` (plus one line)."""
    movie, line_base, carry = 0, 0, b""
    pad = bytes(_PAD)
    with open(path, "rb") as fh:
        while True:
            data = fh.read(chunk_bytes)
            if not data:  # end of file: the last line may lack its newline
                if not carry:
                    return
                buf, carry = pad + carry + b"\n", b""
            else:
                cut = data.rfind(b"\n")
                if cut < 0:  # no complete line yet (a line longer than the chunk): read on
                    carry += data
                    continue
                buf, carry = pad + carry + data[: cut + 1], data[cut + 1 :]
            block, movie, n_lines = _parse_chunk(buf, kind, movie, line_base, path, bad)
            line_base += n_lines
            yield block


# ------------------------------------------------------------------------------------------ the files


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingDataFileError(path, f"{FORMAT} {what}")
    return path


def rating_files(data_dir: str | Path) -> tuple[str, list[Path]]:
    """The ratings layout (``"combined"`` or ``"training_set"``) and its files, in reading order."""
    data_dir = Path(data_dir)
    combined = [p for p in data_dir.glob("combined_data_*.txt") if p.stem.rsplit("_", 1)[-1].isdigit()]
    if combined:
        return "combined", sorted(combined, key=lambda p: int(p.stem.rsplit("_", 1)[-1]))
    per_movie = sorted((data_dir / "training_set").glob("mv_*.txt"))  # zero-padded: name order = id order
    if per_movie:
        return "training_set", per_movie
    raise MissingDataFileError(
        data_dir / "combined_data_1.txt", f"{FORMAT} (combined_data_1..4.txt or training_set/mv_*.txt)"
    )


def _titles_file(data_dir: Path) -> Path:
    # The Kaggle copy calls it movie_titles.csv; the original Prize download movie_titles.txt.
    for name in ("movie_titles.csv", "movie_titles.txt"):
        if (data_dir / name).is_file():
            return data_dir / name
    return _need(data_dir / "movie_titles.csv", "movie titles")


def load_movie_titles(
    data_dir: str | Path, on_bad_lines: str = "error", bad: BadLines | None = None
) -> pd.DataFrame:
    """``movie_titles.csv`` as the canonical movies frame (genres are empty: Netflix has none)."""
    bad = bad or BadLines(on_bad_lines)
    path = _titles_file(Path(data_dir))
    ids: list[int] = []
    years: list[float] = []
    titles: list[str] = []
    seen: set[int] = set()
    # 17,770 short lines: plain Python is fast enough, and the title may contain commas, so split twice.
    with open(path, encoding="iso-8859-1", newline="") as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split(",", 2)
            if len(parts) != 3:
                bad.bad(path, number, "`MovieID,YearOfRelease,Title`", line)
                continue
            movie, year, title = parts
            if not (movie.isascii() and movie.isdigit() and int(movie) > 0):
                bad.bad(path, number, "MovieID as a positive integer in `MovieID,YearOfRelease,Title`", line)
                continue
            if year != "NULL" and not (year.isascii() and year.isdigit()):
                bad.bad(
                    path, number, "YearOfRelease as a year or NULL in `MovieID,YearOfRelease,Title`", line
                )
                continue
            if int(movie) in seen:
                bad.bad(path, number, f"a MovieID not listed before (MovieID {int(movie)} is repeated)", line)
                continue
            seen.add(int(movie))
            ids.append(int(movie))
            years.append(np.nan if year == "NULL" else float(year))
            titles.append(title)
    return pd.DataFrame(
        {
            S.MOVIE_ID: np.array(ids, np.int64),
            S.TITLE: pd.Series(titles, dtype=object),
            S.YEAR: np.array(years, np.float32),
            S.GENRES: pd.Series([()] * len(ids), dtype=object),
        }
    )


def _ratings_table(block: _Block) -> pa.Table:
    return pa.table(
        {
            S.USER_ID: block.customer,
            S.MOVIE_ID: block.movie,
            S.RATING: block.rating.astype(np.float32),
            S.TIMESTAMP: block.day * _DAY,  # midnight UTC of that day
        },
        schema=RATINGS_SCHEMA,
    )


def convert_ratings(
    files: list[Path], dest: str | Path, bad: BadLines, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> dict:
    """Stream the rating text of ``files`` into the Parquet file ``dest`` (atomically); return counts.

    Memory stays bounded by ``chunk_bytes`` and one row group, whatever the size of the text.
    """
    pending: list[pa.Table] = []
    pending_rows = 0
    # Parquet encoding and compression run in a second thread (pyarrow releases the GIL) while the next
    # chunk is parsed; at most one write is in flight, so memory stays at about two row groups.
    with AtomicParquetWriter(dest, RATINGS_SCHEMA) as writer, ThreadPoolExecutor(1) as pool:
        in_flight: Future | None = None

        def flush() -> None:
            nonlocal in_flight, pending, pending_rows
            if in_flight is not None:
                in_flight.result()
            table = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
            in_flight = pool.submit(writer.write, table)
            pending, pending_rows = [], 0

        for path in files:
            for block in _iter_blocks(path, _RATING_LINES, bad, chunk_bytes):
                if len(block.customer):
                    pending.append(_ratings_table(block))
                    pending_rows += len(block.customer)
                # training_set/ has 17,770 small files: gather them into row groups of a sensible size.
                if pending_rows >= _ROW_GROUP_ROWS:
                    flush()
        if pending:
            flush()
        if in_flight is not None:
            in_flight.result()
        info = {"ratings": writer.rows, **_bad_report(bad)}
        writer.set_info(info)
    return info


def _bad_report(bad: BadLines) -> dict:
    out = bad.report()
    if out:
        out["skipped_examples"] = list(bad.examples)
    return out


def _read_ratings_in_memory(files: list[Path], bad: BadLines, chunk_bytes: int) -> pd.DataFrame:
    """The no-cache path: keep the parsed per-chunk arrays, then build the frame once."""
    blocks = [b for path in files for b in _iter_blocks(path, _RATING_LINES, bad, chunk_bytes)]

    def joined(field: str) -> np.ndarray:
        parts = [getattr(b, field) for b in blocks]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    columns = {
        S.USER_ID: joined("customer"),
        S.MOVIE_ID: joined("movie"),
        S.RATING: joined("rating").astype(np.float32),
        S.TIMESTAMP: joined("day") * _DAY,  # midnight UTC of that day
    }
    blocks.clear()
    return pd.DataFrame(columns, copy=False).astype(S.RATINGS_DTYPES, copy=False)


def load_netflix(
    data_dir: str | Path,
    on_bad_lines: str = "error",
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    with_probe: bool = True,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> S.Dataset:
    """Load the Netflix Prize training data as a canonical :class:`Dataset` named ``"netflix"``.

    Reads ``combined_data_*.txt`` (or ``training_set/mv_*.txt``) and ``movie_titles.csv``. The rating
    text is streamed ``chunk_bytes`` at a time into a Parquet cache in ``cache_dir`` (default
    ``<data_dir>/.cache``) keyed by the files' paths, sizes and mtimes; later loads read the cache.
    ``use_cache=False`` parses without reading or writing any cache. Customer ids are kept as given (not
    contiguous); the users frame is empty (Netflix has no user features). Dates become Unix seconds at
    midnight UTC. Malformed lines raise :class:`DataFormatError` (file and 1-based line) or, with
    ``on_bad_lines="skip"``, are counted in ``report``. With ``with_probe`` and a ``probe.txt`` present,
    ``report["probe_pairs"]`` counts the probe pairs (load them with :func:`load_probe`).
    """
    data_dir = Path(data_dir)
    bad = BadLines(on_bad_lines)
    layout, files = rating_files(data_dir)
    movies = load_movie_titles(data_dir, bad=bad)
    titles_report = _bad_report(bad)

    ratings_bad = BadLines(on_bad_lines)
    if not use_cache:
        ratings = _read_ratings_in_memory(files, ratings_bad, chunk_bytes)
        info, state, cache_file = {"ratings": len(ratings), **_bad_report(ratings_bad)}, "off", None
    else:
        cache_file = cache_path_for(files, _CACHE_KIND, data_dir, cache_dir, salt=_PARSER_VERSION)
        hit = read_cached(cache_file)
        # A cache written in skip mode over bad lines must not let error mode pass silently: re-parse.
        if hit is not None and not (on_bad_lines == "error" and hit[1].get("skipped_lines")):
            ratings, info = hit
            state = "hit"
        else:
            ratings, info, state, cache_file = _convert_and_read(files, cache_file, ratings_bad, chunk_bytes)

    report: dict = {
        "layout": layout,
        "rating_files": len(files),
        "ratings": int(len(ratings)),
        "movies": int(len(movies)),
        "cache": state,
    }
    if cache_file is not None:
        report["cache_file"] = str(cache_file)
    report.update(_merge_bad(titles_report, {k: v for k, v in info.items() if k != "ratings"}))
    if with_probe and (data_dir / "probe.txt").is_file():
        report["probe_pairs"] = int(len(load_probe(data_dir, on_bad_lines=on_bad_lines)))
    return S.Dataset(
        name=NAME, ratings=ratings, movies=movies, users=S.empty_users(), rating_scale=(1.0, 5.0),
        genres=(), report=report,
    )  # fmt: skip


def _convert_and_read(
    files: list[Path], cache_file: Path, bad: BadLines, chunk_bytes: int
) -> tuple[pd.DataFrame, dict, str, Path | None]:
    """Parse into the cache file and read it back; fall back to a temp file if the cache is unwritable."""
    try:
        convert_ratings(files, cache_file, bad, chunk_bytes)
    except PermissionError:
        # Read-only data directory (a shared copy): parse through a throwaway file instead.
        with tempfile.TemporaryDirectory() as tmp:
            tmp_file = Path(tmp) / cache_file.name
            convert_ratings(files, tmp_file, BadLines(bad.mode), chunk_bytes)
            ratings, info = read_cached(tmp_file)
        return ratings, info, "unwritable", None
    remove_stale(cache_file)
    hit = read_cached(cache_file)
    if hit is None:  # pragma: no cover - we just wrote it
        raise OSError(f"could not read back the cache {cache_file}")
    return hit[0], hit[1], "written", cache_file


def _merge_bad(a: dict, b: dict) -> dict:
    """Combine two bad-line reports (titles and ratings)."""
    if not a:
        return b
    if not b:
        return a
    return {
        "skipped_lines": a["skipped_lines"] + b["skipped_lines"],
        "skipped_by_file": {**a["skipped_by_file"], **b["skipped_by_file"]},
        "skipped_examples": (a["skipped_examples"] + b["skipped_examples"])[:5],
    }


def _read_pairs(path: Path, kind: _LineKind, on_bad_lines: str, chunk_bytes: int) -> list[_Block]:
    bad = BadLines(on_bad_lines)
    return list(_iter_blocks(path, kind, bad, chunk_bytes))


def load_probe(
    data_dir: str | Path, on_bad_lines: str = "error", *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> pd.DataFrame:
    """``probe.txt`` (``MovieID:`` blocks of ``CustomerID`` lines) as a frame of user_id, movie_id."""
    path = _need(Path(data_dir) / "probe.txt", "probe set")
    blocks = _read_pairs(path, _PROBE_LINES, on_bad_lines, chunk_bytes)
    return pd.DataFrame(
        {
            S.USER_ID: np.concatenate([b.customer for b in blocks] or [np.zeros(0, np.int64)]),
            S.MOVIE_ID: np.concatenate([b.movie for b in blocks] or [np.zeros(0, np.int64)]),
        }
    )


def load_qualifying(
    data_dir: str | Path, on_bad_lines: str = "error", *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> pd.DataFrame:
    """``qualifying.txt`` (``MovieID:`` then ``CustomerID,Date``) as user_id, movie_id, timestamp."""
    path = _need(Path(data_dir) / "qualifying.txt", "qualifying set")
    blocks = _read_pairs(path, _QUALIFYING_LINES, on_bad_lines, chunk_bytes)
    empty = [np.zeros(0, np.int64)]
    return pd.DataFrame(
        {
            S.USER_ID: np.concatenate([b.customer for b in blocks] or empty),
            S.MOVIE_ID: np.concatenate([b.movie for b in blocks] or empty),
            S.TIMESTAMP: np.concatenate([b.day for b in blocks] or empty) * _DAY,
        }
    )


# -------------------------------------------------------------------------------------------- writing


@dataclass
class NetflixFiles:
    """What :func:`write_netflix` wrote, and what the loaders should read back from it."""

    out_dir: Path
    layout: str
    rating_files: list[Path]
    movie_titles: Path
    probe: Path
    qualifying: Path
    customer_ids: pd.Series  # index: the dataset's user_id; values: the written CustomerID
    movie_ids: pd.Series  # index: the dataset's movie_id; values: the written MovieID (1..n)
    ratings: pd.DataFrame  # canonical, in file order: what load_netflix must return
    movies: pd.DataFrame  # canonical movies frame load_netflix must return
    probe_pairs: pd.DataFrame  # user_id, movie_id in file order
    qualifying_pairs: pd.DataFrame  # user_id, movie_id, timestamp in file order


def netflix_customer_ids(n_users: int, seed: int = 0) -> np.ndarray:
    """``n_users`` distinct CustomerIDs in 1..2,649,429 (the largest always included), shuffled."""
    if not 1 <= n_users <= CUSTOMER_ID_MAX:
        raise ValueError(f"Netflix CustomerIDs allow 1..{CUSTOMER_ID_MAX} users, got {n_users}")
    rng = np.random.default_rng([seed, 0x4E46])
    ids = rng.choice(CUSTOMER_ID_MAX - 1, n_users - 1, replace=False) + 1
    return rng.permutation(np.append(ids, CUSTOMER_ID_MAX)).astype(np.int64)


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (pandas' hash table: several times faster than np.unique on 10M ints)."""
    return np.sort(pd.unique(values))


def _strings(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.large_string())


def _date_strings(days: np.ndarray) -> pa.Array:
    """``YYYY-MM-DD`` for each day number; only the few distinct days are formatted."""
    inverse, uniq = pd.factorize(days, sort=True)  # much faster than np.unique on 10M+ values
    text = pa.array(np.datetime_as_string(uniq.astype("datetime64[D]")), pa.large_string())
    return text.take(pa.array(inverse.ravel()))


def _lines(*parts: pa.Array | str) -> tuple[memoryview, np.ndarray]:
    """Join columns (or literal strings) into newline-terminated lines; return the bytes and offsets.

    The lines of a freshly built Arrow string array sit back to back in one buffer: exactly the file
    text, so blocks of it can be written without a Python object per line.
    """
    scalars = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else p for p in parts]
    joined = pc.binary_join_element_wise(
        *scalars, pa.scalar("\n", pa.large_string()), pa.scalar("", pa.large_string())
    )
    if len(joined) == 0 or joined.buffers()[2] is None:
        return memoryview(b""), np.zeros(len(joined) + 1, np.int64)
    offsets = np.frombuffer(joined.buffers()[1], np.int64)[joined.offset : joined.offset + len(joined) + 1]
    return memoryview(joined.buffers()[2]), offsets


def _write_blocks(fh, movie: np.ndarray, data: memoryview, offsets: np.ndarray, lo: int, hi: int) -> None:
    """Write rows ``lo:hi`` (sorted by movie) as ``MovieID:`` blocks."""
    if hi <= lo:
        return
    m = movie[lo:hi]
    cuts = lo + np.flatnonzero(np.r_[True, m[1:] != m[:-1]])
    bounds = np.r_[cuts, hi]
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        fh.write(f"{movie[start]}:\n".encode())
        fh.write(data[offsets[start] : offsets[stop]])


def _netflix_title(title: str) -> str:
    """A MovieLens-style title as Netflix writes it: no ``(year)``, leading article in front."""
    return deinvert_title(split_title_year(title)[0])


def write_netflix(
    dataset: S.Dataset,
    out_dir: str | Path,
    layout: str = "combined",
    n_files: int = 4,
    probe_fraction: float = 0.015,
    seed: int = 0,
) -> NetflixFiles:
    """Write ``dataset`` in the Netflix Prize layout (for tests and benchmarks of :func:`load_netflix`).

    ``layout="combined"`` writes ``combined_data_1..n_files.txt`` (movies split by contiguous id ranges,
    like the real files); ``"training_set"`` writes ``training_set/mv_0000001.txt`` per movie. Also
    ``movie_titles.csv`` (ISO-8859-1, unquoted titles that may hold commas, some ``NULL`` years),
    ``probe.txt`` (``probe_fraction`` of the ratings) and ``qualifying.txt`` (as many unrated pairs, with
    dates). Users get deterministic, non-contiguous CustomerIDs up to 2,649,429; movies ids 1..n.
    Ratings must be whole stars 1..5; timestamps are written as their UTC day.
    """
    if layout not in ("combined", "training_set"):
        raise ValueError(f"layout must be 'combined' or 'training_set', got {layout!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    r = dataset.ratings
    rating = r[S.RATING].to_numpy()
    if len(rating) and (np.any(rating != np.round(rating)) or rating.min() < 1 or rating.max() > 5):
        raise ValueError("Netflix ratings are whole stars 1..5; this dataset has other values")
    user_ids = _unique(np.concatenate([r[S.USER_ID].to_numpy(), dataset.users[S.USER_ID].to_numpy()]))
    customers = pd.Series(netflix_customer_ids(len(user_ids), seed), index=user_ids)
    movie_src = _unique(np.concatenate([dataset.movies[S.MOVIE_ID].to_numpy(), r[S.MOVIE_ID].to_numpy()]))
    movie_ids = pd.Series(np.arange(1, len(movie_src) + 1, dtype=np.int64), index=movie_src)

    # Ratings grouped by movie (stable: the dataset's order inside a block), as the files list them.
    movie = movie_ids.to_numpy()[np.searchsorted(movie_src, r[S.MOVIE_ID].to_numpy())]
    order = np.argsort(movie, kind="stable")
    movie = movie[order]
    customer = customers.to_numpy()[np.searchsorted(user_ids, r[S.USER_ID].to_numpy()[order])]
    stars = rating[order].astype(np.int64)
    day = r[S.TIMESTAMP].to_numpy()[order] // _DAY
    expected = S.canonical_ratings(
        pd.DataFrame({S.USER_ID: customer, S.MOVIE_ID: movie, S.RATING: stars, S.TIMESTAMP: day * _DAY})
    )
    data, offsets = _lines(_strings(customer), ",", _strings(stars), ",", _date_strings(day))

    rating_paths: list[Path] = []
    if layout == "combined":
        groups = np.array_split(np.arange(1, len(movie_src) + 1), max(1, min(n_files, len(movie_src))))
        for i, ids in enumerate(groups, 1):
            lo, hi = np.searchsorted(movie, [ids[0], ids[-1] + 1]) if len(ids) else (0, 0)
            path = out_dir / f"combined_data_{i}.txt"
            with open(path, "wb") as fh:
                _write_blocks(fh, movie, data, offsets, int(lo), int(hi))
            rating_paths.append(path)
    else:
        folder = out_dir / "training_set"
        folder.mkdir(exist_ok=True)
        cuts = np.flatnonzero(np.r_[True, movie[1:] != movie[:-1]]) if len(movie) else np.zeros(0, int)
        for lo, hi in zip(cuts, np.r_[cuts[1:], len(movie)], strict=True):
            path = folder / f"mv_{movie[lo]:07d}.txt"
            with open(path, "wb") as fh:
                _write_blocks(fh, movie, data, offsets, int(lo), int(hi))
            rating_paths.append(path)
    del data, offsets

    movies = _write_titles(dataset.movies, movie_ids, out_dir / "movie_titles.csv")
    probe_pairs = _write_probe(expected, probe_fraction, rng, out_dir / "probe.txt")
    qualifying_pairs = _write_qualifying(expected, len(probe_pairs), rng, out_dir / "qualifying.txt")
    return NetflixFiles(
        out_dir=out_dir, layout=layout, rating_files=rating_paths, movie_titles=out_dir / "movie_titles.csv",
        probe=out_dir / "probe.txt", qualifying=out_dir / "qualifying.txt", customer_ids=customers,
        movie_ids=movie_ids, ratings=expected, movies=movies, probe_pairs=probe_pairs,
        qualifying_pairs=qualifying_pairs,
    )  # fmt: skip


_SPILL = np.dtype([("movie", "<i4"), ("customer", "<i4"), ("rating", "i1"), ("day", "<i4")])


def write_netflix_stream(
    world,
    out_dir: str | Path,
    n_files: int = 4,
    probe_fraction: float = 0.015,
    seed: int = 0,
    bucket_rows: int = 8_000_000,
    chunk_ratings: int = 2_000_000,
) -> dict:
    """Write a :class:`~tfrs_movies.data.synthetic.StreamedWorld` in the ``combined`` Netflix layout with
    memory bounded by one chunk of users plus one bucket of movies, whatever the number of ratings.

    Ratings arrive a chunk of users at a time and are spilled (13 bytes a rating) into bucket files of
    contiguous MovieID ranges (inside one ``combined_data_i.txt`` each); each bucket is then read back,
    grouped by movie (stable: arrival order inside a movie) and written, with its share of
    ``probe.txt`` (``probe_fraction`` of its ratings) and ``qualifying.txt`` (as many unrated pairs).
    Every rating of the world is written once: the counts returned are exact."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_users, n_movies = len(world.counts), len(world.movies)
    customers = netflix_customer_ids(n_users, seed).astype(np.int32)
    groups = np.array_split(np.arange(1, n_movies + 1), max(1, min(n_files, n_movies)))
    per_group = max(1, -(-world.n_ratings // (bucket_rows * len(groups))))
    bucket_ranges = [part for g in groups for part in np.array_split(g, min(per_group, len(g)))]
    bucket_file = [i for i, g in enumerate(groups) for part in np.array_split(g, min(per_group, len(g)))]
    starts = np.array([r[0] for r in bucket_ranges])
    rng = np.random.default_rng([seed, 0x4E57])
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".spill-") as tmp:
        spill_paths = [Path(tmp) / f"b{i:04d}.bin" for i in range(len(bucket_ranges))]
        files = [open(p, "wb") for p in spill_paths]  # noqa: SIM115 (closed below)
        try:
            for u_idx, m_idx, rating, timestamp in world.chunks(chunk_ratings):
                rec = np.empty(len(u_idx), _SPILL)
                rec["movie"] = m_idx + 1
                rec["customer"] = customers[u_idx]
                rec["rating"] = rating.astype(np.int8)
                rec["day"] = timestamp // _DAY
                bucket = np.searchsorted(starts, rec["movie"], side="right") - 1
                order = np.argsort(bucket, kind="stable")
                bounds = np.searchsorted(bucket[order], np.arange(len(files) + 1))
                for b, fh in enumerate(files):
                    if bounds[b + 1] > bounds[b]:
                        fh.write(rec[order[bounds[b] : bounds[b + 1]]].tobytes())
        finally:
            for fh in files:
                fh.close()
        written = n_probe = 0
        handles = {i: open(out_dir / f"combined_data_{i + 1}.txt", "wb") for i in range(len(groups))}  # noqa: SIM115
        try:
            with open(out_dir / "probe.txt", "wb") as probe, open(out_dir / "qualifying.txt", "wb") as qual:
                for b, path in enumerate(spill_paths):
                    rec = np.fromfile(path, _SPILL)
                    path.unlink()
                    rec = rec[np.argsort(rec["movie"], kind="stable")]
                    movie = rec["movie"].astype(np.int64)
                    day = _date_strings(rec["day"])
                    data, offsets = _lines(_strings(rec["customer"]), ",", _strings(rec["rating"]), ",", day)
                    _write_blocks(handles[bucket_file[b]], movie, data, offsets, 0, len(rec))
                    del data, offsets
                    written += len(rec)
                    k = int(round(len(rec) * probe_fraction))
                    pick = np.sort(rng.choice(len(rec), k, replace=False))
                    data, offsets = _lines(_strings(rec["customer"][pick]))
                    _write_blocks(probe, movie[pick], data, offsets, 0, k)
                    n_probe += k
                    _write_qualifying_bucket(rec, customers, bucket_ranges[b], k, rng, qual)
        finally:
            for fh in handles.values():
                fh.close()
    _write_titles(
        world.movies, pd.Series(np.arange(1, n_movies + 1), index=world.movies[S.MOVIE_ID].to_numpy()),
        out_dir / "movie_titles.csv",
    )  # fmt: skip
    return {"ratings": written, "users": n_users, "movies": n_movies, "probe": n_probe, "seed": seed}


def _write_qualifying_bucket(rec: np.ndarray, customers: np.ndarray, movies: np.ndarray, n: int,
                             rng: np.random.Generator, fh) -> None:  # fmt: skip
    """``n`` (customer, movie) pairs of this bucket's movies that it does not rate, with dates."""
    if n == 0 or len(rec) == 0:
        return
    seen = rec["customer"].astype(np.int64) * (CUSTOMER_ID_MAX + 1) + rec["movie"]
    cand_c = rng.choice(customers, 3 * n + 10).astype(np.int64)
    cand_m = rng.choice(movies, 3 * n + 10).astype(np.int64)
    key = cand_c * (CUSTOMER_ID_MAX + 1) + cand_m
    keep = ~pd.Series(key).isin(seen).to_numpy() & ~pd.Index(key).duplicated(keep="first")
    idx = np.flatnonzero(keep)[:n]
    cust, movie = cand_c[idx], cand_m[idx]
    day = rng.integers(rec["day"].min(), rec["day"].max() + 1, len(idx))
    order = np.argsort(movie, kind="stable")
    data, offsets = _lines(_strings(cust[order]), ",", _date_strings(day[order]))
    _write_blocks(fh, movie[order], data, offsets, 0, len(idx))


def _write_titles(src: pd.DataFrame, movie_ids: pd.Series, path: Path) -> pd.DataFrame:
    """``movie_titles.csv``: latin-1, no quoting (titles keep their commas), some years ``NULL``."""
    src = src.set_index(S.MOVIE_ID)
    ids, years, titles = [], [], []
    for old, new in movie_ids.items():
        raw = src[S.TITLE].get(old, f"Movie {new}") if len(src) else f"Movie {new}"
        title = _netflix_title(str(raw)).encode("iso-8859-1", "replace").decode("iso-8859-1")
        year = src[S.YEAR].get(old, np.nan) if S.YEAR in src else np.nan
        if new % 23 == 5:  # the real file has a few movies without a year
            year = np.nan
        ids.append(new)
        years.append(year)
        titles.append(title)
    with open(path, "w", encoding="iso-8859-1", newline="") as fh:
        for new, year, title in zip(ids, years, titles, strict=True):
            fh.write(f"{new},{'NULL' if np.isnan(year) else int(year)},{title}\n")
    return pd.DataFrame(
        {
            S.MOVIE_ID: np.array(ids, np.int64),
            S.TITLE: pd.Series(titles, dtype=object),
            S.YEAR: np.array(years, np.float32),
            S.GENRES: pd.Series([()] * len(ids), dtype=object),
        }
    )


def _write_probe(
    ratings: pd.DataFrame, fraction: float, rng: np.random.Generator, path: Path
) -> pd.DataFrame:
    """``probe.txt``: a random ``fraction`` of the training pairs, grouped by movie."""
    n = len(ratings)
    pick = np.sort(rng.choice(n, int(round(n * fraction)), replace=False)) if n else np.zeros(0, np.int64)
    movie = ratings[S.MOVIE_ID].to_numpy()[pick]  # already sorted by movie: ratings is in file order
    customer = ratings[S.USER_ID].to_numpy()[pick]
    data, offsets = _lines(_strings(customer))
    with open(path, "wb") as fh:
        _write_blocks(fh, movie, data, offsets, 0, len(movie))
    return pd.DataFrame({S.USER_ID: customer, S.MOVIE_ID: movie})


def _write_qualifying(ratings: pd.DataFrame, n: int, rng: np.random.Generator, path: Path) -> pd.DataFrame:
    """``qualifying.txt``: ``n`` (customer, movie) pairs absent from training, with dates, by movie."""
    users = _unique(ratings[S.USER_ID].to_numpy())
    movies = _unique(ratings[S.MOVIE_ID].to_numpy())
    seen = ratings[S.USER_ID].to_numpy() * (movies.max(initial=0) + 1) + ratings[S.MOVIE_ID].to_numpy()
    cand_u = rng.choice(users, 3 * n + 10) if len(users) else np.zeros(0, np.int64)
    cand_m = rng.choice(movies, 3 * n + 10) if len(movies) else np.zeros(0, np.int64)
    key = cand_u * (movies.max(initial=0) + 1) + cand_m
    fresh = ~pd.Series(key).isin(seen).to_numpy()  # hash-based: np.isin is slow with 10M+ values
    first = np.flatnonzero(~pd.Index(key).duplicated(keep="first"))
    keep = np.zeros(len(key), bool)
    keep[first] = True
    idx = np.flatnonzero(fresh & keep)[:n]
    cust, movie = cand_u[idx], cand_m[idx]
    ts = ratings[S.TIMESTAMP].to_numpy()
    lo, hi = (ts.min() // _DAY, ts.max() // _DAY) if len(ts) else (0, 0)
    day = rng.integers(lo, hi + 1, len(idx))
    order = np.argsort(movie, kind="stable")
    cust, movie, day = cust[order], movie[order], day[order]
    data, offsets = _lines(_strings(cust), ",", _date_strings(day))
    with open(path, "wb") as fh:
        _write_blocks(fh, movie, data, offsets, 0, len(movie))
    return pd.DataFrame({S.USER_ID: cust, S.MOVIE_ID: movie, S.TIMESTAMP: day * _DAY})


__all__ = [
    "DataFormatError",
    "NetflixFiles",
    "RATINGS_SCHEMA",
    "convert_ratings",
    "load_movie_titles",
    "load_netflix",
    "load_probe",
    "load_qualifying",
    "netflix_customer_ids",
    "rating_files",
    "write_netflix",
    "write_netflix_stream",
]
