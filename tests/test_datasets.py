"""Tests for scratchnet.datasets: the strict IDX reader, load_mnist, its cache.

No test touches the network or the real ~/.cache: every test gets its own
SCRATCHNET_CACHE_DIR under tmp_path. The shipped MNIST is parsed once per
module (a cold build, which also checks the published SHA-256 digests); the
flag tests then read the warm cache.
"""

import gzip
import hashlib
import json
import os
import pwd
import re
from types import SimpleNamespace

import numpy as np
import pytest

from idx_helpers import (
    NAMES,
    Sandbox,
    assert_loaded,
    folder_state,
    idx_bytes,
    make_special,
    small_mnist,
    time_limit,
    write_idx,
    write_small_mnist,
)
from scratchnet import EnvironmentVariableError
from scratchnet import _atomic as atomic_module
from scratchnet.datasets import MissingFileError, MNISTError, cache_dir, load_mnist, read_idx
from scratchnet.datasets import mnist as mnist_module

# From the shared MNIST README.
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MEAN_TRAIN_PIXEL = 33.318


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test caches under its own tmp_path, never in ~/.cache."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("SCRATCHNET_CACHE_DIR", str(directory))
    return directory


@pytest.fixture
def parse_count(monkeypatch):
    """Counts how often load_mnist parses the source files (cache misses)."""
    calls = []
    real = mnist_module._read_source

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(mnist_module, "_read_source", counting)
    return calls


@pytest.fixture(scope="module")
def sandbox():
    """load_mnist in a child process, for caches and files that could hang
    or exhaust memory (see idx_helpers.Sandbox)."""
    box = Sandbox()
    yield box
    box.close()


@pytest.fixture
def small_cache(tmp_path, private_cache):
    """A small data folder with its cache built; returns (data folder,
    arrays, cache key folder, the key folder's state)."""
    arrays = write_small_mnist(tmp_path / "data")
    load_mnist(data_dir=tmp_path / "data")
    (key_dir,) = (private_cache / "mnist").iterdir()
    return tmp_path / "data", arrays, key_dir, folder_state(key_dir)


def files_under(directory):
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


# ---------------------------------------------------------------- shipped MNIST


@pytest.fixture(scope="module")
def shipped_cache(tmp_path_factory):
    """Cold-build the shipped MNIST cache once; return its folder and the
    raw uint8 arrays ((x_train, t_train), (x_test, t_test))."""
    directory = tmp_path_factory.mktemp("shipped-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCRATCHNET_CACHE_DIR", str(directory))
        raw = load_mnist(normalize=False, flatten=False)
    return directory, raw


@pytest.fixture
def warm_shipped(shipped_cache, monkeypatch):
    """The shipped cache, warm; parsing the source files is forbidden."""
    directory, raw = shipped_cache
    monkeypatch.setenv("SCRATCHNET_CACHE_DIR", str(directory))

    def no_parse(*args, **kwargs):
        raise AssertionError("the warm cache was not used")

    monkeypatch.setattr(mnist_module, "_read_source", no_parse)
    return raw


def test_shipped_mnist_facts(shipped_cache):
    _, ((x_train, t_train), (x_test, t_test)) = shipped_cache
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == x_test.dtype == t_train.dtype == t_test.dtype == np.uint8
    assert np.bincount(t_train, minlength=10).tolist() == TRAIN_LABEL_COUNTS
    assert np.bincount(t_test, minlength=10).tolist() == TEST_LABEL_COUNTS
    assert round(float(x_train.mean()), 3) == MEAN_TRAIN_PIXEL


def test_shipped_files_match_their_published_gz_digests():
    expected = {
        "train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
        "train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
        "t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
        "t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
    }
    for name, digest in expected.items():
        assert hashlib.sha256((mnist_module.SHIPPED_DIR / name).read_bytes()).hexdigest() == digest
    assert (mnist_module.SHIPPED_DIR / "NOTICE").read_text().count("CC BY-SA 3.0") >= 1


