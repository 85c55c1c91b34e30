"""Numba kernel of ``TwoLayerNet.numerical_gradient``.

The chapter's loop perturbs each parameter p by +h and -h and recomputes the
whole batch loss, two forward passes per parameter. This kernel evaluates the
same perturbed losses from the unperturbed forward pass (hidden
pre-activations a1, logits a2), recomputing only what a perturbation changes:

- ``b2[k]`` shifts logit k of every sample by h; ``W2[j, k]`` shifts logit k
  of sample n by ``h * z1[n, j]``.
- ``b1[j]`` shifts ``a1[n, j]`` by h; ``W1[i, j]`` by ``h * x[n, i]`` (nothing
  at all where ``x[n, i] == 0``, 81% of MNIST pixels). The hidden output moves
  by ``dz = sigmoid(a + eps) - sigmoid(a)`` and every logit k by
  ``dz * W2[j, k]``.

Per sample, with ``e_k = exp(a2[n, k] - max_k a2[n, k])`` and ``S = sum e_k``,
the perturbed softmax needs only a new normaliser ``S'`` and a new numerator
``e_t'`` of the true class; the per-sample loss difference of a +h/-h pair is
``log((y_t- + 1e-7) / (y_t+ + 1e-7))``, one log per pair. These differences
are summed over the samples in ascending order and divided by N and by 2h.
Summing differences, rather than subtracting two batch losses of about 2.3
as the loop does, avoids the loop's cancellation (it loses about 4 of 16
digits): the result differs from the loop by the loop's rounding.

The perturbation is the nominal step: ``a1`` moves by ``h * x[n, i]`` exactly,
where the loop moves it by ``(fl(w + h) - w) * x[n, i]``; the two differ by a
rounding of the parameter, about 1e-14 relative. This is what lets a pixel
value shared by several pixels of a sample be evaluated once (MNIST digits
have about 146 non-zero pixels but 65 distinct values).

Exact arithmetic, fast: for the small shifts involved, exp, expm1 and log1p
are short series (truncation bounds derived at each, all below half an
ulp), and a hidden-unit shift updates S from four moments
sum_k e_k W2[j, k]^p instead of K exps. When a sample's largest shift is
small enough (FAST_MAX) the loop over its pixel values runs branch-free
and vectorises; otherwise the checked general path is taken.

Layout: every helper is a small serial function (a C function in the C
twin); the parallel kernel loops over hidden units j, and iteration j writes
only column j of dW1, db1[j] and row j of dW2, summing over samples in a
fixed order, so 1 and N threads give bitwise identical results.
"""

import math

import numpy as np
from numba import prange

from .._config import jit

DELTA = 1e-7  # the chapter's guard inside the log of cross_entropy_error

# Below this |argument| the short series in expm1_small, log_ratio and
# shifted_sum are exact to double precision (bounds derived at each).
SERIES_MAX = 1e-3
# Bound on |eps| / 4 * max_k |W2[j, k]| under which hidden_pair_diff_series
# holds (derived there); MNIST in [0, 1] with h = 1e-4 meets it for |W2| <= 8.
FAST_MAX = 2e-4


@jit()
def expm1_series(u):
    """exp(u) - 1 for |u| < 1e-3: the series through u^5/120.

    The omitted tail sum_{p>=6} u^p/p! is at most |u|^6/720 * 1.0002, i.e.
    relative to the result (~u) below |u|^5/720 * 1.001 < 1.4e-18 < 2^-56,
    under half an ulp.
    """
    return u * (1.0 + u * (0.5 + u * (1.0 / 6.0 + u * (1.0 / 24.0 + u * (1.0 / 120.0)))))


@jit()
def log1p_series(rho):
    """log(1 + rho) for |rho| < 1e-3: the series through rho^6/6.

    Alternating with decreasing terms, so the omitted tail is at most
    |rho|^7/7, relative to the result below |rho|^6/7 * 1.001 < 1.5e-19.
    """
    return rho * (1.0 - rho * (0.5 - rho * (1.0 / 3.0 - rho * (0.25 - rho * (0.2 - rho * (1.0 / 6.0))))))


@jit()
def expm1_small(u):
    """exp(u) - 1 to full precision: the series below 1e-3, else the library expm1."""
    if abs(u) < SERIES_MAX:
        return expm1_series(u)
    return math.expm1(u)


@jit()
def log_ratio(r):
    """log(r) for r > 0: the log1p series of rho = r - 1 when |rho| < 1e-3, else the library log.

    rho = r - 1 is exact (Sterbenz, 0.5 <= r <= 2). The library log is just
    as accurate; the series is only faster.
    """
    rho = r - 1.0
    if abs(rho) < SERIES_MAX:
        return log1p_series(rho)
    return math.log(r)


