"""The numerical gradient of TwoLayerNet by perturbed losses: Numba twin of kernels/numgrad_perturbed.c.

Derived in docs/numerical_gradient.rst, section 'Method "perturbed"', whose
notation the names here follow. Each of the loop's perturbed losses is
evaluated from the unperturbed forward pass, recomputing only what the step
moves (one logit, or one hidden unit and through it every logit); per
sample, the loss difference of a +/- pair is one log of a ratio, summed
over the samples ascending and divided by N and 2h. The small arguments
take short series (``expm1_series``, ``log1p_series``, the moments of
``shifted_sum``), each exact to double precision in its domain; a
sample's equal pixel values share one evaluation, with a weight's steps
within h NOMINAL_TOL of h taken as h (the nominal step). The C twin agrees
bit for bit; its header says where its code differs and why.
"""

import math

import numpy as np
from numba import prange

from ..._config import DELTA, NOMINAL_TOL, SATURATED, jit
from .forward import forward_row

# The thresholds of the derivation (docs/numerical_gradient.rst, 'Method "perturbed"'):
SERIES_MAX = 1e-3  # below this |argument| expm1, log1p and the moment sum are short series
FAST_MAX = 2e-4  # hidden_pair_diff_series holds while step / 4 * max_k |W2[j, k]| stays below this
DIRECT_SHIFT = 1.0  # beyond this shift of a logit the two perturbed losses are computed directly
MOMENTS_MAX = 1e60  # beyond this max_k |W2[j, k]| the moments may overflow: the sum is taken logit by logit


@jit()
def expm1_series(u):
    """exp(u) - 1 for |u| < SERIES_MAX: the series through u^5/120, its tail below half an ulp."""
    return u * (1.0 + u * (0.5 + u * (1.0 / 6.0 + u * (1.0 / 24.0 + u * (1.0 / 120.0)))))


@jit()
def log1p_series(rho):
    """log(1 + rho) for |rho| < SERIES_MAX: the series through rho^6/6, its tail below half an ulp."""
    return rho * (1.0 - rho * (0.5 - rho * (1.0 / 3.0 - rho * (0.25 - rho * (0.2 - rho * (1.0 / 6.0))))))


@jit()
def expm1_small(u):
    """exp(u) - 1 to full precision: the series below SERIES_MAX, else the library expm1."""
    if abs(u) < SERIES_MAX:
        return expm1_series(u)
    return math.expm1(u)


@jit()
def log_ratio(r):
    """log(r) for r > 0: the log1p series of rho = r - 1 (exact there) when |rho| < SERIES_MAX, else the
    library log."""
    rho = r - 1.0
    if abs(rho) < SERIES_MAX:
        return log1p_series(rho)
    return math.log(r)


@jit()
def sigmoid_of(v):
    """1 / (1 + exp(-v)), exp only of -|v|."""
    if v >= 0.0:
        return 1.0 / (1.0 + math.exp(-v))
    ev = math.exp(v)
    return ev / (1.0 + ev)


@jit()
def sigmoid_step(a, z, zq, d):
    """sigmoid(a + d) - sigmoid(a) for any a and d, given z = sigmoid(a), zq = sigmoid(-a): without
    cancellation or overflow, and beyond |a| = SATURATED to a few ulps of the result in absolute terms
    (docs/numerical_gradient.rst, 'Method "perturbed"', a hidden step)."""
    if a < -SATURATED:
        return sigmoid_of(a + d) - z
    if a > SATURATED:
        return zq - sigmoid_of(-a - d)
    if d > 0.0:
        return z * zq * -expm1_small(-d) / (z + zq * math.exp(-d))
    return z * zq * expm1_small(d) / (zq + z * math.exp(d))


@jit()
def pair_loss_diff(num_p, sum_p, num_m, sum_m):
    """l(+) - l(-) of one sample = log((y_t- + DELTA) / (y_t+ + DELTA)), y_t = num / sum."""
    return log_ratio((num_m + DELTA * sum_m) * sum_p / ((num_p + DELTA * sum_p) * sum_m))


@jit()
def shifted_loss(a2_row, t, w_row, dz, k, u):
    """-log(y_t + DELTA) after the logits move by dz * w_row and logit k by u more (stable softmax).

    For a shift of logit k alone, dz = 0 (then w_row only needs finite entries).
    """
    m = -math.inf
    for c in range(a2_row.shape[0]):
        m = max(m, a2_row[c] + dz * w_row[c] + (u if c == k else 0.0))
    total = 0.0
    for c in range(a2_row.shape[0]):
        total += math.exp(a2_row[c] + dz * w_row[c] + (u if c == k else 0.0) - m)
    et = math.exp(a2_row[t] + dz * w_row[t] + (u if t == k else 0.0) - m)
    return -math.log(et / total + DELTA)


