/* The numerical gradient of TwoLayerNet by perturbed losses: twin of
 * backends/numba/numgrad_perturbed.py. Derived, with the bounds behind the
 * constants below and the nominal step, in docs/numerical_gradient.rst,
 * section 'Method "perturbed"'.
 *
 * What agrees: every gradient entry is computed from the same values with the
 * same floating-point operations in the same order as in the twin (no
 * -ffast-math, no FMA contraction), so the two agree bit for bit
 * (tests/test_network.py, test_numba_and_c_are_bitwise_twins). The scalar
 * helpers (the short series, sigmoid_step, shifted_loss, shifted_sum,
 * hidden_pair_diff, hidden_pair_diff_series, moments, nominal) are the
 * twin's line for line, but for the first point below.
 *
 * What differs, for speed, where no result can tell:
 * - pair_ratio and logit_pair_ratio return a sample's ratio
 *   (y_t- + DELTA) / (y_t+ + DELTA), of which the caller takes log_ratio;
 *   the twin's pair_loss_diff and logit_pair_diff return the log.
 * - logit_pair_diffs takes a row's logits in vectorised passes: every ratio
 *   and its log1p_series, then the library log where |ratio - 1| >=
 *   SERIES_MAX (log_ratio's choice, entry by entry). It also computes the
 *   logits not selected, with the nominal step, and does not add them; the
 *   twin skips them. A shift beyond DIRECT_SHIFT is computed directly, as in
 *   the twin, and left out of the passes' sums.
 * - series_diffs evaluates hidden_pair_diff_series over a sample's distinct
 *   pixel values in whole blocks of SN_LANES (the tables padded with m = 0,
 *   whose results no pixel reads), compiled once per instruction set
 *   (clones.h); the twin loops over exactly ndist values.
 * - distinct_values_row finds a sample's distinct values with a hash table,
 *   numbered in order of first appearance, where the twin sorts them: the
 *   numbering differs, and each pixel reads the result of its own value
 *   either way. The tables are laid out per sample (value (n, d), m_plus and
 *   m_minus (n, dpad)); the twin's sit at the sample's CSR offsets.
 * - SAMPLE_CHUNK samples per parallel item (one in the twin), and every
 *   index of the batch is checked where it is read (SN_BAD_INDEX). */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "clones.h"
#include "scratchnet.h"

/* The thresholds of the derivation: the twin's and _config's values (tests/test_backends.py checks them). */
#define SERIES_MAX 1e-3     /* below this |argument| expm1, log1p and the moment sum are short series */
#define FAST_MAX 2e-4       /* hidden_pair_diff_series holds while step / 4 * max |W2[j, :]| stays below this */
#define NOMINAL_TOL 0x1p-40 /* a weight's steps within h * NOMINAL_TOL of h count as h */
#define DIRECT_SHIFT 1.0    /* beyond this logit shift the two perturbed losses are computed directly */
#define SATURATED 700.0     /* beyond this |a| sigmoid_step subtracts the two sigmoids directly */
#define MOMENTS_MAX 1e60    /* beyond this max |W2[j, :]| the moments may overflow: sums taken directly */
#define SAMPLE_CHUNK 4      /* samples per parallel item of distinct_values */

static inline double expm1_series(double u)
{
    return u * (1.0 + u * (0.5 + u * (1.0 / 6.0 + u * (1.0 / 24.0 + u * (1.0 / 120.0)))));
}

static inline double log1p_series(double rho)
{
    return rho * (1.0 - rho * (0.5 - rho * (1.0 / 3.0 - rho * (0.25 - rho * (0.2 - rho * (1.0 / 6.0))))));
}

static double expm1_small(double u)
{
    return fabs(u) < SERIES_MAX ? expm1_series(u) : expm1(u);
}

static double log_ratio(double r)
{
    double rho = r - 1.0;
    return fabs(rho) < SERIES_MAX ? log1p_series(rho) : log(r);
}

static double sigmoid_of(double v)
{
    if (v >= 0.0)
        return 1.0 / (1.0 + exp(-v));
    double ev = exp(v);
    return ev / (1.0 + ev);
}

