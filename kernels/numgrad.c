/* Numerical gradient of TwoLayerNet: the C twin of backends/numba_network.py.
 *
 * The method, its error bounds and the layout are documented there; this is
 * a 1:1 port: the same helpers, the same operations in the same order, so
 * the two backends agree bit for bit (no -ffast-math, no FMA contraction).
 * Parallel loops give every iteration its own outputs (a sample's row of the
 * per-sample tables, a hidden unit's gradients); sums over samples run
 * serially in ascending order, so results do not depend on the thread count.
 *
 * Speed, with the same results: the hot loops (series_diffs over a
 * sample's distinct pixel values, add_logit_pair_diffs over the logits) are
 * branch-free element-wise passes compiled once per instruction set
 * (AVX-512, AVX2, baseline SSE2; the loader picks the best the CPU has, so
 * the extension stays portable, where Numba compiles for the host).
 * Vectorising independent iterations does not change any IEEE result. A
 * sample's distinct pixel values are found with a hash table instead of the
 * twin's sort; only their numbering differs, which no result depends on.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "clones.h"
#include "scratchnet.h"

/* Below this |argument| the short series in expm1_small, log_ratio and
 * shifted_sum are exact to double precision (bounds in numba_network.py). */
#define SERIES_MAX 1e-3
/* Bound on |eps| / 4 * max_k |W2[j, k]| under which hidden_pair_diff_series holds. */
#define FAST_MAX 2e-4

/* exp(u) - 1 for |u| < 1e-3: the series through u^5/120. */
static inline double expm1_series(double u)
{
    return u * (1.0 + u * (0.5 + u * (1.0 / 6.0 + u * (1.0 / 24.0 + u * (1.0 / 120.0)))));
}

/* log(1 + rho) for |rho| < 1e-3: the series through rho^6/6. */
static inline double log1p_series(double rho)
{
    return rho * (1.0 - rho * (0.5 - rho * (1.0 / 3.0 - rho * (0.25 - rho * (0.2 - rho * (1.0 / 6.0))))));
}

/* exp(u) - 1 to full precision: the series below 1e-3, else the library expm1. */
static double expm1_small(double u)
{
    if (fabs(u) < SERIES_MAX)
        return expm1_series(u);
    return expm1(u);
}

/* log(r) for r > 0: the log1p series of rho = r - 1 (exact subtraction) when |rho| < 1e-3, else log. */
static double log_ratio(double r)
{
    double rho = r - 1.0;
    if (fabs(rho) < SERIES_MAX)
        return log1p_series(rho);
    return log(r);
}

/* sigmoid(a + eps) - sigmoid(a) for any eps, from s = sigmoid(a), q = sigmoid(-a); exp only of -|eps|. */
static double sigmoid_step(double s, double q, double eps)
{
    if (eps > 0.0)
        return s * q * -expm1_small(-eps) / (s + q * exp(-eps));
    return s * q * expm1_small(eps) / (q + s * exp(eps));
}

/* (y_t- + 1e-7) / (y_t+ + 1e-7), y_t = num / sum: the ratio whose log is pair_loss_diff. */
static inline double pair_ratio(double num_p, double sum_p, double num_m, double sum_m)
{
    return (num_m + SN_DELTA * sum_m) * sum_p / ((num_p + SN_DELTA * sum_p) * sum_m);
}

/* l(+h) - l(-h) of one sample = log((y_t- + 1e-7) / (y_t+ + 1e-7)), y_t = num / sum. */
static double pair_loss_diff(double num_p, double sum_p, double num_m, double sum_m)
{
    return log_ratio(pair_ratio(num_p, sum_p, num_m, sum_m));
}

/* pair_ratio of one sample when logit k shifts by +u / -u; m_p, m_m = expm1(+-u). */
static inline double logit_pair_ratio(double m_p, double m_m, double e_k, int is_true, double e_t, double s)
{
    double num_p = is_true ? e_t + e_t * m_p : e_t;
    double num_m = is_true ? e_t + e_t * m_m : e_t;
    return pair_ratio(num_p, s + e_k * m_p, num_m, s + e_k * m_m);
}

/* Loss difference of one sample when logit k shifts by +u / -u; m_p, m_m = expm1(+-u). */
static double logit_pair_diff(double m_p, double m_m, double e_k, int is_true, double e_t, double s)
{
    return log_ratio(logit_pair_ratio(m_p, m_m, e_k, is_true, e_t, s));
}

