/* The numerical gradient of TwoLayerNet by series in the step: twin of
 * backends/numba/numgrad_series.py. Derived, in the notation used here, in
 * docs/numerical_gradient.rst, sections 'Method "series" (the default)' and
 * 'The remainder bound'.
 *
 * The same helpers as the twin, each with the same operations in the same
 * order (no -ffast-math, no FMA contraction), so the two agree bit for bit
 * (tests/test_network.py, test_numba_and_c_are_bitwise_twins). The code
 * differs only in how work is split and checked: COEF_CHUNK samples per
 * parallel item of the coefficients (one in the twin); add1 and add2 for the
 * twin's inner loops of w1_row; rejected reads each column of W1 for its
 * finiteness where the twin gathers it row by row; and every index of the
 * batch is checked where it is read (SN_BAD_INDEX). */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "scratchnet.h"

#define COEF_CHUNK 4 /* samples per parallel item of coefficients */

/* _config.SERIES_RADII's literals, 0.01 * 1.15^k below pi (tests/test_backends.py checks them). */
static const double RADII[] = {
    0.01, 0.0115, 0.013225, 0.0152087, 0.0174901, 0.0201136, 0.0231306, 0.0266002, 0.0305902, 0.0351788,
    0.0404556, 0.0465239, 0.0535025, 0.0615279, 0.0707571, 0.0813706, 0.0935762, 0.107613, 0.123755,
    0.142318, 0.163665, 0.188215, 0.216447, 0.248915, 0.286252, 0.32919, 0.378568, 0.435353, 0.500656,
    0.575755, 0.662118, 0.761435, 0.875651, 1.007, 1.15805, 1.33176, 1.53152, 1.76125, 2.02543, 2.32925,
    2.67864, 3.08043};
#define NRADII (sizeof RADII / sizeof RADII[0])
#define ROUNDING 0x1p-53 /* _config.SERIES_ROUNDING */
#define EVEN_TOL 0x1p-44 /* a row of W1 sums its even powers if some |h+ - h-| exceeds h EVEN_TOL */

/* -- coefficients ----------------------------------------------------------- */

/* f[0..4] = F1..F5 of -log(1 + alpha (1/Phi(s) - 1)), Phi(s) = 1 + p1 s + ... + p5 s^5. */
static void loss_shift_coefficients(double f[5], double p1, double p2, double p3, double p4, double p5, double alpha)
{
    double r1 = -p1;
    double r2 = -(p1 * r1 + p2);
    double r3 = -((p1 * r2 + p2 * r1) + p3);
    double r4 = -(((p1 * r3 + p2 * r2) + p3 * r1) + p4);
    double r5 = -((((p1 * r4 + p2 * r3) + p3 * r2) + p4 * r1) + p5);
    double x1 = alpha * r1, x2 = alpha * r2, x3 = alpha * r3, x4 = alpha * r4, x5 = alpha * r5;
    double l1 = x1;
    double l2 = x2 - (l1 * x1) / 2.0;
    double l3 = x3 - (l1 * x2 + 2.0 * l2 * x1) / 3.0;
    double l4 = x4 - ((l1 * x3 + 2.0 * l2 * x2) + 3.0 * l3 * x1) / 4.0;
    double l5 = x5 - (((l1 * x4 + 2.0 * l2 * x3) + 3.0 * l3 * x2) + 4.0 * l4 * x1) / 5.0;
    f[0] = -l1, f[1] = -l2, f[2] = -l3, f[3] = -l4, f[4] = -l5;
}

/* beta[0..4] = beta1..beta5 of sigmoid(a + d) - sigmoid(a), from z = sigmoid(a), zq = sigmoid(-a). */
static void sigmoid_increment(double beta[5], double z, double zq)
{
    double zeta = z * zq, kappa = zq - z;
    double k2 = kappa * kappa;
    beta[0] = zeta;
    beta[1] = zeta * kappa / 2.0;
    beta[2] = zeta * (k2 - 2.0 * zeta) / 6.0;
    beta[3] = zeta * kappa * (k2 - 8.0 * zeta) / 24.0;
    beta[4] = zeta * ((k2 * k2 - 22.0 * zeta * k2) + 16.0 * zeta * zeta) / 120.0;
}

