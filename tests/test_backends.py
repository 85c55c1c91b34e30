"""The backend registry: names, the global choice, per-call choice, threads."""

import subprocess
import sys

import numba
import numpy as np
import pytest

import scratchnet as sn


@pytest.fixture
def restore_backend():
    before = sn.get_backend()
    yield
    sn.set_backend(before)


def test_all_three_backends_are_available():
    # "c" needs the compiled extension: `pip install -e .` builds it.
    assert sn.available_backends() == ("numpy", "numba", "c")


def test_fresh_import_defaults_to_numba_without_loading_it():
    code = "import sys, scratchnet; print(scratchnet.get_backend(), 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["numba", "False"]


def test_set_backend_round_trip(backend, restore_backend):
    sn.set_backend(backend)
    assert sn.get_backend() == backend


@pytest.mark.parametrize("name", ["tensorflow", "NumPy", "", None, 1])
def test_unknown_backend_is_rejected_with_the_choices(name, restore_backend):
    before = sn.get_backend()
    with pytest.raises(ValueError, match=r"unknown backend .*choose one of \['numpy', 'numba', 'c'\]"):
        sn.set_backend(name)
    assert sn.get_backend() == before
    if name is not None:  # backend=None in a call means the global backend
        with pytest.raises(ValueError, match="unknown backend"):
            sn.sigmoid(np.zeros(3), backend=name)


@pytest.fixture
def spy(monkeypatch):
    """Record which backend module's kernels are called."""
    calls = []
    for name in sn.available_backends():
        module = sn.backends.load(name)
        for kernel in ("sigmoid", "softmax", "cross_entropy_error"):
            original = getattr(module, kernel)

            def wrapper(*args, _name=name, _original=original):
                calls.append(_name)
                return _original(*args)

            monkeypatch.setattr(module, kernel, wrapper)
    return calls


def test_per_call_backend_overrides_the_global_one(backend, spy, restore_backend):
    other = next(b for b in sn.available_backends() if b != backend)
    sn.set_backend(other)
    x = np.array([[0.5, -1.0, 2.0]])
    sn.sigmoid(x, backend=backend)
    sn.softmax(x, backend=backend)
    sn.cross_entropy_error(sn.softmax(x, backend=backend), [2], backend=backend)
    assert spy == [backend] * 4
    spy.clear()
    sn.sigmoid(x)
    assert spy == [other]


def test_global_backend_is_used_without_backend_argument(backend, spy, restore_backend):
    sn.set_backend(backend)
    sn.softmax(np.array([1.0, 2.0]))
    sn.cross_entropy_error(np.array([0.3, 0.7]), 1)
    assert spy == [backend, backend]


@pytest.mark.parametrize("n", [0, -1])
def test_set_num_threads_rejects_out_of_range(n):
    with pytest.raises(ValueError, match=r"n: number of threads must be between 1 and \d+, got -?\d"):
        sn.set_num_threads(n)


def test_set_num_threads_rejects_more_than_numba_started_with():
    limit = numba.config.NUMBA_NUM_THREADS
    with pytest.raises(ValueError, match=f"n: .*between 1 and {limit}, got {limit + 1}"):
        sn.set_num_threads(limit + 1)


@pytest.mark.parametrize("n", [2.5, 1.0, "2", None, True])
def test_set_num_threads_rejects_non_integers(n):
    with pytest.raises(TypeError, match="n: number of threads must be an int"):
        sn.set_num_threads(n)


def test_set_num_threads_is_one_count_for_numba_and_c(threads):
    threads(np.int64(1))  # NumPy integers are integers too
    assert sn.get_num_threads() == 1
    sn.sigmoid(np.zeros(3), backend="numba")  # a Numba kernel applies the count to this thread
    assert numba.get_num_threads() == 1
    if "c" in sn.available_backends():
        assert sn.backends.load("c").get_num_threads() == 1
    threads(2)
    sn.sigmoid(np.zeros(3), backend="numba")
    assert numba.get_num_threads() == 2 == sn.get_num_threads()


@pytest.mark.parametrize("name", sn.available_backends())
def test_every_backend_provides_every_kernel(name):
    module = sn.backends.load(name)
    missing = [k for k in sn.backends.KERNELS if not callable(getattr(module, k, None))]
    assert not missing, (name, missing)


def test_the_c_kernels_use_the_python_constants():
    # The C kernels cannot import _config: each number they share with the Python
    # backends is a literal in kernels/, checked here against the Python one (a
    # changed radius or threshold would only show where a decision flips).
    import importlib
    import re
    from pathlib import Path

    from scratchnet import _config

    kernels = Path(__file__).resolve().parents[1] / "kernels"
    if not kernels.is_dir():
        pytest.skip("needs the kernels/ sources")

    def define(text, name):  # the value of "#define NAME literal", decimal or hexadecimal
        literal = re.search(rf"#define {name} (\S+)", text)[1]
        return float.fromhex(literal) if "0x" in literal else float(literal)

    header = (kernels / "scratchnet.h").read_text()
    assert define(header, "SN_DELTA") == _config.DELTA
    assert define(header, "SN_SUM_BLOCK") == _config.SUM_BLOCK
    assert define(header, "SN_ORDER") == _config.SERIES_ORDER

    series = (kernels / "numgrad_series.c").read_text()
    radii = re.search(r"RADII\[\] = \{([^}]*)\}", series)[1]
    assert tuple(float(v) for v in radii.split(",")) == _config.SERIES_RADII
    assert define(series, "ROUNDING") == _config.SERIES_ROUNDING
    numba_series = importlib.import_module("scratchnet.backends.numba.numgrad_series")
    assert define(series, "EVEN_TOL") == numba_series.EVEN_TOL

    perturbed = (kernels / "numgrad_perturbed.c").read_text()
    numba_perturbed = importlib.import_module("scratchnet.backends.numba.numgrad_perturbed")
    assert define(perturbed, "NOMINAL_TOL") == _config.NOMINAL_TOL
    assert define(perturbed, "SATURATED") == _config.SATURATED
    for name in ("SERIES_MAX", "FAST_MAX", "DIRECT_SHIFT", "MOMENTS_MAX"):
        assert define(perturbed, name) == getattr(numba_perturbed, name), name