/* S' = sum_k e_k exp(dz w_k) from S and q_p = sum_k e_k w_k^p / p!. e_row, w_row (k,) */
static double shifted_sum(double dz, double s, double q1, double q2, double q3, double q4, double wmax,
                          const double *e_row, const double *w_row, int64_t k)
{
    if (fabs(dz) * wmax <= SERIES_MAX)
        return s + dz * (q1 + dz * (q2 + dz * (q3 + dz * q4)));
    double d = 0.0;
    for (int64_t c = 0; c < k; c++)
        d += e_row[c] * expm1_small(dz * w_row[c]);
    return s + d;
}

/* Loss difference of one sample when a hidden pre-activation shifts by +eps / -eps; any eps. */
static double hidden_pair_diff(double eps, double s, double q, double e_t, double w_t, double sum0, double q1,
                               double q2, double q3, double q4, double wmax, const double *e_row,
                               const double *w_row, int64_t k)
{
    double dz_p = sigmoid_step(s, q, eps);
    double dz_m = sigmoid_step(s, q, -eps);
    double num_p = e_t + e_t * expm1_small(dz_p * w_t);
    double num_m = e_t + e_t * expm1_small(dz_m * w_t);
    double sum_p = shifted_sum(dz_p, sum0, q1, q2, q3, q4, wmax, e_row, w_row, k);
    double sum_m = shifted_sum(dz_m, sum0, q1, q2, q3, q4, wmax, e_row, w_row, k);
    return pair_loss_diff(num_p, sum_p, num_m, sum_m);
}

/* hidden_pair_diff by series only, for |eps| < 1e-3 and |eps| / 4 * max_k |W2[j, k]| <= 2e-4
 * (the caller checks); m_p, m_m = expm1(+-eps). Branch-free; the two dz share one division. */
static inline double hidden_pair_diff_series(double m_p, double m_m, double s, double q, double e_t, double w_t,
                                             double sum0, double q1, double q2, double q3, double q4)
{
    double den_p = 1.0 + s * m_p;
    double den_m = 1.0 + s * m_m;
    double sqi = s * q / (den_p * den_m);
    double dz_p = sqi * m_p * den_m;
    double dz_m = sqi * m_m * den_p;
    double num_p = e_t + e_t * expm1_series(dz_p * w_t);
    double num_m = e_t + e_t * expm1_series(dz_m * w_t);
    double sum_p = sum0 + dz_p * (q1 + dz_p * (q2 + dz_p * (q3 + dz_p * q4)));
    double sum_m = sum0 + dz_m * (q1 + dz_m * (q2 + dz_m * (q3 + dz_m * q4)));
    double r = (num_m + SN_DELTA * sum_m) * sum_p / ((num_p + SN_DELTA * sum_p) * sum_m);
    return log1p_series(r - 1.0);
}

/* The per-value tables are padded to a multiple of LANES entries (with
 * m = 0, whose series value is 0), so the hot loop runs in whole blocks that
 * fill an AVX-512 register: no scalar remainder, which for MNIST's ~65
 * distinct values per sample cost about as much as the vector part. */
#define LANES 8

/* diff[v] = hidden_pair_diff_series(m_plus[v], m_minus[v], ...) for v < nd
 * rounded up to LANES: the hot loop. diff, m_plus, m_minus (that many,) */
SN_CLONES static void series_diffs(double *restrict diff, const double *restrict m_plus,
                                   const double *restrict m_minus, int64_t nd, double s, double q, double e_t,
                                   double w_t, double sum0, double q1, double q2, double q3, double q4)
{
    for (int64_t v0 = 0; v0 < nd; v0 += LANES) {
#pragma omp simd
        for (int64_t v = v0; v < v0 + LANES; v++)
            diff[v] = hidden_pair_diff_series(m_plus[v], m_minus[v], s, q, e_t, w_t, sum0, q1, q2, q3, q4);
    }
}

/* acc[c] += logit_pair_diff(m_p, m_m, e_row[c], c == tr, e_t, s) for c < k,
 * in passes that vectorise: the ratios and their log1p series for every c,
 * then the library log where log_ratio takes it. acc, e_row, ratio, ld (k,) */