/* c[0..4] = C1..C5 of F(beta(d)). */
static void compose(double c[5], const double f[5], const double beta[5])
{
    const double *b = beta;
    double b11 = b[0] * b[0];
    c[0] = f[0] * b[0];
    c[1] = f[0] * b[1] + f[1] * b11;
    c[2] = (f[0] * b[2] + f[1] * (2.0 * b[0] * b[1])) + f[2] * (b11 * b[0]);
    c[3] = ((f[0] * b[3] + f[1] * (2.0 * b[0] * b[2] + b[1] * b[1])) + f[2] * (3.0 * b11 * b[1])) + f[3] * (b11 * b11);
    c[4] = (((f[0] * b[4] + f[1] * (2.0 * b[0] * b[3] + 2.0 * b[1] * b[2])) +
             f[2] * (3.0 * b11 * b[2] + 3.0 * b[0] * b[1] * b[1])) +
            f[3] * (4.0 * b11 * b[0] * b[1])) +
           f[4] * (b11 * b11 * b[0]);
}

struct series_ctx {
    const sn_grads *g;
    const sn_series_work *w;
    const sn_batch *b;
    const int64_t *labels;
    const sn_params *p;
    const sn_forward_pass *f;
    double h;
    double *scratch; /* per slot: phi (5 h) for coefficients, acc (5 max(h, k)) for products */
    int64_t scratch_len;
    _Atomic int bad;
};

/* C[:, r, :] (5, n, h): sample r's loss as a series in a shift of each a1[r, j]. phi (5, h) scratch. */
static void hidden_coefficients_row(const struct series_ctx *c, double *phi, int64_t r)
{
    int64_t n = c->b->n, h = c->p->h, k = c->p->k, t = c->labels[r];
    const double *y = c->f->y + r * k, *W2T = c->w->W2T;
    double alpha = y[t] / (y[t] + SN_DELTA);
    for (int64_t i = 0; i < 5 * h; i++)
        phi[i] = 0.0;
    for (int64_t col = 0; col < k; col++) { /* phi[m - 1, j] = sum_k y_k v^m, v = W2[j, k] - W2[j, t] */
        double yc = y[col];
        const double *wc = W2T + col * h, *wt = W2T + t * h;
        for (int64_t j = 0; j < h; j++) {
            double v = wc[j] - wt[j];
            double yv = yc * v;
            phi[j] += yv;
            yv *= v;
            phi[h + j] += yv;
            yv *= v;
            phi[2 * h + j] += yv;
            yv *= v;
            phi[3 * h + j] += yv;
            phi[4 * h + j] += yv * v;
        }
    }
    for (int64_t j = 0; j < h; j++) {
        double f[5], beta[5], out[5];
        loss_shift_coefficients(f, phi[j], phi[h + j] / 2.0, phi[2 * h + j] / 6.0, phi[3 * h + j] / 24.0,
                                phi[4 * h + j] / 120.0, alpha);
        sigmoid_increment(beta, c->f->z[r * h + j], c->f->zq[r * h + j]);
        compose(out, f, beta);
        for (int m = 0; m < 5; m++)
            c->w->C[(m * n + r) * h + j] = out[m];
    }
}

/* L[:, r, :] (5, n, k): sample r's loss as a series in a shift of each logit. */
static void logit_coefficients_row(const struct series_ctx *c, int64_t r)
{
    int64_t n = c->b->n, k = c->p->k, t = c->labels[r];
    const double *y = c->f->y + r * k;
    double alpha = y[t] / (y[t] + SN_DELTA);
    double rest = 0.0;
    for (int64_t col = 0; col < k; col++)
        if (col != t)
            rest += y[col];
    for (int64_t col = 0; col < k; col++) {
        double p = col != t ? y[col] : rest;
        double sign = col != t ? 1.0 : -1.0;
        double f[5];
        loss_shift_coefficients(f, sign * p, p / 2.0, sign * p / 6.0, p / 24.0, sign * p / 120.0, alpha);
        for (int m = 0; m < 5; m++)
            c->w->L[(m * n + r) * k + col] = f[m];
    }
}