# Four loads cover every pair of flag values (a pairwise covering array).
@pytest.mark.parametrize(
    "normalize, flatten, one_hot_label",
    [(True, True, False), (True, False, True), (False, True, True), (False, False, False)],
)
def test_load_mnist_flags(warm_shipped, normalize, flatten, one_hot_label):
    (raw_x_train, raw_t_train), (raw_x_test, raw_t_test) = warm_shipped
    (x_train, t_train), (x_test, t_test) = load_mnist(normalize, flatten, one_hot_label)
    for x, t, raw_x, raw_t in [
        (x_train, t_train, raw_x_train, raw_t_train),
        (x_test, t_test, raw_x_test, raw_t_test),
    ]:
        n = len(raw_t)
        assert x.shape == ((n, 784) if flatten else (n, 1, 28, 28))
        assert x.flags.c_contiguous and x.flags.writeable
        if normalize:
            assert x.dtype == np.float32
            # The textbook: x = x.astype(np.float32); x /= 255.0
            expected = raw_x.astype(np.float32)
            expected /= 255.0
            assert np.array_equal(x, expected.reshape(x.shape))
            assert 0.0 <= x.min() and x.max() <= 1.0
        else:
            assert x.dtype == np.uint8
            assert np.array_equal(x, raw_x.reshape(x.shape))
        if one_hot_label:
            assert t.shape == (n, 10) and t.dtype == np.float32
            assert set(np.unique(t)) == {0.0, 1.0}
            np.testing.assert_array_equal(t.sum(axis=1), 1)
            np.testing.assert_array_equal(t.argmax(axis=1), raw_t)
        else:
            assert t.shape == (n,) and t.dtype == np.uint8
            np.testing.assert_array_equal(t, raw_t)


def test_shipped_files_are_verified_by_decompressed_sha256(tmp_path, monkeypatch, private_cache):
    # Stand-in shipped folder with small files and their true digests.
    shipped = tmp_path / "shipped"
    arrays = write_small_mnist(shipped)
    digests = {name: hashlib.sha256(idx_bytes(arrays[key])).hexdigest() for key, name in NAMES.items()}
    monkeypatch.setattr(mnist_module, "SHIPPED_DIR", shipped)
    monkeypatch.setattr(mnist_module, "SHIPPED_SHA256", digests)
    (x_train, _), _ = load_mnist(normalize=False, flatten=False)
    np.testing.assert_array_equal(x_train[:, 0], arrays["x_train"])

    # A valid IDX file with one pixel changed is not the published file.
    arrays["x_test"][0, 0, 0] ^= 1
    write_idx(shipped / "t10k-images-idx3-ubyte.gz", arrays["x_test"])
    with pytest.raises(MNISTError, match=r"t10k-images-idx3-ubyte\.gz: SHA-256 .* expected"):
        load_mnist()


def test_missing_shipped_files_say_so(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "SHIPPED_DIR", tmp_path / "empty")
    with pytest.raises(MissingFileError, match="reinstall"):
        load_mnist()


