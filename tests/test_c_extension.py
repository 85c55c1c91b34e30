"""Tests specific to the compiled extension scratchnet._ckernels (backend "c").

The shared backend tests (test_functions.py, test_kernels.py,
test_network.py) compare every backend with the naive twins and numba with
c bit for bit; here: the glue of module.c (every array checked for type,
layout and shape against the others, labels in range, index arrays checked
where the kernels read them), GIL release, and the pool's thread count.
"""

import sys
import threading
import time

import numpy as np
import pytest

import scratchnet
from scratchnet import backends
from scratchnet.backends.structs import Batch, Forward, Grads, Params, SparseRows

_ckernels = pytest.importorskip("scratchnet._ckernels", reason="the C extension was not built")
c = backends.load("c")
EPS = np.finfo(np.float64).eps


def _net_arrays(rng, n=5, d=6, h=4, k=3):
    x = np.where(rng.random((n, d)) < 0.5, 0.0, rng.random((n, d)))
    net = scratchnet.TwoLayerNet(d, h, k, seed=1)
    params = net.kernel_params()
    batch = c.batch_from_dense(x)
    fwd = Forward(*(np.empty(s) for s in ((n, h), (n, h), (n, h), (n, k), (n, k), (n,), (n, k))))
    labels = rng.integers(0, k, n).astype(np.intp)
    return x, params, batch, fwd, labels


# -- the glue's checks ------------------------------------------------------------
def _vec(m=4, dtype=np.float64):
    return np.zeros(m, dtype=dtype)


def _unaligned_copy(a):
    """A C-contiguous copy of ``a`` whose data starts 1 byte past an aligned address."""
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
    u = raw[1:].view(a.dtype).reshape(a.shape)
    u[...] = a
    return u


def _unaligned(m=4):
    """A C-contiguous float64 vector of zeros, not aligned."""
    v = _unaligned_copy(np.zeros(m))
    assert v.flags.c_contiguous and not v.flags.aligned
    return v


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((_vec(), _vec(dtype=np.float32)), TypeError, "x.x: expected float64"),
        ((_vec(dtype=np.int64), _vec()), TypeError, "out.out: expected float64"),
        ((_vec(), _vec().astype(">f8")), TypeError, "x.x: expected float64 in native byte order"),
        ((_vec(), np.zeros((4, 2))[:, 0]), TypeError, "x.x: expected a C-contiguous array"),
        ((_vec(3), _vec()), ValueError, "x.x: size is 4 here but 3 elsewhere"),
        ((_vec(), np.zeros((2, 2))), ValueError, "x.x: expected a 1-d array, got 2 dimensions"),
        ((_vec(), [0.0] * 4), TypeError, "x.x: expected a C-contiguous array"),
        ((_vec(), _unaligned()), ValueError, "x.x: expected an aligned array"),
        ((_vec(),), TypeError, "sigmoid: expected 2 arguments, got 1"),
    ],
)
def test_arrays_are_checked_by_type_layout_and_shape(args, error, message):
    with pytest.raises(error, match=message):
        _ckernels.sigmoid(*args)


def test_shapes_not_just_sizes():
    # (n, k) against (k, n): the same number of elements, refused.
    with pytest.raises(ValueError, match="x.x: n is 3 here but 2 elsewhere"):
        _ckernels.softmax(np.empty((2, 3)), np.empty((3, 2)))


def test_read_only_output_refused():
    out = np.zeros(4)
    out.setflags(write=False)
    with pytest.raises(TypeError, match="out.out: expected a C-contiguous writable array"):
        _ckernels.sigmoid(out, np.zeros(4))
    assert not out.any()


def test_labels_are_checked():
    y = np.full((3, 4), 0.25)
    with pytest.raises(TypeError, match="t.t: expected int64 labels"):
        _ckernels.cross_entropy_error(y, np.zeros(3, dtype=np.int32))
    with pytest.raises(ValueError, match=r"labels: label 4 at index 2 out of range \[0, 4\)"):
        _ckernels.cross_entropy_error(y, np.array([0, 3, 4], dtype=np.intp))
    with pytest.raises(ValueError, match=r"labels: label -1 at index 0"):
        _ckernels.cross_entropy_error(y, np.array([-1, 0, 0], dtype=np.intp))
    with pytest.raises(ValueError, match="at least 1 sample"):
        _ckernels.cross_entropy_error(np.empty((0, 4)), np.empty(0, dtype=np.intp))
    assert _ckernels.cross_entropy_error(y, np.array([0, 1, 2], dtype=np.intp)) == pytest.approx(
        -np.log(0.25 + 1e-7), rel=4 * EPS
    )


