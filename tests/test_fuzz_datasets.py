"""Fuzz tests of MNIST loading and its cache (Hypothesis).

The contract, for any bytes and any file types:

- ``read_idx`` returns exactly the array a naive reference decoder finds in
  the bytes, or raises MNISTError when that decoder finds no valid IDX file;
- ``load_mnist(data_dir=...)`` returns exactly the four arrays of the files,
  or raises MissingFileError when the first file it cannot use is missing,
  MNISTError for any other problem, with the data folder in the message;
  nothing else, and no cache is left behind by a failed load;
- a damaged cache (bytes flipped, cut or added, manifests rewritten or
  nested, forged arrays with a consistent manifest, FIFOs, device symlinks,
  folders) never changes the result: the load returns the source data and
  leaves the cache as a fresh build writes it, byte for byte (a manifest
  changed in ways that prove the same, like spacing, is kept: it is equal
  as JSON).

Never a crash, never a hang: every load runs in a child process with a
timeout and a memory limit (idx_helpers.Sandbox); read_idx runs here under
SIGALRM. CI runs ``FUZZ_EXAMPLES`` examples per test (tests/fuzzing.py);
``SCRATCHNET_FUZZ_EXAMPLES=2000 python -m pytest -m fuzz`` runs longer.
"""

import gzip
import hashlib
import json
import math
import re
import shutil
import struct
import tempfile
import typing
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from fuzzing import fuzz_settings
from idx_helpers import (
    IDX_CODES,
    NAMES,
    Sandbox,
    assert_loaded,
    folder_state,
    idx_bytes,
    make_special,
    small_mnist,
    time_limit,
    write_small_mnist,
)
from scratchnet.datasets import MNISTError, load_mnist, read_idx

pytestmark = pytest.mark.fuzz

SPECIAL_KINDS = ["fifo", "zero", "urandom", "dangling", "folder"]
CODE_DTYPES = {code: np.dtype(kind).newbyteorder(">") for kind, code in IDX_CODES.items()}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A module-wide folder; each example makes its own folder inside."""
    return tmp_path_factory.mktemp("fuzz")


# ------------------------------------------------------- the reference decoder


def reference_idx(data, magic=None):
    """The array in IDX bytes ``data`` (gzip-compressed if they start with
    1f 8b), or None if they are not a valid IDX file (with ``magic``): the
    format as the spec defines it, decoded from one buffer, independently of
    scratchnet's streaming reader."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in CODE_DTYPES or data[3] == 0:
        return None
    if magic is not None and int.from_bytes(data[:4], "big") != magic:
        return None
    dtype, ndim = CODE_DTYPES[data[2]], data[3]
    if len(data) < 4 + 4 * ndim:
        return None
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    if len(body) != math.prod(shape) * dtype.itemsize:
        return None
    try:
        return np.frombuffer(body, dtype).reshape(shape)
    except ValueError:  # no data, but a shape NumPy cannot hold (0 x huge x huge, > 64 dims)
        return None


def mnist_layout_ok(x_train, t_train, x_test, t_test):
    """What load_mnist accepts of four decoded arrays."""
    return all(
        x.shape[1:] == (28, 28) and len(x) == len(t) and (t.size == 0 or t.max() <= 9)
        for x, t in [(x_train, t_train), (x_test, t_test)]
    )


# --------------------------------------------------------------- strategies


