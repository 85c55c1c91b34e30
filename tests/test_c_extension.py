"""Tests specific to the compiled extension scratchnet._ckernels (backend "c").

The shared backend tests (test_functions.py, test_network.py) compare every
backend with the naive twins; here: the C kernels are bit-for-bit twins of
the Numba ones, the buffer checks of module.c, GIL release and the OpenMP
thread count.
"""

import sys
import threading
import time

import numpy as np
import pytest

import scratchnet
from scratchnet import backends

import naive

_ckernels = pytest.importorskip("scratchnet._ckernels", reason="the C extension was not built")
c = backends.load("c")
EPS = np.finfo(np.float64).eps


def _inputs(rng, n=3001, k=10):
    """Logits of mixed sign and size, softmax rows, labels. n spans several sum blocks of 1024."""
    x = rng.standard_normal((n, k)) * 20
    y = np.empty_like(x)
    backends.load("numpy").softmax(x, y)
    t = rng.integers(0, k, n).astype(np.intp)
    return x, y, t


def _run_all(mod, x, y, t):
    sig = np.empty(x.size)
    sm = np.empty_like(x)
    mod.sigmoid(x.reshape(-1), sig)
    mod.softmax(x, sm)
    return sig, sm, mod.cross_entropy_error(y, t)


# -- the twin of the Numba kernels -----------------------------------------
def test_bitwise_equal_to_numba(rng):
    # Same formulas, same libm exp/log, same order of every sum and no
    # fast-math on either side: the two compiled backends agree exactly.
    x, y, t = _inputs(rng)
    x[0, :3] = [np.nan, np.inf, -np.inf]
    x[1, :] = -np.inf
    got = _run_all(c, x, y, t)
    ref = _run_all(backends.load("numba"), x, y, t)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    assert got[2] == ref[2]


def test_matches_naive(rng):
    x, y, t = _inputs(rng, n=2500, k=7)
    sig, sm, loss = _run_all(c, x, y, t)
    # sigmoid: exp (< 1 ulp in glibc), 1 + e, 1 / (.), e * r each round once;
    # the naive twin's e / (1 + e) rounds differently: 4 eps relative covers both.
    np.testing.assert_allclose(sig, naive.sigmoid(x).reshape(-1), rtol=4 * EPS, atol=0)
    # softmax: k exps (1 ulp each), a left-to-right sum of k positive terms
    # (k - 1 roundings, relative) against fsum, one division: (k + 3) eps.
    np.testing.assert_allclose(sm, naive.softmax(x), rtol=(7 + 3) * EPS, atol=0)
    # loss: n logs of one sign (1 ulp each) summed in blocks of 1024, then 3
    # partials: at most (1024 + 3 + 2) roundings relative to the total.
    assert loss == pytest.approx(naive.cross_entropy_error(y, t), rel=(1024 + 5) * EPS, abs=0)


def test_special_values():
    # NaN must survive (no -ffast-math, which may assume there is none).
    x = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, -800.0, 800.0])
    out = np.empty_like(x)
    c.sigmoid(x, out)
    np.testing.assert_array_equal(out, [np.nan, 0.0, 1.0, 0.5, 0.5, 0.0, 1.0])
    rows = np.array([[1.0, np.nan, 2.0], [1.0, np.inf, 2.0], [-np.inf, -np.inf, -np.inf], [-np.inf, 0.0, -np.inf]])
    sm = np.empty_like(rows)
    c.softmax(rows, sm)
    assert np.isnan(sm[:3]).all()  # like NumPy: NaN, +inf, all -inf rows
    np.testing.assert_array_equal(sm[3], [0.0, 1.0, 0.0])


def _network_case(rng, n=40, d=30, hdim=6, k=5):
    """Sparse inputs with repeated pixel values (as MNIST has), a net's forward pass, labels."""
    x = np.round(rng.random((n, d)) * 8) / 8 * (rng.random((n, d)) < 0.4)
    W1, b1 = rng.standard_normal((d, hdim)), rng.standard_normal(hdim)
    W2 = rng.standard_normal((hdim, k)) * 0.5
    a1 = x @ W1 + b1
    z1 = 1.0 / (1.0 + np.exp(-a1))
    a2 = z1 @ W2 + rng.standard_normal(k)
    t = rng.integers(0, k, n).astype(np.intp)
    grads = (np.empty((d, hdim)), np.empty(hdim), np.empty((hdim, k)), np.empty(k))
    return (x, t, a1, W2, a2), grads


