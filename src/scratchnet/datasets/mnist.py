"""``load_mnist``: the textbook's loader, offline, verified, cached without pickle.

The four MNIST files ship in ``scratchnet/datasets/data/``. The first load
parses them with the strict IDX reader, checks the SHA-256 of each
decompressed file against the published digests, and caches the uint8 arrays
as ``.npy`` files; later loads read the cache. The cache is trusted only for
what it proves. A JSON manifest, written last, records each ``.npy`` file's
shape, dtype and SHA-256. Only regular files are read (never a FIFO or a
device), each no larger than it can be; the manifest is bounded in size and
nesting; a ``.npy`` header must be byte for byte the one written for the
manifest's shape (numpy's header parser is never run on it); and the arrays
must be MNIST layout: uint8 images (N, 28, 28), uint8 labels 0-9, the same N
within a split. Any failure of any kind (truncation, bit flip, wrong shape,
missing or special file, forged contents) means the cache folder is removed
and rebuilt from the source files. Every cache file is written atomically,
so a crash leaves no half-written file behind.

Cache folder: ``$SCRATCHNET_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/scratchnet``, else ``~/.cache/scratchnet``; inside it,
``mnist/<key>/`` where the key is a digest of the source files' bytes, so
different data folders never collide.
"""

import hashlib
import io
import json
import math
import os
import shutil
import stat
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from .._config import EnvironmentVariableError, env_setting
from .download import download_mnist
from .idx import (
    LINK_LOOP,
    MissingFileError,
    MNISTError,
    byte_view,
    file_kind,
    is_link_loop,
    open_regular,
    read_idx_digest,
    readinto_full,
)

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
_CACHE_DTYPE = np.dtype(np.uint8)
_MANIFEST = "manifest.json"
# The manifest written is under 1 kB with 10 brackets ({ and [); a larger or
# deeper one is not ours, and is refused before json.loads can recurse on it.
_MAX_MANIFEST_BYTES = 2**16
_MAX_MANIFEST_BRACKETS = 16


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
        ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), as regular
        files or symbolic links to regular files; ``name.gz`` is used if both
        exist. Default: the MNIST files shipped with scratchnet, verified
        against their published SHA-256 digests. Files of your own (e.g.
        Fashion-MNIST) get the strict format checks only.
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
    TypeError
        If a flag is not True or False (NumPy bools count), or ``data_dir``
        is not None, a str or an os.PathLike.
    MissingFileError
        If a file is missing (or is a symbolic link to nothing); the message
        names it and how to provide it.
    MNISTError
        If ``data_dir`` exists but is not a folder, or is a loop of symbolic
        links; if a data file is not a regular file (a FIFO, a device, a
        folder, a loop of symbolic links); if a file is damaged or
        inconsistent: truncated or corrupt gzip, wrong magic number, body
        size not matching the header, images not 28x28, image and label
        counts differing, a label above 9, or a shipped file whose SHA-256
        does not match.
    DownloadError
        If ``download=True`` and every mirror failed for a missing file.
    OSError
        If a file or folder exists but cannot be read (e.g. permissions).
    scratchnet.EnvironmentVariableError
        If ``$SCRATCHNET_CACHE_DIR`` cannot be expanded into a folder path
        (see :func:`cache_dir`).

    Notes
    -----
    The parsed uint8 arrays are cached in :func:`cache_dir`. A cache that
    fails to load in any way (damaged, replaced, or not MNIST layout) is
    removed and rebuilt from the data files; a cache that cannot be written
    (read-only or full disk) is skipped silently. Errors are never raised
    because of the cache, except for a cache folder setting that names no
    folder at all (above).
    """
    for name, flag in [
        ("normalize", normalize),
        ("flatten", flatten),
        ("one_hot_label", one_hot_label),
        ("download", download),
    ]:
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"load_mnist: {name} must be True or False, got {flag!r}")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"load_mnist: data_dir must be a folder path (str or os.PathLike) or None, got {data_dir!r}")
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

    Raises
    ------
    scratchnet.EnvironmentVariableError
        If ``$SCRATCHNET_CACHE_DIR`` starts with ``~`` or ``~user`` that
        cannot be expanded (no such user, or no home directory known), or
        if the default is needed and the home directory is unknown.
    """
    override = os.environ.get("SCRATCHNET_CACHE_DIR")
    if override:
        try:
            return Path(override).expanduser()
        except RuntimeError:  # "Could not determine home directory."
            head = override.split(os.sep, 1)[0]
            why = "no home directory is known (HOME is not set)" if head == "~" else f"there is no user {head[1:]!r}"
            raise EnvironmentVariableError(
                f"{env_setting('SCRATCHNET_CACHE_DIR', override)}: cannot expand {head!r}: {why}; "
                "set it to a folder path without '~', e.g. an absolute one"
            ) from None
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "scratchnet"
    try:
        return Path.home() / ".cache" / "scratchnet"
    except RuntimeError:
        raise EnvironmentVariableError(
            "HOME: not set, and this user has no home directory on record, so the dataset cache "
            "(~/.cache/scratchnet) has no place; set HOME, XDG_CACHE_HOME or SCRATCHNET_CACHE_DIR to a folder path"
        ) from None


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
        _check_folder(directory)
        if download:
            download_mnist(directory)
    paths = {key: _find(directory, name, data_dir is None) for key, name in FILES.items()}
    cache = cache_dir() / "mnist" / _cache_key(paths, expected)
    arrays = _read_cache(cache)
    if arrays is None:
        arrays = _read_source(paths, expected)
        _write_cache(cache, arrays)
    return arrays