static double sigmoid_step(double a, double z, double zq, double d)
{
    if (a < -SATURATED)
        return sigmoid_of(a + d) - z;
    if (a > SATURATED)
        return zq - sigmoid_of(-a - d);
    if (d > 0.0)
        return z * zq * -expm1_small(-d) / (z + zq * exp(-d));
    return z * zq * expm1_small(d) / (zq + z * exp(d));
}

/* -log(y_t + SN_DELTA) after the logits a2_row (k,) move by dz * w_row and logit kk by u more (stable softmax). */
static double shifted_loss(const double *a2_row, int64_t t, const double *w_row, double dz, int64_t kk, double u,
                           int64_t k)
{
    double m = -INFINITY, total = 0.0;
    for (int64_t c = 0; c < k; c++) {
        double v = a2_row[c] + dz * w_row[c] + (c == kk ? u : 0.0);
        m = v > m ? v : m;
    }
    for (int64_t c = 0; c < k; c++)
        total += exp(a2_row[c] + dz * w_row[c] + (c == kk ? u : 0.0) - m);
    double et = exp(a2_row[t] + dz * w_row[t] + (t == kk ? u : 0.0) - m);
    return -log(et / total + SN_DELTA);
}

/* Loss difference of one sample when logit kk moves by +u_p / -u_m, computed directly (large shifts). */
static double logit_shift_diff(const double *a2_row, int64_t t, int64_t kk, double u_p, double u_m, int64_t k)
{
    return shifted_loss(a2_row, t, a2_row, 0.0, kk, u_p, k) - shifted_loss(a2_row, t, a2_row, 0.0, kk, -u_m, k);
}

static inline double pair_ratio(double num_p, double sum_p, double num_m, double sum_m)
{
    return (num_m + SN_DELTA * sum_m) * sum_p / ((num_p + SN_DELTA * sum_p) * sum_m);
}

static inline double logit_pair_ratio(double m_p, double m_m, double e_k, int is_true, double e_t, double s)
{
    double num_p = is_true ? e_t + e_t * m_p : e_t;
    double num_m = is_true ? e_t + e_t * m_m : e_t;
    return pair_ratio(num_p, s + e_k * m_p, num_m, s + e_k * m_m);
}

static double shifted_sum(double dz, double s, const double q[4], double wmax, const double *e_row,
                          const double *w_row, int64_t k)
{
    if (fabs(dz) * wmax <= SERIES_MAX && wmax <= MOMENTS_MAX)
        return s + dz * (q[0] + dz * (q[1] + dz * (q[2] + dz * q[3])));
    double d = 0.0;
    for (int64_t c = 0; c < k; c++)
        d += e_row[c] * expm1_small(dz * w_row[c]);
    return s + d;
}

/* Loss difference of one sample when its hidden pre-activation moves by +d_p / -d_m; any steps.
 * a2_row (k,): the sample's logits, for logit shifts beyond DIRECT_SHIFT. */
static double hidden_pair_diff(double d_p, double d_m, double a, double z, double zq, double e_t, double w_t,
                               double s, const double q[4], double wmax, const double *e_row, const double *w_row,
                               const double *a2_row, int64_t t, int64_t k)
{
    double dz_p = sigmoid_step(a, z, zq, d_p);
    double dz_m = sigmoid_step(a, z, zq, -d_m);
    if ((fabs(dz_p) > fabs(dz_m) ? fabs(dz_p) : fabs(dz_m)) * wmax > DIRECT_SHIFT)
        return shifted_loss(a2_row, t, w_row, dz_p, 0, 0.0, k) - shifted_loss(a2_row, t, w_row, dz_m, 0, 0.0, k);
    double num_p = e_t + e_t * expm1_small(dz_p * w_t);
    double num_m = e_t + e_t * expm1_small(dz_m * w_t);
    double sum_p = shifted_sum(dz_p, s, q, wmax, e_row, w_row, k);
    double sum_m = shifted_sum(dz_m, s, q, wmax, e_row, w_row, k);
    return log_ratio(pair_ratio(num_p, sum_p, num_m, sum_m));
}

