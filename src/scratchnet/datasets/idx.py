"""A strict reader for the IDX format (the file format of MNIST).

An IDX file is a big-endian header followed by the array's bytes::

    magic    4 bytes: 0x00 0x00 <dtype code> <number of dimensions>
    dims     4 bytes each, unsigned big-endian
    data     prod(dims) * itemsize bytes, C order, big-endian

MNIST images have magic 2051 (0x00000803: uint8, 3 dims) and labels magic
2049 (0x00000801: uint8, 1 dim). Files may be gzip-compressed; the reader
tells by the content (gzip starts with 0x1f 0x8b, IDX with 0x00 0x00), so a
``.gz`` file that a browser already decompressed still reads.

The reader trusts nothing: it opens regular files only (never a FIFO or a
device, which could block or never end), the byte count must equal the
header's product exactly (fewer is a truncated file, more is trailing
garbage) and a gzip stream must end properly. Every problem is an
:class:`MNISTError` naming the file.
"""

import errno
import gzip
import hashlib
import os
import stat
import zlib
from pathlib import Path

import numpy as np

__all__ = ["MNISTError", "MissingFileError", "read_idx", "IDX_DTYPES"]

# IDX dtype code -> NumPy dtype as stored (big-endian for multi-byte types).
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
# Deflate expands at most ~1032:1, so a gzip file of n bytes cannot hold more
# than this many; a header claiming more is refused before allocating.
_MAX_DEFLATE_RATIO = 1032


class MNISTError(ValueError):
    """A dataset file is damaged, truncated, or not what it claims to be.

    The message names the file and the problem.
    """


class MissingFileError(MNISTError, FileNotFoundError):
    """A dataset file is not where it was looked for.

    Also a :class:`FileNotFoundError`, so ``except FileNotFoundError`` works.
    """


def read_idx(path, *, magic=None):
    """Read one IDX file, raw or gzip-compressed, strictly.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Compression is detected from the content, not the name.
    magic : int, optional
        The magic number the header must carry, e.g. 2051 for MNIST images
        or 2049 for MNIST labels. Default: any valid IDX magic.

    Returns
    -------
    numpy.ndarray
        Shape as in the header, C-contiguous, writable, in native byte order
        (``uint8`` for MNIST).

    Raises
    ------
    MissingFileError
        If ``path`` does not exist.
    MNISTError
        If ``path`` is not a regular file (a FIFO, a device, a folder) or is
        a loop of symbolic links; on a
        truncated or corrupt gzip stream, an invalid or unexpected magic
        number, or a body shorter (truncated) or longer (trailing garbage)
        than the header's dimensions say.
    """
    array, _ = read_idx_digest(path, magic=magic, digest=False)
    return array


def read_idx_digest(path, *, magic=None, digest=True):
    """Like :func:`read_idx`, also returning the SHA-256 hex digest of the
    decompressed bytes (header and body), or None if ``digest`` is False."""
    path = Path(path)
    try:
        with open_regular(path) as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if not compressed:
                return _read_stream(raw, path, magic, digest, os.fstat(raw.fileno()).st_size, True)
            limit = os.fstat(raw.fileno()).st_size * _MAX_DEFLATE_RATIO + 1024
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_stream(stream, path, magic, digest, limit, False)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such file") from None
    except EOFError as exc:
        raise MNISTError(f"{path}: truncated gzip stream ({exc})") from None
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise MNISTError(f"{path}: corrupt gzip stream ({exc})") from None


