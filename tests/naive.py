"""Slow, obvious twins of every fast kernel: the oracle.

These are the textbook's own algorithms written as plain loops, with no
cleverness; the tests compare every backend with them.
"""

import math

import numpy as np

from scratchnet import textbook


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
# scratchnet.textbook is the book's own code (the benchmarks time it too);
# the tests use it as it is, so it is checked by every test that uses these.
def net_loss(params, x, t):
    """The textbook's TwoLayerNet.loss: sigmoid hidden layer, softmax, cross-entropy."""
    with np.errstate(over="ignore"):  # the textbook's sigmoid overflows to 0 harmlessly
        return textbook.loss(params, x, t)


def net_numerical_gradient(params, x, t, h=1e-4, sample=None):
    """The textbook's TwoLayerNet.numerical_gradient: the loop over every parameter.

    ``sample`` optionally maps a parameter name to a list of flat indices,
    to time or check a subset; other entries are NaN.
    """
    grads = {}
    for name, p in params.items():
        indices = range(p.size) if sample is None else sample.get(name, [])
        g = np.full(p.size, np.nan)
        with np.errstate(over="ignore"):
            g[list(indices)] = textbook.numerical_partials(params, x, t, [(name, i) for i in indices], h=h)
        grads[name] = g.reshape(p.shape)
    return grads


# -- sparse rows and columns (backends' sparse_rows, batch_take, batch_from_dense) ----
def nonzeros_by_row(x):
    """[(n, [(i, x[n, i]) for the non-zero i ascending]) for each row n], plain loops."""
    return [[(i, float(v)) for i, v in enumerate(row) if v != 0.0] for row in np.asarray(x, dtype=np.float64)]


def nonzeros_by_column(x):
    """[[(n, x[n, i]) for the samples n with x[n, i] != 0, ascending] for each column i]."""
    x = np.asarray(x, dtype=np.float64)
    return [[(n, float(x[n, i])) for n in range(x.shape[0]) if x[n, i] != 0.0] for i in range(x.shape[1])]


# -- the network, as the textbook writes it (forward, backprop) ----------------------------
def net_forward(params, x):
    """a1, z1, a2, y of the textbook's TwoLayerNet.predict."""
    a1 = x @ params["W1"] + params["b1"]
    z1 = sigmoid(a1)
    a2 = z1 @ params["W2"] + params["b2"]
    return a1, z1, a2, softmax(a2)


def net_backprop(params, x, t):
    """The next chapter's backprop, written out, with the derivative of log(y_t + 1e-7) kept:
    dL/da2 = (y - onehot) * y_t / (y_t + 1e-7) / N."""
    n = x.shape[0]
    _, z1, _, y = net_forward(params, x)
    da2 = y.copy()
    da2[np.arange(n), t] -= 1.0
    y_t = y[np.arange(n), t]
    da2 *= (y_t / (y_t + 1e-7) / n)[:, None]
    da1 = (da2 @ params["W2"].T) * z1 * (1.0 - z1)
    return {"W1": x.T @ da1, "b1": da1.sum(axis=0), "W2": z1.T @ da2, "b2": da2.sum(axis=0)}


# -- the series of the loss in a step, by mpmath (the series numerical gradient) -----------
def loss_taylor(a, w_row, logits, t, order=5, kind="hidden", dps=50, exact=False):
    """Taylor coefficients c_1..c_order of one sample's loss -log(y_t + 1e-7) in a step d:

    kind "hidden": the hidden pre-activation a moves by d, the logits by
    (sigmoid(a + d) - sigmoid(a)) * w_row; kind ("logit", k): logit k moves
    by d. Computed by mpmath's differentiation at ``dps`` digits, straight
    from the definition; floats, or mpmath numbers if ``exact``.
    """
    import mpmath

    with mpmath.workdps(dps):
        a = mpmath.mpf(float(a))
        w = [mpmath.mpf(float(v)) for v in w_row]
        lg = [mpmath.mpf(float(v)) for v in logits]

        def loss(d):
            if kind == "hidden":
                dz = 1 / (1 + mpmath.exp(-(a + d))) - 1 / (1 + mpmath.exp(-a))
                shifted = [lg[k] + dz * w[k] for k in range(len(lg))]
            else:
                shifted = [lg[k] + (d if k == kind[1] else 0) for k in range(len(lg))]
            m = max(shifted)
            e = [mpmath.exp(v - m) for v in shifted]
            return -mpmath.log(e[t] / mpmath.fsum(e) + mpmath.mpf("1e-7"))

        coefficients = mpmath.taylor(loss, 0, order)[1:]
        return coefficients if exact else [float(c) for c in coefficients]


def central_difference_oracle(params, x, t, name, index, h=1e-4, dps=40):
    """The loop's central difference of params[name][index], in mpmath at ``dps`` digits.

    The loop's real steps h+ = fl(p + h) - p and h- = p - fl(p - h), taken
    exactly; the loss recomputed from the float64 inputs without rounding
    (to dps digits): (L(p + h+) - L(p - h-)) / 2h.
    """
    import mpmath

    with mpmath.workdps(dps):
        mp = {
            k: [[mpmath.mpf(float(v)) for v in np.atleast_1d(row)] for row in np.atleast_2d(a)]
            for k, a in params.items()
        }
        xs = [[mpmath.mpf(float(v)) for v in row] for row in np.asarray(x, dtype=np.float64)]
        p = float(params[name][index])
        steps = (mpmath.mpf(p + h) - mpmath.mpf(p), -(mpmath.mpf(p) - mpmath.mpf(p - h)))
        d = len(mp["W1"])
        hdim = len(mp["b1"][0])
        k = len(mp["b2"][0])
        losses = []
        for step in steps:
            q = {key: [row[:] for row in rows] for key, rows in mp.items()}
            row, col = index if len(index) == 2 else (0, index[0])
            q[name][row][col] += step
            total = mpmath.mpf(0)
            for n, xr in enumerate(xs):
                a1 = [
                    mpmath.fsum(xr[i] * q["W1"][i][j] for i in range(d) if xr[i]) + q["b1"][0][j] for j in range(hdim)
                ]
                z = [1 / (1 + mpmath.exp(-v)) for v in a1]
                a2 = [mpmath.fsum(z[j] * q["W2"][j][c] for j in range(hdim)) + q["b2"][0][c] for c in range(k)]
                m = max(a2)
                e = [mpmath.exp(v - m) for v in a2]
                total += -mpmath.log(e[int(t[n])] / mpmath.fsum(e) + mpmath.mpf("1e-7"))
            losses.append(total / len(xs))
        return float((losses[0] - losses[1]) / (2 * mpmath.mpf(h)))
