/* Sparse rows and batches: twins of backends/numba/sparse.py. */
#include <math.h>
#include <stdlib.h>

#include "scratchnet.h"

#define ROW_CHUNK 256 /* rows per parallel item */

struct rows_ctx {
    int64_t *counts;
    int32_t *cols;
    double *vals;
    const int64_t *row_ptr;
    const void *x;
    int f32;
    int64_t n, d;
};

static inline double at(const void *x, int f32, int64_t i)
{
    return f32 ? (double)((const float *)x)[i] : ((const double *)x)[i];
}

static void count_item(void *arg, int64_t item, int slot)
{
    const struct rows_ctx *c = arg;
    int64_t end = (item + 1) * ROW_CHUNK < c->n ? (item + 1) * ROW_CHUNK : c->n;
    for (int64_t r = item * ROW_CHUNK; r < end; r++) {
        int64_t cnt = 0;
        for (int64_t i = 0; i < c->d; i++)
            cnt += at(c->x, c->f32, r * c->d + i) != 0.0;
        c->counts[r] = cnt;
    }
}

static void fill_item(void *arg, int64_t item, int slot)
{
    const struct rows_ctx *c = arg;
    int64_t end = (item + 1) * ROW_CHUNK < c->n ? (item + 1) * ROW_CHUNK : c->n;
    for (int64_t r = item * ROW_CHUNK; r < end; r++) {
        int64_t p = c->row_ptr[r], hi = c->row_ptr[r + 1];
        for (int64_t i = 0; i < c->d && p < hi; i++) { /* never past the row's end, even if counts lied */
            double v = at(c->x, c->f32, r * c->d + i);
            if (v != 0.0) {
                c->cols[p] = (int32_t)i;
                c->vals[p] = v;
                p++;
            }
        }
    }
}

void sn_row_counts(int64_t *counts, const void *x, int f32, int64_t n, int64_t d)
{
    struct rows_ctx c = {counts, NULL, NULL, NULL, x, f32, n, d};
    sn_parallel_for((n + ROW_CHUNK - 1) / ROW_CHUNK, sn_pool_slots(), count_item, &c);
}

void sn_fill_rows(int32_t *cols, double *vals, const int64_t *row_ptr, const void *x, int f32, int64_t n, int64_t d)
{
    struct rows_ctx c = {NULL, cols, vals, row_ptr, x, f32, n, d};
    sn_parallel_for((n + ROW_CHUNK - 1) / ROW_CHUNK, sn_pool_slots(), fill_item, &c);
}

int sn_batch_take(sn_batch *out, const sn_sparse_rows *data, const int64_t *take)
{
    int64_t p = 0, nnz = out->nnz;
    out->row_ptr[0] = 0;
    for (int64_t b = 0; b < out->n; b++) {
        int64_t r = take[b];
        if (r < 0 || r >= data->n)
            return SN_BAD_INDEX;
        int64_t lo = data->row_ptr[r], hi = data->row_ptr[r + 1];
        if (lo < 0 || hi < lo || hi > data->nnz)
            return SN_BAD_INDEX;
        for (int64_t q = lo; q < hi; q++) {
            if (p >= nnz)
                return SN_BAD_INDEX;
            out->cols[p] = data->cols[q];
            out->vals[p] = data->vals[q];
            p++;
        }
        out->row_ptr[b + 1] = p;
    }
    return p == nnz ? sn_columns(out) : SN_BAD_INDEX;
}

int sn_columns(sn_batch *out)
{
    int64_t n = out->n, d = out->d, nnz = out->nnz;
    if (out->row_ptr[0] != 0 || out->row_ptr[n] != nnz)
        return SN_BAD_INDEX;
    for (int64_t r = 0; r < n; r++)
        if (out->row_ptr[r + 1] < out->row_ptr[r])
            return SN_BAD_INDEX;
    int64_t *fill = malloc((size_t)(d > 0 ? d : 1) * sizeof *fill);
    if (fill == NULL)
        return SN_NO_MEMORY;
    for (int64_t i = 0; i <= d; i++)
        out->col_ptr[i] = 0;
    for (int64_t p = 0; p < nnz; p++) {
        if (out->cols[p] < 0 || out->cols[p] >= d) {
            free(fill);
            return SN_BAD_INDEX;
        }
        out->col_ptr[out->cols[p] + 1]++;
    }
    for (int64_t i = 0; i < d; i++) {
        out->col_ptr[i + 1] += out->col_ptr[i];
        fill[i] = out->col_ptr[i];
    }
    double xmax = 0.0;
    for (int64_t r = 0; r < n; r++) {
        for (int64_t p = out->row_ptr[r]; p < out->row_ptr[r + 1]; p++) {
            int64_t i = out->cols[p];
            out->rows[fill[i]] = (int32_t)r;
            out->col_vals[fill[i]] = out->vals[p];
            fill[i]++;
            xmax = fabs(out->vals[p]) > xmax ? fabs(out->vals[p]) : xmax;
        }
    }
    out->xmax = xmax;
    free(fill);
    return SN_OK;
}
