"""The downloader against archives served from 127.0.0.1: verification, safe extraction, atomicity."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import threading
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from tfrs_movies.data import download as dl

ML100K_FILES = {
    "ml-100k/u.data": "196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
    "ml-100k/u.item": "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
    "ml-100k/u.user": "1|24|M|technician|85711\n",
    "ml-100k/u.genre": "unknown|0\nAction|1\n",
}


class Server:
    """A static file server on 127.0.0.1 that counts the requests per path."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: Counter[str] = Counter()
        self.truncate: set[str] = set()  # paths answered with half the promised bytes, then a hang-up
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests[self.path] += 1
                if self.path not in server.truncate:
                    return super().do_GET()
                body = (root / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True

            def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    srv = Server(root)
    yield srv
    srv.close()


@pytest.fixture
def unpinned(monkeypatch):
    """ml-100k without its pinned SHA-256, so it is verified against the served ``.md5`` like ml-latest."""
    monkeypatch.setitem(dl.DATASETS, "ml-100k", dataclasses.replace(dl.DATASETS["ml-100k"], sha256=None))


def make_zip(path: Path, members: dict[str, str], *, md5: str | None = "auto") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    if md5 == "auto":
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
    if md5 is not None:
        Path(f"{path}.md5").write_text(f"MD5 ({path.name}) = {md5}\n")
    return path


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_download_verifies_published_md5_and_extracts(server, tmp_path, unpinned):
    make_zip(server.root / "ml-100k.zip", ML100K_FILES)
    data = tmp_path / "data"
    out = dl.download("ml-100k", data, base_url=server.url, progress=False)
    assert out == data / "ml-100k"
    for member, text in ML100K_FILES.items():
        assert (data / member).read_text() == text
    assert tree(data) == sorted(["ml-100k", *ML100K_FILES])  # no temp file or folder left
    assert server.requests == {"/ml-100k.zip": 1, "/ml-100k.zip.md5": 1}


def test_present_dataset_is_not_downloaded_again_unless_forced(server, tmp_path, unpinned):
    make_zip(server.root / "ml-100k.zip", ML100K_FILES)
    data = tmp_path / "data"
    dl.download("ml-100k", data, base_url=server.url, progress=False)
    dl.download("ml-100k", data, base_url=server.url, progress=False)
    assert server.requests["/ml-100k.zip"] == 1

    changed = {**ML100K_FILES, "ml-100k/u.info": "943 users\n"}
    make_zip(server.root / "ml-100k.zip", changed)
    dl.download("ml-100k", data, base_url=server.url, progress=False, force=True)
    assert server.requests["/ml-100k.zip"] == 2
    assert (data / "ml-100k" / "u.info").read_text() == "943 users\n"
    assert tree(data) == sorted(["ml-100k", *changed])


def test_env_var_overrides_host(server, tmp_path, unpinned, monkeypatch):
    make_zip(server.root / "ml-100k.zip", ML100K_FILES)
    monkeypatch.setenv(dl.URL_ENV, server.url + "/")
    assert dl.dataset_url("ml-100k") == [server.url + "/ml-100k.zip"]
    assert (dl.download("ml-100k", tmp_path / "data", progress=False) / "u.data").is_file()


def test_published_md5_mismatch_raises_and_leaves_nothing(server, tmp_path, unpinned):
    make_zip(server.root / "ml-100k.zip", ML100K_FILES, md5="0" * 32)
    data = tmp_path / "data"
    with pytest.raises(dl.ChecksumError) as err:
        dl.download("ml-100k", data, base_url=server.url, progress=False)
    got = hashlib.md5((server.root / "ml-100k.zip").read_bytes()).hexdigest()
    assert "0" * 32 in str(err.value) and got in str(err.value)
    assert tree(data) == []


def test_pinned_sha256_is_enforced_even_on_a_mirror(server, tmp_path):
    make_zip(server.root / "ml-100k.zip", ML100K_FILES)  # a valid .md5 is served, but the pin wins
    data = tmp_path / "data"
    with pytest.raises(dl.ChecksumError, match=dl.DATASETS["ml-100k"].sha256):
        dl.download("ml-100k", data, base_url=server.url, progress=False)
    assert tree(data) == []
    assert "/ml-100k.zip.md5" not in server.requests


def test_explicit_checksum_argument(server, tmp_path):
    archive = make_zip(server.root / "ml-100k.zip", ML100K_FILES, md5=None)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    data = tmp_path / "data"
    out = dl.download("ml-100k", data, base_url=server.url, progress=False, sha256=sha.upper())
    assert (out / "u.user").is_file()
    with pytest.raises(dl.ChecksumError, match="md5"):
        dl.download("ml-100k", tmp_path / "other", base_url=server.url, progress=False, md5="f" * 32)
    assert tree(tmp_path / "other") == []


def test_missing_md5_file_is_an_error_not_a_silent_pass(server, tmp_path, unpinned):
    make_zip(server.root / "ml-100k.zip", ML100K_FILES, md5=None)
    with pytest.raises(dl.DownloadError, match="cannot verify"):
        dl.download("ml-100k", tmp_path / "data", base_url=server.url, progress=False)
    assert tree(tmp_path / "data") == []


@pytest.mark.parametrize(
    "evil",
    ["ml-100k/../../evil.txt", "../evil.txt", "/tmp/tfrs_movies_evil_abs.txt", "C:/evil.txt", "..\\evil.txt"],
)
def test_unsafe_member_is_refused_and_nothing_extracted(server, tmp_path, unpinned, evil):
    make_zip(server.root / "ml-100k.zip", {**ML100K_FILES, evil: "pwned\n"})
    data = tmp_path / "deep" / "data"
    with pytest.raises(dl.UnsafeArchiveError) as err:
        dl.download("ml-100k", data, base_url=server.url, progress=False)
    assert err.value.member == evil and repr(evil) in str(err.value)
    assert err.value.archive == f"{server.url}/ml-100k.zip"
    assert tree(data) == []
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/tfrs_movies_evil_abs.txt").exists()


def test_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine\n")
        link = zipfile.ZipInfo("escape")
        link.external_attr = (0o120777 << 16) | 0  # S_IFLNK
        zf.writestr(link, "../../etc")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(dl.UnsafeArchiveError, match="escape"):
        dl.safe_extract_zip(archive, dest)
    assert tree(dest) == []


def test_interrupted_transfer_leaves_nothing(server, tmp_path, unpinned):
    make_zip(server.root / "ml-100k.zip", ML100K_FILES)
    server.truncate.add("/ml-100k.zip")
    with pytest.raises(dl.DownloadError):
        dl.download("ml-100k", tmp_path / "data", base_url=server.url, progress=False, timeout=5)
    assert tree(tmp_path / "data") == []


def test_http_error_is_a_download_error_and_cleans_up(server, tmp_path, unpinned):
    with pytest.raises(dl.DownloadError, match="404"):
        dl.download("ml-100k", tmp_path / "data", base_url=server.url, progress=False)
    assert tree(tmp_path / "data") == []


def test_netflix_and_unknown_names():
    with pytest.raises(dl.NotDownloadableError, match="kaggle.com.*netflix-prize-data"):
        dl.download("netflix", "unused")
    with pytest.raises(ValueError, match="unknown dataset"):
        dl.download("ml-5m", "unused")
    assert not Path("unused").exists()


def test_registry_covers_grouplens_archives():
    for name in ("ml-100k", "ml-1m", "ml-20m", "ml-25m", "ml-latest-small", "ml-latest"):
        assert dl.dataset_url(name) == [f"https://files.grouplens.org/datasets/movielens/{name}.zip"]
        source = dl.DATASETS[name]
        assert source.sha256 is None or len(source.sha256) == 64
        assert source.sha256 or source.md5_sidecar  # every archive is verified one way or the other


def test_imdb_files_are_fetched_as_gzip(server, tmp_path, capsys):
    for file in dl.IMDB_FILES:
        (server.root / file).write_bytes(gzip.compress(b"tconst\tprimaryTitle\ntt0114709\tToy Story\n"))
    out = dl.download("imdb", tmp_path / "data", base_url=server.url, progress=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(dl.IMDB_FILES)
    assert tree(tmp_path / "data") == sorted(["imdb", *(f"imdb/{f}" for f in dl.IMDB_FILES)])
    assert "title.basics.tsv.gz" in capsys.readouterr().err  # the progress line

    (server.root / "name.basics.tsv.gz").write_text("<html>not found</html>")
    with pytest.raises(dl.DownloadError, match="not a gzip"):
        dl.download("imdb", tmp_path / "data", base_url=server.url, progress=False, force=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(dl.IMDB_FILES)  # the old copy survives
    assert tree(tmp_path / "data") == sorted(["imdb", *(f"imdb/{f}" for f in dl.IMDB_FILES)])
