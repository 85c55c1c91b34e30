"""The numerical gradient of TwoLayerNet by series in the step: Numba twin of kernels/numgrad_series.c.

Derived in docs/numerical_gradient.rst, sections 'Method "series" (the
default)' and 'The remainder bound', whose notation the names here follow;
the NumPy reference computes the same quantities array by array. This is
the fast form, written out for SERIES_ORDER = 5:

1. ``coefficients``, parallel over samples: the forward pass (fwd) and
   C (5, N, H), sample n's loss as a series in a shift of a1[n, j], and
   L (5, N, K), in a shift of logit k.
2. ``products``, parallel over work items (a row of dW1, a row of dW2, the
   biases): the sums over samples of x^m C[m] (x's non-zeros only) and
   z^m L[m], weighted by each parameter's step weights w_m.
3. ``rejected``, serial: the remainder bound per hidden unit and logit.

Every item writes only its own outputs and sums over samples ascending, so
1 and N threads give bitwise identical results. The C twin has the same
helpers, each with the same operations in the same order, and agrees bit
for bit; its header says where its code differs (work split, index checks).
"""

import math

import numpy as np
from numba import prange

from ..._config import DELTA, SERIES_ORDER, SERIES_RADII, jit
from ..._config import SERIES_ROUNDING as ROUNDING
from .forward import forward_row
from .numgrad_perturbed import numgrad_perturbed

RADII = np.array(SERIES_RADII)  # a global array: a compile-time constant of the kernels
LOG2 = math.log(2.0)
HALF_PI = math.pi / 2.0
ORDER = SERIES_ORDER
if ORDER != 5:  # every kernel below is written out term by term for five powers
    raise ImportError(f"backends/numba/numgrad_series.py is written out for SERIES_ORDER = 5, not {ORDER}")
EVEN_TOL = 2.0**-44  # a row of W1 sums its even powers if some |h+ - h-| exceeds h EVEN_TOL


# -- coefficients ---------------------------------------------------------------
@jit()
def loss_shift_coefficients(p1, p2, p3, p4, p5, alpha):
    """F1..F5 of -log(1 + alpha (1/Phi(s) - 1)), Phi(s) = 1 + p1 s + ... + p5 s^5."""
    r1 = -p1
    r2 = -(p1 * r1 + p2)
    r3 = -((p1 * r2 + p2 * r1) + p3)
    r4 = -(((p1 * r3 + p2 * r2) + p3 * r1) + p4)
    r5 = -((((p1 * r4 + p2 * r3) + p3 * r2) + p4 * r1) + p5)
    x1, x2, x3, x4, x5 = alpha * r1, alpha * r2, alpha * r3, alpha * r4, alpha * r5
    l1 = x1
    l2 = x2 - (l1 * x1) / 2.0
    l3 = x3 - (l1 * x2 + 2.0 * l2 * x1) / 3.0
    l4 = x4 - ((l1 * x3 + 2.0 * l2 * x2) + 3.0 * l3 * x1) / 4.0
    l5 = x5 - (((l1 * x4 + 2.0 * l2 * x3) + 3.0 * l3 * x2) + 4.0 * l4 * x1) / 5.0
    return -l1, -l2, -l3, -l4, -l5


@jit()
def sigmoid_increment(z, zq):
    """beta1..beta5 of sigmoid(a + d) - sigmoid(a), from z = sigmoid(a), zq = sigmoid(-a)."""
    zeta = z * zq
    kappa = zq - z
    k2 = kappa * kappa
    return (
        zeta,
        zeta * kappa / 2.0,
        zeta * (k2 - 2.0 * zeta) / 6.0,
        zeta * kappa * (k2 - 8.0 * zeta) / 24.0,
        zeta * ((k2 * k2 - 22.0 * zeta * k2) + 16.0 * zeta * zeta) / 120.0,
    )