def test_structs_are_checked_field_by_field(rng):
    x, params, batch, fwd, labels = _net_arrays(rng)
    c.forward(fwd, batch, params)
    with pytest.raises(TypeError, match=r"params \(Params\): expected a tuple of 4 fields"):
        _ckernels.forward(fwd, batch, params[:3])
    swapped = params._replace(W1=params.W2, W2=params.W1)  # swapped weights: shapes disagree
    with pytest.raises(ValueError, match=r"params \(Params\)\.W1: d is 4 here but 6 elsewhere"):
        _ckernels.forward(fwd, batch, swapped)
    with pytest.raises(ValueError, match=r"out \(Forward\)\.y: k is 4 here but 3 elsewhere"):
        _ckernels.forward(fwd._replace(y=np.empty((5, 4))), batch, params)
    with pytest.raises(TypeError, match=r"batch \(Batch\)\.cols: expected int32"):
        _ckernels.forward(fwd, batch._replace(cols=batch.cols.astype(np.int64)), params)


@pytest.mark.parametrize("field", ["cols", "rows", "row_ptr", "col_ptr"])
def test_bad_index_arrays_raise_instead_of_reading_out_of_bounds(rng, field):
    # A forged batch: an index out of range in any of its index arrays. Every
    # kernel that reads it raises; none reads outside the arrays.
    x, params, batch, fwd, labels = _net_arrays(rng)
    bad = getattr(batch, field).copy()
    bad[len(bad) // 2] = 10**6 if field in ("cols", "rows") else 10**9
    forged = batch._replace(**{field: bad})
    grads = Grads(*(np.empty_like(p) for p in params))
    kernels = {
        "cols": [
            lambda: c.forward(fwd, forged, params),
            lambda: c.numgrad_perturbed(grads, forged, labels, params, fwd, 1e-4),
        ],
        "row_ptr": [lambda: c.forward(fwd, forged, params)],
        "rows": [
            lambda: c.backprop(grads, forged, labels, params, fwd),
            lambda: c.numgrad_series(grads, forged, labels, params, fwd, 1e-4),
        ],
        "col_ptr": [lambda: c.backprop(grads, forged, labels, params, fwd)],
    }[field]
    c.forward(fwd, batch, params)
    for call in kernels:
        with pytest.raises(ValueError, match="index array .* out of range"):
            call()


def test_batch_take_checks_rows(rng):
    x = rng.random((6, 4))
    data = c.sparse_rows(x)
    out = c.batch_take(data, np.array([1, 5]))
    with pytest.raises(ValueError, match="out of range"):
        _ckernels.batch_take(out, data, np.array([1, 6]))
    with pytest.raises(ValueError, match="out of range"):
        _ckernels.batch_take(out, data, np.array([-1, 0]))


def test_step_is_checked(rng):
    x, params, batch, fwd, labels = _net_arrays(rng)
    c.forward(fwd, batch, params)
    grads = Grads(*(np.empty_like(p) for p in params))
    for h in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="h: expected a positive finite step"):
            c.numgrad_series(grads, batch, labels, params, fwd, h)