def _check_folder(directory):
    """MNISTError if ``directory`` exists but is not a folder."""
    try:
        mode = directory.stat().st_mode
    except FileNotFoundError:
        return  # _find (or the download) says what to do
    except NotADirectoryError:
        raise MNISTError(f"data_dir {directory}: a part of this path is a file, not a folder") from None
    except OSError as exc:
        if is_link_loop(exc):
            raise MNISTError(
                f"data_dir {directory}: {LINK_LOOP}; fix the links, or pass the folder that holds the four MNIST files"
            ) from None
        raise
    if not stat.S_ISDIR(mode):
        raise MNISTError(
            f"data_dir {directory} is {file_kind(mode)}, not a folder: pass the folder "
            "that holds the four MNIST files (or, with download=True, one to download them into)"
        )


def _find(directory, name, shipped):
    """``directory/name.gz``, else ``directory/name``; a regular file."""
    for path in (directory / f"{name}.gz", directory / name):
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            if path.is_symlink():
                raise MissingFileError(
                    f"{path}: a symbolic link to {os.readlink(path)}, which does not exist; "
                    f"point it at the MNIST file {name}[.gz] or remove it"
                ) from None
            continue
        except OSError as exc:
            if is_link_loop(exc):
                raise MNISTError(f"{path}: {LINK_LOOP}; point it at the MNIST file {name}[.gz] or remove it") from None
            raise
        if not stat.S_ISREG(mode):
            raise MNISTError(
                f"{path}: {file_kind(mode)}, not a regular file; replace it with the MNIST "
                f"file {name} (gzip-compressed or not), or remove it"
            )
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
    """MNISTError unless ``x`` is uint8 images (N, 28, 28) and ``t`` uint8
    labels (N,) in 0..9: what the rest of scratchnet relies on."""
    if x.dtype != np.uint8 or t.dtype != np.uint8:
        raise MNISTError(f"{x_path}, {t_path}: images are {x.dtype}, labels {t.dtype}; expected uint8")
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise MNISTError(f"{x_path}: images are {'x'.join(map(str, x.shape[1:]))}, expected 28x28")
    if t.ndim != 1:
        raise MNISTError(f"{t_path}: labels of shape {t.shape}, expected (N,)")
    if len(x) != len(t):
        raise MNISTError(f"{x_path} has {len(x)} images but {t_path} has {len(t)} labels")
    bad = np.flatnonzero(t >= N_CLASSES)
    if bad.size:
        raise MNISTError(
            f"{t_path}: label {t[bad[0]]} at index {bad[0]} is outside 0..9 ({bad.size} labels out of range)"
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
    with open_regular(path) as file:
        while chunk := file.read(2**20):
            h.update(chunk)
    return h.hexdigest()


def _write_cache(directory, arrays):
    """Replace whatever is at ``directory`` with ``arrays`` as .npy files
    plus a manifest, each written atomically.

    What was there failed to load, so it goes first, manifest included; the
    new manifest goes in last, so at no moment does a manifest describe
    files that are not yet complete. Errors are swallowed: the cache only
    saves time.
    """
    try:
        _remove(directory)
        directory.mkdir(parents=True, exist_ok=True)
        entries = {}
        for key, array in arrays.items():
            header, data = _npy_header(array.shape), byte_view(array)
            atomic_write(directory / f"{key}.npy", lambda file, parts=(header, data): file.writelines(parts))
            entries[key] = {
                "shape": list(array.shape),
                "dtype": array.dtype.str,
                "sha256": _sha256(header, data),
            }
        text = json.dumps({"format": _CACHE_FORMAT, "arrays": entries}, indent=1)
        atomic_write(directory / _MANIFEST, lambda file: file.write(text.encode("utf-8")))
    except OSError:
        pass


def _remove(path):
    """Remove whatever is at ``path``: a folder with its contents, or a file,
    FIFO or symbolic link (not its target)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _read_cache(directory):
    """The cached arrays, or None if absent, damaged, or not MNIST layout."""
    try:
        entries = _read_manifest(directory / _MANIFEST)
        arrays = {key: _read_npy(directory / f"{key}.npy", *entry) for key, entry in entries.items()}
        for split in ("train", "test"):
            x_key, t_key = f"x_{split}", f"t_{split}"
            _check_pair(arrays[x_key], arrays[t_key], f"{x_key}.npy", f"{t_key}.npy")
        return arrays
    except Exception:
        # Whatever went wrong (numpy, json and the OS raise many types), the
        # cache proves nothing: rebuild it from the strictly checked sources.
        return None


def _read_manifest(path):
    """{array name: (shape, SHA-256)} from the manifest; ValueError unless it
    could be one _write_cache wrote."""
    with open_regular(path, _MAX_MANIFEST_BYTES) as file:
        data = file.read(_MAX_MANIFEST_BYTES + 1)
    if len(data) > _MAX_MANIFEST_BYTES or data.count(b"[") + data.count(b"{") > _MAX_MANIFEST_BRACKETS:
        raise ValueError(f"{path}: larger or more deeply nested than any manifest written")
    manifest = json.loads(data.decode("utf-8"))
    entries = manifest["arrays"]
    if manifest["format"] != _CACHE_FORMAT or set(entries) != set(FILES):
        raise ValueError(f"{path}: not a manifest of this cache format")
    result = {}
    for key, entry in entries.items():
        shape = tuple(entry["shape"])
        if entry["dtype"] != _CACHE_DTYPE.str or not all(type(n) is int and n >= 0 for n in shape):
            raise ValueError(f"{path}: {key} is not a uint8 array of a valid shape")
        result[key] = shape, entry["sha256"]
    return result


def _read_npy(path, shape, sha256):
    """The uint8 array of ``shape`` in the .npy file ``path``; ValueError
    unless the file is exactly the header _write_cache writes for ``shape``
    followed by the data, with SHA-256 ``sha256``. Nothing in the file is
    parsed, and nothing is allocated before its size is known to match."""
    header = _npy_header(shape)
    size = len(header) + math.prod(shape) * _CACHE_DTYPE.itemsize
    with open_regular(path, size) as file:
        if os.fstat(file.fileno()).st_size != size or file.read(len(header)) != header:
            raise ValueError(f"{path}: not the .npy file the manifest describes")
        array = np.empty(shape, _CACHE_DTYPE)
        data = byte_view(array)
        if readinto_full(file, data) != len(data):
            raise ValueError(f"{path}: truncated")
    if _sha256(header, data) != sha256:
        raise ValueError(f"{path}: SHA-256 does not match the manifest")
    return array


def _npy_header(shape):
    """The .npy header (format 1.0) that np.save writes for a uint8 array of ``shape``."""
    header = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(_CACHE_DTYPE)
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    return header.getvalue()


def _sha256(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()