@pytest.mark.parametrize("h", [1e-4, 0.3])  # 0.3: the direct sums beyond the series' range
def test_network_gradient_bitwise_equal_to_numba(rng, h):
    # A 1:1 port of numba_network.py: same operations in the same order. The
    # numpy twin and the chapter's loop are compared in test_network.py.
    inputs, got = _network_case(rng)
    ref = tuple(np.empty_like(g) for g in got)
    c.network_numerical_gradient(*inputs, h, *got)
    backends.load("numba").network_numerical_gradient(*inputs, h, *ref)
    for name, g, r in zip(("dW1", "db1", "dW2", "db2"), got, ref):
        assert g.tobytes() == r.tobytes(), name


def test_network_gradient_bitwise_mixed_paths(rng):
    # numgrad.c finds distinct pixel values with a hash table (the twin
    # sorts), pads the per-value tables to whole vector blocks and runs its
    # hot loops in vectorised clones; none of it may change a bit. Samples
    # here: all values distinct (continuous), none non-zero, one value,
    # exactly 16 values (whole blocks); d = 37 is not a multiple of 8. Some
    # samples and hidden units exceed the series' bounds, so the vectorised
    # and the general path alternate within one call.
    n, d, hdim, k = 24, 37, 5, 4
    x = rng.standard_normal((n, d)) * (rng.random((n, d)) < 0.5)
    x[0] = 0.0
    x[1] = 0.25
    x[2] = 0.0
    x[2, :16] = rng.random(16) + 0.5
    x[3:8] *= 40.0  # h |x| >= 1e-3: past SERIES_MAX
    W1, b1 = rng.standard_normal((d, hdim)), rng.standard_normal(hdim)
    W2 = rng.standard_normal((hdim, k))
    W2[0] *= 100.0  # h / 4 max|W2[0]| > 2e-4: past FAST_MAX
    a1 = x @ W1 + b1
    a2 = 1.0 / (1.0 + np.exp(-a1)) @ W2
    t = rng.integers(0, k, n).astype(np.intp)
    h = 1e-4
    hx = h * np.abs(x).max(axis=1)
    assert (hx < 1e-3).any() and (hx >= 1e-3).any()  # both paths are taken
    assert (h / 4 * np.abs(W2).max(axis=1) > 2e-4).any() and (h / 4 * np.abs(W2).max(axis=1) <= 2e-4).any()
    got = (np.empty((d, hdim)), np.empty(hdim), np.empty((hdim, k)), np.empty(k))
    ref = tuple(np.empty_like(g) for g in got)
    c.network_numerical_gradient(x, t, a1, W2, a2, h, *got)
    backends.load("numba").network_numerical_gradient(x, t, a1, W2, a2, h, *ref)
    for name, g, r in zip(("dW1", "db1", "dW2", "db2"), got, ref):
        assert np.isfinite(g).all(), name  # NaN == NaN bytewise would pass vacuously
        assert g.tobytes() == r.tobytes(), name


def test_network_gradient_bitwise_mnist():
    # The case the kernels are tuned for: a real batch of 100 digits.
    (x, t), _ = scratchnet.load_mnist()
    net = scratchnet.TwoLayerNet(784, 50, 10, seed=0)
    x, t = x[:100], t[:100]
    got = net.numerical_gradient(x, t, backend="c")
    ref = net.numerical_gradient(x, t, backend="numba")
    for name in got:
        assert got[name].tobytes() == ref[name].tobytes(), name


