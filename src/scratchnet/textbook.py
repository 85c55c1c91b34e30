"""The chapter's own code, kept for comparison: what scratchnet's fast methods replace.

:func:`loss` is the book's ``TwoLayerNet.loss`` (one full NumPy forward
pass) and :func:`numerical_partials` its ``numerical_gradient`` loop (per
parameter: perturb by +h, loss, by -h, loss, restore). The benchmarks time
scratchnet against it; it is slow by design (about 10 s for the chapter's
39,760 parameters on a batch of 100).
"""

import numpy as np


def loss(params, x, t):
    """The book's TwoLayerNet.loss: x (N, D), t (N,) integer labels; params as TwoLayerNet.params."""
    a1 = x @ params["W1"] + params["b1"]
    z1 = 1.0 / (1.0 + np.exp(-a1))
    a2 = z1 @ params["W2"] + params["b2"]
    e = np.exp(a2 - a2.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    return -np.sum(np.log(y[np.arange(len(t)), t] + 1e-7)) / len(t)


def numerical_partials(params, x, t, sample, h=1e-4):
    """The book's loop body for each ``(name, flat index)`` of ``sample``: the partial derivatives (len(sample),).

    ``params`` is modified during the call and restored exactly, as in the book.
    """
    out = np.empty(len(sample))
    for i, (name, j) in enumerate(sample):
        flat = params[name].reshape(-1)  # a view: writes reach params[name]
        tmp = flat[j]
        try:
            flat[j] = tmp + h
            fxh1 = loss(params, x, t)
            flat[j] = tmp - h
            fxh2 = loss(params, x, t)
        finally:
            flat[j] = tmp
        out[i] = (fxh1 - fxh2) / (2 * h)
    return out


def parameter_sample(params, per_param=10):
    """``per_param`` evenly spaced ``(name, flat index)`` in each of W1, b1, W2, b2."""
    return [
        (name, int(j))
        for name in ("W1", "b1", "W2", "b2")
        for j in np.linspace(0, params[name].size - 1, per_param).round().astype(int)
    ]