@jit()
def logit_pair_diff(m_p, m_m, e_k, is_true, e_t, s):
    """Loss difference of one sample when logit k moves by +u+ / -u-; m_p, m_m = expm1(u+), expm1(-u-).

    S' = S + e_k (exp(u) - 1); the true-class numerator moves only if k == t.
    """
    num_p = e_t + e_t * m_p if is_true else e_t
    num_m = e_t + e_t * m_m if is_true else e_t
    return pair_loss_diff(num_p, s + e_k * m_p, num_m, s + e_k * m_m)


@jit()
def shifted_sum(dz, s, q1, q2, q3, q4, wmax, e_row, w_row):
    """S' = sum_k e_k exp(dz w_k), given S and q_p = sum_k e_k w_k^p / p!; wmax = max_k |w_k|; e_row, w_row (K,)

    From the moments while |dz| wmax <= SERIES_MAX (a tail below S 2^-56) and wmax <= MOMENTS_MAX, else
    summed logit by logit.
    """
    if abs(dz) * wmax <= SERIES_MAX and wmax <= MOMENTS_MAX:
        return s + dz * (q1 + dz * (q2 + dz * (q3 + dz * q4)))
    d = 0.0
    for k in range(e_row.shape[0]):
        d += e_row[k] * expm1_small(dz * w_row[k])
    return s + d


@jit()
def hidden_pair_diff(d_p, d_m, a, z, zq, e_t, w_t, s, q1, q2, q3, q4, wmax, e_row, w_row, a2_row, t):
    """Loss difference of one sample when its hidden pre-activation a moves by +d_p / -d_m; any steps.

    a2_row (K,): the sample's logits, for logit shifts beyond DIRECT_SHIFT.
    """
    dz_p = sigmoid_step(a, z, zq, d_p)
    dz_m = sigmoid_step(a, z, zq, -d_m)
    if max(abs(dz_p), abs(dz_m)) * wmax > DIRECT_SHIFT:
        return shifted_loss(a2_row, t, w_row, dz_p, 0, 0.0) - shifted_loss(a2_row, t, w_row, dz_m, 0, 0.0)
    num_p = e_t + e_t * expm1_small(dz_p * w_t)
    num_m = e_t + e_t * expm1_small(dz_m * w_t)
    sum_p = shifted_sum(dz_p, s, q1, q2, q3, q4, wmax, e_row, w_row)
    sum_m = shifted_sum(dz_m, s, q1, q2, q3, q4, wmax, e_row, w_row)
    return pair_loss_diff(num_p, sum_p, num_m, sum_m)


@jit()
def hidden_pair_diff_series(m_p, m_m, z, zq, e_t, w_t, s, q1, q2, q3, q4):
    """hidden_pair_diff by series only, without a branch; m_p, m_m = expm1(d_p), expm1(-d_m).

    Valid for steps below SERIES_MAX with step / 4 * max_k |W2[j, k]| <= FAST_MAX and moments that are
    finite (MOMENTS_MAX), which the caller checks: why every series then holds is derived in
    docs/numerical_gradient.rst, 'Method "perturbed"' (the short series).
    """
    den_p = 1.0 + z * m_p
    den_m = 1.0 + z * m_m
    sqi = z * zq / (den_p * den_m)
    dz_p = sqi * m_p * den_m
    dz_m = sqi * m_m * den_p
    num_p = e_t + e_t * expm1_series(dz_p * w_t)
    num_m = e_t + e_t * expm1_series(dz_m * w_t)
    sum_p = s + dz_p * (q1 + dz_p * (q2 + dz_p * (q3 + dz_p * q4)))
    sum_m = s + dz_m * (q1 + dz_m * (q2 + dz_m * (q3 + dz_m * q4)))
    r = (num_m + DELTA * sum_m) * sum_p / ((num_p + DELTA * sum_p) * sum_m)
    return log1p_series(r - 1.0)


# -- per sample: the distinct pixel values ------------------------------------------------
@jit()
def distinct_values_row(slot, value, m_plus, m_minus, ndist, xmax, batch, h, r):
    """Sample r's distinct non-zero pixel values, at the sample's CSR offset lo = row_ptr[r].

    slot[lo + c]: the index among them of non-zero c's value; value[lo + v],
    m_plus/m_minus[lo + v] = expm1(+-h value) for v < ndist[r]; xmax[r] the
    largest |value|. The numbering of equal values does not matter to any result.
    """
    lo, hi = batch.row_ptr[r], batch.row_ptr[r + 1]
    vals = batch.vals[lo:hi]
    order = np.argsort(vals)
    nd = 0
    for c in range(hi - lo):
        v = vals[order[c]]
        if c == 0 or v != vals[order[c - 1]]:
            value[lo + nd] = v
            m_plus[lo + nd] = expm1_small(h * v)
            m_minus[lo + nd] = expm1_small(-h * v)
            nd += 1
        slot[lo + order[c]] = nd - 1
    ndist[r] = nd
    xmax[r] = max(abs(vals[order[0]]), abs(vals[order[hi - lo - 1]])) if hi > lo else 0.0