def test_network_gradient_checks(rng):
    (x, t, a1, W2, a2), grads = _network_case(rng, n=4, d=3, hdim=2, k=3)
    n, d, hdim, k = 4, 3, 2, 3
    bad_t = t.copy()
    bad_t[2] = 3
    with pytest.raises(ValueError, match=r"t: label 3 at index 2 out of range \[0, 3\)"):
        _ckernels.network_numerical_gradient(*grads, x, bad_t, a1, W2, a2, 1e-4, n, d, hdim, k)
    with pytest.raises(ValueError, match="a2: expected 12 elements"):
        _ckernels.network_numerical_gradient(*grads, x, t, a1, W2, a2[:3].copy(), 1e-4, n, d, hdim, k)
    with pytest.raises(TypeError, match="db2: expected a C-contiguous writable"):
        _ckernels.network_numerical_gradient(*grads[:3], b"\0" * 24, x, t, a1, W2, a2, 1e-4, n, d, hdim, k)
    for h in (0.0, -1e-4, np.inf, np.nan):
        with pytest.raises(ValueError, match="h: expected a positive finite step"):
            _ckernels.network_numerical_gradient(*grads, x, t, a1, W2, a2, h, n, d, hdim, k)
    with pytest.raises(ValueError, match="shape: expected n, d, hdim, k >= 1"):
        _ckernels.network_numerical_gradient(*grads, x, t, a1, W2, a2, 1e-4, n, d, 0, k)
    with pytest.raises(ValueError, match=r"dW1: expected shape \(3, 2\)"):
        c.network_numerical_gradient(x, t, a1, W2, a2, 1e-4, np.empty((2, 3)), *grads[1:])


# -- threads ---------------------------------------------------------------
@pytest.fixture
def c_threads():
    """Set the C kernels' thread count for a test; restores it afterwards.

    Calls the extension directly: scratchnet.set_num_threads also sets
    Numba's count, which is capped at the number of cores.
    """
    before = _ckernels.get_num_threads()
    yield _ckernels.set_num_threads
    _ckernels.set_num_threads(before)


def test_thread_count_roundtrip(c_threads):
    c_threads(1)
    assert c.get_num_threads() == 1
    c_threads(3)  # more threads than cores is allowed, as in OpenMP
    assert c.get_num_threads() == (3 if _ckernels.openmp else 1)


def test_scratchnet_set_num_threads_reaches_c(threads, c_threads):
    c_threads(3)
    threads(1)
    assert c.get_num_threads() == 1


def test_thread_count_errors():
    with pytest.raises(ValueError, match="n: "):
        _ckernels.set_num_threads(0)
    for bad in (True, 2.0, "2"):
        with pytest.raises(TypeError, match="n: "):
            _ckernels.set_num_threads(bad)


@pytest.mark.skipif(not _ckernels.openmp, reason="built without OpenMP")
def test_results_do_not_depend_on_threads(rng, c_threads):
    x, y, t = _inputs(rng, n=5 * 1024 + 7)
    c_threads(1)
    one = _run_all(c, x, y, t)
    c_threads(3)  # 3 threads split the 6 sum blocks unevenly
    two = _run_all(c, x, y, t)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_releases_the_gil(c_threads):
    # While a worker thread is inside a kernel, the main thread keeps running
    # Python code. Holding the GIL would stall it for the whole call: no
    # main-thread timestamp could fall in the middle half of any call (checked
    # with a build without Py_BEGIN_ALLOW_THREADS: 0 in every call, against
    # thousands per call with it). Only the middle half counts, so bytecodes
    # run just before or after a call cannot pass for concurrency.
    c_threads(1)
    x = np.linspace(-5, 5, 4_000_000)  # about 30 ms per call
    calls, stamps = [], []

    def work():
        for _ in range(4):
            t0 = time.perf_counter()
            _ckernels.sigmoid(x, x, x.size)  # in place: each element is read, then written
            calls.append((t0, time.perf_counter()))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # hand the GIL over promptly between bytecodes
    try:
        worker = threading.Thread(target=work)
        worker.start()
        while worker.is_alive():
            stamps.append(time.perf_counter())
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    stamps = np.array(stamps)
    inside = [np.count_nonzero((stamps > a + (b - a) / 4) & (stamps < b - (b - a) / 4)) for a, b in calls]
    assert max(inside) > 0, inside