/* hidden_pair_diff by series only (the caller checks SERIES_MAX and FAST_MAX); m_p, m_m = expm1(d_p), expm1(-d_m). */
static inline double hidden_pair_diff_series(double m_p, double m_m, double z, double zq, double e_t, double w_t,
                                             double s, double q1, double q2, double q3, double q4)
{
    double den_p = 1.0 + z * m_p;
    double den_m = 1.0 + z * m_m;
    double sqi = z * zq / (den_p * den_m);
    double dz_p = sqi * m_p * den_m;
    double dz_m = sqi * m_m * den_p;
    double num_p = e_t + e_t * expm1_series(dz_p * w_t);
    double num_m = e_t + e_t * expm1_series(dz_m * w_t);
    double sum_p = s + dz_p * (q1 + dz_p * (q2 + dz_p * (q3 + dz_p * q4)));
    double sum_m = s + dz_m * (q1 + dz_m * (q2 + dz_m * (q3 + dz_m * q4)));
    double r = (num_m + SN_DELTA * sum_m) * sum_p / ((num_p + SN_DELTA * sum_p) * sum_m);
    return log1p_series(r - 1.0);
}

/* diff[v] = hidden_pair_diff_series(m_plus[v], m_minus[v], ...) for v < nd rounded up to SN_LANES (the
 * tables are padded with m = 0, whose value is 0): whole blocks that fill an AVX-512 register. */
SN_CLONES static void series_diffs(double *restrict diff, const double *restrict m_plus,
                                   const double *restrict m_minus, int64_t nd, double z, double zq, double e_t,
                                   double w_t, double s, const double q[4])
{
    double q1 = q[0], q2 = q[1], q3 = q[2], q4 = q[3];
    for (int64_t v0 = 0; v0 < nd; v0 += SN_LANES) {
#pragma omp simd
        for (int64_t v = v0; v < v0 + SN_LANES; v++)
            diff[v] = hidden_pair_diff_series(m_plus[v], m_minus[v], z, zq, e_t, w_t, s, q1, q2, q3, q4);
    }
}

/* acc[c] += log_ratio(logit_pair_ratio(m_p[c], m_m[c], e_row[c], c == t, e_t, s)) for c < k, in passes that
 * vectorise: the ratios and their log1p series, then the library log where log_ratio takes it.
 * Entries with !use[c] are computed and not added. acc, m_p, m_m, e_row, ratio, ld (k,) */
SN_CLONES static void logit_pair_diffs(double *restrict acc, double *restrict ratio, double *restrict ld,
                                       const double *restrict m_p, const double *restrict m_m,
                                       const double *restrict e_row, const uint8_t *restrict use, int64_t k,
                                       int64_t t, double e_t, double s)
{
#pragma omp simd
    for (int64_t c = 0; c < k; c++) {
        ratio[c] = logit_pair_ratio(m_p[c], m_m[c], e_row[c], c == t, e_t, s);
        ld[c] = log1p_series(ratio[c] - 1.0);
    }
    for (int64_t c = 0; c < k; c++)
        if (!(fabs(ratio[c] - 1.0) < SERIES_MAX))
            ld[c] = log(ratio[c]);
    for (int64_t c = 0; c < k; c++)
        if (use[c])
            acc[c] += ld[c];
}

static int nominal(double p, double h)
{
    double hp = (p + h) - p, hm = p - (p - h);
    return fabs(hp - h) <= h * NOMINAL_TOL && fabs(hm - h) <= h * NOMINAL_TOL;
}

/* -- per sample: the distinct pixel values ------------------------------------- */

/* Open addressing from a value's bits to its index among the sample's distinct values; an entry
 * belongs to the current sample if its stamp is r + 1. Equal non-zero doubles have equal bits. */
struct seen {
    uint64_t bits;
    int64_t stamp;
    int64_t index;
};

static int64_t table_size(int64_t d)
{
    int64_t size = 2;
    while (size < 2 * d)
        size *= 2;
    return size;
}