@jit()
def sample_row(fwd, dv, batch, params, h, r):
    """Sample r's forward pass (row r of fwd) and its distinct pixel values (dv, see distinct_values_row)."""
    forward_row(fwd, batch, params, r)
    slot, value, m_plus, m_minus, ndist, xmax = dv
    distinct_values_row(slot, value, m_plus, m_minus, ndist, xmax, batch, h, r)


@jit(parallel=True)
def samples(fwd, dv, batch, params, h):
    """The forward pass and the distinct pixel values of every sample: one parallel region."""
    for r in prange(batch.n):
        sample_row(fwd, dv, batch, params, h, r)


# -- per hidden unit: W1's column, b1, W2's row -----------------------------------------
@jit()
def moments(e_row, w_row):
    """q_p = sum_k e_k w_k^p / p!, p = 1..4."""
    q1 = q2 = q3 = q4 = 0.0
    for c in range(e_row.shape[0]):
        ew = e_row[c] * w_row[c]
        q1 += ew
        ew *= w_row[c]
        q2 += ew
        ew *= w_row[c]
        q3 += ew
        q4 += ew * w_row[c]
    return q1, q2 * 0.5, q3 * (1.0 / 6.0), q4 * (1.0 / 24.0)


@jit()
def unit_gradients(grads, col, diff, batch, labels, fwd, params, h, dv, j):
    """Column j of dW1 and db1[j]. col (D,), diff: scratch; dv: (slot, value, m_plus, m_minus, ndist, xmax)."""
    slot, value, m_plus, m_minus, ndist, xmax = dv
    n, d = batch.n, batch.d
    w_row = params.W2[j]
    wmax = 0.0
    for c in range(w_row.shape[0]):
        wmax = max(wmax, abs(w_row[c]))
    pb = params.b1[j]
    hp_b, hm_b = (pb + h) - pb, pb - (pb - h)
    mb_p, mb_m = expm1_small(hp_b), expm1_small(-hm_b)
    col[:] = 0.0
    acc_b1 = 0.0
    for r in range(n):
        e_row, a2_row = fwd.e[r], fwd.a2[r]
        t = labels[r]
        e_t, w_t, s = e_row[t], w_row[t], fwd.s[r]
        q1, q2, q3, q4 = moments(e_row, w_row)
        a, z, zq = fwd.a1[r, j], fwd.z[r, j], fwd.zq[r, j]
        if max(hp_b, hm_b) < SERIES_MAX and max(hp_b, hm_b) * 0.25 * wmax <= FAST_MAX and wmax <= MOMENTS_MAX:
            acc_b1 += hidden_pair_diff_series(mb_p, mb_m, z, zq, e_t, w_t, s, q1, q2, q3, q4)
        else:
            acc_b1 += hidden_pair_diff(hp_b, hm_b, a, z, zq, e_t, w_t, s, q1, q2, q3, q4, wmax, e_row, w_row, a2_row, t)
        lo = batch.row_ptr[r]
        hx = h * xmax[r]  # the sample's largest nominal step
        if hx < SERIES_MAX and hx * 0.25 * wmax <= FAST_MAX and wmax <= MOMENTS_MAX:
            for v in range(ndist[r]):
                diff[v] = hidden_pair_diff_series(m_plus[lo + v], m_minus[lo + v], z, zq, e_t, w_t, s, q1, q2, q3, q4)
        else:
            for v in range(ndist[r]):
                hv = h * value[lo + v]
                diff[v] = hidden_pair_diff(hv, hv, a, z, zq, e_t, w_t, s, q1, q2, q3, q4, wmax, e_row, w_row, a2_row, t)
        for p in range(lo, batch.row_ptr[r + 1]):
            i = batch.cols[p]
            pw = params.W1[i, j]
            if nominal(pw, h):
                col[i] += diff[slot[p]]
            else:  # this pixel's own steps
                x = batch.vals[p]
                d_p, d_m = x * ((pw + h) - pw), x * (pw - (pw - h))
                col[i] += hidden_pair_diff(
                    d_p, d_m, a, z, zq, e_t, w_t, s, q1, q2, q3, q4, wmax, e_row, w_row, a2_row, t
                )
    for i in range(d):
        grads.W1[i, j] = col[i] / n / (2.0 * h)
    grads.b1[j] = acc_b1 / n / (2.0 * h)