SN_CLONES static void add_logit_pair_diffs(double *restrict acc, double *restrict ratio, double *restrict ld,
                                           const double *restrict e_row, int64_t k, int64_t tr, double m_p,
                                           double m_m, double e_t, double s)
{
#pragma omp simd
    for (int64_t c = 0; c < k; c++) {
        ratio[c] = logit_pair_ratio(m_p, m_m, e_row[c], c == tr, e_t, s);
        ld[c] = log1p_series(ratio[c] - 1.0);
    }
    for (int64_t c = 0; c < k; c++)
        if (!(fabs(ratio[c] - 1.0) < SERIES_MAX))
            ld[c] = log(ratio[c]);
#pragma omp simd
    for (int64_t c = 0; c < k; c++)
        acc[c] += ld[c];
}

/* Row r: z = sigmoid(a1), zq = sigmoid(-a1), one exp for both. a1, z, zq (n, hdim) */
static void sigmoid_row(double *z, double *zq, const double *a1, int64_t hdim, int64_t r)
{
    for (int64_t j = 0; j < hdim; j++) {
        double a = a1[r * hdim + j];
        double e = exp(-fabs(a));
        double big = 1.0 / (1.0 + e);
        double small = e * big;
        z[r * hdim + j] = a >= 0 ? big : small;
        zq[r * hdim + j] = a >= 0 ? small : big;
    }
}

/* Row r: e = exp(a2 - max a2), s = sum of e. a2, e (n, k); s (n,) */
static void softmax_row(double *e, double *s, const double *a2, int64_t k, int64_t r)
{
    const double *a = a2 + r * k;
    double m = a[0];
    for (int64_t c = 1; c < k; c++)
        m = a[c] > m ? a[c] : m;
    double total = 0.0;
    for (int64_t c = 0; c < k; c++) {
        e[r * k + c] = exp(a[c] - m);
        total += e[r * k + c];
    }
    s[r] = total;
}

/* Open-addressing table from a pixel value's bits to its index among the
 * sample's distinct values; an entry belongs to the current sample if its
 * stamp is the sample's. Equal non-zero doubles have equal bits (only +-0
 * differ, and zeros are skipped), so this finds the same distinct values as
 * the twin's sort; only their numbering differs, which no result depends on. */
struct seen {
    uint64_t bits;
    int64_t stamp;
    int64_t index;
};

/* Entries of a table for d pixels: a power of two >= 2 d, so probes stay short. */
static int64_t table_size(int64_t d)
{
    int64_t size = 2;
    while (size < 2 * d)
        size *= 2;
    return size;
}

/* Row r: the non-zero pixels of sample r and their distinct values. x (n, d).
 * Outputs: nnz (n,); pix (n, d) the pixels' indices, ascending; slot (n, d)
 * each one's value's index among the ndist[r] distinct values; value (n, d)
 * those values and m_plus, m_minus (n, dpad) expm1(+-h value), padded with
 * zeros to a multiple of LANES; xmax (n,) the largest |value|.
 * table: (size,) scratch whose stamps are never r + 1 before. */
static void distinct_pixels_row(int64_t *nnz, int64_t *pix, int64_t *slot, int64_t *ndist, double *value,
                                double *m_plus, double *m_minus, double *xmax, struct seen *table, int64_t size,
                                const double *x, double h, int64_t d, int64_t dpad, int64_t r)
{
    const double *xr = x + r * d;
    int64_t *pr = pix + r * d, *sr = slot + r * d;
    int64_t cnt = 0, nd = 0;
    double xm = 0.0;
    for (int64_t i = 0; i < d; i++) {
        double v = xr[i];
        if (v == 0.0)
            continue;
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        uint64_t b = (bits * 0x9E3779B97F4A7C15u) >> 32 & (uint64_t)(size - 1); /* Fibonacci hashing */
        while (table[b].stamp == r + 1 && table[b].bits != bits)
            b = (b + 1) & (uint64_t)(size - 1);
        if (table[b].stamp != r + 1) {
            table[b] = (struct seen){bits, r + 1, nd};
            value[r * d + nd] = v;
            m_plus[r * dpad + nd] = expm1_small(h * v);
            m_minus[r * dpad + nd] = expm1_small(-h * v);
            nd++;
        }
        pr[cnt] = i;
        sr[cnt++] = table[b].index;
        xm = fabs(v) > xm ? fabs(v) : xm;
    }
    for (int64_t v = nd; v % LANES; v++)
        m_plus[r * dpad + v] = m_minus[r * dpad + v] = 0.0;
    nnz[r] = cnt;
    ndist[r] = nd;
    xmax[r] = xm;
}

