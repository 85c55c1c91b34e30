"""Optional, verified download of the MNIST files.

scratchnet ships MNIST, so this is only for a ``data_dir`` of your own. Each
file is streamed into a temporary file beside its destination, checked
against the MD5 sum the MNIST mirrors publish, and only then renamed into
place (``os.replace`` is atomic), so an interrupted or bad download leaves
nothing behind. On a failure the next mirror is tried; when every mirror
fails, :class:`DownloadError` lists what went wrong with each.
"""

import errno
import functools
import hashlib
import http.client
import os
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from .._atomic import atomic_write
from .idx import LINK_LOOP, MNISTError, is_link_loop

__all__ = ["DownloadError", "download_mnist", "MIRRORS", "MNIST_MD5"]

# Base URLs, tried in order; a file's URL is the base followed by its name.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# MD5 sums of the original .gz files, as the mirrors publish them.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# No MNIST file comes near this; a mirror sending more is refused.
MAX_BYTES = 64 * 2**20
_CHUNK = 2**20


class DownloadError(MNISTError, OSError):
    """Every mirror failed for a file; the message lists each failure."""


class _BadResponse(Exception):
    """One mirror's answer was unusable (short, too long, wrong checksum)."""


def download_mnist(data_dir, *, mirrors=None, md5=None, timeout=30.0):
    """Download the MNIST files missing from ``data_dir``, verified by MD5.

    A file counts as present if ``name`` (e.g. ``train-images-idx3-ubyte.gz``)
    or its decompressed twin (``train-images-idx3-ubyte``) exists, whatever
    it is; present files are neither checked nor fetched again, nor
    replaced (:func:`~scratchnet.datasets.load_mnist` reports a damaged one,
    or one that is not a regular file).

    Parameters
    ----------
    data_dir : str or os.PathLike
        Destination folder, created if needed (with its parents).
    mirrors : sequence of str, optional
        Base URLs (http or https) tried in order. Default :data:`MIRRORS`.
    md5 : dict of str to str, optional
        File name -> expected MD5 hex digest; these are the files fetched.
        Default :data:`MNIST_MD5`.
    timeout : float, optional
        Seconds to wait for a connection or for data before giving up on a
        mirror.

    Returns
    -------
    list of pathlib.Path
        The files downloaded (empty if none was missing).

    Raises
    ------
    DownloadError
        If ``data_dir`` is not a folder and cannot be created as one (it is
        a file, say), before any request; or if every mirror failed for some
        file (earlier files stay downloaded).
    """
    mirrors = MIRRORS if mirrors is None else tuple(mirrors)
    md5 = MNIST_MD5 if md5 is None else md5
    directory = Path(data_dir).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_link_loop(exc) or (exc.errno == errno.EEXIST and _is_link_loop_path(directory)):
            problem = f"is {LINK_LOOP}"
        elif exc.errno == errno.EEXIST:  # there, but not a folder
            problem = "is a file, not a folder"
        else:
            problem = f"cannot be created as a folder ({exc.strerror})"
        raise DownloadError(f"data_dir {directory} {problem}: pass a folder to download the MNIST files into") from None
    fetched = []
    for name, digest in md5.items():
        if not is_present(directory, name):
            fetched.append(_fetch(name, digest.lower(), directory, mirrors, timeout))
    return fetched


def _is_link_loop_path(path):
    try:
        os.stat(path)
    except OSError as exc:
        return is_link_loop(exc)
    return False


def is_present(directory, name):
    """True if ``directory`` holds anything called ``name`` or, for ``x.gz``,
    ``x`` (a FIFO or a dangling symbolic link too: never replaced)."""
    directory = Path(directory)
    plain = name[: -len(".gz")] if name.endswith(".gz") else name
    return os.path.lexists(directory / name) or os.path.lexists(directory / plain)


def _fetch(name, digest, directory, mirrors, timeout):
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        try:
            atomic_write(directory / name, functools.partial(_stream, url, digest=digest, timeout=timeout))
            return directory / name
        except (OSError, http.client.HTTPException, _BadResponse) as exc:
            # OSError covers URLError, HTTPError, timeouts and resets.
            failures.append(f"  {url}: {type(exc).__name__}: {exc}")
    if not failures:
        failures.append("  (no mirrors given)")
    raise DownloadError(f"could not download {name} into {directory}; every mirror failed:\n" + "\n".join(failures))


def _stream(url, file, digest, timeout):
    """Copy ``url`` into ``file``; raise unless complete and MD5 matches."""
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise _BadResponse(f"unsupported URL scheme {scheme!r} (use http or https)")
    md5 = hashlib.md5(usedforsecurity=False)
    received = 0
    with urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length", "")
        expected = int(length) if length.isdigit() else None
        if expected is not None and expected > MAX_BYTES:
            raise _BadResponse(f"refusing {expected} bytes (limit {MAX_BYTES})")
        while chunk := response.read(_CHUNK):
            received += len(chunk)
            if received > MAX_BYTES:
                raise _BadResponse(f"refusing more than {MAX_BYTES} bytes")
            md5.update(chunk)
            file.write(chunk)
    if expected is not None and received != expected:
        raise _BadResponse(f"connection dropped after {received} of {expected} bytes")
    if md5.hexdigest() != digest:
        raise _BadResponse(f"MD5 mismatch: got {md5.hexdigest()}, expected {digest}")