@jit()
def compose(f1, f2, f3, f4, f5, beta1, beta2, beta3, beta4, beta5):
    """C1..C5 of F(beta(d)) for series F, beta without constant terms."""
    beta11 = beta1 * beta1
    return (
        f1 * beta1,
        f1 * beta2 + f2 * beta11,
        (f1 * beta3 + f2 * (2.0 * beta1 * beta2)) + f3 * (beta11 * beta1),
        ((f1 * beta4 + f2 * (2.0 * beta1 * beta3 + beta2 * beta2)) + f3 * (3.0 * beta11 * beta2))
        + f4 * (beta11 * beta11),
        (
            (
                (f1 * beta5 + f2 * (2.0 * beta1 * beta4 + 2.0 * beta2 * beta3))
                + f3 * (3.0 * beta11 * beta3 + 3.0 * beta1 * beta2 * beta2)
            )
            + f4 * (4.0 * beta11 * beta1 * beta2)
        )
        + f5 * (beta11 * beta11 * beta1),
    )


@jit()
def hidden_coefficients_row(C, phi, fwd, t, W2T, r):
    """C[:, r, :] (5, H): sample r's loss as a series in a shift of each a1[r, j]. phi: (5, H) scratch."""
    k, h = W2T.shape
    y_t = fwd.y[r, t]
    alpha = y_t / (y_t + DELTA)
    phi[:] = 0.0
    for c in range(k):  # phi[m - 1, j] = sum_k y_k v^m, v = W2[j, k] - W2[j, t]
        yc = fwd.y[r, c]
        for j in range(h):
            v = W2T[c, j] - W2T[t, j]
            yv = yc * v
            phi[0, j] += yv
            yv *= v
            phi[1, j] += yv
            yv *= v
            phi[2, j] += yv
            yv *= v
            phi[3, j] += yv
            phi[4, j] += yv * v
    for j in range(h):
        f1, f2, f3, f4, f5 = loss_shift_coefficients(
            phi[0, j], phi[1, j] / 2.0, phi[2, j] / 6.0, phi[3, j] / 24.0, phi[4, j] / 120.0, alpha
        )
        beta = sigmoid_increment(fwd.z[r, j], fwd.zq[r, j])
        C[0, r, j], C[1, r, j], C[2, r, j], C[3, r, j], C[4, r, j] = compose(f1, f2, f3, f4, f5, *beta)


@jit()
def logit_coefficients_row(L, fwd, t, r):
    """L[:, r, :] (5, K): sample r's loss as a series in a shift of each logit.

    Logit c != t: Phi(u) = 1 + y_c (e^u - 1); the true logit:
    Phi(u) = y_t + (1 - y_t) e^-u, 1 - y_t summed over the other classes.
    """
    k = fwd.y.shape[1]
    y_t = fwd.y[r, t]
    alpha = y_t / (y_t + DELTA)
    rest = 0.0
    for c in range(k):
        if c != t:
            rest += fwd.y[r, c]
    for c in range(k):
        p = fwd.y[r, c] if c != t else rest
        sign = 1.0 if c != t else -1.0
        f1, f2, f3, f4, f5 = loss_shift_coefficients(
            sign * p, p / 2.0, sign * p / 6.0, p / 24.0, sign * p / 120.0, alpha
        )
        L[0, r, c], L[1, r, c], L[2, r, c], L[3, r, c], L[4, r, c] = f1, f2, f3, f4, f5


@jit()
def sample_row(C, L, phi, fwd, batch, labels, params, W2T, r):
    """Sample r's forward pass (row r of fwd) and its coefficients (C[:, r, :], L[:, r, :])."""
    forward_row(fwd, batch, params, r)
    hidden_coefficients_row(C, phi, fwd, labels[r], W2T, r)
    logit_coefficients_row(L, fwd, labels[r], r)


@jit(parallel=True)
def coefficients(C, L, fwd, batch, labels, params, W2T):
    """fwd (Forward), C (5, N, H), L (5, N, K) for every sample: one parallel region, an iteration per sample."""
    n, h = fwd.z.shape
    for r in prange(n):
        sample_row(C, L, np.empty((5, h)), fwd, batch, labels, params, W2T, r)