/* Samples of one item: each one's forward pass (row r of f), then its coefficients. */
static void coefficients_item(void *arg, int64_t item, int slot)
{
    struct series_ctx *c = arg;
    double *phi = c->scratch + slot * c->scratch_len;
    int64_t end = (item + 1) * COEF_CHUNK < c->b->n ? (item + 1) * COEF_CHUNK : c->b->n;
    for (int64_t r = item * COEF_CHUNK; r < end; r++) {
        if (sn_forward_row(c->f, c->b, c->p, r))
            atomic_store(&c->bad, 1);
        hidden_coefficients_row(c, phi, r);
        logit_coefficients_row(c, r);
    }
}

/* -- products with the step weights ------------------------------------------ */

/* w[0..4] = w1..w5 of parameter p, w_m = ((h+)^m - (-h-)^m) / 2h (inv = 0.5 / h); *big = max(h+, h-),
 * *diff = |h+ - h-|. */
static void step_weights(double w[5], double *big, double *diff, double p, double h, double inv)
{
    double hp = (p + h) - p, hm = p - (p - h);
    double hp2 = hp * hp, hm2 = hm * hm;
    w[0] = (hp + hm) * inv;
    w[1] = (hp2 - hm2) * inv;
    w[2] = (hp2 * hp + hm2 * hm) * inv;
    w[3] = (hp2 * hp2 - hm2 * hm2) * inv;
    w[4] = (hp2 * hp2 * hp + hm2 * hm2 * hm) * inv;
    *big = hp > hm ? hp : hm;
    *diff = fabs(hp - hm);
}

/* (w1 a0 + ... + w5 a4) / n for parameter p; *big, *diff as step_weights. */
static double weighted(double p, double h, double inv, double a0, double a1, double a2, double a3, double a4,
                       int64_t n, double *big, double *diff)
{
    double w[5];
    step_weights(w, big, diff, p, h, inv);
    return ((((w[0] * a0 + w[1] * a1) + w[2] * a2) + w[3] * a3) + w[4] * a4) / (double)n;
}

/* 1 if some parameter of row has |h+ - h-| > h EVEN_TOL: only then are the even powers summed. */
static int even_powers_needed(const double *row, int64_t len, double h)
{
    for (int64_t j = 0; j < len; j++) {
        double p = row[j];
        if (fabs(((p + h) - p) - (p - (p - h))) > h * EVEN_TOL)
            return 1;
    }
    return 0;
}

/* a (h,) = (a + x * c) + y * d, elementwise: two samples' terms added in turn. */
static void add2(double *restrict a, const double *restrict c, const double *restrict d, double x, double y,
                 int64_t h)
{
    for (int64_t j = 0; j < h; j++)
        a[j] = (a[j] + x * c[j]) + y * d[j];
}

/* a (h,) += x * c, elementwise. */
static void add1(double *restrict a, const double *restrict c, double x, int64_t h)
{
    for (int64_t j = 0; j < h; j++)
        a[j] += x * c[j];
}

/* Row i of dW1 from the samples with x[n, i] != 0, two per pass; acc (5, h) scratch; step_max (2, h):
 * this chunk's largest step and |h+ - h-| per column. */
