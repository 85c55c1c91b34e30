/* sigmoid and softmax: twins of backends/numba/activations.py. */
#include <math.h>
#include <string.h>

#include "scratchnet.h"

#define SIGMOID_CHUNK 4096 /* elements per parallel item */
#define SOFTMAX_CHUNK 256  /* rows per parallel item */

/* c ? a : b without a branch. gcc turns a ?: of doubles into a jump, which
 * mispredicts about half the time on data of mixed signs and then costs
 * more than the exp; a bit mask cannot. */
static inline double select_double(int c, double a, double b)
{
    uint64_t ua, ub, mask = (uint64_t)0 - (uint64_t)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & mask) | (ub & ~mask);
    memcpy(&a, &ua, sizeof a);
    return a;
}

struct sigmoid_ctx {
    double *out;
    const double *x;
    int64_t m;
};

static void sigmoid_item(void *arg, int64_t item, int slot)
{
    const struct sigmoid_ctx *c = arg;
    int64_t end = (item + 1) * SIGMOID_CHUNK < c->m ? (item + 1) * SIGMOID_CHUNK : c->m;
    /* exp only ever sees -|v| <= 0, so it cannot overflow; NaN stays NaN. */
    for (int64_t i = item * SIGMOID_CHUNK; i < end; i++) {
        double v = c->x[i];
        double e = exp(-fabs(v));
        double r = 1.0 / (1.0 + e);
        c->out[i] = select_double(v >= 0, r, e * r);
    }
}

void sn_sigmoid(double *out, const double *x, int64_t m)
{
    struct sigmoid_ctx c = {out, x, m};
    sn_parallel_for((m + SIGMOID_CHUNK - 1) / SIGMOID_CHUNK, sn_pool_slots(), sigmoid_item, &c);
}

struct softmax_ctx {
    double *out;
    const double *x;
    int64_t n, k;
};

static void softmax_item(void *arg, int64_t item, int slot)
{
    const struct softmax_ctx *c = arg;
    int64_t end = (item + 1) * SOFTMAX_CHUNK < c->n ? (item + 1) * SOFTMAX_CHUNK : c->n;
    for (int64_t i = item * SOFTMAX_CHUNK; i < end; i++) {
        const double *xi = c->x + i * c->k;
        double *oi = c->out + i * c->k;
        double mx = xi[0];
        for (int64_t j = 1; j < c->k; j++)
            mx = xi[j] > mx ? xi[j] : mx;
        double s = 0.0;
        for (int64_t j = 0; j < c->k; j++) {
            double e = exp(xi[j] - mx);
            oi[j] = e;
            s += e;
        }
        for (int64_t j = 0; j < c->k; j++)
            oi[j] /= s; /* division, not * (1 / s): agrees with NumPy to the ulp */
    }
}

void sn_softmax(double *out, const double *x, int64_t n, int64_t k)
{
    struct softmax_ctx c = {out, x, n, k};
    sn_parallel_for((n + SOFTMAX_CHUNK - 1) / SOFTMAX_CHUNK, sn_pool_slots(), softmax_item, &c);
}
