"""The chapter's activation and loss functions.

Each public function validates its input, converts it to a C-contiguous
float64 array, allocates the output and hands both to a backend kernel
(``backend=None`` uses the global backend, see :func:`scratchnet.set_backend`).
"""

import numpy as np

from . import backends
from ._config import DELTA, as_written
from ._validation import as_array, as_float64, labels_from_targets


def sigmoid(x, *, backend=None):
    """Logistic sigmoid, ``1 / (1 + exp(-x))``, element-wise.

    Computed as ``1 / (1 + exp(-|x|))`` and its mirror, so it neither
    overflows nor warns for large negative or positive ``x``. NaN stays NaN.

    Parameters
    ----------
    x : array_like
        Real numbers of any shape; computed in float64.
    backend : {"numpy", "numba", "c"}, optional

    Returns
    -------
    ndarray of float64 with the shape of ``x`` (a 0-d input gives a scalar).
    """
    x = as_float64(x, "x")
    out = np.empty_like(x)
    backends.resolve(backend).sigmoid(out.reshape(-1), x.reshape(-1))
    return out[()]


def softmax(x, *, backend=None):
    """Softmax of a vector, or of each row of a batch.

    The row maximum is subtracted before ``exp``, so large logits do not
    overflow. NaN or +inf in a row, or a row of only -inf, make that row NaN.

    Parameters
    ----------
    x : array_like, shape (K,) or (N, K)
    backend : {"numpy", "numba", "c"}, optional

    Returns
    -------
    ndarray of float64, the shape of ``x``; each row sums to 1.
    """
    x = as_float64(x, "x")
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"x: expected a non-empty vector (K,) or batch (N, K), got shape {x.shape}")
    x2 = x.reshape(-1, x.shape[-1])
    out = np.empty_like(x2)
    backends.resolve(backend).softmax(out, x2)
    return out.reshape(x.shape)


def sum_squares_error(y, t):
    """Sum of squares error, ``0.5 * sum((y - t)**2)``.

    Parameters
    ----------
    y, t : array_like of the same shape
        Network output and target (one-hot in the chapter).

    Returns
    -------
    float
        ``inf`` where the sum exceeds float64's range.

    Raises
    ------
    ValueError
        On a shape mismatch, or NaN or infinite entries in ``y`` or ``t``.
    """
    y = as_float64(y, "y")
    t = as_float64(t, "t")
    if y.shape != t.shape:
        raise ValueError(f"t: shape {t.shape} does not match y's shape {y.shape}")
    for name, a in (("y", y), ("t", t)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: contains NaN or inf")
    with np.errstate(over="ignore"):  # a sum beyond float64's range is inf, its correct rounding
        return 0.5 * float(np.sum((y - t) ** 2))


def cross_entropy_error(y, t, *, backend=None):
    """Mean cross-entropy of a batch, as the chapter defines it.

    ``-sum(log(y[n, t_n] + 1e-7)) / N``: the 1e-7 keeps ``log(0)`` finite.
    One-hot targets and integer labels give the same value.

    Parameters
    ----------
    y : array_like, shape (N, K) or (K,)
        Probabilities (softmax outputs). A vector is a batch of one.
    t : array_like
        One-hot targets of ``y``'s shape, or integer labels of shape (N,)
        (a single label for a vector ``y``), each in ``[0, K)``.
    backend : {"numpy", "numba", "c"}, optional

    Returns
    -------
    float

    Raises
    ------
    ValueError
        On a shape mismatch, a label out of range, a row of ``t`` that is
        not one-hot, or when an entry ``y[n, t_n]`` (the only entries the
        value depends on) is NaN, infinite or <= -1e-7 (where the log is
        undefined). Other entries of ``y`` are not inspected.
    TypeError
        For labels that are not integers.
    """
    y = as_float64(y, "y")
    if y.ndim not in (1, 2) or 0 in y.shape:
        raise ValueError(f"y: expected probabilities of shape (N, K) or (K,) with N, K >= 1, got {y.shape}")
    if y.ndim == 1:
        y, t = y.reshape(1, -1), _batch_of_one_target(t, y.shape[0])
    n, k = y.shape
    labels = labels_from_targets(t, n, k)
    loss = float(backends.resolve(backend).cross_entropy_error(y, labels))
    if not np.isfinite(loss):
        _raise_bad_probabilities(y, labels)
    return loss


def _batch_of_one_target(t, k):
    """The target of a vector ``y`` (K,) as a batch of one, as the book
    reshapes it: a one-hot (K,) or (1, K) becomes (1, K), a label () or (1,)
    becomes (1,)."""
    t = as_array(t, "t")
    if t.shape in ((k,), (1, k)):
        return t.reshape(1, k)
    if t.shape in ((), (1,)):
        return t.reshape(1)
    raise ValueError(f"t: for y of shape ({k},) expected one label or a one-hot vector ({k},), got shape {t.shape}")


def _raise_bad_probabilities(y, labels):
    # log(y + DELTA) is finite unless y is NaN, +-inf or y + DELTA <= 0.
    picked = y[np.arange(y.shape[0]), labels]
    for what, bad in (
        ("NaN", np.isnan(picked)),
        ("infinite", np.isinf(picked)),
        (f"so negative that log(y + {as_written(DELTA)}) is undefined", picked + DELTA <= 0),
    ):
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"y: y[{i}, {labels[i]}] (the true class's probability) is {what}: {picked[i]!r}")
    raise ValueError("y: the loss is not finite")  # unreachable: the cases above are exhaustive


# The name the textbook's reference code gives the same function.
sum_squared_error = sum_squares_error