def test_exports_only_the_module_init():
    # The sn_* kernels stay private to the extension.
    import subprocess

    out = subprocess.run(["nm", "-D", "--defined-only", _ckernels.__file__], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("nm is not available")
    exported = [line.split()[-1] for line in out.stdout.splitlines() if " T " in line]
    assert exported == ["PyInit__ckernels"], exported


def test_links_libm():
    import subprocess

    out = subprocess.run(["ldd", _ckernels.__file__], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("ldd is not available")
    assert "libm.so" in out.stdout, out.stdout


# -- threads -------------------------------------------------------------------
def test_thread_count_errors():
    with pytest.raises(ValueError, match="n: "):
        _ckernels.set_num_threads(0)
    for bad in (True, 2.0, "2"):
        with pytest.raises(TypeError, match="n: "):
            _ckernels.set_num_threads(bad)


def test_scratchnet_set_num_threads_reaches_c(threads):
    threads(1)
    assert c.get_num_threads() == 1
    threads(2)
    assert c.get_num_threads() == 2


def test_releases_the_gil(threads):
    # While a worker thread is inside a kernel, the main thread keeps running
    # Python code. Holding the GIL would stall it for the whole call: no
    # main-thread timestamp could fall in the middle half of any call (checked
    # with a build without Py_BEGIN_ALLOW_THREADS: 0 in every call, against
    # thousands per call with it). Only the middle half counts, so bytecodes
    # run just before or after a call cannot pass for concurrency.
    threads(1)
    x = np.linspace(-5, 5, 4_000_000)  # about 30 ms per call
    calls, stamps = [], []

    def work():
        for _ in range(4):
            t0 = time.perf_counter()
            _ckernels.sigmoid(x, x)  # in place: each element is read, then written
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


def test_concurrent_calls_from_python_threads_are_correct(rng, threads):
    # Two Python threads in the pool at once: one gets the pool, the other runs
    # its items on its own thread; both results are the serial ones, bitwise.
    threads(2)
    x = rng.standard_normal(300_000)
    expected = np.empty_like(x)
    threads(1)
    c.sigmoid(expected, x)
    threads(2)
    outs = [np.empty_like(x) for _ in range(4)]

    def work(out):
        for _ in range(20):
            c.sigmoid(out, x)

    workers = [threading.Thread(target=work, args=(out,)) for out in outs]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for out in outs:
        assert out.tobytes() == expected.tobytes()


def test_registered_backend():
    assert "c" in scratchnet.available_backends()
    assert set(backends.KERNELS) <= set(dir(c))
    assert Batch and SparseRows and Params  # the structs the glue mirrors


# -- the training engine: train_stretch against the per-iteration path ---------------
PARAM_NAMES = ("W1", "b1", "W2", "b2")


def _per_iteration(net, data, labels, take, lr, method, h=1e-4):
    """training._iteration / _step one call at a time: (losses, done), net.params updated in place.

    done < len(take) where the gradient, the update or the loss of iteration done is not finite;
    net.params are then those after iteration done - 1.
    """
    losses = []
    for s, rows in enumerate(take):
        batch = c.batch_take(data, rows)
        batch_labels = labels[rows]
        params = net.params
        try:
            if method == "backprop":
                grads = net.gradient_batch(batch, batch_labels, backend="c")
            else:
                grads = net.numerical_gradient_batch(batch, batch_labels, h=h, method=method, backend="c")
            with np.errstate(over="ignore", invalid="ignore"):
                updated = {key: params[key] - lr * grads[key] for key in PARAM_NAMES}
            if not all(np.isfinite(updated[key]).all() for key in PARAM_NAMES):
                return np.array(losses), s
            net.params = updated
            loss = net.loss_batch(batch, batch_labels, backend="c")
        except FloatingPointError:
            return np.array(losses), s
        finally:
            net.params = params
        if not np.isfinite(loss):
            return np.array(losses), s
        for key in PARAM_NAMES:
            params[key][...] = updated[key]
        losses.append(loss)
    return np.array(losses), len(take)


def _stretch(net, data, labels, take, lr, method, h=1e-4):
    """c.train_stretch on net.params in place: (losses of the iterations done, done)."""
    losses = np.full(len(take), np.nan)
    done = c.train_stretch(net.kernel_params(), data, labels, take, losses, lr, method, h)
    assert np.isnan(losses[done:]).all()
    return losses[:done], done


def _assert_same_run(ref, got, ref_net, net):
    (ref_losses, ref_done), (losses, done) = ref, got
    assert done == ref_done
    assert np.array_equal(losses, ref_losses) and losses.tobytes() == ref_losses.tobytes()
    for key in PARAM_NAMES:
        assert np.array_equal(net.params[key], ref_net.params[key]), key
        assert net.params[key].tobytes() == ref_net.params[key].tobytes(), key


def _sparse_set(rng, n=60, d=20, k=5, scale=1.0):
    x = scale * np.where(rng.random((n, d)) < 0.5, 0.0, rng.random((n, d)))
    return x, rng.integers(0, k, n).astype(np.intp)


@pytest.mark.parametrize("method", ["series", "perturbed", "backprop"])
@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("scale, std", [(1.0, 0.01), (10.0, 3.0)])  # the second: the series bound rejects units
def test_train_stretch_is_the_per_iteration_path_bit_for_bit(rng, threads, method, nthreads, scale, std):
    threads(nthreads)
    d, h, k = 20, 8, 5
    x, labels = _sparse_set(rng, d=d, k=k, scale=scale)
    data = c.sparse_rows(x)
    take = rng.integers(0, len(x), (30, 16))
    ref_net, net = (scratchnet.TwoLayerNet(d, h, k, weight_init_std=std, seed=3) for _ in range(2))
    ref = _per_iteration(ref_net, data, labels, take, 0.5, method)
    _assert_same_run(ref, _stretch(net, data, labels, take, 0.5, method), ref_net, net)
    assert ref[1] == 30


def test_the_rejecting_case_sends_units_to_the_perturbed_method(rng):
    # The second case above is there to run the series' fallback inside the stretch: check it does.
    x, labels = _sparse_set(rng, scale=10.0)
    net = scratchnet.TwoLayerNet(20, 8, 5, weight_init_std=3.0, seed=3)
    params = net.kernel_params()
    batch = c.batch_take(c.sparse_rows(x), np.arange(16))
    grads = Grads(*(np.empty_like(p) for p in params))
    fwd = Forward(*(np.empty(s) for s in ((16, 8), (16, 8), (16, 8), (16, 5), (16, 5), (16,), (16, 5))))
    units, _ = c.numgrad_series(grads, batch, labels[:16], params, fwd, 1e-4)
    assert 0 < units.sum() < 8


@pytest.mark.parametrize("method", ["series", "perturbed", "backprop"])
@pytest.mark.parametrize("nthreads", [1, 2])
def test_train_stretch_on_mnist_is_the_per_iteration_path(threads, method, nthreads):
    from scratchnet.datasets import load_mnist

    threads(nthreads)
    (x, t), _ = load_mnist(normalize=True)
    data = c.sparse_rows(x[:2000])
    labels = t[:2000].astype(np.intp)
    take = np.random.default_rng(7).integers(0, 2000, (3, 100))
    ref_net, net = (scratchnet.TwoLayerNet(784, 20, 10, seed=1) for _ in range(2))
    ref = _per_iteration(ref_net, data, labels, take, 0.1, method)
    _assert_same_run(ref, _stretch(net, data, labels, take, 0.1, method), ref_net, net)
    assert ref[1] == 3


# Row 50 has x[50, 0] = 1e308, in iteration `at`'s batch only; W1[0, :] = w.
FAILURES = [
    # the gradient's forward pass overflows (x W1 + b1 = inf) at iteration 7
    *[(m, 10.0, 0.1, 7) for m in ("series", "perturbed", "backprop")],
    ("backprop", 0.0, 0.1, 7),  # the update is finite, the loss of the updated net overflows
    ("backprop", 0.0, 1e5, 0),  # the update itself overflows (lr * dW1[0, :] = inf)
    ("series", 0.0, 1e5, 0),  # the loss of the updated net overflows
]


@pytest.mark.parametrize("method, w, lr, at", FAILURES)
@pytest.mark.parametrize("nthreads", [1, 2])
def test_train_stretch_stops_where_the_per_iteration_path_fails(rng, threads, method, w, lr, at, nthreads):
    threads(nthreads)
    x, labels = _sparse_set(rng)
    x[:, 0] = 0.0
    x[50, 0] = 1e308
    data = c.sparse_rows(x)
    take = rng.integers(0, 50, (12, 16))
    take[at, 3] = 50
    ref_net, net = (scratchnet.TwoLayerNet(20, 8, 5, seed=3) for _ in range(2))
    for n in (ref_net, net):
        n.params["W1"][0] = w
    ref = _per_iteration(ref_net, data, labels, take, lr, method)
    assert ref[1] == at
    _assert_same_run(ref, _stretch(net, data, labels, take, lr, method), ref_net, net)


def test_train_stretch_checks_its_arguments(rng):
    x, labels = _sparse_set(rng)
    data = c.sparse_rows(x)
    net = scratchnet.TwoLayerNet(20, 8, 5, seed=3)
    params = net.kernel_params()
    before = params.W1.copy()
    losses = np.zeros(4)
    for bad in (60, -1):
        take = rng.integers(0, 60, (4, 8))
        take[2, 5] = bad
        with pytest.raises(ValueError, match=rf"take: row {bad} at flat index 21 out of range \[0, 60\)"):
            c.train_stretch(params, data, labels, take, losses, 0.1, "series", 1e-4)
    take = rng.integers(0, 60, (4, 8))
    with pytest.raises(ValueError, match="method: expected 0"):
        _ckernels.train_stretch(params, data, labels, take, losses, 0.1, 3, 1e-4)
    with pytest.raises(ValueError, match="h: expected a positive finite step"):
        c.train_stretch(params, data, labels, take, losses, 0.1, "perturbed", 0.0)
    with pytest.raises(ValueError, match=r"losses.losses: steps is 3 here but 4 elsewhere"):
        c.train_stretch(params, data, labels, take, np.zeros(3), 0.1, "series", 1e-4)
    read_only = Params(*(p.copy() for p in params))
    read_only.b2.setflags(write=False)
    with pytest.raises(TypeError, match=r"params \(Params\)\.b2: expected a C-contiguous writable array"):
        c.train_stretch(read_only, data, labels, take, losses, 0.1, "series", 1e-4)
    assert np.array_equal(params.W1, before) and not losses.any()
    assert c.train_stretch(params, data, labels, take[:0], losses[:0], 0.1, "backprop", 1e-4) == 0


def test_count_correct_pair_is_two_count_correct_calls(rng, threads):
    x, labels = _sparse_set(rng, n=700, d=20, k=5)  # 3 and 2 items of 256 rows
    xt, labels_t = _sparse_set(rng, n=300, d=20, k=5)
    train, test = c.sparse_rows(x), c.sparse_rows(xt)
    net = scratchnet.TwoLayerNet(20, 8, 5, weight_init_std=1.0, seed=4)
    params = net.kernel_params()
    expected = (c.count_correct(train, labels, params), c.count_correct(test, labels_t, params))
    assert 0 < expected[0] < 700 and 0 < expected[1] < 300
    for n in (1, 2):
        threads(n)
        got = c.count_correct_pair(train, labels, test, labels_t, params)
        assert got == expected and all(type(v) is int for v in got)
    with pytest.raises(ValueError, match=r"test_labels: label 5 at index 1 out of range \[0, 5\)"):
        c.count_correct_pair(train, labels, test, np.r_[0, 5, labels_t[2:]], params)


# -- what the kernels see -------------------------------------------------------
def _arrays_in(obj):
    """Every array in ``obj`` (and the array a view is of), in tuples (the kernels' structs too), lists and dicts."""
    if isinstance(obj, np.ndarray):
        return [obj] + ([obj.base] if isinstance(obj.base, np.ndarray) else [])
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    return [a for v in values for a in _arrays_in(v)]


def test_the_c_kernels_see_aligned_copies_of_unaligned_arrays(monkeypatch):
    # Found by fuzzing: as_float64 (np.asarray(..., order="C")), _check_x's float32 path and
    # kernel_params (np.ascontiguousarray) keep an unaligned C-contiguous
    # array as it is, and module.c takes any buffer: the kernels then load
    # doubles from misaligned addresses, undefined behaviour in C (UBSan in
    # tools/sanitize.sh: "sparse.c:21: load of misaligned address ... for
    # type 'const double'"). Expected: the kernels see aligned copies, the
    # results are those of aligned inputs.
    class AlignedOnly:
        def __getattr__(self, name):
            kernel = getattr(real, name)

            def checked(*args):
                for a in _arrays_in(args):
                    assert a.flags.aligned, f"_ckernels.{name} got an unaligned array"
                return kernel(*args)

            return checked

    real = c._ckernels
    monkeypatch.setattr(c, "_ckernels", AlignedOnly())
    x = np.array([[0.5, 0.0, 2.0], [1.0, 0.0, 3.0]])
    assert not _unaligned_copy(x).flags.aligned
    np.testing.assert_array_equal(
        scratchnet.sigmoid(_unaligned_copy(x), backend="c"), scratchnet.sigmoid(x, backend="c")
    )
    np.testing.assert_array_equal(
        scratchnet.softmax(_unaligned_copy(x), backend="c"), scratchnet.softmax(x, backend="c")
    )
    y = scratchnet.softmax(x)
    assert scratchnet.cross_entropy_error(_unaligned_copy(y), [0, 2], backend="c") == scratchnet.cross_entropy_error(
        y, [0, 2], backend="c"
    )
    net = scratchnet.TwoLayerNet(3, 2, 2, seed=0)
    for xx in (x, x.astype(np.float32)):
        np.testing.assert_array_equal(net.predict(_unaligned_copy(xx), backend="c"), net.predict(xx, backend="c"))
    aligned = net.numerical_gradient(x, [0, 1], backend="c")
    net.params = {k: _unaligned_copy(v) for k, v in net.params.items()}
    got = net.numerical_gradient(x, [0, 1], backend="c")
    assert all(got[k].tobytes() == aligned[k].tobytes() for k in ("W1", "b1", "W2", "b2"))
