"""Numba's on-disk cache: used where possible, never a reason for import to fail.

Each test runs a fresh interpreter on a private copy of the package (a cache
is per process and per source path, and the installed tree must not be
touched). The interpreter runs with ``-S``: an editable install's import
hook would otherwise import the working tree instead of the copy.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import scratchnet

PACKAGE = Path(scratchnet.__file__).parent

# Runs in the child: checks the package folder really is read-only when told
# so (else the test would prove nothing), calls one kernel, reports where
# Numba put its cache and whether it was a hit.
CHILD = r"""
import json, os, sys, tempfile, warnings
warnings.simplefilter("error")
import numpy as np
import numba
import scratchnet as sn
import importlib
activations = importlib.import_module('scratchnet.backends.numba.activations')

root, expect_read_only = sys.argv[1], sys.argv[2] == "1"
assert sn.__file__.startswith(root), f"imported {sn.__file__}, not the copy in {root}"
if expect_read_only:
    for d in (os.path.dirname(sn.__file__), os.path.expanduser("~")):
        try:
            tempfile.TemporaryFile(dir=d).close()
        except OSError:
            continue
        sys.exit(f"{d} is writable: the read-only setup failed")

y = sn.softmax(np.array([[1.0, 2.0, 3.0]]), backend="numba")
assert abs(y.sum() - 1.0) < 1e-15, y
stats = activations.softmax.stats
out = {
    "cache_path": stats.cache_path,
    "hits": sum(stats.cache_hits.values()),
    "misses": sum(stats.cache_misses.values()),
    "numba_cache_dir": numba.config.CACHE_DIR,
}
if len(sys.argv) > 3:  # also the gradient of a jitted f
    f = numba.njit(lambda x: np.sum(x * x))
    g = sn.numerical_gradient(f, np.array([1.0, 2.0, 3.0]))
    assert np.allclose(g, [2.0, 4.0, 6.0], rtol=0, atol=1e-9), g
print(json.dumps(out))
"""


def _child_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_", "PYTHON"))}
    # -S skips site-packages: give numpy and numba back, after the copy.
    paths = [str(tmp_path / "site")] + site.getsitepackages()
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def _copy_package(tmp_path):
    (tmp_path / "site").mkdir()
    shutil.copytree(PACKAGE, tmp_path / "site" / "scratchnet", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in ("home", "tmp"):
        (tmp_path / name).mkdir()


def _run(argv, env):
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _python(tmp_path, read_only, *more):
    return [sys.executable, "-S", "-c", CHILD, str(tmp_path / "site"), "1" if read_only else "0", *more]


def _read_only_mechanism():
    """How this machine can make a folder read-only for a child process.

    As root, file modes do not stop writes, so a read-only bind mount in a
    private mount namespace (``unshare -rm``) is used; it changes nothing
    outside the child. Otherwise ``chmod`` is honest.
    """
    if shutil.which("unshare"):
        d = tempfile.gettempdir()
        probe = subprocess.run(["unshare", "-rm", "mount", "--bind", "-o", "ro", d, d], capture_output=True)
        if probe.returncode == 0:
            return "unshare"
    if os.geteuid() != 0:
        return "chmod"
    return None


def _run_read_only(tmp_path, env):
    """Run the child with the package copy and $HOME read-only."""
    ro = [str(tmp_path / "site"), str(tmp_path / "home")]
    mechanism = _read_only_mechanism()
    if mechanism is None:
        pytest.skip("no way to make a folder read-only for root here (unshare -rm with bind mounts is not permitted)")
    if mechanism == "unshare":
        script = 'mount --bind -o ro "$1" "$1" && mount --bind -o ro "$2" "$2" && shift 2 && exec "$@"'
        return _run(["unshare", "-rm", "sh", "-c", script, "sh", *ro, *_python(tmp_path, True)], env)
    dirs = [Path(d) for top in ro for d, _, _ in os.walk(top)]
    for d in dirs:
        d.chmod(0o555)
    try:
        return _run(_python(tmp_path, True), env)
    finally:
        for d in dirs:
            d.chmod(0o755)


@pytest.mark.slow
def test_kernels_are_cached_beside_the_package_and_reused(tmp_path):
    _copy_package(tmp_path)
    env = _child_env(tmp_path, HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"))
    first = _run(_python(tmp_path, False, "gradient"), env)
    second = _run(_python(tmp_path, False), env)
    pycache = tmp_path / "site" / "scratchnet" / "backends" / "numba" / "__pycache__"
    assert first["cache_path"] == str(pycache)
    assert (first["hits"], first["misses"]) == (0, 1)
    assert (second["hits"], second["misses"]) == (1, 0)
    # The gradient kernel takes f as an argument: a new type in every process,
    # so it is compiled without a cache rather than adding files on every run.
    every_cache = list((tmp_path / "site" / "scratchnet").rglob("*_jitted_gradient*.nb*"))
    assert not every_cache, every_cache


@pytest.mark.slow
def test_read_only_install_falls_back_to_a_private_cache_dir(tmp_path):
    _copy_package(tmp_path)
    env = _child_env(tmp_path, HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"))
    first = _run_read_only(tmp_path, env)
    # A read-only XDG_CACHE_HOME moves Numba's user-wide cache there, so the
    # fallback must not be under it either: the same directory is reused.
    env["XDG_CACHE_HOME"] = str(tmp_path / "home" / ".cache")
    second = _run_read_only(tmp_path, env)
    (fallback,) = (tmp_path / "tmp").glob("scratchnet-numba-*")
    assert first["cache_path"].startswith(str(fallback))
    assert (first["hits"], first["misses"]) == (0, 1)
    assert (second["hits"], second["misses"]) == (1, 0)
    assert list(fallback.rglob("*.nbi")) and fallback.stat().st_mode & 0o077 == 0
    assert first["numba_cache_dir"] == ""  # Numba's global setting was restored
    assert not list((tmp_path / "site").rglob("*.nbi"))


@pytest.mark.slow
def test_a_fallback_dir_others_can_write_is_not_used(tmp_path):
    # Numba's cache index is a pickle: a planted or shared directory in /tmp
    # must not be loaded from. Then kernels compile without a cache.
    _copy_package(tmp_path)
    env = _child_env(tmp_path, HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"))
    uid = 0 if _read_only_mechanism() == "unshare" else os.getuid()  # uid inside the namespace
    planted = tmp_path / "tmp" / f"scratchnet-numba-{uid}"
    planted.mkdir()
    planted.chmod(0o777)
    out = _run_read_only(tmp_path, env)
    assert out["cache_path"] is None and out["hits"] == 0
    assert not list(planted.iterdir())
