/* Loss kernels: twin of cross_entropy_error in backends/numba_kernels.py. */
#include <math.h>
#include <stdlib.h>

#include "scratchnet.h"

/* sum of log(y[i, t[i]] + 1e-7) over the samples of block b. y (n, k), t (n,) */
static double block_log_sum(const double *y, const int64_t *t, int64_t n, int64_t k, int64_t b)
{
    int64_t end = (b + 1) * SN_SUM_BLOCK < n ? (b + 1) * SN_SUM_BLOCK : n;
    double s = 0.0;
    for (int64_t i = b * SN_SUM_BLOCK; i < end; i++)
        s += log(y[i * k + t[i]] + SN_DELTA);
    return s;
}

double sn_cross_entropy_error(const double *y, const int64_t *t, int64_t n, int64_t k)
{
    /* Each block of SN_SUM_BLOCK samples is summed serially into its own
     * partial[b]; the partials are then added in order. The result is thus
     * fixed by n alone, never by the thread count or schedule, and equals
     * the Numba kernel's bit for bit (same blocks, same order). */
    int64_t nblocks = (n + SN_SUM_BLOCK - 1) / SN_SUM_BLOCK;
    double total = 0.0;
    double *partial = malloc((size_t)nblocks * sizeof(double));
    if (partial == NULL) {
        /* No room for the partials: the same blocks in the same order, serially. */
        for (int64_t b = 0; b < nblocks; b++)
            total += block_log_sum(y, t, n, k, b);
        return -total / (double)n;
    }
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nblocks; b++)
        partial[b] = block_log_sum(y, t, n, k, b);
    for (int64_t b = 0; b < nblocks; b++)
        total += partial[b];
    free(partial);
    return -total / (double)n;
}