def _read_stream(stream, path, magic, digest, max_bytes, exact_size):
    """Parse header and body from an open binary stream; see read_idx.

    ``max_bytes`` bounds the total size the stream can possibly have (the
    exact size if ``exact_size``), so a damaged header cannot make us
    allocate terabytes.
    """
    head = _read_exact(stream, 4, path, "magic number")
    found = int.from_bytes(head, "big")
    if head[:2] != b"\x00\x00" or head[2] not in IDX_DTYPES or head[3] == 0:
        raise MNISTError(f"{path}: not an IDX file (magic number 0x{found:08x})")
    if magic is not None and found != magic:
        raise MNISTError(f"{path}: wrong magic number {found} (0x{found:08x}), expected {magic} (0x{magic:08x})")
    dtype, ndim = IDX_DTYPES[head[2]], head[3]
    dims_bytes = _read_exact(stream, 4 * ndim, path, "dimensions")
    head += dims_bytes
    shape = tuple(int.from_bytes(dims_bytes[4 * i : 4 * i + 4], "big") for i in range(ndim))
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if exact_size and len(head) + nbytes > max_bytes:
        raise MNISTError(
            f"{path}: truncated: header {shape} needs {nbytes} data bytes, file has {max_bytes - len(head)}"
        )
    if len(head) + nbytes > max_bytes:
        raise MNISTError(
            f"{path}: header says {shape} ({nbytes} data bytes), "
            f"more than the file can hold: truncated or damaged header"
        )
    try:
        array = np.empty(shape, dtype=dtype)
    except (ValueError, MemoryError) as exc:  # > 64 dimensions, or 0 x huge x huge
        raise MNISTError(f"{path}: header shape {shape} is not an array NumPy can hold ({exc})") from None
    got = readinto_full(stream, byte_view(array))
    if got != nbytes:
        raise MNISTError(f"{path}: truncated: header {shape} needs {nbytes} data bytes, file has {got}")
    if stream.read(1):
        raise MNISTError(f"{path}: trailing garbage after the {nbytes} data bytes the header {shape} describes")
    hexdigest = None
    if digest:
        h = hashlib.sha256(head)
        h.update(byte_view(array))
        hexdigest = h.hexdigest()
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("="))
    return array, hexdigest


def byte_view(array):
    """A flat writable byte view of a C-contiguous array (any byte order)."""
    return memoryview(array.reshape(-1).view(np.uint8))


def _read_exact(stream, n, path, what):
    data = stream.read(n)
    if len(data) != n:
        raise MNISTError(f"{path}: truncated in the header ({what})")
    return data


def readinto_full(stream, view):
    """Fill ``view`` from ``stream``; return how many bytes were read."""
    total = 0
    while total < len(view):
        n = stream.readinto(view[total:])
        if not n:
            break
        total += n
    return total


# Non-blocking, so that opening a FIFO (put there after the os.stat check)
# returns at once instead of waiting for a writer; no controlling terminal.
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_OPEN_FLAGS = os.O_RDONLY | _NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)


def open_regular(path, max_bytes=None):
    """Open ``path`` (symlinks followed) for binary reading if it is a
    regular file of at most ``max_bytes`` bytes.

    The type is checked before opening (a FIFO or a device is never opened)
    and again on the open descriptor, which a race cannot change; the open
    itself does not block. Raises MNISTError naming the path and what it is,
    FileNotFoundError if it does not exist.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if is_link_loop(exc):
            raise MNISTError(f"{path}: {LINK_LOOP}; point it at the file itself") from None
        raise
    _check_regular(path, mode)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        _check_regular(path, info.st_mode)
        if max_bytes is not None and info.st_size > max_bytes:
            raise MNISTError(f"{path}: {info.st_size} bytes, more than the {max_bytes} it can be")
        if _NONBLOCK:
            os.set_blocking(fd, True)  # a regular file: reads as usual
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


LINK_LOOP = "a loop of symbolic links (following them never reaches a file or folder)"


def is_link_loop(exc):
    """True if the OSError ``exc`` is ELOOP: too many levels of symbolic links."""
    return exc.errno == errno.ELOOP


def file_kind(mode):
    """What a file of ``os.stat`` mode ``mode`` is, in words: "a file",
    "a folder", "a FIFO (named pipe)", ..."""
    for is_kind, kind in [
        (stat.S_ISREG, "a file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]:
        if is_kind(mode):
            return kind
    return "of an unknown kind"


def _check_regular(path, mode):
    if not stat.S_ISREG(mode):
        raise MNISTError(
            f"{path}: {file_kind(mode)}, not a regular file; scratchnet reads datasets only "
            "from regular files: put the file itself there"
        )