# ------------------------------------------------------------------ cache


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("SCRATCHNET_CACHE_DIR", str(tmp_path / "override"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "override"
    monkeypatch.delenv("SCRATCHNET_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "scratchnet"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says ignore it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "scratchnet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "scratchnet"


NO_USER = "~scratchnet-no-such-user"


def test_a_cache_dir_of_an_unknown_user_is_named(monkeypatch, warm_shipped):
    # Once: RuntimeError: Could not determine home directory.
    monkeypatch.setenv("SCRATCHNET_CACHE_DIR", f"{NO_USER}/cache")
    message = (
        f"SCRATCHNET_CACHE_DIR='{NO_USER}/cache': cannot expand {NO_USER!r}: there is no user "
        f"{NO_USER[1:]!r}; set it to a folder path without '~', e.g. an absolute one"
    )
    for call in (cache_dir, load_mnist):
        with pytest.raises(EnvironmentVariableError) as info:
            call()
        assert str(info.value) == message
    assert isinstance(info.value, ValueError)  # what scratchnet.runs reports as a data problem


def test_a_cache_dir_without_a_home_is_named(monkeypatch):
    monkeypatch.delenv("HOME")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))  # no home on record
    monkeypatch.setenv("SCRATCHNET_CACHE_DIR", "~/cache")
    with pytest.raises(EnvironmentVariableError) as info:
        cache_dir()
    assert str(info.value) == (
        "SCRATCHNET_CACHE_DIR='~/cache': cannot expand '~': no home directory is known (HOME is not set); "
        "set it to a folder path without '~', e.g. an absolute one"
    )
    monkeypatch.delenv("SCRATCHNET_CACHE_DIR")
    with pytest.raises(EnvironmentVariableError) as info:
        cache_dir()
    assert str(info.value) == (
        "HOME: not set, and this user has no home directory on record, so the dataset cache (~/.cache/scratchnet) "
        "has no place; set HOME, XDG_CACHE_HOME or SCRATCHNET_CACHE_DIR to a folder path"
    )


def test_user_data_dir_loads_and_caches(tmp_path, private_cache, parse_count):
    arrays = write_small_mnist(tmp_path / "data")
    for _ in range(2):
        (x_train, t_train), (x_test, t_test) = load_mnist(normalize=False, flatten=False, data_dir=tmp_path / "data")
        np.testing.assert_array_equal(x_train[:, 0], arrays["x_train"])
        np.testing.assert_array_equal(t_train, arrays["t_train"])
        np.testing.assert_array_equal(x_test[:, 0], arrays["x_test"])
        np.testing.assert_array_equal(t_test, arrays["t_test"])
    assert len(parse_count) == 1
    assert not [f for f in files_under(private_cache) if f.endswith(".tmp")]


def test_different_data_dirs_never_share_a_cache(tmp_path, private_cache):
    a = write_small_mnist(tmp_path / "a", small_mnist(seed=1))
    b = write_small_mnist(tmp_path / "b", small_mnist(seed=2), compress=False)
    for directory, arrays in [("a", a), ("b", b), ("a", a)]:
        (x_train, _), _ = load_mnist(normalize=False, data_dir=tmp_path / directory)
        np.testing.assert_array_equal(x_train, arrays["x_train"].reshape(5, 784))
    assert len(list((private_cache / "mnist").iterdir())) == 2
    # Changing a source file changes the key, so stale arrays are not served.
    c = small_mnist(seed=3)
    write_idx(tmp_path / "a" / "train-images-idx3-ubyte.gz", c["x_train"])
    (x_train, _), _ = load_mnist(normalize=False, data_dir=tmp_path / "a")
    np.testing.assert_array_equal(x_train, c["x_train"].reshape(5, 784))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def _flip_last_bit(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def _flip_shape_digit(path):
    # '(5, 28, 28)' -> '(7, 28, 28)': a valid header describing the wrong shape.
    path.write_bytes(path.read_bytes().replace(b"(5, 28, 28)", b"(7, 28, 28)"))


def _other_dtype(path):
    np.save(path, np.load(path).astype(np.int64), allow_pickle=False)


def _trailing_garbage(path):
    path.write_bytes(path.read_bytes() + b"\0")


def _remove(path):
    path.unlink()


def _garbage_manifest(path):
    (path.parent / "manifest.json").write_bytes(b"{not json")


def _wrong_manifest_digest(path):
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["arrays"]["x_train"]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))


def _manifest_of_wrong_structure(path):
    (path.parent / "manifest.json").write_text('{"format": 1, "arrays": [1, 2]}')