struct perturbed_ctx {
    const sn_grads *g;
    const sn_perturbed_work *w;
    const sn_batch *b;
    const int64_t *labels;
    const sn_params *p;
    const sn_forward_pass *f;
    double h;
    const uint8_t *units, *logits;
    int64_t dpad, size;
    struct seen *tables; /* (slots, size), stamps 0 */
    double *scratch;     /* (slots, scratch_len) */
    int64_t scratch_len;
    _Atomic int bad;
};

/* Sample r's distinct non-zero values: slot (at its CSR offsets), value (n, d), m_plus/m_minus (n, dpad). */
static int distinct_values_row(const struct perturbed_ctx *c, struct seen *table, int64_t r)
{
    const sn_batch *b = c->b;
    const sn_perturbed_work *w = c->w;
    int64_t lo = b->row_ptr[r], hi = b->row_ptr[r + 1], nd = 0, size = c->size;
    double xm = 0.0;
    w->ndist[r] = 0;
    w->xmax[r] = 0.0;
    if (lo < 0 || hi < lo || hi > b->nnz || hi - lo > b->d)
        return 1;
    for (int64_t q = lo; q < hi; q++) {
        double v = b->vals[q];
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        uint64_t s = (bits * 0x9E3779B97F4A7C15u) >> 32 & (uint64_t)(size - 1); /* Fibonacci hashing */
        while (table[s].stamp == r + 1 && table[s].bits != bits)
            s = (s + 1) & (uint64_t)(size - 1);
        if (table[s].stamp != r + 1) {
            table[s] = (struct seen){bits, r + 1, nd};
            w->value[r * b->d + nd] = v;
            w->m_plus[r * c->dpad + nd] = expm1_small(c->h * v);
            w->m_minus[r * c->dpad + nd] = expm1_small(-c->h * v);
            nd++;
        }
        w->slot[q] = table[s].index;
        xm = fabs(v) > xm ? fabs(v) : xm;
    }
    for (int64_t v = nd; v % SN_LANES; v++)
        w->m_plus[r * c->dpad + v] = w->m_minus[r * c->dpad + v] = 0.0;
    w->ndist[r] = nd;
    w->xmax[r] = xm;
    return 0;
}

/* Samples of one item: each one's forward pass (row r of f) and distinct pixel values. */
static void samples_item(void *arg, int64_t item, int slot)
{
    struct perturbed_ctx *c = arg;
    int64_t end = (item + 1) * SAMPLE_CHUNK < c->b->n ? (item + 1) * SAMPLE_CHUNK : c->b->n;
    for (int64_t r = item * SAMPLE_CHUNK; r < end; r++)
        if (sn_forward_row(c->f, c->b, c->p, r) || distinct_values_row(c, c->tables + slot * c->size, r))
            atomic_store(&c->bad, 1);
}

/* -- per hidden unit ----------------------------------------------------------- */

static void moments(double q[4], const double *e_row, const double *w_row, int64_t k)
{
    double q1 = 0.0, q2 = 0.0, q3 = 0.0, q4 = 0.0;
    for (int64_t c = 0; c < k; c++) {
        double ew = e_row[c] * w_row[c];
        q1 += ew;
        ew *= w_row[c];
        q2 += ew;
        ew *= w_row[c];
        q3 += ew;
        q4 += ew * w_row[c];
    }
    q[0] = q1, q[1] = q2 * 0.5, q[2] = q3 * (1.0 / 6.0), q[3] = q4 * (1.0 / 24.0);
}