/* Everything per sample in one parallel region: sigmoid_row, softmax_row,
 * distinct_pixels_row. tables: (threads, size) scratch, one row per thread,
 * stamps 0. */
static void sample_parts(double *z, double *zq, double *e, double *s, int64_t *nnz, int64_t *pix, int64_t *slot,
                         int64_t *ndist, double *value, double *m_plus, double *m_minus, double *xmax,
                         struct seen *tables, int64_t size, const double *x, const double *a1, const double *a2,
                         double h, int64_t n, int64_t d, int64_t dpad, int64_t hdim, int64_t k)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
#ifdef _OPENMP
        struct seen *table = tables + (int64_t)omp_get_thread_num() * size;
#else
        struct seen *table = tables;
#endif
        sigmoid_row(z, zq, a1, hdim, r);
        softmax_row(e, s, a2, k, r);
        distinct_pixels_row(nnz, pix, slot, ndist, value, m_plus, m_minus, xmax, table, size, x, h, d, dpad, r);
    }
}

/* dW1 (d, hdim), db1 (hdim,), dW2 (hdim, k): iteration j owns column j of
 * dW1, db1[j] and row j of dW2. t (n,), z, zq (n, hdim) sigmoid(+-a1),
 * W2 (hdim, k), e (n, k), s (n,); the rest from sample_parts. scratch:
 * (threads, d + dpad + 3 k), one row per thread. */
static void hidden_gradients(double *dW1, double *db1, double *dW2, double *scratch, const int64_t *t,
                             const double *z, const double *zq, const double *W2, const double *e, const double *s,
                             double h, const int64_t *nnz, const int64_t *pix, const int64_t *slot,
                             const int64_t *ndist, const double *value, const double *m_plus, const double *m_minus,
                             const double *xmax, int64_t n, int64_t d, int64_t dpad, int64_t hdim, int64_t k)
{
    double mb_p = expm1_small(h);
    double mb_m = expm1_small(-h);
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < hdim; j++) {
#ifdef _OPENMP
        double *col = scratch + (int64_t)omp_get_thread_num() * (d + dpad + 3 * k);
#else
        double *col = scratch;
#endif
        double *diff = col + d;   /* loss difference per distinct pixel value of one sample */
        double *acc_w2 = diff + dpad;
        double *ratio = acc_w2 + k, *ld = ratio + k; /* logits' pair ratios and their logs, for one sample */
        const double *w_row = W2 + j * k;
        double wmax = 0.0;
        for (int64_t c = 0; c < k; c++)
            wmax = fabs(w_row[c]) > wmax ? fabs(w_row[c]) : wmax;
        memset(col, 0, (size_t)d * sizeof *col); /* sum over samples of the loss differences, per pixel */
        memset(acc_w2, 0, (size_t)k * sizeof *acc_w2);
        double acc_b1 = 0.0;
        for (int64_t r = 0; r < n; r++) {
            const double *e_row = e + r * k;
            int64_t tr = t[r];
            double e_t = e_row[tr];
            double w_t = w_row[tr];
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
            q2 *= 0.5;
            q3 *= 1.0 / 6.0;
            q4 *= 1.0 / 24.0;
            double sg = z[r * hdim + j];
            double sq = zq[r * hdim + j];
            if (h < SERIES_MAX && h * 0.25 * wmax <= FAST_MAX)
                acc_b1 += hidden_pair_diff_series(mb_p, mb_m, sg, sq, e_t, w_t, s[r], q1, q2, q3, q4);
            else
                acc_b1 += hidden_pair_diff(h, sg, sq, e_t, w_t, s[r], q1, q2, q3, q4, wmax, e_row, w_row, k);
            double hx = h * xmax[r]; /* the sample's largest |eps| */
            if (hx < SERIES_MAX && hx * 0.25 * wmax <= FAST_MAX)
                series_diffs(diff, m_plus + r * dpad, m_minus + r * dpad, ndist[r], sg, sq, e_t, w_t, s[r], q1, q2, q3,
                             q4);
            else
                for (int64_t v = 0; v < ndist[r]; v++)
                    diff[v] = hidden_pair_diff(h * value[r * d + v], sg, sq, e_t, w_t, s[r], q1, q2, q3, q4, wmax,
                                               e_row, w_row, k);
            for (int64_t c = 0; c < nnz[r]; c++)
                col[pix[r * d + c]] += diff[slot[r * d + c]];
            double u = h * sg;
            double mu_p = expm1_small(u);
            double mu_m = expm1_small(-u);
            add_logit_pair_diffs(acc_w2, ratio, ld, e_row, k, tr, mu_p, mu_m, e_t, s[r]);
        }
        for (int64_t i = 0; i < d; i++)
            dW1[i * hdim + j] = col[i] / (double)n / (2.0 * h);
        db1[j] = acc_b1 / (double)n / (2.0 * h);
        for (int64_t c = 0; c < k; c++)
            dW2[j * k + c] = acc_w2[c] / (double)n / (2.0 * h);
    }
}

