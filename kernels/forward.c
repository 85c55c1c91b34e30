/* The network's forward pass and accuracy count: twins of backends/numba/forward.py. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "clones.h"
#include "scratchnet.h"


/* acc (m,) += vals[p] * A[cols[p], :] for p = lo .. hi - 1 in turn; A (d, m).
 * Four terms per pass over acc, each added in turn: the roundings of one term
 * per pass with a quarter of the loads and stores. Returns 1 if a column is
 * not in [0, d) (that term is then skipped), else 0. */
SN_CLONES int sn_add_scaled_rows(double *restrict acc, const int32_t *restrict cols, const double *restrict vals,
                                 int64_t lo, int64_t hi, const double *restrict A, int64_t d, int64_t m)
{
    int bad = 0;
    int64_t p = lo;
    for (; p + 4 <= hi; p += 4) {
        int64_t i0 = cols[p], i1 = cols[p + 1], i2 = cols[p + 2], i3 = cols[p + 3];
        if ((uint64_t)i0 >= (uint64_t)d || (uint64_t)i1 >= (uint64_t)d || (uint64_t)i2 >= (uint64_t)d ||
            (uint64_t)i3 >= (uint64_t)d)
            return 1;
        const double *a0 = A + i0 * m, *a1 = A + i1 * m, *a2 = A + i2 * m, *a3 = A + i3 * m;
        double v0 = vals[p], v1 = vals[p + 1], v2 = vals[p + 2], v3 = vals[p + 3];
        for (int64_t j = 0; j < m; j++)
            acc[j] = (((acc[j] + v0 * a0[j]) + v1 * a1[j]) + v2 * a2[j]) + v3 * a3[j];
    }
    for (; p < hi; p++) {
        int64_t i = cols[p];
        if ((uint64_t)i >= (uint64_t)d)
            return 1;
        const double *a = A + i * m;
        double v = vals[p];
        for (int64_t j = 0; j < m; j++)
            acc[j] += v * a[j];
    }
    return bad;
}

/* (sigmoid(a), sigmoid(-a)) from one exp of -|a|: both to full relative precision. */
static inline void sigmoid_pair(double a, double *z, double *zq)
{
    double e = exp(-fabs(a));
    double big = 1.0 / (1.0 + e);
    double small = e * big;
    *z = a >= 0 ? big : small;
    *zq = a >= 0 ? small : big;
}

/* a1 (h,) = x W1 + b1 over one sample's non-zeros [lo, hi); z, zq = sigmoid(+-a1). 1 on a bad index. */
static int hidden_row(double *a1, double *z, double *zq, const int32_t *cols, const double *vals, int64_t lo,
                      int64_t hi, int64_t nnz, const sn_params *p)
{
    for (int64_t j = 0; j < p->h; j++)
        a1[j] = 0.0;
    if (lo < 0 || hi < lo || hi > nnz || sn_add_scaled_rows(a1, cols, vals, lo, hi, p->W1, p->d, p->h))
        return 1;
    for (int64_t j = 0; j < p->h; j++) {
        a1[j] += p->b1[j];
        sigmoid_pair(a1[j], &z[j], &zq[j]);
    }
    return 0;
}

/* a2 (k,) = z W2 + b2: the hidden units ascending, then + b2. */
static void logit_row(double *a2, const double *z, const sn_params *p)
{
    for (int64_t c = 0; c < p->k; c++)
        a2[c] = 0.0;
    for (int64_t j = 0; j < p->h; j++) {
        double zj = z[j];
        const double *w = p->W2 + j * p->k;
        for (int64_t c = 0; c < p->k; c++)
            a2[c] += zj * w[c];
    }
    for (int64_t c = 0; c < p->k; c++)
        a2[c] += p->b2[c];
}

struct forward_ctx {
    const sn_forward_pass *out;
    const sn_batch *b;
    const sn_params *p;
    _Atomic int bad;
};

