"""The numerical gradient of TwoLayerNet by perturbed losses: the NumPy reference.

Derived in docs/numerical_gradient.rst, sections 'Where a step acts' and
'Method "perturbed"'. Each step is applied only where it acts (one logit,
or one hidden pre-activation and through it every logit), from the
unperturbed forward pass; each sample contributes
``log((y_t(-) + DELTA) / (y_t(+) + DELTA))`` and the gradient entry is their
sum divided by N and 2h, so no two batch losses are subtracted. The steps
are the loop's real ones, except that a weight's (W1, W2) within h
NOMINAL_TOL of h are h, as in the compiled backends (the nominal step).
"""

import numpy as np

from ..._config import DELTA, NOMINAL_TOL, SATURATED
from .forward import forward, sigmoid_pair
from .sparse import dense


def _true_class_prob(a2, t):
    """softmax(a2)[..., t]: a2 (..., K) logits, t (...) labels broadcast against a2[..., 0]."""
    e = np.exp(a2 - a2.max(axis=-1, keepdims=True))
    t = np.broadcast_to(t, e.shape[:-1])[..., None]
    return np.take_along_axis(e, t, axis=-1)[..., 0] / e.sum(axis=-1)


def _loss_diff(a2_plus, a2_minus, t):
    """Per-sample l(+) - l(-) from the two perturbed logits (..., K)."""
    return np.log((_true_class_prob(a2_minus, t) + DELTA) / (_true_class_prob(a2_plus, t) + DELTA))


def sigmoid_step(a, d):
    """sigmoid(a + d) - sigmoid(a) without cancellation or overflow, for any a and d (the two forms and the
    case |a| > SATURATED: docs/numerical_gradient.rst, 'Method "perturbed"')."""
    a, d = np.broadcast_arrays(a, d)
    z, zq = sigmoid_pair(a)
    up = d > 0
    e = np.exp(-np.abs(d))
    num = np.where(up, -np.expm1(-np.abs(d)), np.expm1(-np.abs(d)))
    den = np.where(up, z + zq * e, zq + z * e)
    with np.errstate(invalid="ignore"):  # 0 / 0 only where replaced below
        step = z * zq * num / den
    low, high = a < -SATURATED, a > SATURATED
    step[low] = sigmoid_pair(a[low] + d[low])[0] - z[low]
    step[high] = zq[high] - sigmoid_pair(a[high] + d[high])[1]
    return step


def real_steps(p, h):
    """(h+, h-): the loop's steps fl(p + h) - p and p - fl(p - h), elementwise."""
    return (p + h) - p, p - (p - h)


def nominal_steps(p, h):
    """real_steps, except h for both where both are within h * NOMINAL_TOL of h."""
    hp, hm = real_steps(p, h)
    near = (np.abs(hp - h) <= h * NOMINAL_TOL) & (np.abs(hm - h) <= h * NOMINAL_TOL)
    return np.where(near, h, hp), np.where(near, h, hm)


def numgrad_perturbed(grads, batch, labels, params, fwd, h, units=None, logits=None):
    """grads (Grads) = the loop's central differences, each perturbed loss evaluated exactly.

    Only the hidden units in ``units`` (bool (H,): column j of W1, b1[j]) and
    the logits in ``logits`` (bool (K,): column k of W2, b2[k]) are written;
    None means all. Other arguments as ``numgrad_series`` (fwd is filled here too).
    """
    forward(fwd, batch, params)
    x = dense(batch)
    n, d = x.shape
    H, K = params.W2.shape
    units = np.ones(H, dtype=bool) if units is None else units
    logits = np.ones(K, dtype=bool) if logits is None else logits
    # Logits less their row maximum (exact: Sterbenz), so a small perturbation
    # is added to numbers of order 1, not to logits of 1e6 (b2 += 1e6).
    a2, t = fwd.a2 - fwd.a2.max(axis=1, keepdims=True), labels
    onehot = np.eye(K)
    hp2, hm2 = real_steps(params.b2, h)
    for k in np.flatnonzero(logits):
        # b2[k]: logit k of every sample moves by h+ and -h-
        grads.b2[k] = _loss_diff(a2 + hp2[k] * onehot[k], a2 - hm2[k] * onehot[k], t).sum() / n / (2.0 * h)
        # W2[j, k]: logit k of sample n moves by z[n, j] h+ and -z[n, j] h-
        hp, hm = nominal_steps(params.W2[:, k], h)
        for j in range(H):
            up, down = fwd.z[:, j] * hp[j], fwd.z[:, j] * hm[j]
            diff = _loss_diff(a2 + up[:, None] * onehot[k], a2 - down[:, None] * onehot[k], t)
            grads.W2[j, k] = diff.sum() / n / (2.0 * h)

    rows, cols = np.nonzero(x)  # the (n, i) pairs a W1[i, j] step acts on, n ascending within each i
    hp1, hm1 = real_steps(params.b1, h)
    for j in np.flatnonzero(units):
        w = params.W2[j]
        # b1[j]: a1[:, j] moves by h+ and -h-
        dz_p, dz_m = sigmoid_step(fwd.a1[:, j], hp1[j]), sigmoid_step(fwd.a1[:, j], -hm1[j])
        grads.b1[j] = _loss_diff(a2 + dz_p[:, None] * w, a2 + dz_m[:, None] * w, t).sum() / n / (2.0 * h)
        # W1[i, j]: a1[n, j] moves by x[n, i] h+ and -x[n, i] h-, only for the non-zero pixels
        hp, hm = nominal_steps(params.W1[:, j], h)
        a = fwd.a1[rows, j]
        dz_p = sigmoid_step(a, x[rows, cols] * hp[cols])
        dz_m = sigmoid_step(a, -x[rows, cols] * hm[cols])
        diff = _loss_diff(a2[rows] + dz_p[:, None] * w, a2[rows] + dz_m[:, None] * w, t[rows])
        grads.W1[:, j] = np.bincount(cols, weights=diff, minlength=d) / n / (2.0 * h)