@jit()
def sigmoid_step(s, q, eps):
    """sigmoid(a + eps) - sigmoid(a) for any eps, from s = sigmoid(a), q = sigmoid(-a).

    Exact identities: it equals s q (e^eps - 1) / (q + s e^eps) and, dividing
    by e^eps, s q (1 - e^-eps) / (s + q e^-eps). The form whose exp has a
    non-positive argument is used: nothing overflows, the numerator is an
    expm1 and the denominator a sum of positive terms, so no difference of
    nearly equal numbers is formed, for any a and eps.
    """
    if eps > 0.0:
        return s * q * -expm1_small(-eps) / (s + q * math.exp(-eps))
    return s * q * expm1_small(eps) / (q + s * math.exp(eps))


@jit()
def pair_loss_diff(num_p, sum_p, num_m, sum_m):
    """l(+h) - l(-h) of one sample = log((y_t- + 1e-7) / (y_t+ + 1e-7)), y_t = num / sum.

    num is the unnormalised probability of the true class, sum the
    normaliser; multiplying through by both sums leaves one division.
    """
    return log_ratio((num_m + DELTA * sum_m) * sum_p / ((num_p + DELTA * sum_p) * sum_m))


@jit()
def logit_pair_diff(m_p, m_m, e_k, is_true, e_t, s):
    """Loss difference of one sample when logit k shifts by +u / -u; m_p, m_m = expm1(+-u).

    S' = S + e_k (exp(+-u) - 1); the true-class numerator moves only if k == t.
    S' >= S exp(-|u|), so the sum keeps its precision to within a factor
    exp(|u|) <= exp(h) ulps: nothing lost for any sensible h.
    """
    num_p = e_t + e_t * m_p if is_true else e_t
    num_m = e_t + e_t * m_m if is_true else e_t
    return pair_loss_diff(num_p, s + e_k * m_p, num_m, s + e_k * m_m)


@jit()
def shifted_sum(dz, s, q1, q2, q3, q4, wmax, e_row, w_row):
    """S' = sum_k e_k exp(dz w_k), given S = sum e_k and q_p = sum_k e_k w_k^p / p!. e_row, w_row (K,)

    With c = |dz| max_k |w_k| <= 1e-3 the Taylor series through p = 4 is
    exact to double precision: the tail is at most
    sum_k e_k c^5/120 e^c <= S * 8.4e-18 < S * 2^-56. Otherwise (large x or
    W2, or a large h) the sum is taken directly.
    """
    if abs(dz) * wmax <= SERIES_MAX:
        return s + dz * (q1 + dz * (q2 + dz * (q3 + dz * q4)))
    d = 0.0
    for k in range(e_row.shape[0]):
        d += e_row[k] * expm1_small(dz * w_row[k])
    return s + d


@jit()
def hidden_pair_diff(eps, s, q, e_t, w_t, sum0, q1, q2, q3, q4, wmax, e_row, w_row):
    """Loss difference of one sample when hidden pre-activation a shifts by +eps / -eps; any eps.

    s, q = sigmoid(a), sigmoid(-a); e_t, w_t the true class's e_k and
    W2[j, k]; sum0 = S; q1..q4, wmax as in shifted_sum.
    """
    dz_p = sigmoid_step(s, q, eps)
    dz_m = sigmoid_step(s, q, -eps)
    num_p = e_t + e_t * expm1_small(dz_p * w_t)
    num_m = e_t + e_t * expm1_small(dz_m * w_t)
    sum_p = shifted_sum(dz_p, sum0, q1, q2, q3, q4, wmax, e_row, w_row)
    sum_m = shifted_sum(dz_m, sum0, q1, q2, q3, q4, wmax, e_row, w_row)
    return pair_loss_diff(num_p, sum_p, num_m, sum_m)