@pytest.mark.parametrize(
    "damage",
    [
        _truncate,
        _flip_last_bit,
        _flip_shape_digit,
        _other_dtype,
        _trailing_garbage,
        _remove,
        _garbage_manifest,
        _wrong_manifest_digest,
        _manifest_of_wrong_structure,
    ],
)
def test_damaged_cache_is_rebuilt(tmp_path, private_cache, parse_count, damage):
    arrays = write_small_mnist(tmp_path / "data")
    load_mnist(data_dir=tmp_path / "data")
    (key_dir,) = (private_cache / "mnist").iterdir()
    pristine = {f: (key_dir / f).read_bytes() for f in files_under(key_dir)}

    damage(key_dir / "x_train.npy")
    (x_train, _), _ = load_mnist(normalize=False, flatten=False, data_dir=tmp_path / "data")

    np.testing.assert_array_equal(x_train[:, 0], arrays["x_train"])
    assert len(parse_count) == 2  # rebuilt, not trusted
    assert {f: (key_dir / f).read_bytes() for f in files_under(key_dir)} == pristine


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_cache_write_leaves_nothing_half_written(tmp_path, private_cache, monkeypatch, error):
    arrays = write_small_mnist(tmp_path / "data")
    real = atomic_module.atomic_write
    calls = []

    def failing_third(path, write):
        calls.append(path)
        if len(calls) < 3:
            return real(path, write)

        def half_then_fail(file):
            file.write(b"\x93NUMPY half")
            raise error

        return real(path, half_then_fail)

    monkeypatch.setattr(mnist_module, "atomic_write", failing_third)
    if isinstance(error, OSError):
        # A cache that cannot be written only costs time.
        (x_train, _), _ = load_mnist(normalize=False, flatten=False, data_dir=tmp_path / "data")
        np.testing.assert_array_equal(x_train[:, 0], arrays["x_train"])
    else:
        with pytest.raises(KeyboardInterrupt):
            load_mnist(data_dir=tmp_path / "data")
    left = files_under(private_cache)
    assert not [f for f in left if f.endswith(".tmp") or f.endswith("manifest.json")]
    assert len(left) == 2  # the two files written before the failure, complete

    monkeypatch.setattr(mnist_module, "atomic_write", real)
    load_mnist(data_dir=tmp_path / "data")
    assert len(files_under(private_cache)) == 5


def test_every_npy_header_byte_changed_means_rebuild(small_cache):
    # Once: numpy's header parser raised tokenize.TokenError (neither
    # ValueError nor OSError) for some of these, which escaped the cache check.
    _, _, key_dir, _ = small_cache
    path = key_dir / "x_train.npy"
    original = path.read_bytes()
    header_end = 10 + int.from_bytes(original[8:10], "little")  # .npy 1.0: magic, version, length
    with open(path, "r+b") as file:  # in place: rewriting whole files is slow on ext4
        for i in range(header_end):
            for value in {original[i] ^ 0x80, original[i] ^ 0x01, *b"()[]{}',: 0\n"} - {original[i]}:
                file.seek(i)
                file.write(bytes([value]))
                file.flush()
                assert mnist_module._read_cache(key_dir) is None, (i, bytes([value]))
            file.seek(i)
            file.write(original[i : i + 1])
            file.flush()
    assert path.read_bytes() == original and mnist_module._read_cache(key_dir) is not None


def test_unparsable_npy_header_is_rebuilt_and_the_next_load_uses_the_cache(small_cache, parse_count):
    data_dir, arrays, key_dir, pristine = small_cache
    path = key_dir / "x_train.npy"
    path.write_bytes(path.read_bytes().replace(b"(5, 28, 28)", b"(5, 28, 28 "))  # unbalanced: TokenError
    for _ in range(2):
        (x_train, _), _ = load_mnist(normalize=False, flatten=False, data_dir=data_dir)
        np.testing.assert_array_equal(x_train[:, 0], arrays["x_train"])
    assert len(parse_count) == 1  # rebuilt once, then trusted
    assert folder_state(key_dir) == pristine


@pytest.mark.parametrize("kind", ["fifo", "zero", "urandom", "dangling", "folder"])
@pytest.mark.parametrize("name", ["manifest.json", "x_train.npy", "t_test.npy", None])
def test_cache_entry_that_is_not_a_regular_file_is_replaced(small_cache, private_cache, sandbox, name, kind):
    # Once: a FIFO hung the load, /dev/zero or /dev/urandom as the
    # manifest was read until MemoryError. None: the cache folder itself.
    data_dir, arrays, key_dir, pristine = small_cache
    make_special(key_dir / name if name else key_dir, kind)
    assert_loaded(sandbox.load(private_cache, data_dir), arrays)
    assert folder_state(key_dir) == pristine


def _deep_manifest(key_dir):
    depth = 20000  # 40 kB, far past the recursion limit: json.loads raised RecursionError
    (key_dir / "manifest.json").write_text('{"format": 1, "arrays": ' + "[" * depth + "]" * depth + "}")


