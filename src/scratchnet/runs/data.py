"""The data of a run: MNIST loaded as the chapter loads it, and digests that tie a saved run to it."""

import gzip
import hashlib
from pathlib import Path

from .._config import EnvironmentVariableError
from ..datasets import load_mnist
from ..datasets.mnist import FILES, SHIPPED_SHA256
from .errors import RunError


def load_data(settings):
    """((x_train, t_train), (x_test, t_test)) as the chapter loads them."""
    try:
        return load_mnist(normalize=True, flatten=True, one_hot_label=False, data_dir=settings["data_dir"])
    except EnvironmentVariableError as exc:  # the message names the variable
        raise RunError(str(exc)) from None
    except (ValueError, OSError) as exc:  # MNISTError, MissingFileError, unreadable folder
        where = "--data-dir " + settings["data_dir"] if settings["data_dir"] else "shipped MNIST"
        raise RunError(f"{where}: {exc}") from None


def data_digests(data_dir):
    """SHA-256 of the content of each of the four data files, and of the set.

    The content is the decompressed IDX bytes, so ``name.gz`` and ``name``
    with the same data agree, and the shipped set's digests are its
    published ones (which load_mnist verifies).
    """
    if data_dir is None:
        files = dict(SHIPPED_SHA256)
    else:
        files = {name: _content_sha256(Path(data_dir), name) for name in FILES.values()}
    combined = hashlib.sha256("".join(f"{name} {files[name]}\n" for name in sorted(files)).encode())
    return combined.hexdigest(), files


def _content_sha256(directory, name):
    h = hashlib.sha256()
    gz = directory / f"{name}.gz"
    try:
        with gzip.open(gz, "rb") if gz.is_file() else open(directory / name, "rb") as f:
            while chunk := f.read(2**20):
                h.update(chunk)
    except (OSError, EOFError) as exc:
        raise RunError(f"--data-dir {directory}: cannot read {name}: {exc}") from None
    return h.hexdigest()


def check_same_data(saved, digest, files):
    """Refuse to resume ``saved`` on data other than the data it started with."""
    recorded = saved.config.get("data_sha256")
    if recorded is None or recorded == digest:
        return  # runs saved before data digests were recorded cannot be checked
    old = saved.config.get("data_files_sha256") or {}
    changed = [name for name in sorted(files) if old.get(name) != files[name]] or ["the data set"]
    raise RunError(
        f"--resume {saved.directory}: the data changed since the run started ({', '.join(changed)}: "
        "SHA-256 differs from config.json); resume with the original data, or start a new run with --out"
    )