static int w1_row(const struct series_ctx *c, double *acc, double *step_max, int64_t i)
{
    int64_t n = c->b->n, h = c->p->h;
    const double *C = c->w->C, *W1 = c->p->W1 + i * h;
    int even = even_powers_needed(W1, h, c->h);
    double *a1 = acc, *a2 = acc + h, *a3 = acc + 2 * h, *a4 = acc + 3 * h, *a5 = acc + 4 * h;
    for (int64_t j = 0; j < 5 * h; j++)
        acc[j] = 0.0;
    int64_t p = c->b->col_ptr[i], hi = c->b->col_ptr[i + 1];
    if (p < 0 || hi < p || hi > c->b->nnz)
        return 1;
    for (int64_t q = p; q < hi; q++)
        if ((uint64_t)c->b->rows[q] >= (uint64_t)n)
            return 1;
    for (; p + 2 <= hi; p += 2) {
        int64_t r = c->b->rows[p], s = c->b->rows[p + 1];
        double x1 = c->b->col_vals[p], y1 = c->b->col_vals[p + 1];
        double x3 = x1 * x1 * x1, y3 = y1 * y1 * y1;
        double x5 = x3 * x1 * x1, y5 = y3 * y1 * y1;
        add2(a1, C + r * h, C + s * h, x1, y1, h);
        add2(a3, C + (2 * n + r) * h, C + (2 * n + s) * h, x3, y3, h);
        add2(a5, C + (4 * n + r) * h, C + (4 * n + s) * h, x5, y5, h);
        if (even) {
            double x2 = x1 * x1, y2 = y1 * y1;
            double x4 = x2 * x2, y4 = y2 * y2;
            add2(a2, C + (n + r) * h, C + (n + s) * h, x2, y2, h);
            add2(a4, C + (3 * n + r) * h, C + (3 * n + s) * h, x4, y4, h);
        }
    }
    if (p < hi) {
        int64_t r = c->b->rows[p];
        double x1 = c->b->col_vals[p];
        double x2 = x1 * x1;
        double x3 = x2 * x1, x4 = x2 * x2;
        double x5 = x4 * x1;
        add1(a1, C + r * h, x1, h);
        add1(a3, C + (2 * n + r) * h, x3, h);
        add1(a5, C + (4 * n + r) * h, x5, h);
        if (even) {
            add1(a2, C + (n + r) * h, x2, h);
            add1(a4, C + (3 * n + r) * h, x4, h);
        }
    }
    double inv = 0.5 / c->h;
    for (int64_t j = 0; j < h; j++) {
        double big, diff;
        c->g->W1[i * h + j] = weighted(W1[j], c->h, inv, a1[j], a2[j], a3[j], a4[j], a5[j], n, &big, &diff);
        step_max[j] = big > step_max[j] ? big : step_max[j];
        step_max[h + j] = diff > step_max[h + j] ? diff : step_max[h + j];
    }
    return 0;
}

/* Row j of dW2 from every sample; acc (5, k) scratch. */
static void w2_row(const struct series_ctx *c, double *acc, int64_t j)
{
    int64_t n = c->b->n, h = c->p->h, k = c->p->k;
    const double *L = c->w->L;
    for (int64_t q = 0; q < 5 * k; q++)
        acc[q] = 0.0;
    for (int64_t r = 0; r < n; r++) {
        double z1 = c->f->z[r * h + j];
        double z2 = z1 * z1, z3 = z2 * z1, z4 = z2 * z2, z5 = z4 * z1;
        for (int64_t col = 0; col < k; col++) {
            acc[col] += z1 * L[r * k + col];
            acc[k + col] += z2 * L[(n + r) * k + col];
            acc[2 * k + col] += z3 * L[(2 * n + r) * k + col];
            acc[3 * k + col] += z4 * L[(3 * n + r) * k + col];
            acc[4 * k + col] += z5 * L[(4 * n + r) * k + col];
        }
    }
    for (int64_t col = 0; col < k; col++)
        c->g->W2[j * k + col] = weighted(c->p->W2[j * k + col], c->h, 0.5 / c->h, acc[col], acc[k + col], acc[2 * k + col],
                                         acc[3 * k + col], acc[4 * k + col], n, &c->w->steps_w2[j * k + col],
                                         &c->w->steps_w2[h * k + j * k + col]);
}

