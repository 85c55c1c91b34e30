"""The numerical gradient of TwoLayerNet by series in the step: the NumPy reference.

Derived in docs/numerical_gradient.rst, section 'Method "series" (the
default)', whose notation the names here follow: per sample, the loss in a
step of each hidden pre-activation (C) and of each logit (L) as a series
through SERIES_ORDER, then every gradient entry as sums over the samples
of those coefficients times powers of the step (``numgrad_series``). The
remainder is bounded per hidden unit and per logit (section 'The remainder
bound'; ``series_rejected``), and a unit or logit whose bound is not below
the rounding of its results is computed by the perturbed-loss method
instead (``numgrad_perturbed``).
"""

import functools
import math

import numpy as np

from ..._blas import single_threaded_blas
from ..._config import DELTA
from ..._config import SERIES_ORDER as M
from ..._config import SERIES_RADII as RADII
from ..._config import SERIES_ROUNDING as ROUNDING
from .forward import forward
from .numgrad_perturbed import numgrad_perturbed
from .sparse import dense

FACTORIAL = [math.factorial(m) for m in range(M + 1)]


# -- coefficients ---------------------------------------------------------------
def loss_shift_coefficients(phi, alpha):
    """F[1..M]: the loss change -log(1 + alpha (1/Phi(s) - 1)) as a series in s.

    phi[m] (m = 1..M) are the coefficients of Phi(s) = sum_k y_k exp(s v_k)
    (phi[0] = 1 is implied); alpha = y_t / (y_t + DELTA). The recurrences are
    derived in docs/numerical_gradient.rst, 'The loss in a shift of the
    hidden output'.
    """
    R = [1.0] + [0.0] * M  # 1 / Phi
    for m in range(1, M + 1):
        R[m] = -sum(phi[i] * R[m - i] for i in range(1, m + 1))
    xi = [alpha * R[m] for m in range(M + 1)]  # 1 + alpha (R - 1), less its constant 1
    logs = [0.0] * (M + 1)  # log(1 + xi)
    for m in range(1, M + 1):
        logs[m] = xi[m] - sum(i * logs[i] * xi[m - i] for i in range(1, m)) / m
    return [None] + [-logs[m] for m in range(1, M + 1)]


def sigmoid_increment_coefficients(z, zq):
    """beta[1..5]: sigmoid(a + d) - sigmoid(a) = sum_m beta[m] d^m, from z = sigmoid(a), zq = sigmoid(-a).

    docs/numerical_gradient.rst, 'The loss in a step of the hidden pre-activation'.
    """
    zeta, kappa = z * zq, zq - z
    k2 = kappa * kappa
    return [
        None,
        zeta,
        zeta * kappa / 2.0,
        zeta * (k2 - 2.0 * zeta) / 6.0,
        zeta * kappa * (k2 - 8.0 * zeta) / 24.0,
        zeta * (k2 * k2 - 22.0 * zeta * k2 + 16.0 * zeta * zeta) / 120.0,
    ]


def compose(F, beta):
    """C[1..5]: the coefficients of F(beta(d)), F and beta series without constant terms."""
    b = beta
    return [
        None,
        F[1] * b[1],
        F[1] * b[2] + F[2] * (b[1] * b[1]),
        F[1] * b[3] + F[2] * (2.0 * b[1] * b[2]) + F[3] * (b[1] * b[1] * b[1]),
        F[1] * b[4]
        + F[2] * (2.0 * b[1] * b[3] + b[2] * b[2])
        + F[3] * (3.0 * b[1] * b[1] * b[2])
        + F[4] * (b[1] * b[1] * b[1] * b[1]),
        F[1] * b[5]
        + F[2] * (2.0 * b[1] * b[4] + 2.0 * b[2] * b[3])
        + F[3] * (3.0 * b[1] * b[1] * b[3] + 3.0 * b[1] * b[2] * b[2])
        + F[4] * (4.0 * b[1] * b[1] * b[1] * b[2])
        + F[5] * b[1] ** 5,
    ]


def true_class_weight(fwd, labels):
    """alpha = y_t / (y_t + DELTA) per sample (N,): the factor TwoLayerNet.gradient explains."""
    y_t = fwd.y[np.arange(len(labels)), labels]
    return y_t / (y_t + DELTA)


