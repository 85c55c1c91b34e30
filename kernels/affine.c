/* Affine kernels: twins of affine and affine_weight_grad in backends/numba_kernels.py.
 *
 * Both compute out[o] = sum of x-entry * row of a matrix over the non-zero
 * x-entries only: a zero would add 0 * row = 0 (MNIST digits are about 81%
 * zeros). The non-zeros are listed first without a branch, then summed
 * four per pass over out[o], each term added in turn: the same roundings as
 * one term per pass and the same order as the Numba twin, so the two agree
 * bit for bit. Each parallel iteration owns one row of out, so no result
 * depends on the thread count.
 */
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "clones.h"
#include "scratchnet.h"

/* out (m,) += vals[k] * A[idx[k], :] for k = 0 .. cnt - 1 in turn. A (., m) */
SN_CLONES static void add_scaled_rows(double *restrict out, const double *restrict vals,
                                      const int64_t *restrict idx, int64_t cnt, const double *restrict A, int64_t m)
{
    int64_t k = 0;
    for (; k + 4 <= cnt; k += 4) {
        const double *a0 = A + idx[k] * m, *a1 = A + idx[k + 1] * m, *a2 = A + idx[k + 2] * m,
                     *a3 = A + idx[k + 3] * m;
        double v0 = vals[k], v1 = vals[k + 1], v2 = vals[k + 2], v3 = vals[k + 3];
        for (int64_t j = 0; j < m; j++)
            out[j] = (((out[j] + v0 * a0[j]) + v1 * a1[j]) + v2 * a2[j]) + v3 * a3[j];
    }
    for (; k < cnt; k++) {
        const double *a = A + idx[k] * m;
        double v = vals[k];
        for (int64_t j = 0; j < m; j++)
            out[j] += v * a[j];
    }
}

/* Threads a parallel region can have: the size of the per-thread workspace. */
static int64_t max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int64_t thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int sn_affine(double *out, const double *x, const double *W, const double *b, int64_t n, int64_t d, int64_t m)
{
    int64_t threads = max_threads();
    int64_t *idx_all = malloc((size_t)(threads * d) * sizeof *idx_all);
    double *vals_all = malloc((size_t)(threads * d) * sizeof *vals_all);
    int status = -1;
    if (idx_all && vals_all) { /* d >= 1 (checked by the caller): NULL means no memory */
        /* One row of out per iteration: the sum over i ascending, then + b
         * (as NumPy's x @ W + b). */
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < n; r++) {
            int64_t *idx = idx_all + thread_num() * d;
            double *vals = vals_all + thread_num() * d;
            const double *xr = x + r * d;
            double *o = out + r * m;
            int64_t cnt = 0;
            for (int64_t i = 0; i < d; i++) {
                idx[cnt] = i;
                vals[cnt] = xr[i];
                cnt += xr[i] != 0.0;
            }
            for (int64_t j = 0; j < m; j++)
                o[j] = 0.0;
            add_scaled_rows(o, vals, idx, cnt, W, m);
            for (int64_t j = 0; j < m; j++)
                o[j] += b[j];
        }
        status = 0;
    }
    free(idx_all);
    free(vals_all);
    return status;
}

int sn_affine_weight_grad(double *out, const double *x, const double *dout, int64_t n, int64_t d, int64_t m)
{
    int64_t threads = max_threads();
    int64_t *idx_all = malloc((size_t)(threads * n) * sizeof *idx_all);
    double *vals_all = malloc((size_t)(threads * n) * sizeof *vals_all);
    int status = -1;
    if (idx_all && vals_all) { /* n >= 1 (checked by the caller) */
        /* One row of out per iteration (input i): the sum over the samples
         * in ascending order. */
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < d; i++) {
            int64_t *idx = idx_all + thread_num() * n;
            double *vals = vals_all + thread_num() * n;
            double *o = out + i * m;
            int64_t cnt = 0;
            for (int64_t r = 0; r < n; r++) {
                idx[cnt] = r;
                vals[cnt] = x[r * d + i];
                cnt += x[r * d + i] != 0.0;
            }
            for (int64_t j = 0; j < m; j++)
                o[j] = 0.0;
            add_scaled_rows(o, vals, idx, cnt, dout, m);
        }
        status = 0;
    }
    free(idx_all);
    free(vals_all);
    return status;
}