def _deep_manifest_entry(key_dir):
    manifest = json.loads((key_dir / "manifest.json").read_text())
    manifest["arrays"]["t_test"]["shape"] = [[[[[[[[[[[[[[[[[[[[3]]]]]]]]]]]]]]]]]]]]
    (key_dir / "manifest.json").write_text(json.dumps(manifest))


def _padded_manifest(key_dir):
    # Valid JSON, but no manifest of ours is 128 kB: refused unread.
    path = key_dir / "manifest.json"
    path.write_text(path.read_text() + " " * 2**17)


@pytest.mark.parametrize("damage", [_deep_manifest, _deep_manifest_entry, _padded_manifest])
def test_manifest_is_bounded_in_size_and_nesting(small_cache, parse_count, monkeypatch, damage):
    data_dir, arrays, key_dir, pristine = small_cache
    damage(key_dir)
    parsed = []

    def loads(text):
        parsed.append(text)
        return json.loads(text)

    monkeypatch.setattr(mnist_module, "json", SimpleNamespace(loads=loads, dumps=json.dumps))
    (_, t_train), _ = load_mnist(normalize=False, data_dir=data_dir)
    np.testing.assert_array_equal(t_train, arrays["t_train"])
    assert parsed == []  # refused before json.loads
    assert len(parse_count) == 1  # rebuilt
    assert folder_state(key_dir) == pristine


def _forge(key_dir, key, array):
    """Rewrite a cached array and its manifest entry consistently, as someone
    who knows the cache format could: every digest matches."""
    path = key_dir / f"{key}.npy"
    np.save(path, array, allow_pickle=False)
    manifest = json.loads((key_dir / "manifest.json").read_text())
    manifest["arrays"][key] = {
        "shape": list(array.shape),
        "dtype": array.dtype.str,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    (key_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "key, forged",
    [
        ("t_train", np.array([1, 2, 200, 3, 4], np.uint8)),  # a label out of 0..9
        ("x_train", np.zeros((5, 1, 1), np.uint8)),  # not 28x28
        ("x_train", np.zeros((5, 28, 28), np.float64)),  # not uint8
        ("t_train", np.zeros(5, np.int64)),  # labels not uint8
        ("t_test", np.zeros(4, np.uint8)),  # 3 test images, 4 labels
        ("t_test", np.zeros((3, 1), np.uint8)),  # labels not 1-D
        ("x_test", np.zeros((3, 784), np.uint8)),  # images not (N, 28, 28)
    ],
)
def test_consistent_cache_of_impossible_contents_is_rebuilt(small_cache, parse_count, key, forged):
    # Once: such a cache was served and failed later (IndexError).
    data_dir, arrays, key_dir, pristine = small_cache
    _forge(key_dir, key, forged)
    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=False, flatten=False, data_dir=data_dir)
    for got, key in [(x_train[:, 0], "x_train"), (t_train, "t_train"), (x_test[:, 0], "x_test"), (t_test, "t_test")]:
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[key])
    assert len(parse_count) == 1
    assert folder_state(key_dir) == pristine


# --------------------------------------------------------- bad source files


def _put(directory, name, array, **kwargs):
    (directory / f"{name}.gz").unlink()
    write_idx(directory / f"{name}{'' if kwargs.get('compress') is False else '.gz'}", array, **kwargs)