def hidden_coefficients(fwd, labels, W2):
    """C[1..M], each (N, H): sample n's loss as a series in a shift of a1[n, j].

    A W2 row of extreme size (|W2| ~ 1e60) overflows here; the bound rejects
    such a unit (its growth is infinite) and the perturbed method computes it.
    """
    v = W2[None, :, :] - W2[:, labels].T[:, :, None]  # (N, H, K): v[n, j, k] = W2[j, k] - W2[j, t_n]
    y = fwd.y[:, None, :]
    with np.errstate(over="ignore", invalid="ignore"):
        phi = [None] + [np.sum(y * v**m, axis=2) / FACTORIAL[m] for m in range(1, M + 1)]
        F = loss_shift_coefficients(phi, true_class_weight(fwd, labels)[:, None])
        return compose(F, sigmoid_increment_coefficients(fwd.z, fwd.zq))


def logit_coefficients(fwd, labels):
    """L[1..M], each (N, K): sample n's loss as a series in a shift of logit k.

    docs/numerical_gradient.rst, 'The loss in a step of a logit'; 1 - y_t is
    summed from the other classes (no cancellation when y_t is near 1).
    """
    n = len(labels)
    rows = np.arange(n)
    rest = np.where(np.arange(fwd.y.shape[1]) == labels[:, None], 0.0, fwd.y).sum(axis=1)  # sum over k != t
    phi = [None]
    for m in range(1, M + 1):
        p = fwd.y / FACTORIAL[m]
        p[rows, labels] = rest * (-1.0) ** m / FACTORIAL[m]
        phi.append(p)
    return loss_shift_coefficients(phi, true_class_weight(fwd, labels)[:, None])


# -- steps ------------------------------------------------------------------------
def step_weights(p, h):
    """w[1..M] with the shape of p; the larger real step max(h+, h-); and |h+ - h-|.

    w_m = ((h+)^m - (-h-)^m) / 2h, with the loop's real steps h+ = fl(p + h) - p
    and h- = p - fl(p - h) (docs/numerical_gradient.rst, 'The gradient entries').
    """
    hp, hm = (p + h) - p, p - (p - h)
    w = [None] + [(hp**m - (-hm) ** m) / (2.0 * h) for m in range(1, M + 1)]
    return w, np.maximum(hp, hm), np.abs(hp - hm)


# -- the remainder bound --------------------------------------------------------------
def growth(theta):
    """Bound on |F(s)| (F the loss change in a shift s of the logits along a
    direction of half-range v, F(0) = 0) for complex |s| v <= theta; inf
    from theta = pi / 2. Derived in docs/numerical_gradient.rst, 'The
    remainder bound' (the growth of a hidden unit).
    """
    g = math.inf
    if theta < math.log(2.0):
        g = -2.0 * math.log(2.0 - math.exp(theta))
    if theta < math.pi / 2.0:
        g = min(g, 2.0 * (2.0 * theta - math.log(math.cos(theta))))
    return g


def hidden_growth(r, width):
    """Bound on |loss(d) - loss(0)| for complex |d| <= r, a hidden unit whose W2 row spans ``width``.

    growth at theta = Z(r) width / 2, Z(r) = r / (4 cos^2(r/2)); inf from r = pi
    (docs/numerical_gradient.rst, 'The remainder bound').
    """
    if r >= math.pi:
        return math.inf
    return growth(r / (4.0 * math.cos(r / 2.0) ** 2) * width / 2.0)


def logit_growth(r):
    """hidden_growth for a shift of one logit: it moves by |u| <= r; the directions span 1, theta = r / 2."""
    return growth(r / 2.0)


def tail_bound(growth_at, step, diff, scale_x, h):
    """Bound on the terms m > M of one gradient entry, the best over RADII.

    growth_at(r): the bound G(r) of the loss change on the disc |d| <= r;
    step: the largest real step of the parameters, diff: the largest |h+ - h-|;
    scale_x: the largest |multiplier| of the step (x for W1, z for W2, 1 for
    the biases). G(r) / h (rho^7 / (1 - rho^2) + 3 delta rho^5 / (1 - rho^2)^2),
    rho = step scale_x / r, delta = diff scale_x / r, for every r with rho < 1:
    derived in docs/numerical_gradient.rst, 'The remainder bound' (the tails).
    """
    if step * scale_x == 0.0:
        return 0.0
    best = math.inf
    for r in RADII:
        rho, delta = step * scale_x / r, diff * scale_x / r
        if rho < 1.0:
            q = 1.0 - rho * rho
            best = min(best, growth_at(r) * (rho**7 / q + delta * 3.0 * rho**5 / (q * q)) / h)
    return best