@jit()
def hidden_pair_diff_series(m_p, m_m, s, q, e_t, w_t, sum0, q1, q2, q3, q4):
    """hidden_pair_diff by series only, for |eps| < 1e-3 and c = |eps| / 4 * max_k |W2[j, k]| <= 2e-4.

    m_p, m_m = expm1(+-eps). The caller checks both bounds (SERIES_MAX,
    FAST_MAX); then no branch is needed, and the loop over pixel values
    vectorises. 1 + s m >= 1 - 1e-3 does not cancel, and s q m / (1 + s m)
    is sigmoid_step. |dz| <= |eps| / 4 (sigmoid' <= 1/4), so
    every |dz w_k| <= c: the Taylor sum (through q4) and expm1_series hold.
    The loss changes by at most 2 max|w| per unit of dz (|dl/ddz| =
    |w_t - sum_k y_k w_k| y_t / (y_t + 1e-7)), so |log r| <= 4c <= 8e-4 and
    |r - 1| < 8.01e-4: log1p_series holds. The two dz share one division.
    """
    den_p = 1.0 + s * m_p
    den_m = 1.0 + s * m_m
    sqi = s * q / (den_p * den_m)
    dz_p = sqi * m_p * den_m
    dz_m = sqi * m_m * den_p
    num_p = e_t + e_t * expm1_series(dz_p * w_t)
    num_m = e_t + e_t * expm1_series(dz_m * w_t)
    sum_p = sum0 + dz_p * (q1 + dz_p * (q2 + dz_p * (q3 + dz_p * q4)))
    sum_m = sum0 + dz_m * (q1 + dz_m * (q2 + dz_m * (q3 + dz_m * q4)))
    r = (num_m + DELTA * sum_m) * sum_p / ((num_p + DELTA * sum_p) * sum_m)
    return log1p_series(r - 1.0)


@jit()
def sigmoid_row(a1, z, zq, r):
    """Row r: z = sigmoid(a1), zq = sigmoid(-a1), one exp for both. a1, z, zq (N, H)"""
    for j in range(a1.shape[1]):
        a = a1[r, j]
        e = math.exp(-abs(a))
        big = 1.0 / (1.0 + e)
        small = e * big
        z[r, j] = big if a >= 0 else small
        zq[r, j] = small if a >= 0 else big


@jit()
def softmax_row(a2, e, s, r):
    """Row r: e = exp(a2 - max a2), s = sum of e. a2, e (N, K); s (N,)"""
    k = a2.shape[1]
    m = a2[r, 0]
    for c in range(1, k):
        m = max(m, a2[r, c])
    total = 0.0
    for c in range(k):
        e[r, c] = math.exp(a2[r, c] - m)
        total += e[r, c]
    s[r] = total


@jit()
def distinct_pixels_row(x, h, nnz, pix, slot, ndist, value, m_plus, m_minus, xmax, r):
    """Row r: the non-zero pixels of sample r and their distinct values.

    x (N, D). Outputs: nnz (N,) count of non-zero pixels; pix (N, D) their
    indices, ascending; slot (N, D) index of each one's value among the
    ndist[r] distinct values of the sample; value (N, D) those values and
    m_plus, m_minus (N, D) expm1(+-h * value); xmax (N,) the largest |value|.
    """
    cnt = 0
    for i in range(x.shape[1]):
        if x[r, i] != 0.0:
            pix[r, cnt] = i
            cnt += 1
    nnz[r] = cnt
    vals = np.empty(cnt)
    for c in range(cnt):
        vals[c] = x[r, pix[r, c]]
    # Equal values are adjacent after sorting; the numbering of distinct
    # values does not depend on how ties are ordered.
    order = np.argsort(vals)
    nd = 0
    for c in range(cnt):
        v = vals[order[c]]
        if c == 0 or v != vals[order[c - 1]]:
            value[r, nd] = v
            m_plus[r, nd] = expm1_small(h * v)
            m_minus[r, nd] = expm1_small(-h * v)
            nd += 1
        slot[r, order[c]] = nd - 1
    ndist[r] = nd
    xmax[r] = max(abs(vals[order[0]]), abs(vals[order[cnt - 1]])) if cnt else 0.0


@jit(parallel=True)
def sample_parts(x, a1, a2, h, z, zq, e, s, nnz, pix, slot, ndist, value, m_plus, m_minus, xmax):
    """Everything per sample, in one parallel region: sigmoid_row, softmax_row, distinct_pixels_row.

    One region rather than three: on a loaded machine each region waits
    for its slowest thread to be scheduled.
    """
    for r in prange(x.shape[0]):
        sigmoid_row(a1, z, zq, r)
        softmax_row(a2, e, s, r)
        distinct_pixels_row(x, h, nnz, pix, slot, ndist, value, m_plus, m_minus, xmax, r)


