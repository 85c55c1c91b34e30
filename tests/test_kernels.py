"""The network kernels every backend provides, against their naive twins.

sparse_rows / batch_take / batch_from_dense (the non-zero inputs listed once,
by rows and by columns), forward, count_correct; backprop and the two
numerical gradients are in test_network.py. Every backend runs every test;
numba and c are bit-for-bit twins, and no result depends on the thread count.
"""

import numpy as np
import pytest

import naive
import scratchnet
from scratchnet.backends.structs import Forward

COMPILED = [b for b in scratchnet.available_backends() if b != "numpy"]


def _x(rng, n=37, d=23, dtype=np.float64, zeros=0.7):
    """Inputs with about 70% zeros, an all-zero row and an all-zero column, signed values."""
    x = np.where(rng.random((n, d)) < zeros, 0.0, rng.standard_normal((n, d)))
    x[3] = 0.0
    x[:, 5] = 0.0
    return x.astype(dtype)


def _rows_as_lists(rows):
    return [
        [(int(rows.cols[p]), float(rows.vals[p])) for p in range(rows.row_ptr[r], rows.row_ptr[r + 1])]
        for r in range(rows.n)
    ]


def _columns_as_lists(batch):
    return [
        [(int(batch.rows[p]), float(batch.col_vals[p])) for p in range(batch.col_ptr[i], batch.col_ptr[i + 1])]
        for i in range(batch.d)
    ]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_rows_list_every_non_zero(backend, rng, dtype):
    x = _x(rng, dtype=dtype)
    rows = scratchnet.backends.resolve(backend).sparse_rows(x)
    assert (rows.n, rows.d) == x.shape
    assert rows.cols.dtype == np.int32 and rows.vals.dtype == np.float64 and rows.row_ptr.dtype == np.int64
    assert _rows_as_lists(rows) == naive.nonzeros_by_row(x)  # values promoted exactly


def test_batch_from_dense_lists_rows_and_columns(backend, rng):
    x = _x(rng)
    batch = scratchnet.backends.resolve(backend).batch_from_dense(x)
    assert _rows_as_lists(batch) == naive.nonzeros_by_row(x)
    assert _columns_as_lists(batch) == naive.nonzeros_by_column(x)
    assert batch.xmax == np.abs(x).max()


def test_batch_take_equals_the_dense_rows(backend, rng):
    x = _x(rng)
    kernels = scratchnet.backends.resolve(backend)
    take = np.array([4, 0, 4, 36, 3, 17])  # repeats, the all-zero row, any order
    batch = kernels.batch_take(kernels.sparse_rows(x), take)
    assert _rows_as_lists(batch) == naive.nonzeros_by_row(x[take])
    assert _columns_as_lists(batch) == naive.nonzeros_by_column(x[take])
    assert batch.xmax == np.abs(x[take]).max()


def test_an_all_zero_batch(backend):
    batch = scratchnet.backends.resolve(backend).batch_from_dense(np.zeros((3, 4)))
    assert batch.xmax == 0.0 and len(batch.cols) == 0 and list(batch.col_ptr) == [0] * 5


def _forward(backend, net, x):
    kernels = scratchnet.backends.resolve(backend)
    params = net.kernel_params()
    n, (h, k) = x.shape[0], params.W2.shape
    fwd = Forward(*(np.empty(s) for s in ((n, h), (n, h), (n, h), (n, k), (n, k), (n,), (n, k))))
    kernels.forward(fwd, kernels.batch_from_dense(x), params)
    return fwd


def test_forward_matches_the_textbook(backend, rng):
    # The sums in another order (x's non-zeros, ascending) than BLAS's: each
    # a1, a2 within a few ulps of max |term| times the number of terms; the
    # activations then within a few ulps of the textbook's.
    x = _x(rng, d=30)
    net = scratchnet.TwoLayerNet(30, 9, 4, weight_init_std=1.0, seed=3)
    fwd = _forward(backend, net, x)
    a1, z, a2, y = naive.net_forward(net.params, x)
    np.testing.assert_allclose(fwd.a1, a1, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(fwd.z, z, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(fwd.zq, 1.0 - z, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(fwd.a2, a2, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(fwd.y, y, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(fwd.e / fwd.s[:, None], y, rtol=1e-12, atol=1e-16)
    assert np.all(fwd.e.max(axis=1) == 1.0)  # exp(a2 - max a2)


def test_zq_keeps_its_digits_where_1_minus_z_loses_them(backend):
    # zq = sigmoid(-a1) from exp(-|a1|): for a1 = 40, 1 - z is 0 in double but
    # zq = e^-40 to full relative precision.
    net = scratchnet.TwoLayerNet(1, 1, 2, seed=0)
    net.params["W1"][:] = 1.0
    fwd = _forward(backend, net, np.array([[40.0], [-40.0]]))
    np.testing.assert_allclose(fwd.zq[0, 0], np.exp(-40.0) / (1 + np.exp(-40.0)), rtol=1e-15)
    np.testing.assert_allclose(fwd.z[1, 0], np.exp(-40.0) / (1 + np.exp(-40.0)), rtol=1e-15)


def test_count_correct_counts_the_largest_logit(backend, rng):
    x = _x(rng, n=700, d=20)  # three chunks of 256 rows
    net = scratchnet.TwoLayerNet(20, 6, 5, weight_init_std=1.0, seed=4)
    labels = rng.integers(0, 5, 700).astype(np.intp)
    kernels = scratchnet.backends.resolve(backend)
    got = kernels.count_correct(kernels.sparse_rows(x), labels, net.kernel_params())
    assert got == int(np.sum(np.argmax(naive.net_forward(net.params, x)[2], axis=1) == labels))


@pytest.mark.parametrize("compiled", COMPILED)
def test_compiled_kernels_are_bitwise_twins(rng, compiled):
    if not {"numba", "c"} <= set(scratchnet.available_backends()):
        pytest.skip("needs both compiled backends")
    x = _x(rng, n=300, d=40)
    net = scratchnet.TwoLayerNet(40, 11, 5, weight_init_std=0.5, seed=5)
    a, b = _forward("numba", net, x), _forward("c", net, x)
    for name in Forward._fields:
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    rows = [scratchnet.backends.resolve(name).sparse_rows(x) for name in ("numba", "c")]
    assert all(np.array_equal(p, q) for p, q in zip(rows[0][2:], rows[1][2:]))


@pytest.mark.parametrize("compiled", COMPILED)
def test_threads_change_no_bit(rng, threads, compiled):
    x = _x(rng, n=3000, d=40)  # several work items per kernel
    net = scratchnet.TwoLayerNet(40, 11, 5, weight_init_std=0.5, seed=6)
    labels = rng.integers(0, 5, 3000).astype(np.intp)
    kernels = scratchnet.backends.resolve(compiled)
    results = []
    for n in (1, 2):
        threads(n)
        fwd = _forward(compiled, net, x)
        rows = kernels.sparse_rows(x)
        results.append(
            (
                fwd,
                rows,
                kernels.count_correct(rows, labels, net.kernel_params()),
                net.gradient(x, labels, backend=compiled),
            )
        )
    (f1, r1, c1, g1), (f2, r2, c2, g2) = results
    assert all(getattr(f1, k).tobytes() == getattr(f2, k).tobytes() for k in Forward._fields)
    assert all(np.array_equal(p, q) for p, q in zip(r1[2:], r2[2:]))
    assert c1 == c2
    assert all(g1[k].tobytes() == g2[k].tobytes() for k in g1)