@pytest.mark.parametrize(
    "case, file, message",
    [
        ("truncated_gzip", "train-images-idx3-ubyte.gz", r"truncated gzip stream"),
        ("corrupt_gzip", "train-images-idx3-ubyte.gz", r"corrupt gzip stream"),
        ("wrong_magic", "train-images-idx3-ubyte.gz", r"wrong magic number 2049 .* expected 2051"),
        ("labels_as_images", "t10k-labels-idx1-ubyte.gz", r"wrong magic number 2051 .* expected 2049"),
        ("body_too_short", "train-images-idx3-ubyte", r"truncated: header \(5, 28, 28\) needs 3920"),
        ("trailing_garbage", "t10k-labels-idx1-ubyte.gz", r"trailing garbage"),
        (
            "count_mismatch",
            "train-images-idx3-ubyte.gz",
            r"has 5 images but .*train-labels-idx1-ubyte\.gz has 4 labels",
        ),
        ("label_above_9", "train-labels-idx1-ubyte.gz", r"label 10 at index 2 is outside 0\.\.9"),
        ("not_28x28", "t10k-images-idx3-ubyte.gz", r"images are 28x27, expected 28x28"),
    ],
)
def test_bad_files_raise_naming_file_and_problem(tmp_path, private_cache, case, file, message):
    data = tmp_path / "data"
    arrays = write_small_mnist(data)
    if case == "truncated_gzip":
        full = gzip.compress(idx_bytes(arrays["x_train"]), mtime=0)
        (data / "train-images-idx3-ubyte.gz").write_bytes(full[: len(full) // 2])
    elif case == "corrupt_gzip":
        full = bytearray(gzip.compress(idx_bytes(arrays["x_train"]), mtime=0))
        full[-8] ^= 0xFF  # the CRC-32 in the trailer
        (data / "train-images-idx3-ubyte.gz").write_bytes(bytes(full))
    elif case == "wrong_magic":
        _put(data, "train-images-idx3-ubyte", arrays["t_train"])
    elif case == "labels_as_images":
        _put(data, "t10k-labels-idx1-ubyte", arrays["x_test"])
    elif case == "body_too_short":
        _put(data, "train-images-idx3-ubyte", arrays["x_train"], compress=False, cut=16 + 3919)
    elif case == "trailing_garbage":
        _put(data, "t10k-labels-idx1-ubyte", arrays["t_test"], extra=b"\x00")
    elif case == "count_mismatch":
        _put(data, "train-labels-idx1-ubyte", arrays["t_train"][:4])
    elif case == "label_above_9":
        labels = arrays["t_train"].copy()
        labels[2] = 10
        _put(data, "train-labels-idx1-ubyte", labels)
    elif case == "not_28x28":
        _put(data, "t10k-images-idx3-ubyte", arrays["x_test"][:, :, :27])
    with pytest.raises(MNISTError, match=message) as info:
        load_mnist(data_dir=data)
    assert str(data / file) in str(info.value)
    assert not private_cache.exists() or not files_under(private_cache)


def test_missing_file_names_it_and_the_remedies(tmp_path):
    write_small_mnist(tmp_path / "data")
    (tmp_path / "data" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MissingFileError) as info:
        load_mnist(data_dir=tmp_path / "data")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, MNISTError)
    for part in ["t10k-labels-idx1-ubyte", str(tmp_path / "data"), "data_dir=", "download=True"]:
        assert part in str(info.value)


@pytest.mark.parametrize(
    "kind, what",
    [
        ("fifo", "a FIFO"),
        ("zero", "a character device"),
        ("urandom", "a character device"),
        ("folder", "a folder"),
    ],
)
def test_data_file_that_is_not_a_regular_file_is_named(tmp_path, private_cache, kind, what):
    # Once: these were skipped as "not found".
    write_small_mnist(tmp_path / "data")
    path = make_special(tmp_path / "data" / "train-labels-idx1-ubyte.gz", kind)
    with time_limit(10), pytest.raises(MNISTError) as info:
        load_mnist(data_dir=tmp_path / "data")
    assert not isinstance(info.value, MissingFileError)
    assert f"{path}: {what}" in str(info.value) and "not a regular file" in str(info.value)
    assert not private_cache.exists() or not files_under(private_cache)


def test_data_file_that_is_a_dangling_symlink_says_so(tmp_path):
    write_small_mnist(tmp_path / "data")
    path = make_special(tmp_path / "data" / "t10k-images-idx3-ubyte.gz", "dangling")
    with pytest.raises(MissingFileError, match="symbolic link to .*, which does not exist") as info:
        load_mnist(data_dir=tmp_path / "data")
    assert str(path) in str(info.value)


def test_data_dir_that_is_a_file_says_so(tmp_path):
    # Once: this was "MNIST file ... not found".
    path = tmp_path / "data"
    path.write_bytes(b"")
    with pytest.raises(MNISTError, match=r"data_dir .* is a file, not a folder") as info:
        load_mnist(data_dir=path)
    assert str(path) in str(info.value) and not isinstance(info.value, MissingFileError)


def test_data_dir_inside_a_file_says_so(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(MNISTError, match=r"data_dir .*/file/data: a part of this path is a file, not a folder"):
        load_mnist(data_dir=tmp_path / "file" / "data", download=True)


LOOP = "a loop of symbolic links (following them never reaches a file or folder)"


def _link_loop(a, b):
    """Symbolic links ``a`` -> ``b`` -> ``a``."""
    a.symlink_to(b)
    b.symlink_to(a)
    return a


@pytest.mark.parametrize("below", ["", "sub"])
@pytest.mark.parametrize("download", [False, True])
def test_data_dir_that_is_a_loop_of_symlinks_says_so(tmp_path, below, download):
    # Once: OSError: [Errno 40] Too many levels of symbolic links.
    data_dir = _link_loop(tmp_path / "a", tmp_path / "b") / below
    with pytest.raises(MNISTError) as info:
        load_mnist(data_dir=data_dir, download=download)
    assert str(info.value) == (
        f"data_dir {data_dir}: {LOOP}; fix the links, or pass the folder that holds the four MNIST files"
    )


def test_data_file_that_is_a_loop_of_symlinks_says_so(tmp_path):
    write_small_mnist(tmp_path / "data")
    path = tmp_path / "data" / "t10k-images-idx3-ubyte.gz"
    path.unlink()
    _link_loop(path, tmp_path / "elsewhere")
    with pytest.raises(MNISTError) as info:
        load_mnist(data_dir=tmp_path / "data")
    assert str(info.value) == f"{path}: {LOOP}; point it at the MNIST file t10k-images-idx3-ubyte[.gz] or remove it"
    with pytest.raises(MNISTError) as info:
        read_idx(path)
    assert str(info.value) == f"{path}: {LOOP}; point it at the file itself"


@pytest.mark.parametrize("flag", ["normalize", "flatten", "one_hot_label", "download"])
@pytest.mark.parametrize("value", ["no", "False", 0, 1, None, 1.0, [True]])
def test_flags_must_be_true_or_false(warm_shipped, flag, value):
    # Once: load_mnist(normalize="no") normalized.
    message = rf"load_mnist: {flag} must be True or False, got {re.escape(repr(value))}"
    with pytest.raises(TypeError, match=message):
        load_mnist(**{flag: value})


def test_numpy_bools_are_bools(tmp_path):
    write_small_mnist(tmp_path / "data")
    (x_train, t_train), _ = load_mnist(np.True_, np.False_, np.bool_(True), data_dir=tmp_path / "data")
    assert x_train.shape == (5, 1, 28, 28) and x_train.dtype == np.float32 and t_train.shape == (5, 10)


def test_data_dir_must_be_a_path(warm_shipped):
    with pytest.raises(TypeError, match=r"load_mnist: data_dir must be a folder path .*got 5"):
        load_mnist(data_dir=5)


def test_raw_and_misnamed_files_load_alike(tmp_path):
    arrays = small_mnist()
    write_small_mnist(tmp_path / "raw", arrays, compress=False)
    # A .gz file that a browser already decompressed: content decides.
    misnamed = tmp_path / "misnamed"
    misnamed.mkdir()
    for key, name in NAMES.items():
        write_idx(misnamed / f"{name}.gz", arrays[key], compress=False)
    for directory in ["raw", "misnamed"]:
        (_, t_train), (x_test, _) = load_mnist(normalize=False, data_dir=tmp_path / directory)
        np.testing.assert_array_equal(t_train, arrays["t_train"])
        np.testing.assert_array_equal(x_test, arrays["x_test"].reshape(3, 784))


def test_empty_dataset_keeps_its_shapes(tmp_path):
    arrays = {key: a[:0] for key, a in small_mnist().items()}
    write_small_mnist(tmp_path / "data", arrays)
    (x_train, t_train), _ = load_mnist(one_hot_label=True, data_dir=tmp_path / "data")
    assert x_train.shape == (0, 784) and t_train.shape == (0, 10)


# ------------------------------------------------------------- read_idx


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4), (0, 5), (1, 2, 1, 3)])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, shape, compress):
    rng = np.random.default_rng(42)
    expected = (rng.standard_normal(shape) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", expected, compress=compress)
    got = read_idx(path)
    assert got.shape == shape and got.dtype == expected.dtype.newbyteorder("=")
    assert got.dtype.isnative and got.flags.c_contiguous and got.flags.writeable
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("compress", [False, True])
def test_every_prefix_of_a_valid_file_is_rejected(tmp_path, compress):
    path = write_idx(tmp_path / "a.idx", np.arange(24, dtype=">i2").reshape(2, 3, 4), compress=compress)
    data = path.read_bytes()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(MNISTError, match=r"truncated"):
            read_idx(path)


@pytest.mark.parametrize(
    "header, message",
    [
        (b"\x01\x00\x08\x01", "not an IDX file"),
        (b"\x00\x00\x0a\x01", "not an IDX file"),  # no dtype 0x0A
        (b"\x00\x00\x08\x00", "not an IDX file"),  # no dimensions
        (b"\x1f\x8b\x08\x00", "truncated gzip stream"),
    ],
)
def test_read_idx_rejects_bad_headers(tmp_path, header, message):
    path = tmp_path / "bad"
    path.write_bytes(header + b"\x00\x00\x00\x01\x00")
    with pytest.raises(MNISTError, match=message):
        read_idx(path)


def test_read_idx_checks_expected_magic(tmp_path):
    path = write_idx(tmp_path / "labels", np.zeros(3, np.uint8))
    assert read_idx(path, magic=2049).shape == (3,)
    with pytest.raises(MNISTError, match="wrong magic number 2049 .0x00000801., expected 2051"):
        read_idx(path, magic=2051)


@pytest.mark.parametrize("compress", [False, True])
def test_huge_header_on_small_file_is_refused_before_allocating(tmp_path, compress):
    # 0xFFFFFFFF^3 bytes would be a MemoryError, not a clear message.
    header = b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(header, mtime=0) if compress else header)
    message = "more than the file can hold" if compress else "truncated: header .* file has 0"
    with pytest.raises(MNISTError, match=message):
        read_idx(path)


