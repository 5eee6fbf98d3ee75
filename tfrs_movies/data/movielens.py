"""MovieLens readers and writers: ML-100K, ML-1M and the CSV family (ML-20M/25M/latest), canonical schema.

Loaders read the files exactly as GroupLens publishes them (see ``FORMATS.md``) into a
:class:`tfrs_movies.schema.Dataset`. Writers do the reverse, so generated worlds can be written in the
real layouts, odd cases included, and every loader can be tested without the real (non-redistributable)
datasets.

Speed: ratings files (up to 25M lines) are read in blocks of whole lines by pandas' C reader with
explicit narrow dtypes. Only a block that reader refuses (or whose ratings are out of range) is re-checked
line by line, with vectorised Arrow string kernels, to name the exact line (1-based, header included)
that is wrong. CSV side files (movies, tags, links) go through Arrow's RFC 4180 reader, falling back to
the csv module with line tracking when a record is irregular; the small ``|``/``::`` side files
(``u.item``, ``users.dat``, ...) are always checked line by line.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from tfrs_movies import schema as S
from tfrs_movies.data.errors import BadLines, DataFormatError, MissingDataFileError

# --- vocabularies -------------------------------------------------------------------------------------

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
ML100K_OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive", "healthcare",
    "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer", "retired", "salesman",
    "scientist", "student", "technician", "writer",
)  # fmt: skip
ML1M_GENRES = ML100K_GENRES[1:]
# Index = the occupation code in users.dat.
ML1M_OCCUPATIONS = (
    "other or not specified", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student",
    "lawyer", "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
ML1M_AGE_BUCKETS = (1, 18, 25, 35, 45, 50, 56)
NO_GENRES = "(no genres listed)"
# The ML-20M/25M/latest genre names in their canonical (alphabetical, as in ML-1M) order.
ML_CSV_GENRES = tuple(sorted(("Children" if g == "Children's" else g) for g in ML1M_GENRES + ("IMAX",)))
CSV_DATASETS = ("ml-20m", "ml-25m", "ml-latest", "ml-latest-small")

RATINGS_CSV_HEADER = ("userId", "movieId", "rating", "timestamp")
MOVIES_CSV_HEADER = ("movieId", "title", "genres")
TAGS_CSV_HEADER = ("userId", "movieId", "tag", "timestamp")
LINKS_CSV_HEADER = ("movieId", "imdbId", "tmdbId")

LAYOUTS = ("ml-100k", "ml-1m", "csv")
_SEP = {"ml-100k": "\t", "ml-1m": "::", "csv": ","}
_SEP_NAME = {"\t": "tab", "::": "'::'", ",": "comma", "|": "'|'"}
_SCALE = {"ml-100k": (1.0, 5.0), "ml-1m": (1.0, 5.0), "csv": (0.5, 5.0)}
# Layouts that hold whole stars only: a rating like 3.5 there is a bad line (the real files have none).
_WHOLE_STARS = {"ml-100k": True, "ml-1m": True, "csv": False}
_ENCODING = {"ml-100k": "latin-1", "ml-1m": "latin-1", "csv": "utf-8"}
_RATING_LABELS = {
    "ml-100k": ("user id", "item id", "rating", "timestamp"),
    "ml-1m": ("UserID", "MovieID", "Rating", "Timestamp"),
    "csv": RATINGS_CSV_HEADER,
}

# Occupation mappings between the two MovieLens vocabularies (used by the writers, both directions).
_ML100K_TO_ML1M_OCCUPATION = {
    "administrator": 3, "artist": 2, "doctor": 6, "educator": 1, "engineer": 17, "entertainment": 2,
    "executive": 7, "healthcare": 6, "homemaker": 9, "lawyer": 11, "librarian": 1, "marketing": 14,
    "none": 19, "other": 0, "programmer": 12, "retired": 13, "salesman": 14, "scientist": 15, "student": 4,
    "technician": 17, "writer": 20,
}  # fmt: skip
_ML1M_TO_ML100K_OCCUPATION = dict(zip(ML1M_OCCUPATIONS, (
    "other", "educator", "artist", "administrator", "student", "other", "healthcare", "executive", "other",
    "homemaker", "student", "lawyer", "programmer", "retired", "marketing", "scientist", "other", "engineer",
    "other", "none", "writer",
), strict=True))  # fmt: skip

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE_RE = r"\s*(\d{1,2})-(" + "|".join(_MONTHS) + r")-(\d{4})\s*"
# A title's trailing "(1995)"; also "(2006-2007)" / "(2006– )" ranges of series, taking the first year.
_TITLE_YEAR_RE = r"\((\d{4})(?:\s*[-–]\s*(?:\d{4})?\s*)?\)\s*$"
_INT_RE = r"^[+-]?\d{1,18}$"  # matched against whitespace-trimmed text
_FLOAT_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_SURROGATE_RE = "[\udc80-\udcff]"  # bytes that did not decode, kept by errors="surrogateescape"
_CHUNK = 500_000
_BLOCK_BYTES = 8 << 20  # ratings are read in blocks of whole lines of about this size
_IMDB_URL = "http://us.imdb.com/M/title-exact?"


# --- bad-line bookkeeping -----------------------------------------------------------------------------


class _NeedLines(Exception):
    """The fast path found something wrong but cannot say on which line: re-read the slow way."""


class _Issues:
    """Collects bad rows of one chunk; ``flush`` reports them in file order (one per line) to BadLines."""

    def __init__(self, path: Path, bad: BadLines):
        self.path, self.bad = path, bad
        self._lines: list[np.ndarray] = []
        self._expected: list[str] = []
        self._got: list[object] = []

    def add(self, mask: np.ndarray | pd.Series, lines: np.ndarray | None, expected: str, got) -> None:
        """Record rows where ``mask`` is true; ``got`` is what was found, aligned with ``mask``."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        if lines is None:
            raise _NeedLines
        idx = np.flatnonzero(mask)
        if isinstance(got, pa.Array | pa.ChunkedArray):
            got_values = got.to_numpy(zero_copy_only=False)
        else:
            got_values = np.asarray(got, dtype=object)
        self._lines.append(np.asarray(lines)[idx])
        self._expected.extend([expected] * len(idx))
        self._got.extend(got_values[idx].tolist())

    def flush(self) -> np.ndarray:
        """Report (raise in "error" mode) and return the sorted bad line numbers."""
        if not self._lines:
            return np.empty(0, dtype=np.int64)
        lines = np.concatenate(self._lines)
        order = np.argsort(lines, kind="stable")  # stable: a line's first-found problem is reported
        unique_lines, first = np.unique(lines[order], return_index=True)
        for line, i in zip(unique_lines.tolist(), order[first].tolist(), strict=True):
            got = self._got[i]
            self.bad.bad(self.path, int(line), self._expected[i], None if got is None else str(got))
        self._lines, self._expected, self._got = [], [], []
        return unique_lines


def _mask(values) -> np.ndarray:
    """A writable bool array (pandas' copy-on-write hands out read-only views)."""
    return np.array(values, dtype=bool)