# -- the checks of module.c (defence in depth behind backends/c.py) --------
def _vec(m=4, dtype=np.float64):
    return np.zeros(m, dtype=dtype)


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((_vec(), _vec(dtype=np.float32), 4), TypeError, "x: expected float64"),
        ((_vec(dtype=np.int64), _vec(), 4), TypeError, "out: expected float64"),
        ((_vec(), _vec().astype(">f8"), 4), TypeError, "x: expected float64"),
        ((_vec(), b"\0" * 32, 4), TypeError, "x: expected float64"),
        ((_vec(), np.zeros((4, 2))[:, 0], 4), TypeError, "x: expected a C-contiguous"),
        ((_vec(3), _vec(), 4), ValueError, "out: expected 4 elements"),
        ((_vec(), _vec(5), 4), ValueError, "x: expected 4 elements"),
        ((_vec(), _vec(), -1), ValueError, "shape: expected non-negative"),
        ((_vec(), [0.0] * 4, 4), TypeError, "x: expected a C-contiguous buffer"),
    ],
)
def test_sigmoid_buffer_checks(args, error, message):
    with pytest.raises(error, match=message):
        _ckernels.sigmoid(*args)


def test_read_only_output_refused():
    out = np.zeros(4)
    out.setflags(write=False)
    with pytest.raises(TypeError, match="out: expected a C-contiguous writable buffer"):
        _ckernels.sigmoid(out, np.zeros(4), 4)
    assert not out.any()


def test_softmax_buffer_checks():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="k: "):
        _ckernels.softmax(np.zeros((3, 0)), np.zeros((3, 0)), 3, 0)
    with pytest.raises(ValueError, match="x: expected 12 elements"):
        _ckernels.softmax(np.empty((3, 4)), x[:, :3].copy(), 3, 4)
    with pytest.raises(ValueError, match="shape: .* too large"):
        _ckernels.softmax(np.empty((3, 4)), x, 2**62, 4)
    _ckernels.softmax(np.empty((0, 4)), np.empty((0, 4)), 0, 4)  # no rows is fine


def test_cross_entropy_buffer_checks():
    y = np.full((3, 4), 0.25)
    with pytest.raises(TypeError, match="t: expected int64"):
        _ckernels.cross_entropy_error(y, np.zeros(3, dtype=np.int32), 3, 4)
    with pytest.raises(TypeError, match="t: expected int64"):
        _ckernels.cross_entropy_error(y, np.zeros(3), 3, 4)
    with pytest.raises(ValueError, match="t: expected 3 elements"):
        _ckernels.cross_entropy_error(y, np.zeros(2, dtype=np.intp), 3, 4)
    with pytest.raises(ValueError, match=r"t: label 4 at index 2 out of range \[0, 4\)"):
        _ckernels.cross_entropy_error(y, np.array([0, 3, 4], dtype=np.intp), 3, 4)
    with pytest.raises(ValueError, match=r"t: label -1 at index 0"):
        _ckernels.cross_entropy_error(y, np.array([-1, 0, 0], dtype=np.intp), 3, 4)
    with pytest.raises(ValueError, match="y: expected n, k >= 1"):
        _ckernels.cross_entropy_error(np.empty((0, 4)), np.empty(0, dtype=np.intp), 0, 4)
    assert _ckernels.cross_entropy_error(y, np.array([0, 1, 2], dtype=np.intp), 3, 4) == pytest.approx(
        -np.log(0.25 + 1e-7), rel=4 * EPS
    )


# -- the wrapper backends/c.py ---------------------------------------------
def test_wrapper_checks():
    with pytest.raises(TypeError, match="x: expected a 1-d float64 array"):
        c.sigmoid(np.zeros(3, dtype=np.float32), np.zeros(3))
    with pytest.raises(ValueError, match="out: shape"):
        c.sigmoid(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        c.softmax(np.zeros((3, 4), order="F"), np.zeros((3, 4)))
    with pytest.raises(TypeError, match="t: expected a 1-d"):
        c.cross_entropy_error(np.full((2, 2), 0.5), np.zeros(2, dtype=np.int32))
    with pytest.raises(ValueError, match="t: expected 2 labels"):
        c.cross_entropy_error(np.full((2, 2), 0.5), np.zeros(3, dtype=np.intp))


def test_registered_backend():
    assert "c" in scratchnet.available_backends()
    assert c.OPENMP is bool(_ckernels.openmp)