/* db2 (k,): logit c of every sample shifted by +-h; serial (n k pairs only). t (n,), e (n, k), s (n,) */
static void output_bias_gradient(double *db2, const int64_t *t, const double *e, const double *s, double h,
                                 int64_t n, int64_t k)
{
    double m_p = expm1_small(h);
    double m_m = expm1_small(-h);
    for (int64_t c = 0; c < k; c++) {
        double acc = 0.0;
        for (int64_t r = 0; r < n; r++)
            acc += logit_pair_diff(m_p, m_m, e[r * k + c], c == t[r], e[r * k + t[r]], s[r]);
        db2[c] = acc / (double)n / (2.0 * h);
    }
}

int sn_network_numerical_gradient(double *dW1, double *db1, double *dW2, double *db2, const double *x,
                                  const int64_t *t, const double *a1, const double *W2, const double *a2, double h,
                                  int64_t n, int64_t d, int64_t hdim, int64_t k)
{
#ifdef _OPENMP
    int64_t threads = omp_get_max_threads(); /* a parallel region has at most this many */
#else
    int64_t threads = 1;
#endif
    int64_t dpad = (d + LANES - 1) / LANES * LANES;
    size_t nd = (size_t)n * (size_t)d, ndpad = (size_t)n * (size_t)dpad, nh = (size_t)n * (size_t)hdim;
    double *z = malloc(nh * sizeof *z);
    double *zq = malloc(nh * sizeof *zq);
    double *e = malloc((size_t)(n * k) * sizeof *e);
    double *s = malloc((size_t)n * sizeof *s);
    double *xmax = malloc((size_t)n * sizeof *xmax);
    int64_t *nnz = malloc((size_t)n * sizeof *nnz);
    int64_t *ndist = malloc((size_t)n * sizeof *ndist);
    int64_t *pix = malloc(nd * sizeof *pix);
    int64_t *slot = malloc(nd * sizeof *slot);
    double *value = malloc(nd * sizeof *value);
    double *m_plus = malloc(ndpad * sizeof *m_plus);
    double *m_minus = malloc(ndpad * sizeof *m_minus);
    int64_t size = table_size(d);
    struct seen *tables = calloc((size_t)(threads * size), sizeof *tables);
    double *scratch = malloc((size_t)(threads * (d + dpad + 3 * k)) * sizeof *scratch);
    int status = -1;
    /* n, d, hdim, k >= 1 (checked by the caller), so every size above is > 0 and NULL means no memory. */
    if (z && zq && e && s && xmax && nnz && ndist && pix && slot && value && m_plus && m_minus && tables && scratch) {
        sample_parts(z, zq, e, s, nnz, pix, slot, ndist, value, m_plus, m_minus, xmax, tables, size, x, a1, a2, h, n, d,
                     dpad, hdim, k);
        hidden_gradients(dW1, db1, dW2, scratch, t, z, zq, W2, e, s, h, nnz, pix, slot, ndist, value, m_plus,
                         m_minus, xmax, n, d, dpad, hdim, k);
        output_bias_gradient(db2, t, e, s, h, n, k);
        status = 0;
    }
    free(z);
    free(zq);
    free(e);
    free(s);
    free(xmax);
    free(nnz);
    free(ndist);
    free(pix);
    free(slot);
    free(value);
    free(m_plus);
    free(m_minus);
    free(tables);
    free(scratch);
    return status;
}
