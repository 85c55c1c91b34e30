"""Helpers for the dataset tests: small IDX files, hostile files, bounded loads.

The encoder here follows the IDX spec directly (struct, big-endian), so the
tests do not check the reader against itself. :class:`Sandbox` runs
load_mnist in a child interpreter with a timeout and a memory limit, for
inputs that could hang or exhaust memory; :func:`time_limit` bounds a call
in this process.
"""

import contextlib
import gzip
import os
import shutil
import signal
import stat
import struct
import typing
from pathlib import Path

import numpy as np

from child_runner import Child, ChildFailed

IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}

NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "t_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "t_test": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array, magic=None):
    """The IDX encoding of ``array``; ``magic`` overrides the header's."""
    array = np.asarray(array)
    code = IDX_CODES[array.dtype.kind + str(array.dtype.itemsize)]
    if magic is None:
        magic = (code << 8) | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, *, compress=None, magic=None, extra=b"", cut=None):
    """Write ``array`` as IDX to ``path`` (gzip if ``compress`` or the name
    ends in .gz). ``extra`` is appended to the IDX bytes before compression;
    ``cut`` keeps only the first ``cut`` bytes of the file as written."""
    data = idx_bytes(array, magic) + extra
    if compress is None:
        compress = str(path).endswith(".gz")
    if compress:
        data = gzip.compress(data, mtime=0)
    if cut is not None:
        data = data[:cut]
    path.write_bytes(data)
    return path


def small_mnist(n_train=5, n_test=3, seed=0):
    """Random MNIST-shaped arrays: uint8 images (N, 28, 28), labels 0-9."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "t_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_small_mnist(directory, arrays=None, *, compress=True):
    """Write the four MNIST files of ``arrays`` (default small_mnist())."""
    arrays = small_mnist() if arrays is None else arrays
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for key, name in NAMES.items():
        write_idx(directory / f"{name}{suffix}", arrays[key], compress=compress)
    return arrays


# ------------------------------------------------- hostile files and bounds


def make_special(path, kind):
    """Put something that is not a regular file at ``path`` (replacing it):
    "fifo", "zero" or "urandom" (a symlink to that device), "dangling" (a
    symlink to nothing), or "folder"."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind in ("zero", "urandom"):
        path.symlink_to(f"/dev/{kind}")
    elif kind == "dangling":
        path.symlink_to(path.with_name(path.name + ".nowhere"))
    elif kind == "folder":
        path.mkdir()
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return path


def folder_state(directory):
    """Every entry under ``directory`` (not following symlinks): its relative
    path, its type, and the bytes of regular files. Two equal states mean the
    same regular files with the same content and nothing else."""
    state = []
    for path in sorted(Path(directory).rglob("*")):
        mode = path.lstat().st_mode
        content = path.read_bytes() if stat.S_ISREG(mode) else None
        state.append((path.relative_to(directory).as_posix(), stat.S_IFMT(mode), content))
    return state


class Hang(BaseException):
    """Raised by :func:`time_limit`; a BaseException so that no ``except
    Exception`` (or ``except OSError``) in the code under test can swallow it."""


@contextlib.contextmanager
def time_limit(seconds):
    """Raise :class:`Hang` in the main thread if the block takes longer than
    ``seconds``. A blocking open() or read() is interrupted too (PEP 475 runs
    the handler, which raises)."""

    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _load_mnist(request):
    """Sandbox's request, in the child: load_mnist with the request's cache folder and arguments."""
    from scratchnet.datasets import MNISTError, load_mnist

    os.environ["SCRATCHNET_CACHE_DIR"] = request.pop("cache")
    try:
        (x_train, t_train), (x_test, t_test) = load_mnist(normalize=False, flatten=False, **request)
    except Exception as exc:
        return {"raised": (type(exc).__name__, isinstance(exc, MNISTError), str(exc))}
    return {"arrays": {"x_train": x_train, "t_train": t_train, "x_test": x_test, "t_test": t_test}}


HANDLERS = {"load_mnist": _load_mnist}


class Outcome(typing.NamedTuple):
    """What a sandboxed load_mnist did: ``kind`` is "arrays" (then
    ``arrays`` maps x_train, t_train, x_test, t_test to the returned arrays,
    images as (N, 1, 28, 28)), "raised" (``error`` is (type name, whether it
    is an MNISTError, message)), "timeout" or "died"."""

    kind: str
    arrays: dict = None
    error: tuple = None


class Sandbox:
    """Runs load_mnist in a child interpreter (child_runner.Child), bounded in time and memory.

    A load that blocks (a FIFO opened for reading) or reads without end
    (/dev/zero) would take the whole test run with it; in the child it costs
    one timeout, or a MemoryError at the address-space limit. Warnings are
    errors in the child. The child is reused across calls and replaced after
    a timeout or a death.
    """

    def __init__(self, timeout=15.0, memory=2**30):
        self.timeout = timeout
        self.child = Child("idx_helpers", memory=memory, python_options=("-W", "error"))

    def load(self, cache, data_dir=None, **kwargs):
        """load_mnist(normalize=False, flatten=False, data_dir=..., **kwargs)
        with SCRATCHNET_CACHE_DIR=cache, in the child; returns an Outcome."""
        request = dict(kwargs, cache=str(cache), data_dir=None if data_dir is None else str(data_dir))
        try:
            reply = self.child.call("load_mnist", request, self.timeout)
        except ChildFailed as failure:
            return Outcome("timeout" if failure.how == "hang" else "died")
        if "raised" in reply:
            return Outcome("raised", error=reply["raised"])
        return Outcome("arrays", arrays=reply["arrays"])

    def close(self):
        self.child.close()


def assert_loaded(outcome, arrays):
    """``outcome`` is a successful load returning exactly ``arrays`` (the
    uint8 arrays of small_mnist)."""
    assert outcome.kind == "arrays", outcome
    for key, expected in arrays.items():
        got = outcome.arrays[key]
        shape = (len(expected), 1, 28, 28) if key.startswith("x") else expected.shape
        assert got.dtype == np.uint8 and got.shape == shape, (key, got.dtype, got.shape)
        np.testing.assert_array_equal(got.reshape(expected.shape), expected)