@jit(parallel=True)
def hidden_gradients(t, z, zq, W2, e, s, h, nnz, pix, slot, ndist, value, m_plus, m_minus, xmax, dW1, db1, dW2):
    """dW1 (D, H), db1 (H,), dW2 (H, K): iteration j owns column j of dW1, db1[j], row j of dW2.

    t (N,), z, zq (N, H) sigmoid(+-a1), W2 (H, K), e (N, K), s (N,); the rest from sample_parts.
    """
    n, hdim = z.shape
    d = dW1.shape[0]
    k = W2.shape[1]
    mb_p = expm1_small(h)
    mb_m = expm1_small(-h)
    for j in prange(hdim):
        w_row = W2[j]
        wmax = 0.0
        for c in range(k):
            wmax = max(wmax, abs(w_row[c]))
        col = np.zeros(d)  # sum over samples of the loss differences, per pixel
        diff = np.empty(d)  # loss difference per distinct pixel value of one sample
        acc_w2 = np.zeros(k)
        acc_b1 = 0.0
        for r in range(n):
            e_row = e[r]
            tr = t[r]
            e_t = e_row[tr]
            w_t = w_row[tr]
            q1 = 0.0
            q2 = 0.0
            q3 = 0.0
            q4 = 0.0
            for c in range(k):
                ew = e_row[c] * w_row[c]
                q1 += ew
                ew *= w_row[c]
                q2 += ew
                ew *= w_row[c]
                q3 += ew
                q4 += ew * w_row[c]
            q2 *= 0.5
            q3 *= 1.0 / 6.0
            q4 *= 1.0 / 24.0
            sg = z[r, j]
            sq = zq[r, j]
            if h < SERIES_MAX and h * 0.25 * wmax <= FAST_MAX:
                acc_b1 += hidden_pair_diff_series(mb_p, mb_m, sg, sq, e_t, w_t, s[r], q1, q2, q3, q4)
            else:
                acc_b1 += hidden_pair_diff(h, sg, sq, e_t, w_t, s[r], q1, q2, q3, q4, wmax, e_row, w_row)
            hx = h * xmax[r]  # the sample's largest |eps|
            if hx < SERIES_MAX and hx * 0.25 * wmax <= FAST_MAX:
                for v in range(ndist[r]):
                    diff[v] = hidden_pair_diff_series(
                        m_plus[r, v], m_minus[r, v], sg, sq, e_t, w_t, s[r], q1, q2, q3, q4
                    )
            else:
                for v in range(ndist[r]):
                    diff[v] = hidden_pair_diff(
                        h * value[r, v], sg, sq, e_t, w_t, s[r], q1, q2, q3, q4, wmax, e_row, w_row
                    )
            for c in range(nnz[r]):
                col[pix[r, c]] += diff[slot[r, c]]
            u = h * sg
            mu_p = expm1_small(u)
            mu_m = expm1_small(-u)
            for c in range(k):
                acc_w2[c] += logit_pair_diff(mu_p, mu_m, e_row[c], c == tr, e_t, s[r])
        for i in range(d):
            dW1[i, j] = col[i] / n / (2.0 * h)
        db1[j] = acc_b1 / n / (2.0 * h)
        for c in range(k):
            dW2[j, c] = acc_w2[c] / n / (2.0 * h)


@jit()
def output_bias_gradient(t, e, s, h, db2):
    """db2 (K,): logit k of every sample shifted by +-h; serial (N K pairs only). t (N,), e (N, K), s (N,)"""
    n, k = e.shape
    m_p = expm1_small(h)
    m_m = expm1_small(-h)
    for c in range(k):
        acc = 0.0
        for r in range(n):
            acc += logit_pair_diff(m_p, m_m, e[r, c], c == t[r], e[r, t[r]], s[r])
        db2[c] = acc / n / (2.0 * h)


def network_numerical_gradient(x, t, a1, W2, a2, h, dW1, db1, dW2, db2):
    """Central differences of the chapter's loss for every parameter of TwoLayerNet.

    x (N, D), t (N,) intp, a1 (N, H) = x W1 + b1, W2 (H, K), a2 (N, K) logits,
    h > 0; fills dW1 (D, H), db1 (H,), dW2 (H, K), db2 (K,).
    """
    n, d = x.shape
    k = a2.shape[1]
    z = np.empty_like(a1)
    zq = np.empty_like(a1)
    e = np.empty((n, k))
    s = np.empty(n)
    nnz = np.empty(n, dtype=np.intp)
    pix = np.empty((n, d), dtype=np.intp)
    slot = np.empty((n, d), dtype=np.intp)
    ndist = np.empty(n, dtype=np.intp)
    value = np.empty((n, d))
    m_plus = np.empty((n, d))
    m_minus = np.empty((n, d))
    xmax = np.empty(n)
    sample_parts(x, a1, a2, h, z, zq, e, s, nnz, pix, slot, ndist, value, m_plus, m_minus, xmax)
    hidden_gradients(t, z, zq, W2, e, s, h, nnz, pix, slot, ndist, value, m_plus, m_minus, xmax, dW1, db1, dW2)
    output_bias_gradient(t, e, s, h, db2)