/* out (m,) = the sums over samples of coef (5, n, m), weighted by the steps of bias (m,); steps (2, m). */
static void bias_sums(double *out, double *steps, const double *coef, const double *bias, int64_t n, int64_t m,
                      double h)
{
    for (int64_t col = 0; col < m; col++) {
        double a1 = 0.0, a2 = 0.0, a3 = 0.0, a4 = 0.0, a5 = 0.0;
        for (int64_t r = 0; r < n; r++) {
            a1 += coef[r * m + col];
            a2 += coef[(n + r) * m + col];
            a3 += coef[(2 * n + r) * m + col];
            a4 += coef[(3 * n + r) * m + col];
            a5 += coef[(4 * n + r) * m + col];
        }
        out[col] = weighted(bias[col], h, 0.5 / h, a1, a2, a3, a4, a5, n, &steps[col], &steps[m + col]);
    }
}

/* Chunk c takes items c, c + chunks, ...: item i < d is row i of dW1, d + j row j of dW2, the last the biases. */
static void products_item(void *arg, int64_t chunk, int slot)
{
    struct series_ctx *c = arg;
    int64_t d = c->b->d, h = c->p->h, k = c->p->k, n = c->b->n;
    double *acc = c->scratch + slot * c->scratch_len;
    double *step_max = c->w->steps_w1 + chunk * 2 * h;
    for (int64_t j = 0; j < 2 * h; j++)
        step_max[j] = 0.0;
    for (int64_t item = chunk; item < d + h + 1; item += c->w->chunks) {
        if (item < d) {
            if (w1_row(c, acc, step_max, item))
                atomic_store(&c->bad, 1);
        } else if (item < d + h) {
            w2_row(c, acc, item - d);
        } else {
            bias_sums(c->g->b1, c->w->steps_b1, c->w->C, c->p->b1, n, h, c->h);
            bias_sums(c->g->b2, c->w->steps_b2, c->w->L, c->p->b2, n, k, c->h);
        }
    }
}

/* -- the remainder bound ------------------------------------------------------- */

/* Bound on |F(s)| for |s| v <= theta (the NumPy reference's growth). */
static double growth(double theta)
{
    double g = INFINITY;
    if (theta < M_LN2)
        g = -2.0 * log(2.0 - exp(theta));
    if (theta < M_PI / 2.0) {
        double g2 = 2.0 * (2.0 * theta - log(cos(theta)));
        g = g2 < g ? g2 : g;
    }
    return g;
}

/* The remainder bound of one gradient entry on the circle of radius r. */
static double bound_at(double r, double width, int is_logit, double step, double diff, double scale_x, double h)
{
    double rho = step * scale_x / r, theta;
    if (rho >= 1.0)
        return INFINITY;
    if (is_logit) {
        theta = r / 2.0;
    } else if (r < M_PI) {
        double c = cos(r / 2.0);
        theta = r / (4.0 * c * c) * width / 2.0;
    } else {
        return INFINITY;
    }
    double delta = diff * scale_x / r;
    double rho2 = rho * rho, rho5 = rho2 * rho2 * rho, q = 1.0 - rho2;
    return growth(theta) * (rho5 * rho2 / q + delta * 3.0 * rho5 / (q * q)) / h;
}

/* 1 if the bound on some radius of RADII is at most limit (the largest radii first). */
static int within(double limit, double width, int is_logit, double step, double diff, double scale_x, double h)
{
    if (step * scale_x == 0.0)
        return 0.0 <= limit;
    for (int i = (int)NRADII - 1; i >= 0; i--)
        if (bound_at(RADII[i], width, is_logit, step, diff, scale_x, h) <= limit)
            return 1;
    return 0;
}

/* units, logits: 1 where the remainder bound is not below the rounding of the result, or where an entry
 * came out non-finite (coefficients of extreme weights that overflowed). */