# -- products with the step weights -------------------------------------------------
@jit()
def step_weights(p, h, inv):
    """w1..w5 of parameter p, w_m = ((h+)^m - (-h-)^m) / 2h (inv = 0.5 / h); max(h+, h-); |h+ - h-|."""
    hp = (p + h) - p
    hm = p - (p - h)
    hp2, hm2 = hp * hp, hm * hm
    return (
        (hp + hm) * inv,
        (hp2 - hm2) * inv,
        (hp2 * hp + hm2 * hm) * inv,
        (hp2 * hp2 - hm2 * hm2) * inv,
        (hp2 * hp2 * hp + hm2 * hm2 * hm) * inv,
        max(hp, hm),
        abs(hp - hm),
    )


@jit()
def weighted(p, h, inv, a1, a2, a3, a4, a5, n):
    """(w1 a1 + ... + w5 a5) / n for parameter p; its larger real step; |h+ - h-|."""
    w1, w2, w3, w4, w5, big, diff = step_weights(p, h, inv)
    return ((((w1 * a1 + w2 * a2) + w3 * a3) + w4 * a4) + w5 * a5) / n, big, diff


@jit()
def even_powers_needed(row, h):
    """True if some parameter of row has |h+ - h-| > h EVEN_TOL: only then are the even powers summed.

    Why the even powers can be left out elsewhere: docs/numerical_gradient.rst,
    'The gradient entries'.
    """
    for j in range(row.shape[0]):
        p = row[j]
        if abs(((p + h) - p) - (p - (p - h))) > h * EVEN_TOL:
            return True
    return False


@jit()
def w1_row(grads, acc, step_max, batch, C, W1, h, i):
    """Row i of dW1: sum over the samples n with x[n, i] != 0 of x^m C[m, n, :]. acc (5, H) scratch;
    step_max (2, H): the chunk's largest step and |h+ - h-| per column.

    Two samples per pass over the accumulators, each added in turn (the
    roundings of one per pass, half the loads and stores).
    """
    n, hdim = batch.n, W1.shape[1]
    even = even_powers_needed(W1[i], h)
    acc[:] = 0.0
    a1, a2, a3, a4, a5 = acc[0], acc[1], acc[2], acc[3], acc[4]
    C1, C2, C3, C4, C5 = C[0], C[1], C[2], C[3], C[4]
    p, hi = batch.col_ptr[i], batch.col_ptr[i + 1]
    while p + 2 <= hi:
        r, s = batch.rows[p], batch.rows[p + 1]
        x1, y1 = batch.col_vals[p], batch.col_vals[p + 1]
        x3, y3 = x1 * x1 * x1, y1 * y1 * y1
        x5, y5 = x3 * x1 * x1, y3 * y1 * y1
        for j in range(hdim):
            a1[j] = (a1[j] + x1 * C1[r, j]) + y1 * C1[s, j]
            a3[j] = (a3[j] + x3 * C3[r, j]) + y3 * C3[s, j]
            a5[j] = (a5[j] + x5 * C5[r, j]) + y5 * C5[s, j]
        if even:
            x2, y2 = x1 * x1, y1 * y1
            x4, y4 = x2 * x2, y2 * y2
            for j in range(hdim):
                a2[j] = (a2[j] + x2 * C2[r, j]) + y2 * C2[s, j]
                a4[j] = (a4[j] + x4 * C4[r, j]) + y4 * C4[s, j]
        p += 2
    if p < hi:
        r, x1 = batch.rows[p], batch.col_vals[p]
        x2 = x1 * x1
        x3, x4 = x2 * x1, x2 * x2
        x5 = x4 * x1
        for j in range(hdim):
            a1[j] += x1 * C1[r, j]
            a3[j] += x3 * C3[r, j]
            a5[j] += x5 * C5[r, j]
        if even:
            for j in range(hdim):
                a2[j] += x2 * C2[r, j]
                a4[j] += x4 * C4[r, j]
    inv = 0.5 / h
    for j in range(hdim):
        grads.W1[i, j], big, diff = weighted(W1[i, j], h, inv, a1[j], a2[j], a3[j], a4[j], a5[j], n)
        step_max[0, j] = max(step_max[0, j], big)
        step_max[1, j] = max(step_max[1, j], diff)