def series_rejected(C1, L1, xmax, zmax, steps, W2, h):
    """Hidden units (H,) and logits (K,) whose remainder bound is not below the rounding of the result.

    C1 (N, H), L1 (N, K): first-order coefficients (their largest |.|, times
    the largest multiplier, is the scale of a gradient entry); steps: per
    parameter group, the largest real step and |h+ - h-| of W1's and W2's
    columns and of b1, b2 (dict of pairs). The acceptance test is that of
    docs/numerical_gradient.rst, 'The remainder bound'.
    """
    H, K = W2.shape
    units = np.zeros(H, dtype=bool)
    for j in range(H):
        width = W2[j].max() - W2[j].min()
        scale = np.abs(C1[:, j]).max()  # NaN where the coefficients overflowed: then rejected
        at = functools.partial(hidden_growth, width=width)
        units[j] = not (
            tail_bound(at, *steps["W1"][j], xmax, h) <= ROUNDING * xmax * scale
            and tail_bound(at, *steps["b1"][j], 1.0, h) <= ROUNDING * scale
        )
    logits = np.zeros(K, dtype=bool)
    for k in range(K):
        scale = np.abs(L1[:, k]).max()
        logits[k] = not (
            tail_bound(logit_growth, *steps["W2"][k], zmax, h) <= ROUNDING * zmax * scale
            and tail_bound(logit_growth, *steps["b2"][k], 1.0, h) <= ROUNDING * scale
        )
    return units, logits


# -- the kernel ---------------------------------------------------------------------
def numgrad_series(grads, batch, labels, params, fwd, h):
    """grads (Grads) = the loop's central differences of the chapter's loss, by series.

    batch (Batch), labels (N,) intp, params (Params), h > 0; fwd (Forward)
    is filled with the forward pass of batch. Returns (units, logits):
    boolean masks of the hidden units (H,) and logits (K,) that the
    remainder bound sent to the perturbed-loss method.
    """
    forward(fwd, batch, params)
    n = batch.n
    x = dense(batch)
    C = hidden_coefficients(fwd, labels, params.W2)
    L = logit_coefficients(fwd, labels)
    w = {}
    steps = {}  # per column (W1, W2) or entry (b1, b2): (largest step, largest |h+ - h-|)
    for name in ("W1", "b1", "W2", "b2"):
        w[name], big, diff = step_weights(getattr(params, name), h)
        if big.ndim == 2:
            big, diff = big.max(axis=0), diff.max(axis=0)
        steps[name] = list(zip(big, diff))
    # Units with overflowing coefficients (see hidden_coefficients) give inf or
    # NaN here; they are rejected below and overwritten by the perturbed method.
    with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore"):
        grads.W1[...] = sum(w["W1"][m] * ((x**m).T @ C[m]) for m in range(1, M + 1)) / n
        grads.W2[...] = sum(w["W2"][m] * ((fwd.z**m).T @ L[m]) for m in range(1, M + 1)) / n
        grads.b1[...] = sum(w["b1"][m] * C[m].sum(axis=0) for m in range(1, M + 1)) / n
        grads.b2[...] = sum(w["b2"][m] * L[m].sum(axis=0) for m in range(1, M + 1)) / n
    zmax = float(fwd.z.max()) if fwd.z.size else 0.0
    units, logits = series_rejected(C[1], L[1], batch.xmax, zmax, steps, params.W2, h)
    # and where an entry came out non-finite (coefficients of extreme weights that overflowed)
    units |= ~(np.isfinite(grads.W1).all(axis=0) & np.isfinite(grads.b1))
    logits |= ~(np.isfinite(grads.W2).all(axis=0) & np.isfinite(grads.b2))
    if units.any() or logits.any():
        numgrad_perturbed(grads, batch, labels, params, fwd, h, units, logits)
    return units, logits
