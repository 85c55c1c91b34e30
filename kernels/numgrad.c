/* Numerical gradient of TwoLayerNet: the C twin of backends/numba_network.py.
 *
 * The method, its error bounds and the layout are documented there; this is
 * a 1:1 port: the same helpers, the same operations in the same order, so
 * the two backends agree bit for bit (no -ffast-math, no FMA contraction).
 * Parallel loops give every iteration its own outputs (a sample's row of the
 * pixel tables, a hidden unit's gradients, an output bias); sums over
 * samples run serially in ascending order, so results do not depend on the
 * thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "scratchnet.h"

/* Below this |argument| the short series in expm1_small, log_ratio and
 * shifted_sum are exact to double precision (bounds in numba_network.py). */
#define SERIES_MAX 1e-3

/* exp(u) - 1 to full precision; for |u| < 1e-3 a series through u^5/120. */
static double expm1_small(double u)
{
    if (fabs(u) < SERIES_MAX)
        return u * (1.0 + u * (0.5 + u * (1.0 / 6.0 + u * (1.0 / 24.0 + u * (1.0 / 120.0)))));
    return expm1(u);
}

/* log(r) for r > 0; for |r - 1| < 1e-3 the log1p series of rho = r - 1 (exact subtraction). */
static double log_ratio(double r)
{
    double rho = r - 1.0;
    if (fabs(rho) < SERIES_MAX)
        return rho * (1.0 - rho * (0.5 - rho * (1.0 / 3.0 - rho * (0.25 - rho * (0.2 - rho * (1.0 / 6.0))))));
    return log(r);
}

/* 1 / (1 + exp(-a)), exp only of -|a|. */
static double sigmoid(double a)
{
    double e = exp(-fabs(a));
    double r = 1.0 / (1.0 + e);
    return a >= 0 ? r : e * r;
}

/* sigmoid(a + eps) - sigmoid(a) = s q m / (1 + s m); s = sigmoid(a), q = sigmoid(-a), m = expm1(eps). */
static double sigmoid_step(double s, double q, double m)
{
    return s * q * m / (1.0 + s * m);
}

/* l(+h) - l(-h) of one sample = log((y_t- + 1e-7) / (y_t+ + 1e-7)), y_t = num / sum. */
static double pair_loss_diff(double num_p, double sum_p, double num_m, double sum_m)
{
    return log_ratio((num_m + SN_DELTA * sum_m) * sum_p / ((num_p + SN_DELTA * sum_p) * sum_m));
}

/* Loss difference of one sample when logit k shifts by +u / -u; m_p, m_m = expm1(+-u). */
static double logit_pair_diff(double m_p, double m_m, double e_k, int is_true, double e_t, double s)
{
    double num_p = is_true ? e_t + e_t * m_p : e_t;
    double num_m = is_true ? e_t + e_t * m_m : e_t;
    return pair_loss_diff(num_p, s + e_k * m_p, num_m, s + e_k * m_m);
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

/* Loss difference of one sample when a hidden pre-activation shifts by +eps / -eps. */
static double hidden_pair_diff(double m_p, double m_m, double s, double q, double e_t, double w_t, double sum0,
                               double q1, double q2, double q3, double q4, double wmax, const double *e_row,
                               const double *w_row, int64_t k)
{
    double dz_p = sigmoid_step(s, q, m_p);
    double dz_m = sigmoid_step(s, q, m_m);
    double num_p = e_t + e_t * expm1_small(dz_p * w_t);
    double num_m = e_t + e_t * expm1_small(dz_m * w_t);
    double sum_p = shifted_sum(dz_p, sum0, q1, q2, q3, q4, wmax, e_row, w_row, k);
    double sum_m = shifted_sum(dz_m, sum0, q1, q2, q3, q4, wmax, e_row, w_row, k);
    return pair_loss_diff(num_p, sum_p, num_m, sum_m);
}

/* e[i, c] = exp(a2[i, c] - max_c a2[i, c]), s[i] = sum_c e[i, c]. a2, e (n, k); s (n,) */
static void softmax_parts(double *e, double *s, const double *a2, int64_t n, int64_t k)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const double *a = a2 + i * k;
        double m = a[0];
        for (int64_t c = 1; c < k; c++)
            m = a[c] > m ? a[c] : m;
        double total = 0.0;
        for (int64_t c = 0; c < k; c++) {
            e[i * k + c] = exp(a[c] - m);
            total += e[i * k + c];
        }
        s[i] = total;
    }
}

struct pixel {
    double value;
    int64_t pos; /* index into the sample's list of non-zero pixels */
};

static int by_value(const void *a, const void *b)
{
    double u = ((const struct pixel *)a)->value, v = ((const struct pixel *)b)->value;
    return (u > v) - (u < v);
}

/* Per sample: its non-zero pixels and their distinct values. x (n, d).
 * Outputs: nnz (n,); pix (n, d) the pixels' indices, ascending; slot (n, d)
 * each one's value's index among the ndist[r] distinct values (in ascending
 * order of value); m_plus, m_minus (n, d) expm1(+-h value) per distinct
 * value. sorted: (threads, d) scratch, one row per thread. */
static void distinct_pixels(int64_t *nnz, int64_t *pix, int64_t *slot, int64_t *ndist, double *m_plus,
                            double *m_minus, struct pixel *sorted, const double *x, double h, int64_t n, int64_t d)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
#ifdef _OPENMP
        struct pixel *vals = sorted + (int64_t)omp_get_thread_num() * d;
#else
        struct pixel *vals = sorted;