/* Column j of dW1 and db1[j]. col (d,), diff (dpad,) scratch. */
static int unit_gradients(const struct perturbed_ctx *c, double *col, double *diff, int64_t j)
{
    const sn_batch *b = c->b;
    const sn_perturbed_work *w = c->w;
    int64_t n = b->n, d = b->d, hdim = c->p->h, k = c->p->k;
    double h = c->h;
    const double *w_row = c->p->W2 + j * k;
    double wmax = 0.0;
    for (int64_t cc = 0; cc < k; cc++)
        wmax = fabs(w_row[cc]) > wmax ? fabs(w_row[cc]) : wmax;
    double pb = c->p->b1[j];
    double hp_b = (pb + h) - pb, hm_b = pb - (pb - h);
    double mb_p = expm1_small(hp_b), mb_m = expm1_small(-hm_b);
    double big_b = hp_b > hm_b ? hp_b : hm_b;
    memset(col, 0, (size_t)d * sizeof *col);
    double acc_b1 = 0.0;
    for (int64_t r = 0; r < n; r++) {
        const double *e_row = c->f->e + r * k, *a2_row = c->f->a2 + r * k;
        int64_t t = c->labels[r];
        double e_t = e_row[t], w_t = w_row[t], s = c->f->s[r], q[4];
        moments(q, e_row, w_row, k);
        double a = c->f->a1[r * hdim + j], z = c->f->z[r * hdim + j], zq = c->f->zq[r * hdim + j];
        if (big_b < SERIES_MAX && big_b * 0.25 * wmax <= FAST_MAX && wmax <= MOMENTS_MAX)
            acc_b1 += hidden_pair_diff_series(mb_p, mb_m, z, zq, e_t, w_t, s, q[0], q[1], q[2], q[3]);
        else
            acc_b1 += hidden_pair_diff(hp_b, hm_b, a, z, zq, e_t, w_t, s, q, wmax, e_row, w_row, a2_row, t, k);
        int64_t lo = b->row_ptr[r], hi = b->row_ptr[r + 1], nd = w->ndist[r];
        double hx = h * w->xmax[r]; /* the sample's largest nominal step */
        if (hx < SERIES_MAX && hx * 0.25 * wmax <= FAST_MAX && wmax <= MOMENTS_MAX)
            series_diffs(diff, w->m_plus + r * c->dpad, w->m_minus + r * c->dpad, nd, z, zq, e_t, w_t, s, q);
        else
            for (int64_t v = 0; v < nd; v++) {
                double hv = h * w->value[r * d + v];
                diff[v] = hidden_pair_diff(hv, hv, a, z, zq, e_t, w_t, s, q, wmax, e_row, w_row, a2_row, t, k);
            }
        for (int64_t p = lo; p < hi; p++) {
            int64_t i = b->cols[p];
            if ((uint64_t)i >= (uint64_t)d)
                return 1;
            double pw = c->p->W1[i * hdim + j];
            if (nominal(pw, h)) {
                col[i] += diff[w->slot[p]];
            } else { /* this pixel's own steps */
                double x = b->vals[p];
                double d_p = x * ((pw + h) - pw), d_m = x * (pw - (pw - h));
                col[i] += hidden_pair_diff(d_p, d_m, a, z, zq, e_t, w_t, s, q, wmax, e_row, w_row, a2_row, t, k);
            }
        }
    }
    for (int64_t i = 0; i < d; i++)
        c->g->W1[i * hdim + j] = col[i] / (double)n / (2.0 * h);
    c->g->b1[j] = acc_b1 / (double)n / (2.0 * h);
    return 0;
}

/* Row j of dW2 for the selected logits. scratch: acc, ratio, ld, m_p, m_m (k each), use (k bytes). */
static void w2_row_gradients(const struct perturbed_ctx *c, double *acc, int64_t j)
{
    int64_t n = c->b->n, hdim = c->p->h, k = c->p->k;
    double h = c->h, *ratio = acc + k, *ld = ratio + k, *m_p = ld + k, *m_m = m_p + k;
    uint8_t *use = (uint8_t *)(m_m + k);
    const double *W2 = c->p->W2 + j * k;
    memset(acc, 0, (size_t)k * sizeof *acc);
    for (int64_t r = 0; r < n; r++) {
        int64_t t = c->labels[r];
        double zr = c->f->z[r * hdim + j];
        double mu_p = expm1_small(h * zr), mu_m = expm1_small(-h * zr); /* the nominal step, shared */
        const double *e_row = c->f->e + r * k, *a2_row = c->f->a2 + r * k;
        for (int64_t cc = 0; cc < k; cc++) {
            double pw = W2[cc];
            int own = c->logits[cc] && !nominal(pw, h);
            double u_p = own ? zr * ((pw + h) - pw) : h * zr, u_m = own ? zr * (pw - (pw - h)) : h * zr;
            m_p[cc] = own ? expm1_small(u_p) : mu_p;
            m_m[cc] = own ? expm1_small(-u_m) : mu_m;
            use[cc] = c->logits[cc];
            if (c->logits[cc] && (u_p > u_m ? u_p : u_m) > DIRECT_SHIFT) { /* direct; kept out of the vector pass */
                acc[cc] += logit_shift_diff(a2_row, t, cc, u_p, u_m, k);
                use[cc] = 0;
                m_p[cc] = m_m[cc] = 0.0;
            }
        }
        logit_pair_diffs(acc, ratio, ld, m_p, m_m, e_row, use, k, t, e_row[t], c->f->s[r]);
    }
    for (int64_t cc = 0; cc < k; cc++)
        if (c->logits[cc])
            c->g->W2[j * k + cc] = acc[cc] / (double)n / (2.0 * h);
}

