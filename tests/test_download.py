"""Tests for scratchnet.datasets.download against a real local HTTP server.

The server runs on 127.0.0.1 (port 0) in a thread and serves files the tests
create, under one path prefix per behaviour: /good/ serves them as they are,
/bad/ with one byte flipped, /drop/ announces the full Content-Length but
sends half and closes, /slow/ waits longer than the client's timeout,
/missing/ answers 404. Nothing here touches the real network.
"""

import gzip
import hashlib
import http.server
import threading
import time

import numpy as np
import pytest

from idx_helpers import NAMES, idx_bytes, make_special, small_mnist, time_limit
from scratchnet.datasets import DownloadError, MissingFileError, MNISTError, download_mnist, load_mnist
from scratchnet.datasets import download as download_module

SLOW_SECONDS = 0.6


class _Handler(http.server.BaseHTTPRequestHandler):
    served = {}  # file name -> bytes; replaced per server
    requests = []

    def do_GET(self):
        self.requests.append(self.path)
        _, mode, name = self.path.split("/", 2)
        body = self.served.get(name)
        if mode == "missing" or body is None:
            self.send_error(404)
            return
        if mode == "bad":
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        if mode == "slow":
            time.sleep(SLOW_SECONDS)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop":
            body = body[: len(body) // 2]
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the slow mirror writes to a client that already gave up


@pytest.fixture
def server(monkeypatch):
    """Start the server; yield (base URL, served dict, request log)."""
    for var in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    handler = type("Handler", (_Handler,), {"served": {}, "requests": []})
    httpd = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.served, handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHNET_CACHE_DIR", str(tmp_path / "cache"))


def md5_of(data):
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def serve_one(served, data=b"0123456789" * 1000, name="file.gz"):
    served[name] = data
    return {name: md5_of(data)}


def test_next_mirror_after_drop_bad_checksum_and_404(server, tmp_path):
    base, served, requests = server
    table = serve_one(served)
    mirrors = [f"{base}/drop/", f"{base}/bad/", f"{base}/missing/", f"{base}/good/"]
    fetched = download_mnist(tmp_path / "data", mirrors=mirrors, md5=table)
    assert fetched == [tmp_path / "data" / "file.gz"]
    assert fetched[0].read_bytes() == served["file.gz"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["file.gz"]
    assert requests == ["/drop/file.gz", "/bad/file.gz", "/missing/file.gz", "/good/file.gz"]


def test_all_mirrors_failing_names_each_failure_and_leaves_nothing(server, tmp_path):
    base, served, _ = server
    table = serve_one(served)
    mirrors = [f"{base}/drop/", f"{base}/bad/", f"{base}/missing/", "file:///etc/"]
    with pytest.raises(DownloadError) as info:
        download_mnist(tmp_path / "data", mirrors=mirrors, md5=table)
    assert isinstance(info.value, MNISTError) and isinstance(info.value, OSError)
    message = str(info.value)
    assert "file.gz" in message and str(tmp_path / "data") in message
    for expected in [
        f"{base}/drop/file.gz: _BadResponse: connection dropped after 5000 of 10000 bytes",
        f"{base}/bad/file.gz: _BadResponse: MD5 mismatch",
        f"{base}/missing/file.gz: HTTPError: HTTP Error 404",
        "file:///etc/file.gz: _BadResponse: unsupported URL scheme 'file'",
    ]:
        assert expected in message
    assert list((tmp_path / "data").iterdir()) == []


def test_timeout_moves_on_to_the_next_mirror(server, tmp_path):
    base, served, _ = server
    table = serve_one(served)
    timeout = SLOW_SECONDS / 3
    fetched = download_mnist(tmp_path, mirrors=[f"{base}/slow/", f"{base}/good/"], md5=table, timeout=timeout)
    assert fetched[0].read_bytes() == served["file.gz"]
    with pytest.raises(DownloadError, match="timed out"):
        download_mnist(tmp_path / "other", mirrors=[f"{base}/slow/"], md5=table, timeout=timeout)


def test_oversized_answer_is_refused(server, tmp_path, monkeypatch):
    base, served, _ = server
    table = serve_one(served)
    monkeypatch.setattr(download_module, "MAX_BYTES", 100)
    with pytest.raises(DownloadError, match="refusing 10000 bytes"):
        download_mnist(tmp_path, mirrors=[f"{base}/good/"], md5=table)
    assert list(tmp_path.iterdir()) == []


def test_present_files_are_not_fetched_again(server, tmp_path):
    base, served, requests = server
    table = {"a.gz": md5_of(b"a"), "b.gz": md5_of(b"b")}
    served.update({"a.gz": b"a", "b.gz": b"b"})
    (tmp_path / "a").write_bytes(b"decompressed twin counts as present")
    assert download_mnist(tmp_path, mirrors=[f"{base}/good/"], md5=table) == [tmp_path / "b.gz"]
    assert download_mnist(tmp_path, mirrors=[f"{base}/good/"], md5=table) == []
    assert requests == ["/good/b.gz"]


def test_load_mnist_download_true_fetches_missing_files_once(server, tmp_path, monkeypatch):
    base, served, requests = server
    arrays = small_mnist()
    table = {}
    for key, name in NAMES.items():
        served[f"{name}.gz"] = data = gzip.compress(idx_bytes(arrays[key]), mtime=0)
        table[f"{name}.gz"] = md5_of(data)
    monkeypatch.setattr(download_module, "MIRRORS", (f"{base}/bad/", f"{base}/good/"))
    monkeypatch.setattr(download_module, "MNIST_MD5", table)

    data_dir = tmp_path / "fresh"
    with pytest.raises(MissingFileError, match="download=True"):
        load_mnist(data_dir=data_dir)
    assert requests == []
    for _ in range(2):
        (x_train, t_train), (x_test, t_test) = load_mnist(normalize=False, data_dir=data_dir, download=True)
        np.testing.assert_array_equal(x_train, arrays["x_train"].reshape(5, 784))
        np.testing.assert_array_equal(t_test, arrays["t_test"])
    assert len(requests) == 8  # 4 files x (bad, good), all in the first call
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(table)


def _serve_small_mnist(served, monkeypatch, base):
    arrays = small_mnist()
    table = {}
    for key, name in NAMES.items():
        served[f"{name}.gz"] = data = gzip.compress(idx_bytes(arrays[key]), mtime=0)
        table[f"{name}.gz"] = md5_of(data)
    monkeypatch.setattr(download_module, "MIRRORS", (f"{base}/good/",))
    monkeypatch.setattr(download_module, "MNIST_MD5", table)
    return arrays


@pytest.mark.parametrize("below", ["", "sub"])
def test_data_dir_that_is_a_loop_of_symlinks_is_refused_before_any_request(server, tmp_path, monkeypatch, below):
    # Once: "is a file, not a folder" (mkdir's EEXIST), or ELOOP's strerror below the loop.
    base, served, requests = server
    _serve_small_mnist(served, monkeypatch, base)
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    path = tmp_path / "a" / below
    with pytest.raises(DownloadError) as info:
        download_mnist(path)
    assert str(info.value) == (
        f"data_dir {path} is a loop of symbolic links (following them never reaches a file or folder): "
        "pass a folder to download the MNIST files into"
    )
    assert requests == []


def test_data_dir_that_is_a_file_is_refused_before_any_request(server, tmp_path, monkeypatch):
    # Once: download=True with data_dir a file raised FileExistsError.
    base, served, requests = server
    _serve_small_mnist(served, monkeypatch, base)
    path = tmp_path / "data"
    path.write_bytes(b"not a folder")
    with pytest.raises(DownloadError, match=r"data_dir .*/data is a file, not a folder"):
        download_mnist(path)
    with pytest.raises(MNISTError, match=r"data_dir .*/data is a file, not a folder"):
        load_mnist(data_dir=path, download=True)
    assert requests == [] and path.read_bytes() == b"not a folder"


def test_data_dir_that_cannot_be_created_is_a_download_error(server, tmp_path, monkeypatch):
    base, served, requests = server
    _serve_small_mnist(served, monkeypatch, base)
    (tmp_path / "file").write_bytes(b"")
    message = r"data_dir .*/file/data cannot be created as a folder \(Not a directory\)"
    with pytest.raises(DownloadError, match=message):
        download_mnist(tmp_path / "file" / "data")
    assert requests == []


def test_a_fifo_in_data_dir_is_neither_replaced_nor_read(server, tmp_path, monkeypatch):
    # The FIFO counts as present (it is not fetched over), and load_mnist
    # names it instead of blocking on it.
    base, served, requests = server
    _serve_small_mnist(served, monkeypatch, base)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    fifo = make_special(data_dir / "train-labels-idx1-ubyte.gz", "fifo")
    with time_limit(10), pytest.raises(MNISTError, match=f"{fifo}: a FIFO"):
        load_mnist(data_dir=data_dir, download=True)
    assert fifo.is_fifo() and len(requests) == 3
