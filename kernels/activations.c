/* Activation kernels: twins of sigmoid and softmax in backends/numba_kernels.py. */
#include <math.h>
#include <string.h>

#include "scratchnet.h"

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

void sn_sigmoid(double *out, const double *x, int64_t m)
{
    /* exp only ever sees -|v| <= 0, so it cannot overflow; NaN stays NaN
     * (v >= 0 is false, e * r is NaN). */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++) {
        double v = x[i];
        double e = exp(-fabs(v));
        double r = 1.0 / (1.0 + e);
        out[i] = select_double(v >= 0, r, e * r);
    }
}

void sn_softmax(double *out, const double *x, int64_t n, int64_t k)
{
    /* One row per iteration: a thread writes only its own rows. The sum runs
     * left to right, as in the Numba kernel. A NaN anywhere in a row makes
     * its exp, hence the sum, hence the whole row NaN, like NumPy. */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const double *xi = x + i * k;
        double *oi = out + i * k;
        double mx = xi[0];
        for (int64_t j = 1; j < k; j++)
            mx = xi[j] > mx ? xi[j] : mx;
        double s = 0.0;
        for (int64_t j = 0; j < k; j++) {
            double e = exp(xi[j] - mx);
            oi[j] = e;
            s += e;
        }
        for (int64_t j = 0; j < k; j++)
            oi[j] /= s;  /* division, not * (1 / s): agrees with NumPy to the ulp */
    }
}
