"""Download and safely unpack the public datasets (MovieLens from GroupLens, optionally IMDb).

``download("ml-100k", "data")`` fetches ``https://files.grouplens.org/datasets/movielens/ml-100k.zip``,
checks it, and leaves the files in ``data/ml-100k/``. What it guarantees:

- Verified: an archive is checked against, in this order, a checksum passed as an argument, the SHA-256
  pinned in :data:`DATASETS`, or the MD5 GroupLens publishes beside every zip (``<url>.md5``). A mismatch
  raises :class:`ChecksumError` and nothing is left behind. A file that cannot be verified is not used.
- Safe: every member is checked before anything is written; an absolute path, a ``..`` component or a
  symbolic link raises :class:`UnsafeArchiveError` and nothing is extracted.
- Atomic: the archive is streamed to a temporary file in ``data_dir``, extracted into a temporary folder
  there, and that folder is renamed to ``data_dir/<name>`` only when complete, so an interrupted download
  never leaves a half dataset (at most a hidden ``.<name>.*`` temporary file).
- Idempotent: an existing ``data_dir/<name>`` is returned untouched unless ``force=True``.

The host can be replaced (a mirror, or a local test server) with ``base_url=`` or the environment
variable ``TFRS_MOVIES_DOWNLOAD_URL``; the file names and the checksums stay the same.

The Netflix Prize data is not downloadable from here (get it from Kaggle, "netflix-prize-data").
The IMDb non-commercial files can be fetched with ``download("imdb", ...)``; IMDb publishes no checksums
for them, so they are only checked to be gzip streams.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import shutil
import stat
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tfrs_movies.data.registry import DATASETS as _TABLE
from tfrs_movies.data.registry import GROUPLENS_URL, DatasetSource  # noqa: F401  (public names here too)
from tfrs_movies.io import remove_stale_temporaries, temporary_sibling
from tfrs_movies.progress import Progress

IMDB_URL = "https://datasets.imdbws.com"
KAGGLE_NETFLIX_URL = "https://www.kaggle.com/datasets/netflix-inc/netflix-prize-data"
URL_ENV = "TFRS_MOVIES_DOWNLOAD_URL"
IMDB_FILES = (
    "title.basics.tsv.gz",
    "title.ratings.tsv.gz",
    "title.crew.tsv.gz",
    "title.principals.tsv.gz",
    "name.basics.tsv.gz",
)
_CHUNK = 1 << 20
# An archive may expand to at most this many times its own size, and never beyond MAX_EXTRACT_BYTES
# (an archive bomb: a small file that unpacks to terabytes). ml-100k.zip expands 3.3 times (4.9 -> 16.1 MB).
MAX_EXPANSION = 100
MAX_EXTRACT_BYTES = 16 << 30
_USER_AGENT = "tfrs_movies-downloader"


class DownloadError(RuntimeError):
    """A dataset could not be downloaded, verified or unpacked."""


class ChecksumError(DownloadError):
    """The downloaded file does not have the expected checksum."""

    def __init__(self, url: str, algorithm: str, expected: str, got: str):
        self.url = url
        self.algorithm = algorithm
        self.expected = expected
        self.got = got
        super().__init__(
            f"{algorithm} mismatch for {url}: expected {expected}, got {got} "
            "(the download was corrupted or the file changed upstream; nothing was kept)"
        )


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the target folder."""

    def __init__(self, archive: str | Path, member: str, why: str):
        self.archive = str(archive)
        self.member = member
        super().__init__(
            f"refusing to extract {self.archive}: member {member!r} {why}; nothing was extracted"
        )


class NotDownloadableError(DownloadError):
    """The dataset exists but cannot be fetched automatically (licence or login required)."""


# The archives of the dataset table (tfrs_movies/data/registry.py: pinned SHA-256 where the archive is
# stable, else the MD5 GroupLens publishes beside it), plus the IMDb files that enrich the movies.
IMDB_SOURCE = DatasetSource(
    "imdb",
    IMDB_FILES,
    base_url=IMDB_URL,
    md5_sidecar=False,
    note="IMDb publishes no checksums: the files are only checked to be gzip streams",
)
DATASETS: dict[str, DatasetSource] = {
    **{name: spec.download for name, spec in _TABLE.items() if spec.download is not None},
    "imdb": IMDB_SOURCE,
}
NOT_DOWNLOADABLE: dict[str, str] = {
    name: spec.not_downloadable for name, spec in _TABLE.items() if spec.download is None
}


def dataset_url(name: str, base_url: str | None = None) -> list[str]:
    """The URLs ``download(name)`` would fetch, honouring ``base_url`` and ``TFRS_MOVIES_DOWNLOAD_URL``."""
    source = _source(name)
    base = (base_url or os.environ.get(URL_ENV) or source.base_url).rstrip("/")
    return [f"{base}/{file}" for file in source.files]


