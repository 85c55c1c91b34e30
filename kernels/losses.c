/* cross_entropy_error: twin of backends/numba/losses.py. */
#include <math.h>
#include <stdlib.h>

#include "scratchnet.h"

struct ce_ctx {
    double *partial;
    const double *y;
    const int64_t *t;
    int64_t n, k;
};

/* partial[b] = sum of log(y[i, t[i]] + SN_DELTA) over the samples of block b. */
static void block_item(void *arg, int64_t b, int slot)
{
    const struct ce_ctx *c = arg;
    int64_t end = (b + 1) * SN_SUM_BLOCK < c->n ? (b + 1) * SN_SUM_BLOCK : c->n;
    double s = 0.0;
    for (int64_t i = b * SN_SUM_BLOCK; i < end; i++)
        s += log(c->y[i * c->k + c->t[i]] + SN_DELTA);
    c->partial[b] = s;
}

double sn_cross_entropy_error(const double *y, const int64_t *t, int64_t n, int64_t k)
{
    /* Each block of SN_SUM_BLOCK samples is summed into its own partial; the
     * partials are then added in order: the result is fixed by n alone. */
    int64_t nblocks = (n + SN_SUM_BLOCK - 1) / SN_SUM_BLOCK;
    double one, *partial = nblocks == 1 ? &one : malloc((size_t)nblocks * sizeof(double));
    struct ce_ctx c = {partial, y, t, n, k};
    double total = 0.0;
    if (partial == NULL) { /* no room for the partials: the same blocks in the same order */
        c.partial = &one;
        for (int64_t b = 0; b < nblocks; b++) {
            block_item(&c, b, 0);
            total += one;
        }
        return -total / (double)n;
    }
    sn_parallel_for(nblocks, sn_pool_slots(), block_item, &c);
    for (int64_t b = 0; b < nblocks; b++)
        total += partial[b];
    if (partial != &one)
        free(partial);
    return -total / (double)n;
}