static void hidden_item(void *arg, int64_t j, int slot)
{
    struct perturbed_ctx *c = arg;
    double *scratch = c->scratch + slot * c->scratch_len;
    int any_logit = 0;
    for (int64_t cc = 0; cc < c->p->k; cc++)
        any_logit |= c->logits[cc];
    if (c->units[j] && unit_gradients(c, scratch, scratch + c->b->d, j))
        atomic_store(&c->bad, 1);
    if (any_logit)
        w2_row_gradients(c, scratch, j);
}

/* db2[c] for the selected logits: logit c of every sample moved by +h+ / -h-; serial (n k pairs). */
static void output_bias_gradients(const struct perturbed_ctx *c)
{
    int64_t n = c->b->n, k = c->p->k;
    double h = c->h;
    for (int64_t cc = 0; cc < k; cc++) {
        if (!c->logits[cc])
            continue;
        double pb = c->p->b2[cc];
        double u_p = (pb + h) - pb, u_m = pb - (pb - h);
        double m_p = expm1_small(u_p), m_m = expm1_small(-u_m);
        double acc = 0.0;
        for (int64_t r = 0; r < n; r++) {
            int64_t t = c->labels[r];
            const double *e_row = c->f->e + r * k;
            if ((u_p > u_m ? u_p : u_m) > DIRECT_SHIFT)
                acc += logit_shift_diff(c->f->a2 + r * k, t, cc, u_p, u_m, k);
            else
                acc += log_ratio(logit_pair_ratio(m_p, m_m, e_row[cc], cc == t, e_row[t], c->f->s[r]));
        }
        c->g->b2[cc] = acc / (double)n / (2.0 * h);
    }
}

int sn_numgrad_perturbed(const sn_grads *g, const sn_perturbed_work *w, const sn_batch *b, const int64_t *labels,
                         const sn_params *p, const sn_forward_pass *f, double h, const uint8_t *units,
                         const uint8_t *logits)
{
    int slots = sn_pool_slots();
    int64_t dpad = (b->d + SN_LANES - 1) / SN_LANES * SN_LANES, size = table_size(b->d);
    int64_t len = b->d + dpad > 6 * p->k ? b->d + dpad : 6 * p->k; /* unit: col, diff; W2 row: 5 k doubles + k bytes */
    struct seen *tables = calloc((size_t)slots * (size_t)size, sizeof *tables);
    double *scratch = malloc((size_t)slots * (size_t)len * sizeof *scratch);
    int status = SN_NO_MEMORY;
    if (scratch && tables) {
        struct perturbed_ctx c = {g, w, b, labels, p, f, h, units, logits, dpad, size, tables, scratch, len, 0};
        sn_parallel_for((b->n + SAMPLE_CHUNK - 1) / SAMPLE_CHUNK, slots, samples_item, &c);
        if (!atomic_load(&c.bad))
            sn_parallel_for(p->h, slots, hidden_item, &c);
        output_bias_gradients(&c);
        status = atomic_load(&c.bad) ? SN_BAD_INDEX : SN_OK;
    }
    free(tables);
    free(scratch);
    return status;
}
