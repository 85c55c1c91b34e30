/* Backpropagation through the chapter's loss: twin of backends/numba/backprop.py. */
#include <stdatomic.h>

#include "scratchnet.h"

#define ITEM_CHUNKS 64 /* parallel items of weight_gradients; chunk c takes rows c, c + 64, ... */

/* da2 (n, k) = (y - onehot) y_t / (y_t + SN_DELTA) / n (TwoLayerNet.gradient: why the factor);
 * da1 (n, h) = (da2 W2^T) z zq. Serial. */
static void output_deltas(const sn_backprop_work *w, const sn_forward_pass *f, const int64_t *labels, const sn_params *p,
                          int64_t n)
{
    int64_t h = p->h, k = p->k;
    for (int64_t r = 0; r < n; r++) {
        int64_t t = labels[r];
        double y_t = f->y[r * k + t];
        double g = y_t / (y_t + SN_DELTA) / (double)n;
        for (int64_t c = 0; c < k; c++)
            w->da2[r * k + c] = (c == t ? f->y[r * k + c] - 1.0 : f->y[r * k + c]) * g;
        for (int64_t j = 0; j < h; j++) {
            double acc = 0.0;
            for (int64_t c = 0; c < k; c++)
                acc += w->da2[r * k + c] * p->W2[j * k + c];
            w->da1[r * h + j] = acc * f->z[r * h + j] * f->zq[r * h + j];
        }
    }
}

struct weights_ctx {
    const sn_grads *g;
    const sn_backprop_work *w;
    const sn_batch *b;
    const sn_forward_pass *f;
    const sn_params *p;
    _Atomic int bad;
};

/* Row i of dW1 = sum over the samples with x[n, i] != 0 (ascending) of x[n, i] da1[n, :]. */
static int w1_row(const struct weights_ctx *c, int64_t i)
{
    int64_t h = c->p->h, n = c->b->n;
    double *row = c->g->W1 + i * h;
    for (int64_t j = 0; j < h; j++)
        row[j] = 0.0;
    int64_t lo = c->b->col_ptr[i], hi = c->b->col_ptr[i + 1];
    if (lo < 0 || hi < lo || hi > c->b->nnz)
        return 1;
    return sn_add_scaled_rows(row, c->b->rows, c->b->col_vals, lo, hi, c->w->da1, n, h);
}

/* out (m,) = sum over rows (ascending) of a (n, m). */
static void column_sums(double *out, const double *a, int64_t n, int64_t m)
{
    for (int64_t c = 0; c < m; c++) {
        double acc = 0.0;
        for (int64_t r = 0; r < n; r++)
            acc += a[r * m + c];
        out[c] = acc;
    }
}

static void weights_item(void *arg, int64_t chunk, int slot)
{
    struct weights_ctx *c = arg;
    int64_t d = c->b->d, h = c->p->h, k = c->p->k, n = c->b->n;
    for (int64_t item = chunk; item < d + h + 1; item += ITEM_CHUNKS) {
        if (item < d) {
            if (w1_row(c, item))
                atomic_store(&c->bad, 1);
        } else if (item < d + h) {
            int64_t j = item - d;
            for (int64_t col = 0; col < k; col++) {
                double acc = 0.0;
                for (int64_t r = 0; r < n; r++)
                    acc += c->f->z[r * h + j] * c->w->da2[r * k + col];
                c->g->W2[j * k + col] = acc;
            }
        } else {
            column_sums(c->g->b1, c->w->da1, n, h);
            column_sums(c->g->b2, c->w->da2, n, k);
        }
    }
}

int sn_backprop(const sn_grads *g, const sn_backprop_work *w, const sn_batch *b, const int64_t *labels,
                const sn_params *p, const sn_forward_pass *f)
{
    output_deltas(w, f, labels, p, b->n);
    struct weights_ctx c = {g, w, b, f, p, 0};
    sn_parallel_for(ITEM_CHUNKS, sn_pool_slots(), weights_item, &c);
    return atomic_load(&c.bad) ? SN_BAD_INDEX : SN_OK;
}
