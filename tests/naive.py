"""Slow, obvious twins of every fast kernel: the oracle.

These are the textbook's own algorithms written as plain loops, with no
cleverness; the tests compare every backend with them.
"""

import math

import numpy as np


def sigmoid(x):
    out = np.empty(np.shape(x))
    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    res = out.reshape(-1)
    for i, v in enumerate(flat):
        # 1 / (1 + exp(-v)) rewritten so exp never overflows
        res[i] = 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
    return out


def softmax(x):
    x = np.asarray(x, dtype=np.float64)
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    for n, row in enumerate(rows):
        m = max(row)
        exps = [math.exp(v - m) for v in row]
        s = math.fsum(exps)
        out[n] = [e / s for e in exps]
    return out.reshape(x.shape)


def cross_entropy_error(y, t):
    """Mean of -log(y[n, t_n] + 1e-7), summed exactly (math.fsum)."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y.reshape(1, -1)
    t = np.asarray(t)
    labels = t.argmax(axis=-1).reshape(-1) if t.shape == y.shape or t.size == y.size else t.reshape(-1)
    return -math.fsum(math.log(y[n, labels[n]] + 1e-7) for n in range(y.shape[0])) / y.shape[0]


def sum_squares_error(y, t):
    return 0.5 * math.fsum((a - b) ** 2 for a, b in zip(np.ravel(y), np.ravel(t)))


def numerical_gradient(f, x, h=1e-4):
    """The chapter's loop: perturb each element in place, two calls of f."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        tmp = x[idx]
        x[idx] = tmp + h
        fxh1 = f(x)
        x[idx] = tmp - h
        fxh2 = f(x)
        x[idx] = tmp
        grad[idx] = (fxh1 - fxh2) / (2 * h)
    return grad


# -- the two-layer net, as the textbook writes it ------------------------------
def net_loss(params, x, t):
    """The textbook's TwoLayerNet.loss: sigmoid hidden layer, softmax, cross-entropy."""
    with np.errstate(over="ignore"):  # the textbook's sigmoid overflows to 0 harmlessly
        z1 = 1.0 / (1.0 + np.exp(-(x @ params["W1"] + params["b1"])))
    a2 = z1 @ params["W2"] + params["b2"]
    e = np.exp(a2 - a2.max(axis=1, keepdims=True))
    y = e / e.sum(axis=1, keepdims=True)
    return -np.sum(np.log(y[np.arange(len(t)), t] + 1e-7)) / len(t)


def net_numerical_gradient(params, x, t, h=1e-4, sample=None):
    """The textbook's TwoLayerNet.numerical_gradient: the loop over every parameter.

    ``sample`` optionally maps a parameter name to a list of flat indices,
    to time or check a subset; other entries are NaN.
    """
    grads = {}
    for name, p in params.items():
        g = np.full(p.shape, np.nan)
        indices = range(p.size) if sample is None else sample.get(name, [])
        for i in indices:
            idx = np.unravel_index(i, p.shape)
            tmp = p[idx]
            p[idx] = tmp + h
            fxh1 = net_loss(params, x, t)
            p[idx] = tmp - h
            fxh2 = net_loss(params, x, t)
            p[idx] = tmp
            g[idx] = (fxh1 - fxh2) / (2 * h)
        grads[name] = g
    return grads


# -- affine layers (backends' affine, affine_weight_grad) ---------------------
def affine(x, W, b):
    """x @ W + b, every output summed term by term in order (zeros included), then + b."""
    n, d = x.shape
    out = np.empty((n, W.shape[1]))
    for r in range(n):
        acc = np.zeros(W.shape[1])  # the sums of all M outputs of row r, side by side
        for i in range(d):
            acc = acc + x[r, i] * W[i]
        out[r] = acc + b
    return out


def affine_weight_grad(x, dout):
    """x.T @ dout, every output summed term by term over the samples in order (zeros included)."""
    n, d = x.shape
    out = np.empty((d, dout.shape[1]))
    for i in range(d):
        acc = np.zeros(dout.shape[1])
        for r in range(n):
            acc = acc + x[r, i] * dout[r]
        out[i] = acc
    return out