static void rejected(const struct series_ctx *c)
{
    const sn_series_work *w = c->w;
    int64_t h = c->p->h, k = c->p->k, n = c->b->n;
    double xmax = c->b->xmax, zmax = 0.0;
    for (int64_t i = 0; i < n * h; i++)
        zmax = c->f->z[i] > zmax ? c->f->z[i] : zmax;
    for (int64_t j = 0; j < h; j++) {
        const double *row = c->p->W2 + j * k;
        double lo = row[0], hi = row[0], scale = 0.0, step = 0.0, diff = 0.0;
        for (int64_t col = 0; col < k; col++) {
            lo = row[col] < lo ? row[col] : lo;
            hi = row[col] > hi ? row[col] : hi;
        }
        for (int64_t r = 0; r < n; r++)
            scale = fabs(w->C[r * h + j]) > scale ? fabs(w->C[r * h + j]) : scale;
        for (int64_t ch = 0; ch < w->chunks; ch++) {
            const double *sm = w->steps_w1 + ch * 2 * h;
            step = sm[j] > step ? sm[j] : step;
            diff = sm[h + j] > diff ? sm[h + j] : diff;
        }
        int ok = within(ROUNDING * xmax * scale, hi - lo, 0, step, diff, xmax, c->h);
        ok = ok && within(ROUNDING * scale, hi - lo, 0, w->steps_b1[j], w->steps_b1[h + j], 1.0, c->h);
        int finite = isfinite(c->g->b1[j]);
        for (int64_t i = 0; i < c->p->d; i++)
            finite = finite && isfinite(c->g->W1[i * h + j]);
        w->units[j] = !ok || !finite;
    }
    for (int64_t col = 0; col < k; col++) {
        double scale = 0.0, step = 0.0, diff = 0.0;
        for (int64_t r = 0; r < n; r++)
            scale = fabs(w->L[r * k + col]) > scale ? fabs(w->L[r * k + col]) : scale;
        for (int64_t j = 0; j < h; j++) {
            step = w->steps_w2[j * k + col] > step ? w->steps_w2[j * k + col] : step;
            diff = w->steps_w2[h * k + j * k + col] > diff ? w->steps_w2[h * k + j * k + col] : diff;
        }
        int ok = within(ROUNDING * zmax * scale, 1.0, 1, step, diff, zmax, c->h);
        ok = ok && within(ROUNDING * scale, 1.0, 1, w->steps_b2[col], w->steps_b2[k + col], 1.0, c->h);
        int finite = isfinite(c->g->b2[col]);
        for (int64_t j = 0; j < h; j++)
            finite = finite && isfinite(c->g->W2[j * k + col]);
        w->logits[col] = !ok || !finite;
    }
}

int sn_numgrad_series(const sn_grads *g, const sn_series_work *w, const sn_batch *b, const int64_t *labels,
                      const sn_params *p, const sn_forward_pass *f, double h)
{
    int slots = sn_pool_slots();
    int64_t len = 5 * (p->h > p->k ? p->h : p->k);
    double *scratch = malloc((size_t)slots * (size_t)len * sizeof *scratch);
    if (scratch == NULL)
        return SN_NO_MEMORY;
    for (int64_t col = 0; col < p->k; col++) /* W2^T (k, h): the coefficients loop reads a class's row */
        for (int64_t j = 0; j < p->h; j++)
            w->W2T[col * p->h + j] = p->W2[j * p->k + col];
    struct series_ctx c = {g, w, b, labels, p, f, h, scratch, len, 0};
    sn_parallel_for((b->n + COEF_CHUNK - 1) / COEF_CHUNK, slots, coefficients_item, &c);
    if (atomic_load(&c.bad)) {
        free(scratch);
        return SN_BAD_INDEX;
    }
    sn_parallel_for(w->chunks, slots, products_item, &c);
    rejected(&c);
    free(scratch);
    return atomic_load(&c.bad) ? SN_BAD_INDEX : SN_OK;
}
