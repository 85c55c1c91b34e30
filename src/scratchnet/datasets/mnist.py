"""``load_mnist``: the textbook's loader, offline, verified, cached without pickle.

The four MNIST files ship in ``scratchnet/datasets/data/``. The first load
parses them with the strict IDX reader, checks the SHA-256 of each
decompressed file against the published digests, and caches the uint8 arrays
as ``.npy`` files; later loads read the cache. The cache is never trusted:
a JSON manifest, written last, records each ``.npy`` file's shape, dtype and
SHA-256, and any disagreement (truncation, bit flip, wrong shape, missing
file, unreadable manifest) means the cache is rebuilt from the source files.
Every cache file is written atomically, so a crash leaves no half-written
file behind.

Cache folder: ``$SCRATCHNET_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/scratchnet``, else ``~/.cache/scratchnet``; inside it,
``mnist/<key>/`` where the key is a digest of the source files' bytes, so
different data folders never collide.
"""

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from .download import download_mnist
from .idx import MissingFileError, MNISTError, read_idx_digest

__all__ = ["load_mnist", "cache_dir", "FILES", "SHIPPED_SHA256"]

# Array name -> IDX file name (looked for as ``name.gz``, then ``name``).
FILES = {
    "x_train": "train-images-idx3-ubyte",
    "t_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "t_test": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the decompressed files shipped in data/ (the genuine MNIST).
SHIPPED_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

SHIPPED_DIR = Path(__file__).resolve().parent / "data"

IMAGE_MAGIC = 2051  # uint8, 3 dimensions: (N, rows, cols)
LABEL_MAGIC = 2049  # uint8, 1 dimension: (N,)
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10

_CACHE_FORMAT = 1
_MANIFEST = "manifest.json"
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def load_mnist(normalize=True, flatten=True, one_hot_label=False, *, data_dir=None, download=False):
    """Load MNIST as the textbook's ``load_mnist`` does, without pickle.

    Parameters
    ----------
    normalize : bool, optional
        If True, images are float32 in [0, 1], computed as
        ``x.astype(np.float32) / np.float32(255)`` (bit-identical to the
        textbook's ``x = x.astype(np.float32); x /= 255.0``). If False,
        images are the file's uint8 values 0-255.
    flatten : bool, optional
        If True, images have shape (N, 784); else (N, 1, 28, 28).
    one_hot_label : bool, optional
        If True, labels are one-hot float32 arrays of shape (N, 10) (the
        textbook uses float64; float32 matches the images and is exact for
        0 and 1). If False, labels are the file's uint8 digits 0-9, shape (N,).
    data_dir : str or os.PathLike, optional
        A folder holding the four IDX files, each as ``name.gz`` or ``name``
        (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``). Default:
        the MNIST files shipped with scratchnet, verified against their
        published SHA-256 digests. Files of your own (e.g. Fashion-MNIST)
        get the strict format checks only.
    download : bool, optional
        If True and ``data_dir`` lacks files, fetch them first from the MNIST
        mirrors (see :func:`scratchnet.datasets.download_mnist`). Ignored
        when ``data_dir`` is None: the shipped files need no download.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuples of numpy.ndarray
        60,000 training and 10,000 test samples for MNIST, shaped and typed
        as described above. The arrays are fresh and writable.

    Raises
    ------
    MissingFileError
        If a file is missing; the message names it and how to provide it.
    MNISTError
        If a file is damaged or inconsistent: truncated or corrupt gzip,
        wrong magic number, body size not matching the header, images not
        28x28, image and label counts differing, a label above 9, or a
        shipped file whose SHA-256 does not match.
    DownloadError
        If ``download=True`` and every mirror failed for a missing file.

    Notes
    -----
    The parsed uint8 arrays are cached in :func:`cache_dir`; a cache that
    cannot be written (read-only or full disk) is skipped silently.
    """
    raw = _load_raw(data_dir, download)
    x_train = _images(raw.pop("x_train"), normalize, flatten)
    x_test = _images(raw.pop("x_test"), normalize, flatten)
    t_train = _labels(raw.pop("t_train"), one_hot_label)
    t_test = _labels(raw.pop("t_test"), one_hot_label)
    return (x_train, t_train), (x_test, t_test)


def cache_dir():
    """The folder where scratchnet caches parsed datasets.

    Returns
    -------
    pathlib.Path
        ``$SCRATCHNET_CACHE_DIR`` if set and non-empty, else
        ``$XDG_CACHE_HOME/scratchnet`` if that is an absolute path (as the
        XDG spec asks), else ``~/.cache/scratchnet``.
    """
    override = os.environ.get("SCRATCHNET_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "scratchnet"


def _images(x, normalize, flatten):
    """(N, rows, cols) uint8 -> the requested layout and dtype."""
    if normalize:
        x = np.divide(x, np.float32(255), dtype=np.float32)
    n = x.shape[0]
    return x.reshape(n, x.shape[1] * x.shape[2]) if flatten else x.reshape(n, 1, *x.shape[1:])


def _labels(t, one_hot):
    """(N,) uint8 digits -> themselves, or (N, 10) float32 one-hot."""
    if not one_hot:
        return t
    one_hot_t = np.zeros((t.size, N_CLASSES), dtype=np.float32)
    one_hot_t[np.arange(t.size), t] = 1
    return one_hot_t


def _load_raw(data_dir, download):
    """The four uint8 arrays by name, from the cache or the source files."""
    if data_dir is None:
        directory, expected = SHIPPED_DIR, SHIPPED_SHA256
    else:
        directory, expected = Path(data_dir).expanduser(), None
        if download:
            download_mnist(directory)
    paths = {key: _find(directory, name, data_dir is None) for key, name in FILES.items()}
    cache = cache_dir() / "mnist" / _cache_key(paths, expected)
    arrays = _read_cache(cache)
    if arrays is None:
        arrays = _read_source(paths, expected)
        _write_cache(cache, arrays)
    return arrays


def _find(directory, name, shipped):
    for path in (directory / f"{name}.gz", directory / name):
        if path.is_file():
            return path
    if shipped:
        hint = (
            "the files shipped with scratchnet are missing (a broken install?): "
            "reinstall scratchnet, or pass data_dir=<folder with the MNIST files>, "
            "optionally with download=True"
        )
    else:
        hint = (
            "put the four MNIST files there, pass data_dir=<folder with the files>, "
            f"or call load_mnist(data_dir={str(directory)!r}, download=True) to fetch them"
        )
    raise MissingFileError(f"{directory}: MNIST file {name}[.gz] not found; {hint}")


def _read_source(paths, expected):
    """Parse and check the four IDX files; verify digests if ``expected``."""
    arrays = {}
    for key, path in paths.items():
        magic = IMAGE_MAGIC if key.startswith("x") else LABEL_MAGIC
        array, digest = read_idx_digest(path, magic=magic, digest=expected is not None)
        if expected is not None and digest != expected[FILES[key]]:
            raise MNISTError(
                f"{path}: SHA-256 of the decompressed file is {digest}, expected "
                f"{expected[FILES[key]]}: the file is damaged or not the genuine MNIST file"
            )
        arrays[key] = array
    for split in ("train", "test"):
        x_key, t_key = f"x_{split}", f"t_{split}"
        _check_pair(arrays[x_key], arrays[t_key], paths[x_key], paths[t_key])
    return arrays


def _check_pair(x, t, x_path, t_path):
    if x.shape[1:] != IMAGE_SHAPE:
        raise MNISTError(f"{x_path}: images are {x.shape[1]}x{x.shape[2]}, expected 28x28")
    if len(x) != len(t):
        raise MNISTError(f"{x_path} has {len(x)} images but {t_path} has {len(t)} labels")
    bad = np.flatnonzero(t >= N_CLASSES)
    if bad.size:
        raise MNISTError(
            f"{t_path}: label {t[bad[0]]} at index {bad[0]} is outside 0..9 "
            f"({bad.size} labels out of range)"
        )


def _cache_key(paths, expected):
    """A digest of the source files' bytes (and whether they were verified)."""
    h = hashlib.sha256(f"scratchnet mnist cache v{_CACHE_FORMAT}\n".encode())
    h.update(b"verified\n" if expected is not None else b"unverified\n")
    for key in sorted(paths):
        h.update(f"{key} {_file_sha256(paths[key])}\n".encode())
    return h.hexdigest()[:32]


def _file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(2**20):
            h.update(chunk)
    return h.hexdigest()


def _write_cache(directory, arrays):
    """Save ``arrays`` as .npy files plus a manifest, all atomically.

    The manifest goes first out and last in, so at no moment does a manifest
    describe files that are not yet complete. Errors are swallowed: the
    cache only saves time.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / _MANIFEST).unlink(missing_ok=True)
        entries = {}
        for key, array in arrays.items():
            path = directory / f"{key}.npy"
            atomic_write(path, lambda file, a=array: np.save(file, a, allow_pickle=False))
            entries[key] = {
                "shape": list(array.shape),
                "dtype": array.dtype.str,
                "sha256": _file_sha256(path),
            }
        text = json.dumps({"format": _CACHE_FORMAT, "arrays": entries}, indent=1)
        atomic_write(directory / _MANIFEST, lambda file: file.write(text.encode("utf-8")))
    except OSError:
        pass


def _read_cache(directory):
    """The cached arrays, or None if absent or damaged in any way."""
    try:
        manifest = json.loads((directory / _MANIFEST).read_text("utf-8"))
        entries = manifest["arrays"]
        if manifest["format"] != _CACHE_FORMAT or set(entries) != set(FILES):
            return None
        arrays = {}
        for key, entry in entries.items():
            path = directory / f"{key}.npy"
            array = _read_npy(path, tuple(entry["shape"]), np.dtype(entry["dtype"]))
            if array is None or _npy_sha256(path, array) != entry["sha256"]:
                return None
            arrays[key] = array
        return arrays
    except (OSError, ValueError, TypeError, KeyError, EOFError, SyntaxError):
        # Unreadable file or manifest of the wrong structure: rebuild.
        return None


def _read_npy(path, shape, dtype):
    """np.load ``path`` after checking its header, so that a damaged header
    can neither allocate a wrong size nor yield a wrong shape or dtype."""
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        if version not in _NPY_HEADER_READERS:
            return None
        header = _NPY_HEADER_READERS[version](file)
        nbytes = math.prod(shape) * dtype.itemsize
        size_ok = os.fstat(file.fileno()).st_size == file.tell() + nbytes
        if header != (shape, False, dtype) or not size_ok:
            return None
        file.seek(0)
        array = np.load(file, allow_pickle=False)
    return array if array.shape == shape and array.dtype == dtype else None


def _npy_sha256(path, array):
    """SHA-256 of the .npy file ``array`` was loaded from, hashing the
    header from disk and the data from memory (no second read)."""
    with open(path, "rb") as file:
        header = file.read(os.fstat(file.fileno()).st_size - array.nbytes)
    h = hashlib.sha256(header)
    h.update(memoryview(array.reshape(-1).view(np.uint8)))
    return h.hexdigest()
