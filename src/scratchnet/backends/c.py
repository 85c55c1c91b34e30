"""C backend: thin wrapper around the compiled extension ``scratchnet._ckernels``.

The same kernel names and signatures as :mod:`.numpy_ref`. The kernels are
the C twins of :mod:`.numba_kernels` and :mod:`.numba_network` (kernels/*.c):
same formulas in the same order, bit for bit, and 1 and N threads give
identical results. The checks here are cheap (dtype, contiguity, shapes;
no pass over the data): they turn a wrong call into a clear error instead
of reading the wrong memory, and the extension repeats them on the buffers
it receives, with the label range.

Importing this module raises ImportError when the extension was not built;
the registry then lists the backend as unavailable.
"""

import numpy as np

from .. import _ckernels

OPENMP = bool(_ckernels.openmp)  # False: the extension was built without OpenMP (serial)


def _check(a, name, ndim, dtype=np.float64, writable=False):
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim:
        got = f"{a.dtype} array of {a.ndim} dimensions" if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name}: expected a {ndim}-d {np.dtype(dtype)} array, got {got}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name}: output array is read-only")


def _float64_x(x):
    """The C kernels read float64; float32 inputs (MNIST pixels) convert exactly."""
    return x.astype(np.float64) if isinstance(x, np.ndarray) and x.dtype == np.float32 else x


def _check_same_shape(x, out):
    if out.shape != x.shape:
        raise ValueError(f"out: shape {out.shape} does not match x's shape {x.shape}")


def sigmoid(x, out):
    """out = 1 / (1 + exp(-x)), exp only of -|x|. x, out (M,)"""
    _check(x, "x", 1)
    _check(out, "out", 1, writable=True)
    _check_same_shape(x, out)
    _ckernels.sigmoid(out, x, x.shape[0])


def softmax(x, out):
    """Row-wise stable softmax. x, out (N, K), K >= 1"""
    _check(x, "x", 2)
    _check(out, "out", 2, writable=True)
    _check_same_shape(x, out)
    n, k = x.shape
    _ckernels.softmax(out, x, n, k)


def cross_entropy_error(y, t):
    """-mean(log(y[n, t[n]] + 1e-7)), summed in fixed blocks. y (N, K), t (N,) intp labels"""
    _check(y, "y", 2)
    _check(t, "t", 1, dtype=np.intp)
    n, k = y.shape
    if t.shape != (n,):
        raise ValueError(f"t: expected {n} labels for y of shape {y.shape}, got shape {t.shape}")
    return _ckernels.cross_entropy_error(y, t, n, k)


def affine(x, W, b, out):
    """out = x @ W + b over the non-zero entries of x (kernels/affine.c). x (N, D), W (D, M), b (M,), out (N, M)"""
    x = _float64_x(x)
    _check(x, "x", 2)
    _check(W, "W", 2)
    _check(b, "b", 1)
    _check(out, "out", 2, writable=True)
    n, d = x.shape
    m = W.shape[1]
    for name, a, shape in (("W", W, (d, m)), ("b", b, (m,)), ("out", out, (n, m))):
        if a.shape != shape:
            raise ValueError(f"{name}: expected shape {shape} for x {x.shape} and W {W.shape}, got {a.shape}")
    _ckernels.affine(out, x, W, b, n, d, m)


def affine_weight_grad(x, dout, out):
    """out = x.T @ dout over the non-zero entries of x (kernels/affine.c). x (N, D), dout (N, M), out (D, M)"""
    x = _float64_x(x)
    _check(x, "x", 2)
    _check(dout, "dout", 2)
    _check(out, "out", 2, writable=True)
    n, d = x.shape
    m = dout.shape[1]
    for name, a, shape in (("dout", dout, (n, m)), ("out", out, (d, m))):
        if a.shape != shape:
            raise ValueError(f"{name}: expected shape {shape} for x {x.shape} and dout {dout.shape}, got {a.shape}")
    _ckernels.affine_weight_grad(out, x, dout, n, d, m)


def network_numerical_gradient(x, t, a1, W2, a2, h, dW1, db1, dW2, db2):
    """Central differences of the chapter's loss for every parameter of TwoLayerNet (kernels/numgrad.c).

    x (N, D), t (N,) intp, a1 (N, H) = x W1 + b1, W2 (H, K), a2 (N, K) logits,
    h > 0; fills dW1 (D, H), db1 (H,), dW2 (H, K), db2 (K,).
    """
    x = _float64_x(x)
    _check(x, "x", 2)
    _check(t, "t", 1, dtype=np.intp)
    for name, a, ndim in (("a1", a1, 2), ("W2", W2, 2), ("a2", a2, 2)):
        _check(a, name, ndim)
    for name, a, ndim in (("dW1", dW1, 2), ("db1", db1, 1), ("dW2", dW2, 2), ("db2", db2, 1)):
        _check(a, name, ndim, writable=True)
    n, d = x.shape
    hdim, k = W2.shape
    expected = {"t": (n,), "a1": (n, hdim), "a2": (n, k), "dW1": (d, hdim), "db1": (hdim,), "dW2": (hdim, k),
                "db2": (k,)}
    for name, a in (("t", t), ("a1", a1), ("a2", a2), ("dW1", dW1), ("db1", db1), ("dW2", dW2), ("db2", db2)):
        if a.shape != expected[name]:
            raise ValueError(f"{name}: expected shape {expected[name]} for x {x.shape} and W2 {W2.shape}, got {a.shape}")
    _ckernels.network_numerical_gradient(dW1, db1, dW2, db2, x, t, a1, W2, a2, float(h), n, d, hdim, k)


def set_num_threads(n):
    """Threads of the C kernels, n >= 1 (without OpenMP the kernels stay serial)."""
    _ckernels.set_num_threads(n)


def get_num_threads():
    """Threads the C kernels use (1 without OpenMP)."""
    return _ckernels.get_num_threads()