DIMS = st.sampled_from([0, 1, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1)


@st.composite
def damaged(draw, data, header_size):
    """``data`` with 0-3 damages: a byte set (in the header half the time),
    the dimensions rewritten (0, huge, anything), the end cut, bytes
    appended or inserted."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "dims", "cut", "append", "insert"]))
        if action == "set" and data:
            limit = min(len(data), header_size) if draw(st.booleans()) else len(data)
            data[draw(st.integers(0, limit - 1))] = draw(st.integers(0, 255))
        elif action == "dims" and len(data) >= header_size:
            dims = draw(st.lists(DIMS, min_size=header_size // 4 - 1, max_size=header_size // 4 - 1))
            data[4:header_size] = b"".join(d.to_bytes(4, "big") for d in dims)
        elif action == "cut":
            del data[draw(st.integers(0, len(data))) :]
        elif action == "append":
            data += draw(st.binary(min_size=1, max_size=8))
        elif action == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@st.composite
def idx_files(draw, arrays=None):
    """IDX file bytes: a small array of any IDX dtype (or ``arrays``' draw),
    encoded, optionally damaged, raw or gzip-compressed (compressed before
    the damage: a broken gzip stream; after: a broken IDX file inside a
    sound one)."""
    if arrays is None:
        kind = draw(st.sampled_from(sorted(IDX_CODES)))
        shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)))
        seed = draw(st.integers(0, 2**32 - 1))
        array = (np.random.default_rng(seed).standard_normal(shape) * 100).astype(kind)
    else:
        array = draw(arrays)
    data = idx_bytes(array)
    header_size = 4 + 4 * array.ndim
    compress = draw(st.sampled_from(["raw", "gzip then damage", "damage then gzip"]))
    if compress == "gzip then damage":
        return draw(damaged(gzip.compress(data, mtime=0), 32))
    data = draw(damaged(data, header_size))
    return gzip.compress(data, mtime=0) if compress == "damage then gzip" else data


@st.composite
def mnist_arrays(draw, n, images):
    """Images (n, 28, 28) (rarely another size) or labels (n,) (rarely
    above 9), uint8; ``n`` itself is sometimes off by one."""
    n = max(0, n + draw(st.sampled_from([0] * 8 + [-1, 1])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if images:
        rows, cols = draw(st.sampled_from([(28, 28)] * 8 + [(28, 27), (1, 784)]))
        return rng.integers(0, 256, (n, rows, cols), dtype=np.uint8)
    return rng.integers(0, draw(st.sampled_from([10] * 8 + [11, 256])), n, dtype=np.uint8)


@st.composite
def mnist_folders(draw):
    """The four files of a data folder: {IDX name: ("file", file name, bytes)
    or ("special", kind) or ("missing",)}; mostly sound, some damaged, some
    not regular files or not there at all."""
    sizes = {"train": draw(st.integers(0, 3)), "test": draw(st.integers(0, 3))}
    files = {}
    for key, name in NAMES.items():
        what = draw(st.sampled_from(["sound"] * 14 + ["damaged"] * 3 + ["special", "missing"]))
        if what == "special":
            files[name] = ("special", draw(st.sampled_from(SPECIAL_KINDS)))
        elif what == "missing":
            files[name] = ("missing",)
        else:
            arrays = mnist_arrays(sizes[key[2:]], images=key.startswith("x"))
            if what == "sound":
                array = draw(arrays)
                data = gzip.compress(idx_bytes(array), mtime=0) if draw(st.booleans()) else idx_bytes(array)
            else:
                data = draw(idx_files(arrays))
            files[name] = ("file", name + draw(st.sampled_from([".gz", ""])), data)
    return files


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
MANIFEST_PATHS = [(), ("format",), ("arrays",)] + [
    path
    for key in NAMES
    for path in [
        ("arrays", key),
        ("arrays", key, "shape"),
        ("arrays", key, "shape", 0),
        ("arrays", key, "dtype"),
        ("arrays", key, "sha256"),
    ]
]


@st.composite
def forged_arrays(draw, key, n):
    """An array no MNIST cache holds for ``key`` (of n samples): labels
    above 9, of another dtype or 2-D; images not 28x28, not uint8, or a
    sample count that no forged labels array can match."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if key.startswith("t"):
        labels = rng.integers(0, 10, max(n, 1), dtype=np.uint8)
        how = draw(st.sampled_from(["label", "dtype", "2-D"]))
        if how == "label":
            labels[draw(st.integers(0, len(labels) - 1))] = draw(st.integers(10, 255))
            return labels
        if how == "dtype":
            return labels.astype(draw(st.sampled_from([np.int64, np.float64, np.int8])))
        return labels[:, None]
    how = draw(st.sampled_from(["shape", "dtype", "count"]))
    if how == "shape":
        sample_shape = draw(st.sampled_from([(1, 1), (28, 27), (784,), (28, 28, 1)]))
        return rng.integers(0, 256, (n, *sample_shape), dtype=np.uint8)
    if how == "dtype":
        dtype = draw(st.sampled_from([np.float64, np.int16, np.float32]))
        return rng.integers(0, 256, (n, 28, 28)).astype(dtype)
    return rng.integers(0, 256, (n + 1, 28, 28), dtype=np.uint8)


DROP = object()  # a manifest damage: delete the value at a path
CACHE_FILES = ["manifest.json"] + [f"{key}.npy" for key in NAMES]


@st.composite
def cache_damages(draw, sizes):
    """1-3 damages to a cache folder: (target, action, argument), where
    target is a cache file name or "" for the folder itself."""
    damages = []
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(CACHE_FILES + [""]))
        actions = ["special", "remove"] if not target else ["set", "cut", "append", "special", "remove"]
        if target == "manifest.json":
            actions += ["json", "json", "nest", "pad"]
        if target.endswith(".npy"):
            actions += ["forge", "forge"]
        action = draw(st.sampled_from(actions))
        if action == "set":  # the position wraps; half the time it is in a .npy header
            argument = (draw(st.integers(0, 127) | st.integers(0, 5000)), draw(st.integers(0, 255)))
        elif action == "cut":
            argument = draw(st.floats(0, 1))
        elif action == "append":
            argument = draw(st.binary(min_size=1, max_size=16))
        elif action == "special":
            argument = draw(st.sampled_from(SPECIAL_KINDS))
        elif action == "json":
            argument = (draw(st.sampled_from(MANIFEST_PATHS)), draw(st.just(DROP) | JSON_VALUES))
        elif action == "nest":
            argument = draw(st.integers(1, 3000))
        elif action == "pad":
            argument = draw(st.integers(1, 2**17))
        elif action == "forge":
            key = target[: -len(".npy")]
            argument = draw(forged_arrays(key, sizes[key]))
        else:
            argument = None
        damages.append((target, action, argument))
    return damages


# ------------------------------------------------------------ applying them


def write_folder(directory, files):
    directory.mkdir()
    for name, spec in files.items():
        if spec[0] == "file":
            (directory / spec[1]).write_bytes(spec[2])
        elif spec[0] == "special":
            make_special(directory / f"{name}.gz", spec[1])


def expected_load(files):
    """("arrays", the four arrays) or ("raised", exception class name), as
    load_mnist must answer for a folder of ``files``."""
    for spec in files.values():  # every file is located before any is read
        if spec[0] == "missing" or spec[:2] == ("special", "dangling"):
            return "raised", "MissingFileError"
        if spec[0] == "special":
            return "raised", "MNISTError"
    arrays = {}
    for key, name in NAMES.items():
        arrays[key] = reference_idx(files[name][2], IMAGE_MAGIC if key.startswith("x") else LABEL_MAGIC)
        if arrays[key] is None:
            return "raised", "MNISTError"
    if not mnist_layout_ok(arrays["x_train"], arrays["t_train"], arrays["x_test"], arrays["t_test"]):
        return "raised", "MNISTError"
    return "arrays", arrays


def set_in(document, path, value):
    """``document`` with the value at ``path`` replaced by ``value``, or
    deleted if ``value`` is DROP; unchanged where the path does not exist
    (an earlier damage changed the structure)."""
    if not path:
        return {} if value is DROP else value
    try:
        if len(path) == 1 and value is DROP:
            del document[path[0]]
        else:
            document[path[0]] = set_in(document[path[0]], path[1:], value)
    except (KeyError, IndexError, TypeError):
        pass
    return document


def cache_state(key_dir):
    """folder_state with the manifest's bytes parsed as JSON where they can be."""
    state = []
    for name, kind, content in folder_state(key_dir):
        if name == "manifest.json" and content is not None:
            try:
                content = json.loads(content)
            except (ValueError, RecursionError):
                pass
        state.append((name, kind, content))
    return state


def damage_cache(key_dir, damages):
    for target, action, argument in damages:
        if target and (key_dir.is_symlink() or not key_dir.is_dir()):
            continue  # the folder itself was replaced by an earlier damage
        path = key_dir / target if target else key_dir
        if action == "special":
            make_special(path, argument)
        elif action == "remove":
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        elif not path.is_file():
            continue  # replaced by an earlier damage (a FIFO, say: never read it)
        elif action == "forge":
            forge(key_dir, target[: -len(".npy")], argument)
        else:
            data = bytearray(path.read_bytes())
            if action == "set" and data:
                data[argument[0] % len(data)] = argument[1]
            elif action == "cut":
                del data[int(argument * len(data)) :]
            elif action == "append":
                data += argument
            elif action == "json":
                try:
                    document = set_in(json.loads(data), *argument)
                except (ValueError, RecursionError):  # not JSON (any more), or nested too deep
                    continue
                data = json.dumps(document).encode()
            elif action == "nest":
                data = b'{"format": 1, "arrays": ' + b"[" * argument + b"]" * argument + b"}"
            elif action == "pad":
                data += b" " * argument
            path.unlink()  # a new file: truncating one in place is slow on ext4
            path.write_bytes(bytes(data))


def forge(key_dir, key, array):
    """Rewrite one cached array and its manifest entry consistently."""
    path = key_dir / f"{key}.npy"
    path.unlink()
    np.save(path, array, allow_pickle=False)
    manifest_path = key_dir / "manifest.json"
    if not manifest_path.is_file():
        return  # replaced by an earlier damage (a FIFO, say: never read it)
    try:
        manifest = json.loads(manifest_path.read_bytes())
        manifest["arrays"][key] = {
            "shape": list(array.shape),
            "dtype": array.dtype.str,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    except (ValueError, RecursionError, KeyError, TypeError):
        return  # the manifest is already damaged
    manifest_path.unlink()
    manifest_path.write_text(json.dumps(manifest))


# -------------------------------------------------------------------- tests


@fuzz_settings()
@given(data=idx_files())
def test_read_idx_returns_the_file_or_raises_mnist_error(scratch, data):
    directory = Path(tempfile.mkdtemp(dir=scratch))
    path = directory / "file"
    path.write_bytes(data)
    expected = reference_idx(data)
    event("invalid" if expected is None else "valid")
    with time_limit(10):
        if expected is None:
            with pytest.raises(MNISTError, match=re.escape(str(path))):
                read_idx(path)
        else:
            got = read_idx(path)
            assert got.shape == expected.shape and got.dtype == expected.dtype.newbyteorder("=")
            np.testing.assert_array_equal(got, expected)
    shutil.rmtree(directory)


@fuzz_settings()
@given(files=mnist_folders())
def test_load_mnist_returns_the_files_or_raises_a_documented_error(scratch, sandbox, files):
    root = Path(tempfile.mkdtemp(dir=scratch))
    data_dir, cache = root / "data", root / "cache"
    write_folder(data_dir, files)
    kind, expected = expected_load(files)
    event(f"raises {expected}" if kind == "raised" else "loads")
    outcome = sandbox.load(cache, data_dir)
    if kind == "arrays":
        assert_loaded(outcome, expected)
        assert_loaded(sandbox.load(cache, data_dir), expected)  # from the cache
    else:
        assert outcome.kind == "raised", outcome
        name, is_mnist_error, message = outcome.error
        assert name == expected and is_mnist_error, outcome
        assert str(data_dir) in message
        assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]
    shutil.rmtree(root)


class Pristine(typing.NamedTuple):
    """A data folder of small MNIST, its arrays, and its cache folder as a
    fresh build writes it, with that folder's state."""

    data_dir: Path
    arrays: dict
    key_dir: Path
    state: list

    def __repr__(self):  # Hypothesis prints the arguments of a failing example
        return f"Pristine({self.key_dir})"


@pytest.fixture(scope="module")
def pristine_cache(scratch):
    data_dir = scratch / "cache-source"
    arrays = write_small_mnist(data_dir)
    cache = scratch / "pristine-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCRATCHNET_CACHE_DIR", str(cache))
        load_mnist(data_dir=data_dir)
    (key_dir,) = (cache / "mnist").iterdir()
    return Pristine(data_dir, arrays, key_dir, cache_state(key_dir))


@fuzz_settings()
@given(damages=cache_damages({key: len(a) for key, a in small_mnist().items()}))
def test_damaged_cache_is_rebuilt_and_never_changes_the_result(scratch, sandbox, pristine_cache, damages):
    root = Path(tempfile.mkdtemp(dir=scratch))
    key_dir = root / "mnist" / pristine_cache.key_dir.name
    shutil.copytree(pristine_cache.key_dir, key_dir)
    damage_cache(key_dir, damages)
    for target, action, _ in damages:
        event(f"{action} {target or 'folder'}")
    assert_loaded(sandbox.load(root, pristine_cache.data_dir), pristine_cache.arrays)
    assert cache_state(key_dir) == pristine_cache.state
    shutil.rmtree(root)