@jit()
def w2_row(grads, acc, w2_steps, fwd, L, W2, h, j):
    """Row j of dW2: sum over samples of z[n, j]^m L[m, n, :]. acc (5, K) scratch."""
    n, k = L.shape[1], L.shape[2]
    acc[:] = 0.0
    for r in range(n):
        z1 = fwd.z[r, j]
        z2 = z1 * z1
        z3 = z2 * z1
        z4 = z2 * z2
        z5 = z4 * z1
        for c in range(k):
            acc[0, c] += z1 * L[0, r, c]
            acc[1, c] += z2 * L[1, r, c]
            acc[2, c] += z3 * L[2, r, c]
            acc[3, c] += z4 * L[3, r, c]
            acc[4, c] += z5 * L[4, r, c]
    inv = 0.5 / h
    for c in range(k):
        grads.W2[j, c], w2_steps[0, j, c], w2_steps[1, j, c] = weighted(
            W2[j, c], h, inv, acc[0, c], acc[1, c], acc[2, c], acc[3, c], acc[4, c], n
        )


@jit()
def bias_sums(out, steps, coef, bias, h):
    """out (M,) = sum over samples of coef[m, :, :] weighted by the steps of bias (M,); steps (2, M)."""
    n = coef.shape[1]
    for c in range(bias.shape[0]):
        a1 = a2 = a3 = a4 = a5 = 0.0
        for r in range(n):
            a1 += coef[0, r, c]
            a2 += coef[1, r, c]
            a3 += coef[2, r, c]
            a4 += coef[3, r, c]
            a5 += coef[4, r, c]
        out[c], steps[0, c], steps[1, c] = weighted(bias[c], h, 0.5 / h, a1, a2, a3, a4, a5, n)


@jit(parallel=True)
def products(grads, steps_w1, steps_w2, steps_b1, steps_b2, batch, fwd, C, L, params, h):
    """Every gradient entry from the coefficients. Item i < D: row i of dW1; D + j: row j of dW2; last: biases.

    Chunk c takes items c, c + nchunks, ...: the rows of the centre of the
    image (most non-zeros) spread over the chunks. steps_w1 (nchunks, 2, H):
    the largest real step and |h+ - h-| of W1 met by each chunk, per column;
    steps_w2 (2, H, K), steps_b1 (2, H), steps_b2 (2, K) those of every entry.
    """
    d = batch.d
    hdim, k = params.W2.shape
    nitems = d + hdim + 1
    nchunks = steps_w1.shape[0]
    for c in prange(nchunks):
        acc = np.empty((5, max(hdim, k)))
        steps_w1[c] = 0.0
        for item in range(c, nitems, nchunks):
            if item < d:
                w1_row(grads, acc, steps_w1[c], batch, C, params.W1, h, item)
            elif item < d + hdim:
                w2_row(grads, acc, steps_w2, fwd, L, params.W2, h, item - d)
            else:
                bias_sums(grads.b1, steps_b1, C, params.b1, h)
                bias_sums(grads.b2, steps_b2, L, params.b2, h)


# -- the remainder bound ----------------------------------------------------------------
@jit()
def growth(theta):
    """Bound on |F(s)| for |s| v <= theta: the NumPy reference's growth (docs/numerical_gradient.rst,
    'The remainder bound')."""
    g = math.inf
    if theta < LOG2:
        g = -2.0 * math.log(2.0 - math.exp(theta))
    if theta < HALF_PI:
        g = min(g, 2.0 * (2.0 * theta - math.log(math.cos(theta))))
    return g


@jit()
def bound_at(r, width, is_logit, step, diff, scale_x, h):
    """The remainder bound of one gradient entry on the circle of radius r (see the NumPy reference's tail_bound)."""
    rho = step * scale_x / r
    if rho >= 1.0:
        return math.inf
    if is_logit:
        theta = r / 2.0
    elif r < math.pi:
        c = math.cos(r / 2.0)
        theta = r / (4.0 * c * c) * width / 2.0
    else:
        return math.inf
    delta = diff * scale_x / r
    rho2 = rho * rho
    rho5 = rho2 * rho2 * rho
    q = 1.0 - rho2
    return growth(theta) * (rho5 * rho2 / q + delta * 3.0 * rho5 / (q * q)) / h