def download(
    name: str,
    data_dir: str | Path,
    *,
    base_url: str | None = None,
    force: bool = False,
    timeout: float = 60,
    progress: bool = True,
    sha256: str | None = None,
    md5: str | None = None,
) -> Path:
    """Download dataset ``name`` into ``data_dir/<name>`` and return that folder.

    ``sha256``/``md5`` override the registry's checksum (single-archive datasets only). Raises
    :class:`ChecksumError`, :class:`UnsafeArchiveError`, :class:`NotDownloadableError` (Netflix),
    :class:`DownloadError` (network or HTTP failure, or no checksum available) or ``ValueError``
    (unknown name).
    """
    source = _source(name)
    data_dir = Path(data_dir)
    target = data_dir / source.name
    if target.is_dir() and not force:
        return target
    if target.exists() and not target.is_dir():
        raise DownloadError(f"{target} exists and is not a folder")
    if (sha256 or md5) and len(source.files) != 1:
        raise ValueError(
            f"an explicit checksum applies to a single archive; {name} has {len(source.files)} files"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    urls = dataset_url(name, base_url)

    remove_stale_temporaries(data_dir)  # a killed download's archive part and staging folder
    staging = temporary_sibling(data_dir / source.name)
    staging.mkdir()
    try:
        if len(source.files) == 1 and source.files[0].endswith(".zip"):
            archive = _fetch(urls[0], data_dir, timeout=timeout, progress=progress)
            try:
                _verify(archive, urls[0], source, sha256=sha256, md5=md5, timeout=timeout)
                safe_extract_zip(archive, staging, label=urls[0])
            finally:
                archive.unlink(missing_ok=True)
            content = _single_top_folder(staging) or staging
        else:
            for url, file in zip(urls, source.files, strict=True):
                part = _fetch(url, staging, timeout=timeout, progress=progress)
                _check_gzip(part, url)
                part.replace(staging / file)
            content = staging
        _install(content, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def extraction_limit(archive_bytes: int) -> int:
    """The most bytes an archive of ``archive_bytes`` may unpack to (:data:`MAX_EXPANSION` times its
    size, at least 1 MiB, at most :data:`MAX_EXTRACT_BYTES`)."""
    return min(MAX_EXTRACT_BYTES, max(1 << 20, MAX_EXPANSION * archive_bytes))


def safe_extract_zip(
    archive: str | Path, dest: str | Path, *, label: str | None = None, max_bytes: int | None = None
) -> list[Path]:
    """Extract ``archive`` into ``dest`` after checking every member; return the files written.

    Any member with an absolute path (``/x``, ``C:\\x``), a ``..`` component, or that is a symbolic link
    raises :class:`UnsafeArchiveError` before a single byte is written. (Symbolic links are refused
    outright: a link that points inside can still be chained to reach outside.) So does an archive whose
    members declare more than ``max_bytes`` in all (default :func:`extraction_limit` of its size). The
    declared sizes bind: :mod:`zipfile` reads no more than a member's declared size and checks its CRC,
    so a header that lies fails as a corrupt archive: a :class:`DownloadError` (as is any archive
    :mod:`zipfile` cannot read). ``label`` names the archive in errors (default: its path).
    """
    label = label or str(archive)
    limit = extraction_limit(Path(archive).stat().st_size) if max_bytes is None else max_bytes
    try:
        return _extract_checked(archive, Path(dest).resolve(), label, limit)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{label} is a damaged archive ({err}); download it again") from None


def _extract_checked(archive: str | Path, root: Path, label: str, limit: int) -> list[Path]:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:
            _check_member(label, info, root)
        declared = sum(info.file_size for info in members)
        if declared > limit:
            why = f"would unpack to {declared:,} bytes, over the limit of {limit:,}"
            raise UnsafeArchiveError(label, f"{len(members)} members", why)
        written = []
        for info in members:
            path = root.joinpath(*_parts(info.filename))
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.parent.resolve().is_relative_to(root):  # belt and braces
                raise UnsafeArchiveError(label, info.filename, "resolves outside the target folder")
            with zf.open(info) as src, open(path, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            written.append(path)
    return written


def _source(name: str) -> DatasetSource:
    if name in NOT_DOWNLOADABLE:
        raise NotDownloadableError(f"{name}: {NOT_DOWNLOADABLE[name]}")
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise ValueError(f"unknown dataset {name!r}; downloadable: {known}")
    return DATASETS[name]


def _parts(member: str) -> list[str]:
    return [p for p in re.split(r"[\\/]+", member) if p not in ("", ".")]


def _check_member(archive: str | Path, info: zipfile.ZipInfo, root: Path) -> None:
    name = info.filename
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or PurePosixPath(name).is_absolute():
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    parts = _parts(name)
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "contains '..'")
    if not parts:
        raise UnsafeArchiveError(archive, name, "has an empty path")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(archive, name, "is a symbolic link (links are not extracted)")
    if not (root / Path(*parts)).resolve().is_relative_to(root):
        raise UnsafeArchiveError(archive, name, "resolves outside the target folder")


def _single_top_folder(folder: Path) -> Path | None:
    entries = [e for e in folder.iterdir() if e.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return None


def _install(content: Path, target: Path) -> None:
    """Move the finished ``content`` folder to ``target`` by rename, replacing an old copy last."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        target.rename(old)
    try:
        content.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _open(url: str, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) only, see _source)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"{url}: {getattr(err, 'reason', err)}") from err


def _fetch(url: str, folder: Path, *, timeout: float, progress: bool) -> Path:
    """Stream ``url`` into a hidden temporary file in ``folder``; delete it on any failure."""
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"{url}: only http(s) URLs are supported")
    label = url.rsplit("/", 1)[-1]
    path = temporary_sibling(folder / label)  # named with this pid: removable once this process is gone
    try:
        with open(path, "xb") as out, _open(url, timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            with Progress(label, total, unit="B", enabled=progress) as shown:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    shown.update(len(chunk))
            if total and done != total:
                raise DownloadError(f"{url}: connection closed after {done} of {total} bytes")
    except BaseException as err:
        path.unlink(missing_ok=True)
        if isinstance(err, OSError | http.client.HTTPException) and not isinstance(err, DownloadError):
            raise DownloadError(f"{url}: {err}") from err
        raise
    return path


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _published_md5(url: str, timeout: float) -> str:
    """The MD5 in ``<url>.md5`` (GroupLens writes ``MD5 (x.zip) = <hex>``; ``<hex>  x.zip`` is accepted)."""
    with _open(url + ".md5", timeout) as response:
        text = response.read(4096).decode("ascii", "replace")
    found = re.findall(r"\b[0-9a-fA-F]{32}\b", text)
    if len(found) != 1:
        raise DownloadError(f"{url}.md5 does not hold one MD5 checksum: {text[:200]!r}")
    return found[0].lower()


def _verify(
    path: Path, url: str, source: DatasetSource, *, sha256: str | None, md5: str | None, timeout: float
) -> None:
    checks: list[tuple[str, str]] = []
    if sha256 or md5:
        checks = [(alg, value) for alg, value in (("sha256", sha256), ("md5", md5)) if value]
    elif source.sha256 or source.md5:
        checks = [(alg, value) for alg, value in (("sha256", source.sha256), ("md5", source.md5)) if value]
    elif source.md5_sidecar:
        try:
            checks = [("md5", _published_md5(url, timeout))]
        except DownloadError as err:
            raise DownloadError(
                f"cannot verify {url}: no checksum is pinned and the published one is unavailable ({err}); "
                "pass sha256= or md5= to download()"
            ) from err
    else:
        raise DownloadError(f"cannot verify {url}: no checksum known; pass sha256= or md5= to download()")
    for algorithm, expected in checks:
        got = _digest(path, algorithm)
        if got != expected.strip().lower():
            raise ChecksumError(url, algorithm, expected.strip().lower(), got)


def _check_gzip(path: Path, url: str) -> None:
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            path.unlink(missing_ok=True)
            raise DownloadError(
                f"{url}: not a gzip file (IMDb publishes no checksum; only the format is checked)"
            )


def main(argv: list[str] | None = None) -> int:
    """``python -m tfrs_movies.data.download NAME [--data-dir data] [--force] [--base-url URL]``; an error
    is one line, exit status 1 (``--debug``: with the traceback)."""
    from tfrs_movies.cli import add_debug_flag, guarded

    parser = argparse.ArgumentParser(
        prog="python -m tfrs_movies.data.download", description=__doc__.split("\n")[0]
    )
    parser.add_argument("name", choices=sorted([*DATASETS, *NOT_DOWNLOADABLE]))
    parser.add_argument("--data-dir", default="data", help="parent folder (default: data)")
    parser.add_argument("--force", action="store_true", help="download again even if present")
    parser.add_argument(
        "--base-url", default=None, help=f"mirror instead of the official host (or ${URL_ENV})"
    )
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    add_debug_flag(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        path = download(
            args.name,
            args.data_dir,
            base_url=args.base_url,
            force=args.force,
            timeout=args.timeout,
            progress=not args.quiet,
        )
        print(path)
        return 0

    return guarded(body, args.debug, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