def _drop_bad(frame: pd.DataFrame, lines: np.ndarray | None, dropped: np.ndarray):
    """Remove the rows whose line numbers were reported as bad."""
    if not dropped.size or lines is None:
        return frame, lines
    keep = ~np.isin(lines, dropped)
    return frame.loc[keep].reset_index(drop=True), lines[keep]


# --- field conversion (vectorised, on str columns of one chunk) ----------------------------------------


def _arrow_text(col: pd.Series | pa.Array) -> pa.Array:
    """The column as one Arrow string array with surrounding whitespace trimmed (Arrow's regex and casts
    are many times faster than pandas' per-element string methods)."""
    arr = (
        col
        if isinstance(col, pa.Array | pa.ChunkedArray)
        else pa.array(col, type=pa.string(), from_pandas=True)
    )
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.utf8_trim_whitespace(arr.fill_null(""))


def _matches(arr: pa.Array, pattern: str) -> np.ndarray:
    return np.array(pc.match_substring_regex(arr, pattern).to_numpy(zero_copy_only=False), dtype=bool)


def _ints(col: pd.Series | pa.Array, lines: np.ndarray | None, issues: _Issues, what: str) -> np.ndarray:
    """Parse integers; rows that are not integers are recorded as issues (and get 0)."""
    arr = _arrow_text(col)
    ok = _matches(arr, _INT_RE)
    issues.add(~ok, lines, f"{what} to be an integer", col)
    out = np.zeros(len(col), dtype=np.int64)
    if ok.any():
        digits = pc.replace_substring_regex(pc.filter(arr, pa.array(ok)), r"^\+", "")
        out[ok] = pc.cast(digits, pa.int64()).to_numpy()
    return out


def _floats(
    col: pd.Series | pa.Array,
    lines: np.ndarray | None,
    issues: _Issues,
    what: str,
    scale: tuple[float, float] | None = None,
    allow_empty: bool = False,
    whole: bool = False,
) -> np.ndarray:
    """Parse numbers (optionally within ``scale``, whole numbers only; empty → NaN when allowed)."""
    arr = _arrow_text(col)
    numeric = _matches(arr, _FLOAT_RE)
    values = np.full(len(col), np.nan)
    if numeric.any():
        text = pc.filter(arr, pa.array(numeric))
        try:
            values[numeric] = pc.cast(text, pa.float64()).to_numpy()
        except pa.ArrowInvalid:  # e.g. "1e999": let pandas make it inf, which fails the check below
            values[numeric] = pd.to_numeric(pd.Series(text.to_pylist()), errors="coerce").to_numpy(float)
    ok = numeric & np.isfinite(values)
    expected = f"{what} to be a number"
    if scale is not None:
        ok &= (values >= scale[0]) & (values <= scale[1])
        expected += f" from {scale[0]:g} to {scale[1]:g}"
    if whole:
        ok &= values == np.round(values)
        expected += " in whole steps (this layout holds whole stars)"
    if allow_empty:
        ok |= _matches(arr, "^$")
        expected += " or empty"
    issues.add(~ok, lines, expected, col)
    return values


def _title_years(titles: pd.Series) -> np.ndarray:
    """The year in a title's trailing "(YYYY)", NaN when there is none."""
    years = titles.str.extract(_TITLE_YEAR_RE, expand=False)
    return pd.to_numeric(years, errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)


def _text(col: pd.Series) -> pd.Series:
    """Stripped text in pandas' string dtype (the canonical frames' text type)."""
    return col.str.strip().astype("str").reset_index(drop=True)


# --- the two line readers -----------------------------------------------------------------------------


def _line_chunks(path: Path, encoding: str) -> Iterator[tuple[np.ndarray, pd.Series]]:
    """Yield (1-based line numbers, lines without their newline) in chunks of ``_CHUNK`` lines."""
    # surrogateescape: undecodable bytes become a bad line rather than a crash of the whole read.
    with open(path, encoding=encoding, errors="surrogateescape", newline=None) as fh:
        start = 1
        while True:
            lines = list(itertools.islice(fh, _CHUNK))
            if not lines:
                return
            raw = pd.Series(lines, dtype=object).str.rstrip("\r\n")
            yield np.arange(start, start + len(lines), dtype=np.int64), raw
            start += len(lines)