int sn_forward_row(const sn_forward_pass *o, const sn_batch *b, const sn_params *p, int64_t r)
{
    int64_t h = p->h, k = p->k;
    int bad = hidden_row(o->a1 + r * h, o->z + r * h, o->zq + r * h, b->cols, b->vals, b->row_ptr[r],
                         b->row_ptr[r + 1], b->nnz, p);
    double *a2 = o->a2 + r * k, *e = o->e + r * k, *y = o->y + r * k;
    logit_row(a2, o->z + r * h, p);
    double m = a2[0];
    for (int64_t j = 1; j < k; j++)
        m = a2[j] > m ? a2[j] : m;
    double s = 0.0;
    for (int64_t j = 0; j < k; j++) {
        e[j] = exp(a2[j] - m);
        s += e[j];
    }
    o->s[r] = s;
    for (int64_t j = 0; j < k; j++)
        y[j] = e[j] / s;
    return bad;
}

static void forward_item(void *arg, int64_t item, int slot)
{
    struct forward_ctx *c = arg;
    int64_t end = (item + 1) * SN_FORWARD_CHUNK < c->b->n ? (item + 1) * SN_FORWARD_CHUNK : c->b->n;
    for (int64_t r = item * SN_FORWARD_CHUNK; r < end; r++)
        if (sn_forward_row(c->out, c->b, c->p, r))
            atomic_store(&c->bad, 1);
}

int sn_forward(const sn_forward_pass *out, const sn_batch *b, const sn_params *p)
{
    struct forward_ctx c = {out, b, p, 0};
    sn_parallel_for((b->n + SN_FORWARD_CHUNK - 1) / SN_FORWARD_CHUNK, sn_pool_slots(), forward_item, &c);
    return atomic_load(&c.bad) ? SN_BAD_INDEX : SN_OK;
}

struct count_ctx {
    int64_t *counts;
    double *scratch; /* (slots, 3 h + k) */
    const sn_sparse_rows *data;
    const int64_t *labels;
    const sn_params *p;
    _Atomic int bad;
};

int sn_count_correct_rows(int64_t *correct, double *scratch, const sn_sparse_rows *data, const int64_t *labels,
                          const sn_params *p, int64_t lo, int64_t hi)
{
    int64_t h = p->h, k = p->k;
    double *a1 = scratch, *z = a1 + h, *zq = z + h, *a2 = zq + h;
    int bad = 0;
    *correct = 0;
    for (int64_t r = lo; r < hi; r++) {
        bad |= hidden_row(a1, z, zq, data->cols, data->vals, data->row_ptr[r], data->row_ptr[r + 1], data->nnz, p);
        logit_row(a2, z, p);
        int64_t best = 0; /* the first largest, as numpy.argmax */
        for (int64_t j = 1; j < k; j++)
            best = a2[j] > a2[best] ? j : best;
        *correct += best == labels[r];
    }
    return bad;
}

static void count_item(void *arg, int64_t item, int slot)
{
    struct count_ctx *c = arg;
    int64_t end = (item + 1) * SN_ACCURACY_CHUNK < c->data->n ? (item + 1) * SN_ACCURACY_CHUNK : c->data->n;
    if (sn_count_correct_rows(&c->counts[item], c->scratch + slot * (3 * c->p->h + c->p->k), c->data, c->labels, c->p,
                              item * SN_ACCURACY_CHUNK, end))
        atomic_store(&c->bad, 1);
}

int sn_count_correct(int64_t *correct, const sn_sparse_rows *data, const int64_t *labels, const sn_params *p)
{
    int64_t items = (data->n + SN_ACCURACY_CHUNK - 1) / SN_ACCURACY_CHUNK;
    int slots = sn_pool_slots();
    int64_t *counts = malloc((size_t)(items > 0 ? items : 1) * sizeof *counts);
    double *scratch = malloc((size_t)slots * (size_t)(3 * p->h + p->k) * sizeof *scratch);
    int status = SN_NO_MEMORY;
    *correct = 0;
    if (counts && scratch) {
        struct count_ctx c = {counts, scratch, data, labels, p, 0};
        sn_parallel_for(items, slots, count_item, &c);
        for (int64_t i = 0; i < items; i++) /* exact integers: the order does not matter */
            *correct += counts[i];
        status = atomic_load(&c.bad) ? SN_BAD_INDEX : SN_OK;
    }
    free(counts);
    free(scratch);
    return status;
}