@pytest.mark.parametrize("kind, what", [("fifo", "a FIFO"), ("zero", "a character device"), ("folder", "a folder")])
def test_read_idx_refuses_what_is_not_a_regular_file(tmp_path, kind, what):
    path = make_special(tmp_path / "f", kind)
    with time_limit(10), pytest.raises(MNISTError, match=f"{what}.*, not a regular file"):
        read_idx(path)


def test_a_fifo_swapped_in_after_the_check_cannot_hang(tmp_path, monkeypatch):
    # os.stat says regular file (as if the FIFO replaced it right after the
    # check): the open must not block, and the open file is checked again.
    fifo = make_special(tmp_path / "fifo", "fifo")
    regular = write_idx(tmp_path / "regular", np.zeros(3, np.uint8))
    real_stat = os.stat

    def stat_before_the_swap(path, *args, **kwargs):
        return real_stat(regular if os.fspath(path) == os.fspath(fifo) else path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_before_the_swap)
    with time_limit(10), pytest.raises(MNISTError, match="a FIFO"):
        read_idx(fifo)


@pytest.mark.parametrize(
    "header",
    [
        # 0 x huge x huge: no data, but too big a shape
        b"\x00\x00\x08\x03" + b"\x00\x00\x00\x00" + b"\xff\xff\xff\xff" * 2,
        b"\x00\x00\x08\x64" + b"\x00\x00\x00\x00" * 100,  # 100 dimensions, more than NumPy has
    ],
)
def test_header_numpy_cannot_hold_is_an_mnist_error(tmp_path, header):
    # Found by the fuzz tests: numpy's ValueError escaped, naming no file.
    path = tmp_path / "odd"
    path.write_bytes(header)
    with pytest.raises(MNISTError, match=f"{path}: header shape .* not an array NumPy can hold"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(MissingFileError, match="no such file"):
        read_idx(tmp_path / "nope")
    assert not os.path.exists(tmp_path / "nope")
