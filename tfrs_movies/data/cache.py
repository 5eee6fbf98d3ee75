"""A compact columnar cache of parsed data files (Parquet via pyarrow).

Parsing 2 GB of Netflix text takes minutes; reading the same ratings back from Parquet takes seconds. A
cache file is named after a fingerprint of its source files (resolved path, size and modification time of
each, plus a salt naming the parser version), so editing, replacing or touching a source file changes the
name and the stale cache is simply never read again. The fingerprint is also stored in the file's
metadata and checked on read, so a renamed or copied cache file cannot be mistaken for a fresh one.

Files are written atomically: into a temporary file in the same directory, then ``os.replace``-d onto
the final name, so a crash or a concurrent reader never sees half a file. The temporary's name carries
the writer's pid (:func:`tfrs_movies.io.temporary_sibling`); the temporaries of a killed writer
(gigabytes at Netflix size) are removed by the next write into the same folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tfrs_movies.io import remove_stale_temporaries, temporary_sibling

CACHE_DIRNAME = ".cache"
FINGERPRINT_KEY = b"tfrs_movies.fingerprint"
INFO_KEY = b"tfrs_movies.info"
_SUFFIX = ".parquet"


def default_cache_dir(data_dir: str | Path) -> Path:
    """Where a dataset's cache lives unless told otherwise: ``<data_dir>/.cache``."""
    return Path(data_dir) / CACHE_DIRNAME


def fingerprint(sources: Iterable[str | Path], salt: str = "") -> str:
    """A short hash of the sources' resolved paths, sizes and modification times (ns), and ``salt``.

    ``salt`` should name the parser version and any option that changes the parsed result.
    """
    digest = hashlib.sha256(salt.encode())
    for path in sorted(Path(p).resolve() for p in sources):
        st = path.stat()
        digest.update(f"\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def cache_path_for(
    sources: Iterable[str | Path],
    kind: str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    salt: str = "",
) -> Path:
    """The cache file for ``sources``: ``<cache_dir>/<kind>-<fingerprint>.parquet``.

    ``cache_dir`` defaults to ``<data_dir>/.cache``; one of the two must be given.
    """
    if cache_dir is None:
        if data_dir is None:
            raise ValueError("cache_path_for needs data_dir or cache_dir")
        cache_dir = default_cache_dir(data_dir)
    return Path(cache_dir) / f"{kind}-{fingerprint(sources, salt)}{_SUFFIX}"


def _fingerprint_of(path: Path) -> str:
    """The fingerprint part of a cache file name."""
    return path.name[: -len(_SUFFIX)].rsplit("-", 1)[-1]


def read_cached(path: str | Path) -> tuple[pd.DataFrame, dict] | None:
    """The cached frame and its info dict, or None when there is no valid cache file at ``path``.

    A file whose stored fingerprint does not match its name, or that cannot be read, counts as absent
    (it will be rewritten), never as an error.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with pq.ParquetFile(path) as parquet:
            meta = parquet.metadata.metadata or {}  # the file's key-value metadata
            if meta.get(FINGERPRINT_KEY, b"").decode() != _fingerprint_of(path):
                return None
            frame = _read_frame(parquet)
    except (OSError, pa.ArrowException):
        return None
    return frame, json.loads(meta.get(INFO_KEY, b"{}"))


def _read_frame(parquet: pq.ParquetFile) -> pd.DataFrame:
    """The whole file as a frame, holding little more than the frame itself at the peak.

    Numeric columns are decoded a row group at a time into preallocated numpy arrays (one column per
    block, no consolidation copy); reading the whole Arrow table and converting it would hold two copies.
    """
    schema = parquet.schema_arrow
    if not all(pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in schema):
        return parquet.read().to_pandas(self_destruct=True, split_blocks=True)
    n = parquet.metadata.num_rows
    columns = {f.name: np.empty(n, f.type.to_pandas_dtype()) for f in schema}
    start = 0
    for i in range(parquet.num_row_groups):
        group = parquet.read_row_group(i, use_threads=True)
        if any(c.null_count for c in group.columns):  # a null cannot live in an int array: generic path
            return parquet.read().to_pandas(self_destruct=True, split_blocks=True)
        stop = start + group.num_rows
        for name, values in columns.items():
            values[start:stop] = group.column(name).to_numpy()
        start = stop
    return pd.DataFrame(columns, copy=False)


def _metadata(path: Path, info: dict | None) -> dict[bytes, bytes]:
    return {FINGERPRINT_KEY: _fingerprint_of(path).encode(), INFO_KEY: json.dumps(info or {}).encode()}


def _new_temp_sibling(path: Path) -> Path:
    """An empty temp file in ``path``'s directory (same file system, so ``os.replace`` is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)  # what a killed writer left
    tmp = temporary_sibling(path)
    with open(tmp, "xb"):
        pass
    os.chmod(tmp, 0o644)  # a cache is as readable as its data
    return tmp


@contextlib.contextmanager
def _temporary_sibling(path: Path) -> Iterator[Path]:
    """A temp file next to ``path`` that replaces it on success and is removed on failure."""
    tmp = _new_temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)  # atomic on POSIX and Windows within one file system
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(frame: pd.DataFrame, path: str | Path, info: dict | None = None) -> Path:
    """Write ``frame`` to ``path`` as Parquet, atomically, with ``info`` (JSON-able) in its metadata."""
    path = Path(path)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **_metadata(path, info)})
    with _temporary_sibling(path) as tmp:
        pq.write_table(table, tmp)
    return path


class AtomicParquetWriter:
    """Stream tables into a Parquet cache file that appears, atomically, only when closed successfully.

    Use as a context manager; call :meth:`write` for each chunk and :meth:`set_info` before leaving the
    block. On an exception the temporary file is removed and nothing appears at ``path``.
    """

    def __init__(self, path: str | Path, schema: pa.Schema):
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self._info: dict = {}
        self._tmp = _new_temp_sibling(self.path)
        try:
            self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise

    def write(self, table: pa.Table) -> None:
        """Append one chunk (one or more row groups)."""
        self._writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def set_info(self, info: dict) -> None:
        """The JSON-able info stored with the file (e.g. the loader's report)."""
        self._info = info

    def __enter__(self) -> AtomicParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._writer.add_key_value_metadata(_metadata(self.path, self._info))
            self._writer.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)
        return False


def remove_stale(path: str | Path) -> list[Path]:
    """Delete other cache files of the same kind as ``path`` (older fingerprints); return what went."""
    path = Path(path)
    kind = path.name[: -len(_SUFFIX)].rsplit("-", 1)[0]
    removed = []
    for other in path.parent.glob(f"{kind}-*{_SUFFIX}"):
        if other != path and other.name[: -len(_SUFFIX)].rsplit("-", 1)[0] == kind:
            with contextlib.suppress(OSError):
                other.unlink()
                removed.append(other)
    return removed