#endif
        const double *xr = x + r * d;
        int64_t *pr = pix + r * d, *sr = slot + r * d;
        int64_t cnt = 0;
        for (int64_t i = 0; i < d; i++) {
            if (xr[i] != 0.0) {
                vals[cnt].value = xr[i];
                vals[cnt].pos = cnt;
                pr[cnt++] = i;
            }
        }
        nnz[r] = cnt;
        /* Equal values end up adjacent; how ties are ordered does not change
         * the numbering of distinct values (as with np.argsort in the twin). */
        qsort(vals, (size_t)cnt, sizeof *vals, by_value);
        int64_t nd = 0;
        for (int64_t c = 0; c < cnt; c++) {
            double v = vals[c].value;
            if (c == 0 || v != vals[c - 1].value) {
                m_plus[r * d + nd] = expm1_small(h * v);
                m_minus[r * d + nd] = expm1_small(-h * v);
                nd++;
            }
            sr[vals[c].pos] = nd - 1;
        }
        ndist[r] = nd;
    }
}

/* dW1 (d, hdim), db1 (hdim,), dW2 (hdim, k): iteration j owns column j of
 * dW1, db1[j] and row j of dW2. t (n,), a1 (n, hdim), W2 (hdim, k),
 * e (n, k), s (n,); the pixel tables from distinct_pixels. scratch:
 * (threads, 2 d + k), one row per thread. */
static void hidden_gradients(double *dW1, double *db1, double *dW2, double *scratch, const int64_t *t,
                             const double *a1, const double *W2, const double *e, const double *s, double h,
                             const int64_t *nnz, const int64_t *pix, const int64_t *slot, const int64_t *ndist,
                             const double *m_plus, const double *m_minus, int64_t n, int64_t d, int64_t hdim,
                             int64_t k)
{
    double mb_p = expm1_small(h);
    double mb_m = expm1_small(-h);
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < hdim; j++) {
#ifdef _OPENMP
        double *col = scratch + (int64_t)omp_get_thread_num() * (2 * d + k);
#else
        double *col = scratch;
#endif
        double *diff = col + d;   /* loss difference per distinct pixel value of one sample */
        double *acc_w2 = diff + d;
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
            double a = a1[r * hdim + j];
            double sg = sigmoid(a);
            double sq = sigmoid(-a);
            acc_b1 += hidden_pair_diff(mb_p, mb_m, sg, sq, e_t, w_t, s[r], q1, q2, q3, q4, wmax, e_row, w_row, k);
            for (int64_t v = 0; v < ndist[r]; v++)
                diff[v] = hidden_pair_diff(m_plus[r * d + v], m_minus[r * d + v], sg, sq, e_t, w_t, s[r], q1, q2,
                                           q3, q4, wmax, e_row, w_row, k);
            for (int64_t c = 0; c < nnz[r]; c++)
                col[pix[r * d + c]] += diff[slot[r * d + c]];
            double u = h * sg;
            double mu_p = expm1_small(u);
            double mu_m = expm1_small(-u);
            for (int64_t c = 0; c < k; c++)
                acc_w2[c] += logit_pair_diff(mu_p, mu_m, e_row[c], c == tr, e_t, s[r]);
        }
        for (int64_t i = 0; i < d; i++)
            dW1[i * hdim + j] = col[i] / (double)n / (2.0 * h);
        db1[j] = acc_b1 / (double)n / (2.0 * h);
        for (int64_t c = 0; c < k; c++)
            dW2[j * k + c] = acc_w2[c] / (double)n / (2.0 * h);
    }
}

/* db2 (k,): iteration c shifts logit c of every sample by +-h. t (n,), e (n, k), s (n,) */
static void output_bias_gradient(double *db2, const int64_t *t, const double *e, const double *s, double h,
                                 int64_t n, int64_t k)
{
    double m_p = expm1_small(h);
    double m_m = expm1_small(-h);
#pragma omp parallel for schedule(static)
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
    size_t nd = (size_t)n * (size_t)d;
    double *e = malloc((size_t)(n * k) * sizeof *e);
    double *s = malloc((size_t)n * sizeof *s);
    int64_t *nnz = malloc((size_t)n * sizeof *nnz);
    int64_t *ndist = malloc((size_t)n * sizeof *ndist);
    int64_t *pix = malloc(nd * sizeof *pix);
    int64_t *slot = malloc(nd * sizeof *slot);
    double *m_plus = malloc(nd * sizeof *m_plus);
    double *m_minus = malloc(nd * sizeof *m_minus);
    struct pixel *sorted = malloc((size_t)(threads * d) * sizeof *sorted);
    double *scratch = malloc((size_t)(threads * (2 * d + k)) * sizeof *scratch);
    int status = -1;
    /* n, d, k >= 1 (checked by the caller), so every size above is > 0 and NULL means no memory. */
    if (e && s && nnz && ndist && pix && slot && m_plus && m_minus && sorted && scratch) {
        softmax_parts(e, s, a2, n, k);
        distinct_pixels(nnz, pix, slot, ndist, m_plus, m_minus, sorted, x, h, n, d);
        hidden_gradients(dW1, db1, dW2, scratch, t, a1, W2, e, s, h, nnz, pix, slot, ndist, m_plus, m_minus, n, d,
                         hdim, k);
        output_bias_gradient(db2, t, e, s, h, n, k);
        status = 0;
    }
    free(e);
    free(s);
    free(nnz);
    free(ndist);
    free(pix);
    free(slot);
    free(m_plus);
    free(m_minus);
    free(sorted);
    free(scratch);
    return status;
}