def _split_chunk(
    raw: pd.Series,
    lines: np.ndarray,
    *,
    sep: str,
    labels: tuple[str, ...],
    issues: _Issues,
    convert: Callable[[pd.DataFrame, np.ndarray, _Issues], pd.DataFrame],
    skip_first: bool = False,
    check_decoding: str | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Split one chunk of lines (``raw``, numbered ``lines``) into fields, check and convert them.

    Blank lines are ignored (they carry nothing); ``skip_first`` drops a header checked elsewhere;
    ``check_decoding`` (the encoding's name) flags lines holding bytes that did not decode.
    Bad lines are reported (raised in "error" mode) and dropped; returns the typed rows and their lines.
    """
    n = len(labels)
    keep = _mask(raw.str.strip() != "")
    if skip_first and len(keep):
        keep[0] = False
    if check_decoding:
        undecodable = keep & _mask(raw.str.contains(_SURROGATE_RE, regex=True))
        issues.add(undecodable, lines, f"{check_decoding} text", raw)
        keep &= ~undecodable
    wrong = keep & ((raw.str.count(re.escape(sep)) + 1).to_numpy() != n)
    issues.add(
        wrong, lines, f"{n} fields separated by {_SEP_NAME.get(sep, repr(sep))} ({', '.join(labels)})", raw
    )
    keep &= ~wrong
    if keep.any():
        parts = raw[keep].str.split(sep, n=n - 1, expand=True, regex=False).reset_index(drop=True)
        parts.columns = range(n)
    else:
        parts = pd.DataFrame({i: pd.Series([], dtype=object) for i in range(n)})
    kept_lines = lines[keep]
    typed = convert(parts, kept_lines, issues)
    return _drop_bad(typed, kept_lines, issues.flush())


def _read_split(
    path: Path,
    *,
    sep: str,
    labels: tuple[str, ...],
    encoding: str,
    bad: BadLines,
    convert: Callable[[pd.DataFrame, np.ndarray, _Issues], pd.DataFrame],
) -> tuple[pd.DataFrame, np.ndarray]:
    """Read an unquoted ``sep``-separated file with ``len(labels)`` fields a line, checking every line.

    ``convert(parts, lines, issues)`` turns the str fields of one chunk into typed columns, recording bad
    values. Returns the typed frame and its line numbers.
    """
    issues = _Issues(path, bad)
    frames, all_lines = [], []
    for lines, raw in _line_chunks(path, encoding):
        typed, kept = _split_chunk(
            raw, lines, sep=sep, labels=labels, issues=issues, convert=convert, check_decoding=encoding
        )
        frames.append(typed)
        all_lines.append(kept)
    if not frames:
        empty = pd.DataFrame({i: pd.Series([], dtype=object) for i in range(len(labels))})
        return convert(empty, np.empty(0, dtype=np.int64), issues), np.empty(0, dtype=np.int64)
    return pd.concat(frames, ignore_index=True), np.concatenate(all_lines)


def _check_header(path: Path, expected: tuple[str, ...], encoding: str, bad: BadLines) -> None:
    """Line 1 of a CSV must be the format's header."""
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        first = fh.readline()
    fields = next(csv.reader([first.lstrip("\ufeff")]), [])
    if tuple(f.strip() for f in fields) != expected:
        bad.bad(path, 1, f"the header {','.join(expected)}", first.rstrip("\r\n"))


def _csv_chunks_fast(path: Path, n: int) -> Iterator[tuple[pd.DataFrame, None]]:
    """All CSV records (header skipped) as text, via Arrow's multi-threaded RFC 4180 reader.

    Any irregularity (a wrong field count, invalid UTF-8) raises _NeedLines: the slow reader then names
    the lines.
    """
    names = [f"f{i}" for i in range(n)]
    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(skip_rows=1, column_names=names),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _NeedLines from exc
    frame = pd.DataFrame({i: pd.Series(table.column(i).to_pandas(), dtype="str") for i in range(n)})
    yield frame, None


def _csv_chunks_slow(
    path: Path, labels: tuple[str, ...], issues: _Issues
) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """CSV records with the line each starts on; wrong field counts and undecodable bytes are issues."""
    n = len(labels)
    expected = f"{n} comma-separated fields ({','.join(labels)})"
    surrogate = re.compile(_SURROGATE_RE)
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh)
        prev = 0
        while True:
            rows, starts = [], []
            try:
                for row in reader:
                    start, prev = prev + 1, reader.line_num
                    if start == 1 or not row:
                        continue  # the header (checked separately), or a blank line
                    rows.append(row)
                    starts.append(start)
                    if len(rows) == _CHUNK:
                        break
            except csv.Error as exc:
                raise DataFormatError(path, prev + 1, f"valid CSV ({exc})") from exc
            if not rows:
                return
            lines = np.asarray(starts, dtype=np.int64)
            joined = np.array([",".join(r) for r in rows], dtype=object)
            undecodable = np.array([bool(surrogate.search(j)) for j in joined])
            issues.add(undecodable, lines, "utf-8 text", joined)
            wrong = ~undecodable & np.array([len(r) != n for r in rows])
            issues.add(wrong, lines, expected, joined)
            good = ~(undecodable | wrong)
            frame = pd.DataFrame(
                [r for r, g in zip(rows, good, strict=True) if g], columns=range(n), dtype=object
            )
            yield frame, lines[good]


def _read_csv_records(
    path: Path,
    labels: tuple[str, ...],
    bad: BadLines,
    convert: Callable[[pd.DataFrame, np.ndarray | None, _Issues], pd.DataFrame],
    unique: tuple[str, str] | None = None,
) -> pd.DataFrame:
    """Read an RFC 4180 CSV with a header: fast when clean, re-read with line numbers when not.

    ``unique`` = (column, what): a value of that column seen on an earlier line makes the line bad.
    """
    _check_header(path, labels, "utf-8", bad)
    for slow in (False, True):
        issues = _Issues(path, bad)
        try:
            frames, all_lines = [], []
            chunks = _csv_chunks_slow(path, labels, issues) if slow else _csv_chunks_fast(path, len(labels))
            for parts, lines in chunks:
                typed = convert(parts.reset_index(drop=True), lines, issues)
                typed, lines = _drop_bad(typed, lines, issues.flush())
                frames.append(typed)
                all_lines.append(lines)
            if not frames:
                empty = pd.DataFrame({i: pd.Series([], dtype=object) for i in range(len(labels))})
                return convert(empty, np.empty(0, dtype=np.int64), issues)
            frame = pd.concat(frames, ignore_index=True)
            line_numbers = np.concatenate(all_lines) if slow else None
            if unique is not None:
                frame, line_numbers = _drop_duplicates(frame, line_numbers, unique, issues)
            return frame
        except _NeedLines:
            continue
    raise AssertionError("unreachable: the slow path never raises _NeedLines")


def _drop_duplicates(
    frame: pd.DataFrame, lines: np.ndarray | None, unique: tuple[str, str], issues: _Issues
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Lines repeating an id already seen are bad (the first one wins)."""
    column, what = unique
    dup = frame[column].duplicated().to_numpy()
    issues.add(dup, lines, f"{what} not seen on an earlier line", frame[column].astype(str))
    return _drop_bad(frame, lines, issues.flush())


def _require(path: Path, fmt: str) -> Path:
    if not path.is_file():
        raise MissingDataFileError(path, fmt)
    return path


# --- ratings files ------------------------------------------------------------------------------------


def ratings_layout(name: str) -> str:
    """The ratings-file layout of a dataset: "ml-100k", "ml-1m", or "csv" (everything else)."""
    if name in ("ml-100k", "ml-1m"):
        return name
    if name in S.DATASET_NAMES:
        return "csv"  # the CSV layout holds half stars and any ids, so it suits every other source
    raise ValueError(f"unknown dataset name {name!r}; expected one of {S.DATASET_NAMES}")


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def _byte_blocks(path: Path, size: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield (number of the block's first line, whole lines of about ``size`` bytes)."""
    size = size or _BLOCK_BYTES
    with open(path, "rb") as fh:
        first_line, rest = 1, b""
        while True:
            data = fh.read(size)
            buf = rest + data
            if not data:
                if buf:
                    yield first_line, buf  # a last line without its newline
                return
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                rest = buf  # one very long line: keep reading
                continue
            block, rest = buf[:cut], buf[cut:]
            yield first_line, block
            first_line += block.count(b"\n")


def _ratings_block_fast(block: bytes, layout: str, header: bool) -> pd.DataFrame | None:
    """The C reader with narrow dtypes; None when anything is off (then the checked path runs)."""
    sep = _SEP[layout]
    if len(sep) > 1:
        # pandas needs its slow python engine for multi-character separators; a good ratings line holds
        # no tab, so swapping "::" for one keeps the C reader (a bad line still fails, checked below).
        block, sep = block.replace(sep.encode(), b"\t"), "\t"
    dtypes = {S.USER_ID: np.int32, S.MOVIE_ID: np.int32, S.RATING: np.float32, S.TIMESTAMP: np.int64}
    try:
        frame = pd.read_csv(
            io.BytesIO(block),
            sep=sep,
            header=None,
            names=list(S.RATING_COLUMNS),
            skiprows=1 if header else 0,
            dtype=dtypes,
            engine="c",
            encoding=_ENCODING[layout],
        )
    except (ValueError, OverflowError):  # ParserError, EmptyDataError, UnicodeDecodeError are ValueErrors
        return None
    lo, hi = _SCALE[layout]
    rating = frame[S.RATING].to_numpy()
    if not ((rating >= lo) & (rating <= hi)).all():  # NaN (an empty field) fails too
        return None
    if _WHOLE_STARS[layout] and not (rating == np.round(rating)).all():
        return None
    return frame


def _ratings_block_slow(
    block: bytes, first_line: int, layout: str, issues: _Issues, header: bool
) -> pd.DataFrame:
    """Check every line of a block that the fast reader refused, naming the bad ones (all in Arrow)."""
    # "replace": an undecodable byte makes its numeric field fail, so the line is reported as bad.
    texts = block.decode(_ENCODING[layout], errors="replace").split("\n")
    if texts and texts[-1] == "":
        texts.pop()  # the block's final newline
    raw = pc.utf8_rtrim(pa.array(texts, type=pa.string()), characters="\r")
    lines = np.arange(first_line, first_line + len(texts), dtype=np.int64)
    labels = _RATING_LABELS[layout]
    keep = ~_matches(pc.utf8_trim_whitespace(raw), "^$")  # blank lines carry nothing
    if header and len(keep):
        keep[0] = False  # checked by _check_header
    fields = pc.split_pattern(raw, _SEP[layout])
    wrong = keep & (pc.list_value_length(fields).to_numpy(zero_copy_only=False) != len(labels))
    sep_name = _SEP_NAME[_SEP[layout]]
    issues.add(wrong, lines, f"4 fields separated by {sep_name} ({', '.join(labels)})", raw)
    keep &= ~wrong
    parts = [pc.list_element(pc.filter(fields, pa.array(keep)), i) for i in range(len(labels))]
    kept = lines[keep]
    typed = pd.DataFrame(
        {
            S.USER_ID: _ints(parts[0], kept, issues, f"field 1 ({labels[0]})"),
            S.MOVIE_ID: _ints(parts[1], kept, issues, f"field 2 ({labels[1]})"),
            S.RATING: _floats(parts[2], kept, issues, f"field 3 ({labels[2]})", _SCALE[layout],
                              whole=_WHOLE_STARS[layout]),  # fmt: skip
            S.TIMESTAMP: _ints(parts[3], kept, issues, f"field 4 ({labels[3]})"),
        }
    )
    typed, _ = _drop_bad(typed, kept, issues.flush())
    return typed


def _read_ratings(path: Path, layout: str, bad: BadLines) -> pd.DataFrame:
    """Read a ratings file block by block: C speed for clean blocks, line-checked for the others."""
    _check_layout(layout)
    path = _require(Path(path), layout)
    has_header = layout == "csv"
    if has_header:
        _check_header(path, RATINGS_CSV_HEADER, "utf-8", bad)
    issues = _Issues(path, bad)
    frames = []
    for first_line, block in _byte_blocks(path):
        header = has_header and first_line == 1
        frame = _ratings_block_fast(block, layout, header)
        if frame is None:
            frame = _ratings_block_slow(block, first_line, layout, issues, header)
        frames.append(frame)
    if not frames:
        return S.canonical_ratings(pd.DataFrame({c: [] for c in S.RATING_COLUMNS}))
    # Narrow blocks are joined first and widened once, to keep the peak memory low.
    return S.canonical_ratings(pd.concat(frames, ignore_index=True))


def read_ratings_file(path: str | Path, layout: str, on_bad_lines: str = "error") -> pd.DataFrame:
    """Read one ratings file (``u.data``/``u1.base``, ``ratings.dat`` or ``ratings.csv`` layout).

    Returns the canonical ratings frame. Under ``on_bad_lines="skip"`` the skipped-line report is in
    ``frame.attrs["report"]``.
    """
    bad = BadLines(on_bad_lines)
    frame = _read_ratings(Path(path), layout, bad)
    if bad.total:
        frame.attrs["report"] = bad.report()
    return frame


def write_ratings_file(frame: pd.DataFrame, path: str | Path, layout: str) -> None:
    """Write canonical ratings in a layout, so any tool reading that format reads the identical rows.

    "ml-100k": tab-separated, no header; "ml-1m": ``::``-separated; "csv": header
    ``userId,movieId,rating,timestamp``, ratings like ``4.0``/``3.5``. Integer layouts refuse
    non-integer ratings (the real formats cannot hold them). Missing parent folders are created.
    """
    _check_layout(layout)
    out = S.canonical_ratings(frame)
    rating = out[S.RATING].to_numpy(dtype=np.float64)
    halves = np.round(rating * 2)
    if layout != "csv" and not np.all(rating == np.round(rating)):
        raise ValueError(f"the {layout} layout holds whole-star ratings only; use layout 'csv'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        if layout == "csv":
            fh.write((",".join(RATINGS_CSV_HEADER) + "\n").encode())
        for start in range(0, len(out), _CHUNK * 4):
            part = out.iloc[start : start + _CHUNK * 4]
            if layout != "csv" or np.all(rating * 2 == halves):
                _write_rating_lines(part, fh, layout)
            else:  # off-grid ratings (not real MovieLens): pandas keeps their full precision
                fh.write(part.to_csv(header=False, index=False, lineterminator="\n").encode())


def _write_rating_lines(part: pd.DataFrame, fh, layout: str) -> None:
    """Format ratings lines column-wise with Arrow (several times faster than ``DataFrame.to_csv``)."""

    def text(values: np.ndarray):
        return pc.cast(pa.array(values), pa.string())

    rating = part[S.RATING].to_numpy(dtype=np.float64)
    if layout == "csv":
        tenths = np.round(rating * 10).astype(np.int64)  # "4.0", "3.5" as in the real files
        rating_text = pc.binary_join_element_wise(text(tenths // 10), text(tenths % 10), ".")
    else:
        rating_text = text(rating.astype(np.int64))
    lines = pc.binary_join_element_wise(
        text(part[S.USER_ID].to_numpy()), text(part[S.MOVIE_ID].to_numpy()), rating_text,
        text(part[S.TIMESTAMP].to_numpy()), _SEP[layout],
    )  # fmt: skip
    # One string column, delimiter "|" (never in a ratings line), no quoting: each line written as is.
    options = pcsv.WriteOptions(include_header=False, delimiter="|", quoting_style="none")
    pcsv.write_csv(pa.table({"line": lines}), fh, options)


# --- ML-100K ------------------------------------------------------------------------------------------


def _read_ml100k_genres(path: Path, bad: BadLines) -> tuple[str, ...]:
    """u.genre: ``name|index`` lines (then a blank line), ordered by index."""

    def convert(parts: pd.DataFrame, lines: np.ndarray, issues: _Issues) -> pd.DataFrame:
        return pd.DataFrame({0: _text(parts[0]), 1: _ints(parts[1], lines, issues, "field 2 (genre index)")})

    frame, _ = _read_split(
        path, sep="|", labels=("genre", "index"), encoding="latin-1", bad=bad, convert=convert
    )
    return tuple(frame.sort_values(1, kind="stable")[0].tolist())


def _read_ml100k_items(path: Path, genres: tuple[str, ...], bad: BadLines) -> pd.DataFrame:
    labels = ("movie id", "movie title", "release date", "video release date", "IMDb URL") + genres

    def convert(parts: pd.DataFrame, lines: np.ndarray, issues: _Issues) -> pd.DataFrame:
        movie_id = _ints(parts[0], lines, issues, "field 1 (movie id)")
        date = parts[2].str.strip()
        date_ok = ((date == "") | date.str.fullmatch(_DATE_RE).fillna(False)).to_numpy(dtype=bool)
        issues.add(~date_ok, lines, "field 3 (release date) like 01-Jan-1995 or empty", parts[2])
        flags = parts.iloc[:, 5:].apply(lambda c: c.str.strip()).to_numpy(dtype=object)
        flags_ok = np.isin(flags, ["0", "1"]).all(axis=1)
        issues.add(
            ~flags_ok, lines, f"fields 6-{len(labels)} (genre flags) to be 0 or 1",
            ["|".join(map(str, row)) for row in flags],
        )  # fmt: skip
        title = _text(parts[1])
        # The title's "(1995)" first (it is the film's year), else the release date's year.
        year = _title_years(title)
        date_year = pd.to_numeric(date.str.extract(_DATE_RE, expand=True)[2], errors="coerce")
        year = np.where(np.isnan(year), date_year.to_numpy(dtype=np.float32, na_value=np.nan), year)
        return pd.DataFrame(
            {
                S.MOVIE_ID: movie_id,
                S.TITLE: title,
                S.YEAR: year.astype(np.float32),
                S.GENRES: pd.Series(
                    [tuple(g for g, f in zip(genres, row, strict=True) if f == "1") for row in flags],
                    dtype=object,
                ),
            }
        )

    frame, lines = _read_split(path, sep="|", labels=labels, encoding="latin-1", bad=bad, convert=convert)
    frame, _ = _drop_duplicates(frame, lines, (S.MOVIE_ID, "a movie id"), _Issues(path, bad))
    return frame


def _read_ml100k_users(path: Path, bad: BadLines) -> pd.DataFrame:
    labels = ("user id", "age", "gender", "occupation", "zip code")

    def convert(parts: pd.DataFrame, lines: np.ndarray, issues: _Issues) -> pd.DataFrame:
        return pd.DataFrame(
            {
                S.USER_ID: _ints(parts[0], lines, issues, "field 1 (user id)"),
                S.AGE: _floats(parts[1], lines, issues, "field 2 (age)", allow_empty=True).astype(np.float32),
                S.GENDER: _text(parts[2]),
                S.OCCUPATION: _text(parts[3]),
                S.ZIP_CODE: _text(parts[4]),  # text: "T8H1N"
            }
        )

    frame, lines = _read_split(path, sep="|", labels=labels, encoding="latin-1", bad=bad, convert=convert)
    frame, _ = _drop_duplicates(frame, lines, (S.USER_ID, "a user id"), _Issues(path, bad))
    return frame


def load_ml100k(data_dir: str | Path, on_bad_lines: str = "error", ratings_file: str = "u.data") -> S.Dataset:
    """Load MovieLens 100K (``u.data``, ``u.item``, ``u.user``, optional ``u.genre``).

    ``ratings_file`` picks another ratings file of the same layout, e.g. ``u1.base``. Genre vocabulary:
    ``u.genre`` when present, else the standard 19 (``unknown`` first). Titles are stripped.
    """
    d = Path(data_dir)
    bad = BadLines(on_bad_lines)
    ratings_path = _require(d / ratings_file, "ml-100k")
    item_path = _require(d / "u.item", "ml-100k")
    user_path = _require(d / "u.user", "ml-100k")
    genre_path = d / "u.genre"
    genres = _read_ml100k_genres(genre_path, bad) if genre_path.is_file() else ML100K_GENRES
    ratings = _read_ratings(ratings_path, "ml-100k", bad)
    movies = _read_ml100k_items(item_path, genres, bad)
    users = _read_ml100k_users(user_path, bad)
    return S.Dataset(
        name="ml-100k", ratings=ratings, movies=movies, users=users, rating_scale=(1.0, 5.0), genres=genres,
        report=bad.report(),
    )  # fmt: skip


# --- ML-1M --------------------------------------------------------------------------------------------


def _read_ml1m_users(path: Path, bad: BadLines) -> pd.DataFrame:
    labels = ("UserID", "Gender", "Age", "Occupation", "Zip-code")
    names = np.array(ML1M_OCCUPATIONS, dtype=object)

    def convert(parts: pd.DataFrame, lines: np.ndarray, issues: _Issues) -> pd.DataFrame:
        code = _ints(parts[3], lines, issues, "field 4 (Occupation)")
        in_range = (code >= 0) & (code < len(names))
        issues.add(~in_range, lines, f"field 4 (Occupation) from 0 to {len(names) - 1}", parts[3])
        return pd.DataFrame(
            {
                S.USER_ID: _ints(parts[0], lines, issues, "field 1 (UserID)"),
                S.AGE: _ints(parts[2], lines, issues, "field 3 (Age)").astype(np.float32),  # bucket code
                S.GENDER: _text(parts[1]),
                S.OCCUPATION: pd.Series(names[np.where(in_range, code, 0)], dtype="str"),
                S.ZIP_CODE: _text(parts[4]),
            }
        )

    frame, lines = _read_split(path, sep="::", labels=labels, encoding="latin-1", bad=bad, convert=convert)
    frame, _ = _drop_duplicates(frame, lines, (S.USER_ID, "a UserID"), _Issues(path, bad))
    return frame.loc[:, list(S.USER_COLUMNS)]


def _split_genres(col: pd.Series) -> list[tuple[str, ...]]:
    """``A|B`` → ("A", "B"); empty or ``(no genres listed)`` → ()."""
    return [() if g in ("", NO_GENRES) else tuple(x.strip() for x in g.split("|") if x.strip()) for g in col]


def _read_ml1m_movies(path: Path, bad: BadLines) -> pd.DataFrame:
    labels = ("MovieID", "Title", "Genres")

    def convert(parts: pd.DataFrame, lines: np.ndarray, issues: _Issues) -> pd.DataFrame:
        title = _text(parts[1])
        return pd.DataFrame(
            {
                S.MOVIE_ID: _ints(parts[0], lines, issues, "field 1 (MovieID)"),
                S.TITLE: title,
                S.YEAR: _title_years(title),
                S.GENRES: pd.Series(_split_genres(parts[2].str.strip()), dtype=object),
            }
        )

    frame, lines = _read_split(path, sep="::", labels=labels, encoding="latin-1", bad=bad, convert=convert)
    frame, _ = _drop_duplicates(frame, lines, (S.MOVIE_ID, "a MovieID"), _Issues(path, bad))
    return frame


def _vocabulary(genres: pd.Series, canonical: tuple[str, ...]) -> tuple[str, ...]:
    """The genres that occur, in the canonical order, unexpected names after them alphabetically."""
    seen = {g for gs in genres for g in gs}
    return tuple(g for g in canonical if g in seen) + tuple(sorted(seen - set(canonical)))


def load_ml1m(data_dir: str | Path, on_bad_lines: str = "error") -> S.Dataset:
    """Load MovieLens 1M (``ratings.dat``, ``users.dat``, ``movies.dat``; ``::``, ISO-8859-1).

    Age keeps the bucket code (1, 18, ..., 56); occupation codes become the ML-1M names
    (:data:`ML1M_OCCUPATIONS`); the genre vocabulary is the 18 ML-1M names (plus any unexpected ones).
    """
    d = Path(data_dir)
    bad = BadLines(on_bad_lines)
    ratings_path = _require(d / "ratings.dat", "ml-1m")
    users_path = _require(d / "users.dat", "ml-1m")
    movies_path = _require(d / "movies.dat", "ml-1m")
    ratings = _read_ratings(ratings_path, "ml-1m", bad)
    users = _read_ml1m_users(users_path, bad)
    movies = _read_ml1m_movies(movies_path, bad)
    extra = tuple(g for g in _vocabulary(movies[S.GENRES], ML1M_GENRES) if g not in ML1M_GENRES)
    return S.Dataset(
        name="ml-1m", ratings=ratings, movies=movies, users=users, rating_scale=(1.0, 5.0),
        genres=ML1M_GENRES + extra, report=bad.report(),
    )  # fmt: skip


# --- ML-20M / 25M / latest (CSV) ----------------------------------------------------------------------


def _read_csv_movies(path: Path, bad: BadLines) -> pd.DataFrame:
    def convert(parts: pd.DataFrame, lines: np.ndarray | None, issues: _Issues) -> pd.DataFrame:
        title = _text(parts[1])  # some titles carry extra spaces
        return pd.DataFrame(
            {
                S.MOVIE_ID: _ints(parts[0], lines, issues, "field 1 (movieId)"),
                S.TITLE: title,
                S.YEAR: _title_years(title),  # NaN for titles without a year
                S.GENRES: pd.Series(_split_genres(parts[2].str.strip()), dtype=object),
            }
        )

    return _read_csv_records(path, MOVIES_CSV_HEADER, bad, convert, unique=(S.MOVIE_ID, "a movieId"))


def _read_csv_tags(path: Path, bad: BadLines) -> pd.Series:
    """Per movie id, the distinct tags in order of first appearance."""

    def convert(parts: pd.DataFrame, lines: np.ndarray | None, issues: _Issues) -> pd.DataFrame:
        _ints(parts[0], lines, issues, "field 1 (userId)")
        _ints(parts[3], lines, issues, "field 4 (timestamp)")
        return pd.DataFrame(
            {S.MOVIE_ID: _ints(parts[1], lines, issues, "field 2 (movieId)"), S.TAGS: _text(parts[2])}
        )

    tags = _read_csv_records(path, TAGS_CSV_HEADER, bad, convert)
    tags = tags.loc[tags[S.TAGS] != ""].drop_duplicates()
    # Group by hand: a stable sort keeps first-appearance order, and is far faster than agg(tuple).
    movie = tags[S.MOVIE_ID].to_numpy()
    order = np.argsort(movie, kind="stable")
    values = tags[S.TAGS].to_numpy(dtype=object)[order]
    ids, starts = np.unique(movie[order], return_index=True)
    groups = [tuple(g) for g in np.split(values, starts[1:])] if len(ids) else []
    return pd.Series(groups, index=ids, dtype=object)


def _read_csv_links(path: Path, bad: BadLines) -> pd.Series:
    """Per movie id, the IMDb id as "tt" + at least 7 digits ("" when the file has none)."""

    def convert(parts: pd.DataFrame, lines: np.ndarray | None, issues: _Issues) -> pd.DataFrame:
        imdb = parts[1].str.strip()
        imdb_ok = (imdb == "") | imdb.str.fullmatch(r"\d{1,9}").fillna(False)
        issues.add(~imdb_ok.to_numpy(dtype=bool), lines, "field 2 (imdbId) to be digits", parts[1])
        tmdb = parts[2].str.strip()
        tmdb_ok = (tmdb == "") | tmdb.str.fullmatch(r"\d{1,12}").fillna(False)
        issues.add(~tmdb_ok.to_numpy(dtype=bool), lines, "field 3 (tmdbId) to be digits or empty", parts[2])
        # Kept as text: int-parsing would lose the zero padding ("0114709").
        imdb_id = np.where(imdb == "", "", "tt" + imdb.str.zfill(7))
        return pd.DataFrame(
            {
                S.MOVIE_ID: _ints(parts[0], lines, issues, "field 1 (movieId)"),
                S.IMDB_ID: pd.Series(imdb_id, dtype="str"),
            }
        )

    links = _read_csv_records(path, LINKS_CSV_HEADER, bad, convert, unique=(S.MOVIE_ID, "a movieId"))
    return links.set_index(S.MOVIE_ID)[S.IMDB_ID]


def load_ml_csv(data_dir: str | Path, name: str = "ml-25m", on_bad_lines: str = "error") -> S.Dataset:
    """Load a CSV MovieLens release (ml-25m, ml-20m, ml-latest, ml-latest-small).

    ``ratings.csv`` and ``movies.csv`` are required; ``tags.csv`` adds a tags column (distinct tags per
    movie), ``links.csv`` an imdb_id column ("tt0114709"). ``(no genres listed)`` becomes ``()``; the
    vocabulary is the genres that occur, in :data:`ML_CSV_GENRES` order. There is no user file.
    """
    d = Path(data_dir)
    bad = BadLines(on_bad_lines)
    ratings_path = _require(d / "ratings.csv", name)
    movies_path = _require(d / "movies.csv", name)
    ratings = _read_ratings(ratings_path, "csv", bad)
    movies = _read_csv_movies(movies_path, bad)
    if (d / "tags.csv").is_file():
        tags = _read_csv_tags(d / "tags.csv", bad)
        found = movies[S.MOVIE_ID].map(tags)
        movies[S.TAGS] = pd.Series([t if isinstance(t, tuple) else () for t in found], dtype=object)
    if (d / "links.csv").is_file():
        links = _read_csv_links(d / "links.csv", bad)
        movies[S.IMDB_ID] = movies[S.MOVIE_ID].map(links).fillna("").astype("str")
    return S.Dataset(
        name=name, ratings=ratings, movies=movies, users=S.empty_users(), rating_scale=(0.5, 5.0),
        genres=_vocabulary(movies[S.GENRES], ML_CSV_GENRES), report=bad.report(),
    )  # fmt: skip


# --- writers ------------------------------------------------------------------------------------------


def _whole_star_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    """ML-100K/1M hold whole stars 1..5: half stars round up (0.5 → 1, 3.5 → 4)."""
    out = S.canonical_ratings(ratings)
    out[S.RATING] = np.clip(np.ceil(out[S.RATING].to_numpy()), 1, 5).astype(np.float32)
    return out


def _users_for_writing(dataset: S.Dataset) -> pd.DataFrame:
    """Every user of the users frame or the ratings; unknown fields get fixed plausible defaults."""
    users = dataset.users.drop_duplicates(S.USER_ID).set_index(S.USER_ID)
    ids = np.union1d(users.index.to_numpy(dtype=np.int64), dataset.ratings[S.USER_ID].unique())
    users = users.reindex(ids)
    age = users[S.AGE].to_numpy(dtype=np.float64, na_value=np.nan)
    gender = users[S.GENDER].fillna("").astype(str)
    return pd.DataFrame(
        {
            S.USER_ID: ids,
            S.AGE: np.where(np.isfinite(age), np.round(age), 25).astype(np.int64),
            S.GENDER: np.where(gender.isin(["M", "F"]), gender, "M"),
            S.OCCUPATION: users[S.OCCUPATION].fillna("other").astype(str).to_numpy(),
            S.ZIP_CODE: users[S.ZIP_CODE].fillna("00000").astype(str).to_numpy(),
        }
    )


def _clean(text: str, sep: str) -> str:
    """Text safe inside an unquoted ``sep``-separated line."""
    return str(text).replace(sep, "/").replace("\n", " ").replace("\r", " ")


def _write_lines(path: Path, lines: list[str], encoding: str) -> None:
    # errors="replace": a character latin-1 cannot hold becomes "?", as re-encoding tools do.
    with open(path, "w", encoding=encoding, errors="replace", newline="") as fh:
        fh.writelines(line + "\n" for line in lines)


def _next_movie_id(movies: pd.DataFrame, ratings: pd.DataFrame) -> int:
    """An id after every movie id in use, for the extra odd-case movies."""
    ids = np.concatenate([movies[S.MOVIE_ID].to_numpy(), ratings[S.MOVIE_ID].to_numpy()])
    return int(ids.max(initial=0)) + 1


def _has_title_year(title: str) -> bool:
    return re.search(_TITLE_YEAR_RE, title) is not None


def write_ml100k(dataset: S.Dataset, out_dir: str | Path, *, odd_cases: bool = True, seed: int = 0) -> None:
    """Write a dataset as MovieLens 100K: u.data, u.item, u.user, u.genre, u.occupation, u.info, u1-u5, ua/ub.

    Mappings: half stars round up; genres outside the 19 ML-100K names are dropped ("Children" →
    "Children's"), a movie left with none gets ``unknown``; occupations outside the 21 ML-100K names
    are mapped from ML-1M names or become ``other``. Odd cases of the real files (``odd_cases``): some
    release dates empty (only where the title has its year, so the year survives), a few IMDb URLs empty,
    and one extra unrated movie like the real id 267 (``N|unknown||||1|0|...``, id = largest + 1).
    Folds: u1..u5.test partition the ratings 80/20; ua/ub.test hold 10 ratings per user each (fewer for
    users with under 20), disjoint. Deterministic for a given ``seed``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ratings = _whole_star_ratings(dataset.ratings)
    write_ratings_file(ratings, out / "u.data", "ml-100k")

    movies = dataset.movies.sort_values(S.MOVIE_ID, kind="stable").reset_index(drop=True)
    index = {g: i for i, g in enumerate(ML100K_GENRES)}
    lines = []
    for i, (movie_id, title, year, genres) in enumerate(
        zip(movies[S.MOVIE_ID], movies[S.TITLE], movies[S.YEAR], movies[S.GENRES], strict=True)
    ):
        title = _clean(title, "|")
        if np.isnan(year) or (odd_cases and i % 41 == 17 and _has_title_year(title)):
            date = ""
        elif i % 7 == 3:  # most real dates are 01-Jan; some are real days
            date = f"{(movie_id * 7) % 28 + 1:02d}-{_MONTHS[movie_id % 12]}-{int(year)}"
        else:
            date = f"01-Jan-{int(year)}"
        url = (
            ""
            if odd_cases and i % 67 == 13
            else _IMDB_URL + urllib.parse.quote(title, safe="()", encoding="latin-1", errors="replace")
        )
        flags = ["0"] * len(ML100K_GENRES)
        for g in genres:
            g = "Children's" if g == "Children" else g
            if g in index:
                flags[index[g]] = "1"
        if "1" not in flags:
            flags[0] = "1"
        lines.append("|".join([str(movie_id), title, date, "", url, *flags]))
    if odd_cases:
        next_id = _next_movie_id(movies, ratings)
        lines.append("|".join([str(next_id), "unknown", "", "", "", "1"] + ["0"] * (len(ML100K_GENRES) - 1)))
    _write_lines(out / "u.item", lines, "latin-1")
    n_items = len(lines)

    users = _users_for_writing(dataset)
    occupation = [
        o if o in ML100K_OCCUPATIONS else _ML1M_TO_ML100K_OCCUPATION.get(o, "other")
        for o in users[S.OCCUPATION]
    ]
    _write_lines(
        out / "u.user",
        [
            f"{u}|{a}|{g}|{o}|{_clean(z, '|')}"
            for u, a, g, o, z in zip(users[S.USER_ID], users[S.AGE], users[S.GENDER], occupation,
                                     users[S.ZIP_CODE], strict=True)
        ],
        "latin-1",
    )  # fmt: skip
    _write_lines(out / "u.genre", [f"{g}|{i}" for i, g in enumerate(ML100K_GENRES)] + [""], "latin-1")
    _write_lines(out / "u.occupation", list(ML100K_OCCUPATIONS), "latin-1")
    _write_lines(
        out / "u.info", [f"{len(users)} users", f"{n_items} items", f"{len(ratings)} ratings"], "latin-1"
    )
    _write_ml100k_splits(ratings, out, seed)


def _write_ml100k_splits(ratings: pd.DataFrame, out: Path, seed: int) -> None:
    """u1..u5 (5 disjoint 20% test folds) and ua/ub (10 test ratings per user each), sorted by user, item."""
    rng = np.random.default_rng(seed)
    n = len(ratings)
    order = np.lexsort((ratings[S.MOVIE_ID].to_numpy(), ratings[S.USER_ID].to_numpy()))
    by_user = ratings.iloc[order].reset_index(drop=True)
    fold = np.empty(n, dtype=np.int64)
    fold[rng.permutation(n)] = np.arange(n) % 5
    for k in range(5):
        test = fold == k
        write_ratings_file(by_user.loc[~test], out / f"u{k + 1}.base", "ml-100k")
        write_ratings_file(by_user.loc[test], out / f"u{k + 1}.test", "ml-100k")
    # Rank of each rating inside its user's shuffled list: ranks 0-9 → ua.test, 10-19 → ub.test.
    users = by_user[S.USER_ID].to_numpy()
    shuffled = np.lexsort((rng.random(n), users))
    sorted_users = users[shuffled]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1] if n else np.empty(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, n])
    rank = np.empty(n, dtype=np.int64)
    rank[shuffled] = np.arange(n) - np.repeat(starts, sizes)
    for name, test in (("ua", rank < 10), ("ub", (rank >= 10) & (rank < 20))):
        write_ratings_file(by_user.loc[~test], out / f"{name}.base", "ml-100k")
        write_ratings_file(by_user.loc[test], out / f"{name}.test", "ml-100k")


def _age_bucket(age: float) -> int:
    """ML-1M age code: 1 (under 18), 18, 25, 35, 45, 50, 56 (56+); a bucket code maps to itself."""
    return max(b for b in ML1M_AGE_BUCKETS if b <= max(age, 1))


def _ml1m_genres(genres: tuple[str, ...]) -> list[str]:
    mapped = ("Children's" if g == "Children" else g for g in genres)
    return [g for g in mapped if g in ML1M_GENRES]


def write_ml1m(dataset: S.Dataset, out_dir: str | Path, *, odd_cases: bool = True) -> None:
    """Write a dataset as MovieLens 1M: ratings.dat, users.dat, movies.dat (``::``, ISO-8859-1).

    Mappings: half stars round up; ages to the bucket codes (1, 18, 25, 35, 45, 50, 56); ML-100K
    occupations to the 0..20 codes (unknown names → 0); genres to the 18 ML-1M names ("Children" →
    "Children's"; "unknown", "IMAX" dropped). Odd case (``odd_cases``): every 17th user (from the 6th)
    with a 5-digit zip gets a ZIP+4 like ``98107-2117``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_ratings_file(_whole_star_ratings(dataset.ratings), out / "ratings.dat", "ml-1m")
    users = _users_for_writing(dataset)
    codes = {name: code for code, name in enumerate(ML1M_OCCUPATIONS)} | _ML100K_TO_ML1M_OCCUPATION
    lines = []
    for i, (uid, age, gender, occ, zip_code) in enumerate(
        zip(
            users[S.USER_ID],
            users[S.AGE],
            users[S.GENDER],
            users[S.OCCUPATION],
            users[S.ZIP_CODE],
            strict=True,
        )
    ):
        zip_code = _clean(zip_code, "::")
        if odd_cases and i % 17 == 5 and re.fullmatch(r"\d{5}", zip_code):
            zip_code += f"-{(uid * 7919) % 10000:04d}"
        lines.append(f"{uid}::{gender}::{_age_bucket(age)}::{codes.get(occ, 0)}::{zip_code}")
    _write_lines(out / "users.dat", lines, "latin-1")
    movies = dataset.movies.sort_values(S.MOVIE_ID, kind="stable")
    _write_lines(
        out / "movies.dat",
        [
            f"{m}::{_clean(t, '::').rstrip(':')}::{'|'.join(_ml1m_genres(g))}"
            for m, t, g in zip(movies[S.MOVIE_ID], movies[S.TITLE], movies[S.GENRES], strict=True)
        ],
        "latin-1",
    )


def _csv_genres(genres: tuple[str, ...]) -> str:
    mapped = [("Children" if g == "Children's" else g) for g in genres]
    mapped = [g for g in mapped if g not in ("unknown", NO_GENRES)]
    return "|".join(mapped) if mapped else NO_GENRES


def write_ml_csv(
    dataset: S.Dataset, out_dir: str | Path, name: str = "ml-25m", *, odd_cases: bool = True
) -> None:
    """Write a dataset as a CSV MovieLens release: ratings.csv, movies.csv, tags.csv, links.csv.

    UTF-8, header rows, RFC 4180 quoting (titles and tags with commas are quoted). Genres use the
    ML-25M names ("Children's" → "Children", "unknown" dropped; none → ``(no genres listed)``).
    tags.csv: each movie's tags, attributed to one of its raters (some repeated by a second user, as real
    tags are); links.csv (when the movies have imdb ids): imdbId zero-padded to 7 digits, tmdbId
    sometimes empty. Odd cases (``odd_cases``): a few titles get a trailing space (the loader strips
    it), and three extra unrated movies follow the largest id: one without a year (tagged
    "Amélie-like" and "dark, but funny"), one with ``(no genres listed)``, one quoted title with a comma
    and a 5-digit IMDb number. ml-20m/ml-25m also get genome-tags.csv and genome-scores.csv.
    """
    if name not in CSV_DATASETS:
        raise ValueError(f"name must be one of {CSV_DATASETS}, got {name!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ratings = S.canonical_ratings(dataset.ratings)
    write_ratings_file(ratings, out / "ratings.csv", "csv")

    movies = dataset.movies.sort_values(S.MOVIE_ID, kind="stable").reset_index(drop=True)
    ids = movies[S.MOVIE_ID].tolist()
    titles = [str(t) + (" " if odd_cases and i % 23 == 4 else "") for i, t in enumerate(movies[S.TITLE])]
    genres = [_csv_genres(g) for g in movies[S.GENRES]]
    tags = list(movies[S.TAGS]) if S.TAGS in movies else [()] * len(ids)
    imdb = list(movies[S.IMDB_ID]) if S.IMDB_ID in movies else None
    if odd_cases:
        first = _next_movie_id(movies, ratings)
        ids += [first, first + 1, first + 2]
        titles += ["Quiet Orchard", "Strange Circus (2003)", 'American Garden, The "Director\'s Cut" (1995)']
        genres += ["Documentary", NO_GENRES, "Comedy|IMAX"]
        tags += [("Amélie-like", "dark, but funny"), (), ()]
        if imdb is not None:
            imdb += ["tt9100001", "tt9100002", "tt0054709"]
    with open(out / "movies.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MOVIES_CSV_HEADER)
        writer.writerows(zip(ids, titles, genres, strict=True))

    # A tag is attributed to the movie's first rater, a minute after that rating.
    first_rating = ratings.drop_duplicates(S.MOVIE_ID).set_index(S.MOVIE_ID)
    fallback_user = int(ratings[S.USER_ID].min()) if len(ratings) else 1
    with open(out / "tags.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(TAGS_CSV_HEADER)
        k = 0
        for movie_id, movie_tags in zip(ids, tags, strict=True):
            if movie_id in first_rating.index:
                user = int(first_rating.at[movie_id, S.USER_ID])
                time = int(first_rating.at[movie_id, S.TIMESTAMP]) + 60
            else:
                user, time = fallback_user, 1_500_000_000
            for tag in movie_tags:
                writer.writerow((user, movie_id, tag, time))
                k += 1
                if odd_cases and k % 5 == 0:  # the same tag by a second user: the loader keeps one
                    writer.writerow((user + 1, movie_id, tag, time + 3600))

    if imdb is not None:
        with open(out / "links.csv", "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(LINKS_CSV_HEADER)
            for i, (movie_id, imdb_id) in enumerate(zip(ids, imdb, strict=True)):
                number = str(imdb_id)[2:] if str(imdb_id).startswith("tt") else ""
                tmdb = "" if i % 19 == 7 else str(10_000 + 7 * movie_id)
                writer.writerow((movie_id, number.zfill(7) if number else "", tmdb))

    if name in ("ml-20m", "ml-25m"):
        _write_genome(out, ids, tags)


def _write_genome(out: Path, ids: list[int], tags: list[tuple[str, ...]]) -> None:
    """genome-tags.csv (tagId,tag) and genome-scores.csv (movieId,tagId,relevance: every movie x tag).

    A movie's own tags score high, the rest low, deterministically. The loaders do not read these files.
    """
    vocabulary = sorted({t for movie_tags in tags for t in movie_tags})
    if not vocabulary:
        return
    with open(out / "genome-tags.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("tagId", "tag"))
        writer.writerows(enumerate(vocabulary, 1))
    index = {t: i for i, t in enumerate(vocabulary)}
    with open(out / "genome-scores.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("movieId", "tagId", "relevance"))
        for movie_id, movie_tags in zip(ids, tags, strict=True):
            own = {index[t] for t in movie_tags}
            for k in range(len(vocabulary)):
                noise = ((movie_id * 2654435761 + k * 40503) % 1000) / 1000
                relevance = 0.75 + 0.25 * noise if k in own else 0.3 * noise
                writer.writerow((movie_id, k + 1, repr(round(relevance, 5))))
