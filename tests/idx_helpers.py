"""Write small IDX files for the dataset tests, independently of the reader.

The encoder here follows the IDX spec directly (struct, big-endian), so the
tests do not check the reader against itself.
"""

import gzip
import struct

import numpy as np

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