@jit()
def within(limit, width, is_logit, step, diff, scale_x, h):
    """True if the bound on some radius of RADII is at most limit (the largest radii first: the usual best)."""
    if step * scale_x == 0.0:
        return 0.0 <= limit
    for i in range(RADII.shape[0] - 1, -1, -1):
        if bound_at(RADII[i], width, is_logit, step, diff, scale_x, h) <= limit:
            return True
    return False


@jit()
def rejected(units, logits, grads, C, L, steps_w1, steps_w2, steps_b1, steps_b2, xmax, zmax, W2, h):
    """units (H,), logits (K,): True where the remainder bound is not below the rounding of the result,
    or where an entry came out non-finite (coefficients of extreme weights that overflowed)."""
    hdim, k = W2.shape
    n = C.shape[1]
    column_finite = np.ones(hdim, dtype=np.bool_)
    for i in range(grads.W1.shape[0]):  # by rows: W1's columns strided would cost more than the bound
        for j in range(hdim):
            column_finite[j] = column_finite[j] and math.isfinite(grads.W1[i, j])
    for j in range(hdim):
        lo = hi = W2[j, 0]
        for c in range(k):
            lo, hi = min(lo, W2[j, c]), max(hi, W2[j, c])
        scale = 0.0
        for r in range(n):
            scale = max(scale, abs(C[0, r, j]))
        step = diff = 0.0
        for c in range(steps_w1.shape[0]):
            step, diff = max(step, steps_w1[c, 0, j]), max(diff, steps_w1[c, 1, j])
        ok = within(ROUNDING * xmax * scale, hi - lo, False, step, diff, xmax, h)
        ok = ok and within(ROUNDING * scale, hi - lo, False, steps_b1[0, j], steps_b1[1, j], 1.0, h)
        units[j] = not (ok and column_finite[j] and math.isfinite(grads.b1[j]))
    for c in range(k):
        scale = 0.0
        for r in range(n):
            scale = max(scale, abs(L[0, r, c]))
        step = diff = 0.0
        for j in range(hdim):
            step, diff = max(step, steps_w2[0, j, c]), max(diff, steps_w2[1, j, c])
        ok = within(ROUNDING * zmax * scale, 1.0, True, step, diff, zmax, h)
        ok = ok and within(ROUNDING * scale, 1.0, True, steps_b2[0, c], steps_b2[1, c], 1.0, h)
        finite = math.isfinite(grads.b2[c])
        for j in range(hdim):
            finite = finite and math.isfinite(grads.W2[j, c])
        logits[c] = not (ok and finite)


@jit()
def largest(a):
    m = 0.0
    for v in a.ravel():
        m = max(m, v)
    return m


PRODUCT_CHUNKS = 64  # work chunks of ``products``; more than threads, so a late thread is never waited for


def numgrad_series(grads, batch, labels, params, fwd, h):
    """grads (Grads) = the loop's central differences, by series (see the NumPy reference); fwd (Forward) =
    the forward pass of batch, computed here.

    Returns (units, logits): boolean masks of the hidden units and logits the
    remainder bound sent to the perturbed-loss method.
    """
    n, hdim = fwd.z.shape
    k = fwd.y.shape[1]
    C = np.empty((ORDER, n, hdim))
    L = np.empty((ORDER, n, k))
    coefficients(C, L, fwd, batch, labels, params, np.ascontiguousarray(params.W2.T))
    steps_w1 = np.empty((PRODUCT_CHUNKS, 2, hdim))
    steps_w2 = np.empty((2, hdim, k))
    steps_b1 = np.empty((2, hdim))
    steps_b2 = np.empty((2, k))
    products(grads, steps_w1, steps_w2, steps_b1, steps_b2, batch, fwd, C, L, params, h)
    units = np.empty(hdim, dtype=np.bool_)
    logits = np.empty(k, dtype=np.bool_)
    rejected(
        units, logits, grads, C, L, steps_w1, steps_w2, steps_b1, steps_b2, batch.xmax, largest(fwd.z), params.W2, h
    )
    if units.any() or logits.any():
        numgrad_perturbed(grads, batch, labels, params, fwd, h, units, logits)
    return units, logits