@jit()
def nominal(p, h):
    """True when both real steps of parameter p are within h * NOMINAL_TOL of h."""
    hp, hm = (p + h) - p, p - (p - h)
    return abs(hp - h) <= h * NOMINAL_TOL and abs(hm - h) <= h * NOMINAL_TOL


@jit()
def w2_row_gradients(grads, acc, fwd, labels, params, h, logits, j):
    """Row j of dW2 for the logits selected (bool (K,)). acc (K,) scratch."""
    n, k = fwd.e.shape
    acc[:] = 0.0
    for r in range(n):
        t = labels[r]
        zr = fwd.z[r, j]
        mu_p, mu_m = expm1_small(h * zr), expm1_small(-h * zr)  # the nominal step, shared by the logits
        for c in range(k):
            if logits[c]:
                pw = params.W2[j, c]
                u_p, u_m = h * zr, h * zr
                m_p, m_m = mu_p, mu_m
                if not nominal(pw, h):
                    u_p, u_m = zr * ((pw + h) - pw), zr * (pw - (pw - h))
                    m_p, m_m = expm1_small(u_p), expm1_small(-u_m)
                if max(u_p, u_m) > DIRECT_SHIFT:
                    acc[c] += logit_shift_diff(fwd.a2[r], t, c, u_p, u_m)
                else:
                    acc[c] += logit_pair_diff(m_p, m_m, fwd.e[r, c], c == t, fwd.e[r, t], fwd.s[r])
    for c in range(k):
        if logits[c]:
            grads.W2[j, c] = acc[c] / n / (2.0 * h)


@jit(parallel=True)
def hidden_items(grads, batch, labels, fwd, params, h, units, logits, dv):
    """Per hidden unit j (one parallel iteration each): W1's column and b1 if units[j]; W2's row for the logits."""
    hdim, k = params.W2.shape
    any_logit = False
    for c in range(k):
        any_logit = any_logit or logits[c]
    for j in prange(hdim):
        if units[j]:
            unit_gradients(grads, np.empty(batch.d), np.empty(batch.d), batch, labels, fwd, params, h, dv, j)
        if any_logit:
            w2_row_gradients(grads, np.empty(k), fwd, labels, params, h, logits, j)


@jit()
def logit_shift_diff(a2_row, t, k, u_p, u_m):
    """Loss difference of one sample when logit k moves by +u_p / -u_m, computed directly (large shifts)."""
    return shifted_loss(a2_row, t, a2_row, 0.0, k, u_p) - shifted_loss(a2_row, t, a2_row, 0.0, k, -u_m)


@jit()
def output_bias_gradients(grads, fwd, labels, params, h, logits):
    """db2[c] for the selected logits: logit c of every sample moved by +h+ / -h-; serial (N K pairs)."""
    n, k = fwd.e.shape
    for c in range(k):
        if logits[c]:
            pb = params.b2[c]
            u_p, u_m = (pb + h) - pb, pb - (pb - h)
            m_p, m_m = expm1_small(u_p), expm1_small(-u_m)
            acc = 0.0
            for r in range(n):
                t = labels[r]
                if max(u_p, u_m) > DIRECT_SHIFT:
                    acc += logit_shift_diff(fwd.a2[r], t, c, u_p, u_m)
                else:
                    acc += logit_pair_diff(m_p, m_m, fwd.e[r, c], c == t, fwd.e[r, t], fwd.s[r])
            grads.b2[c] = acc / n / (2.0 * h)


def numgrad_perturbed(grads, batch, labels, params, fwd, h, units=None, logits=None):
    """grads (Grads) = the loop's central differences, each perturbed loss evaluated exactly; fwd (Forward) =
    the forward pass of batch, computed here.

    Only the hidden units in ``units`` (bool (H,): column j of W1, b1[j]) and
    the logits in ``logits`` (bool (K,): column k of W2, b2[k]) are written;
    None means all.
    """
    hdim, k = params.W2.shape
    units = np.ones(hdim, dtype=np.bool_) if units is None else units
    logits = np.ones(k, dtype=np.bool_) if logits is None else logits
    gradients_of(grads, batch, labels, params, fwd, h, units, logits)


@jit()
def gradients_of(grads, batch, labels, params, fwd, h, units, logits):
    """numgrad_perturbed with its masks given (also the training engine's, inside its compiled stretch)."""
    nnz = batch.row_ptr[batch.n]
    dv = (
        np.empty(nnz, dtype=np.int64),  # slot
        np.empty(nnz),  # value
        np.empty(nnz),  # m_plus
        np.empty(nnz),  # m_minus
        np.empty(batch.n, dtype=np.int64),  # ndist
        np.empty(batch.n),  # xmax
    )
    samples(fwd, dv, batch, params, h)
    hidden_items(grads, batch, labels, fwd, params, h, units, logits, dv)
    output_bias_gradients(grads, fwd, labels, params, h, logits)
