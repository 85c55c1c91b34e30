/* The training engine: a stretch of SGD iterations in one call (the contract of issue 18; the numba twin
 * is backends/numba's train_stretch).
 *
 * Iteration s is training._iteration / _step through backends/c.py: batch_take, the gradient kernels,
 * params - lr * grads, the forward pass and cross_entropy_error of the updated net, each kernel called
 * on the same values in the same order, so every bit agrees with that path at any thread count.
 *
 * Only the timing of independent work differs. The loss of iteration s (the forward pass of batch s
 * through the updated parameters U_s) and the gradient of iteration s + 1 both start from U_s, and a
 * batch depends on nothing but take; so the loss rows of s and the copy of batch s + 2 run as extra
 * items of the first parallel job of iteration s + 1's gradient (sn_pool_attach), and U_s is committed
 * once its loss is known to be finite. Parallel jobs per iteration: two for every method (series:
 * coefficients, products; perturbed: samples, hidden units; backprop: forward, weights), against three
 * one call at a time, plus two when the series bound sends units or logits to the perturbed method.
 * Two is the least: a gradient entry sums over every sample of the batch, so each method's first loop
 * must end before its second begins.
 *
 * One difference from the Numba twin: an iteration whose series bound sends units or logits to the
 * perturbed method is computed here (the two extra jobs above), where the twin leaves it to the
 * per-iteration path; both compute it with the same kernels, so the bits are the same.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "scratchnet.h"

#define SERIES_CHUNKS 64 /* work chunks of the series products (backends/c.py's per call); no result depends on it */
#define FAIL 1           /* an iteration's gradient, update or loss was not finite */

/* -- one block for every workspace ------------------------------------------ */

/* Carves arrays out of one allocation; with base NULL it only adds up their sizes. */
struct arena {
    char *base;
    size_t used;
};

static void *carve(struct arena *a, size_t count, size_t size)
{
    void *p = a->base ? a->base + a->used : NULL;
    a->used += (count * size + 63) / 64 * 64; /* every array on its own cache lines */
    return p;
}

struct engine {
    const sn_sparse_rows *data;
    const int64_t *labels; /* (data n,) */
    const sn_stretch *run;
    int64_t n, d, h, k;
    sn_batch batch[3];        /* iterations s % 3: the loss rows of s - 1, the gradient of s, the copy of s + 1 */
    int64_t *batch_labels[3]; /* (n,) each */
    sn_forward_pass fwd;      /* the gradient's forward pass */
    sn_forward_pass loss_fwd; /* the loss's */
    sn_grads g;
    sn_params_rw state[2]; /* [0] the caller's arrays, [1] ours: the committed parameters and the pending U */
    sn_series_work series;
    sn_perturbed_work perturbed;
    sn_backprop_work backprop;
    uint8_t *units, *logits; /* all ones: the perturbed method for every unit and logit */
};

static void carve_forward(struct arena *a, sn_forward_pass *f, int64_t n, int64_t h, int64_t k)
{
    f->a1 = carve(a, n * h, sizeof(double));
    f->z = carve(a, n * h, sizeof(double));
    f->zq = carve(a, n * h, sizeof(double));
    f->a2 = carve(a, n * k, sizeof(double));
    f->e = carve(a, n * k, sizeof(double));
    f->s = carve(a, n, sizeof(double));
    f->y = carve(a, n * k, sizeof(double));
}

/* Every workspace of the stretch, for batches of up to max_nnz non-zeros: the arrays backends/c.py
 * allocates per call, here once. */
static void carve_engine(struct arena *a, struct engine *e, int64_t max_nnz)
{
    int64_t n = e->n, d = e->d, h = e->h, k = e->k, dpad = (d + SN_LANES - 1) / SN_LANES * SN_LANES;
    for (int i = 0; i < 3; i++) {
        sn_batch *b = &e->batch[i];
        b->n = n, b->d = d;
        b->row_ptr = carve(a, n + 1, sizeof(int64_t));
        b->cols = carve(a, max_nnz, sizeof(int32_t));
        b->vals = carve(a, max_nnz, sizeof(double));
        b->col_ptr = carve(a, d + 1, sizeof(int64_t));
        b->rows = carve(a, max_nnz, sizeof(int32_t));
        b->col_vals = carve(a, max_nnz, sizeof(double));
        e->batch_labels[i] = carve(a, n, sizeof(int64_t));
    }
    carve_forward(a, &e->fwd, n, h, k);
    carve_forward(a, &e->loss_fwd, n, h, k);
    e->g.W1 = carve(a, d * h, sizeof(double));
    e->g.b1 = carve(a, h, sizeof(double));
    e->g.W2 = carve(a, h * k, sizeof(double));
    e->g.b2 = carve(a, k, sizeof(double));
    sn_params_rw *u = &e->state[1];
    u->W1 = carve(a, d * h, sizeof(double));
    u->b1 = carve(a, h, sizeof(double));
    u->W2 = carve(a, h * k, sizeof(double));
    u->b2 = carve(a, k, sizeof(double));
    u->d = d, u->h = h, u->k = k;
    int method = e->run->method;
    if (method == SN_SERIES) {
        sn_series_work *w = &e->series;
        w->C = carve(a, 5 * n * h, sizeof(double));
        w->L = carve(a, 5 * n * k, sizeof(double));
        w->W2T = carve(a, k * h, sizeof(double));
        w->steps_w1 = carve(a, SERIES_CHUNKS * 2 * h, sizeof(double));
        w->steps_w2 = carve(a, 2 * h * k, sizeof(double));
        w->steps_b1 = carve(a, 2 * h, sizeof(double));
        w->steps_b2 = carve(a, 2 * k, sizeof(double));
        w->units = carve(a, h, 1);
        w->logits = carve(a, k, 1);
        w->chunks = SERIES_CHUNKS;
    }
    if (method == SN_SERIES || method == SN_PERTURBED) { /* the series falls back on the perturbed method */
        sn_perturbed_work *w = &e->perturbed;
        w->slot = carve(a, max_nnz, sizeof(int64_t));
        w->value = carve(a, n * d, sizeof(double));
        w->m_plus = carve(a, n * dpad, sizeof(double));
        w->m_minus = carve(a, n * dpad, sizeof(double));
        w->ndist = carve(a, n, sizeof(int64_t));
        w->xmax = carve(a, n, sizeof(double));
    }
    if (method == SN_PERTURBED) {
        e->units = carve(a, h, 1);
        e->logits = carve(a, k, 1);
    }
    if (method == SN_BACKPROP) {
        e->backprop.da2 = carve(a, n * k, sizeof(double));
        e->backprop.da1 = carve(a, n * h, sizeof(double));
    }
}

/* -- one iteration's pieces ---------------------------------------------------- */

/* The non-zeros of iteration s's batch, or -1 if a row of take or its row_ptr is out of range. */
static int64_t batch_nnz(const struct engine *e, int64_t s)
{
    const sn_sparse_rows *data = e->data;
    const int64_t *take = e->run->take + s * e->n;
    int64_t nnz = 0;
    for (int64_t b = 0; b < e->n; b++) {
        int64_t r = take[b];
        if (r < 0 || r >= data->n)
            return -1;
        int64_t lo = data->row_ptr[r], hi = data->row_ptr[r + 1];
        if (lo < 0 || hi < lo || hi > data->nnz)
            return -1;
        nnz += hi - lo;
    }
    return nnz;
}

/* batch[s % 3] and its labels = iteration s's rows of data (kernels.batch_take, data.labels[rows]). */
static int take_batch(struct engine *e, int64_t s)
{
    sn_batch *b = &e->batch[s % 3];
    const int64_t *take = e->run->take + s * e->n;
    b->nnz = batch_nnz(e, s);
    if (b->nnz < 0)
        return SN_BAD_INDEX;
    for (int64_t i = 0; i < e->n; i++)
        e->batch_labels[s % 3][i] = e->labels[take[i]];
    return sn_batch_take(b, e->data, take);
}

static sn_params view(const sn_params_rw *q)
{
    return (sn_params){q->W1, q->b1, q->W2, q->b2, q->d, q->h, q->k};
}

static int all_finite(const double *x, int64_t m)
{
    int finite = 1;
    for (int64_t i = 0; i < m; i++)
        finite &= isfinite(x[i]) != 0;
    return finite;
}

/* net.forward_batch's check: x W1 + b1 and the logits finite. */
static int forward_finite(const sn_forward_pass *f, int64_t n, int64_t h, int64_t k)
{
    return all_finite(f->a1, n * h) && all_finite(f->a2, n * k);
}

/* out (m,) = p - lr * g, as NumPy's params[key] - learning_rate * grads[key]; 0 if an entry is not finite. */
static int step_array(double *out, const double *p, const double *g, int64_t m, double lr)
{
    int finite = 1;
    for (int64_t i = 0; i < m; i++) {
        double step = lr * g[i]; /* rounded on its own: -ffp-contract=off, no FMA */
        out[i] = p[i] - step;
        finite &= isfinite(out[i]) != 0;
    }
    return finite;
}

static int update(const sn_params_rw *out, const sn_params_rw *p, const sn_grads *g, double lr)
{
    int64_t d = p->d, h = p->h, k = p->k;
    int finite = step_array(out->W1, p->W1, g->W1, d * h, lr);
    finite &= step_array(out->b1, p->b1, g->b1, h, lr);
    finite &= step_array(out->W2, p->W2, g->W2, h * k, lr);
    finite &= step_array(out->b2, p->b2, g->b2, k, lr);
    return finite;
}

static void copy_params(const sn_params_rw *out, const sn_params_rw *p)
{
    memcpy(out->W1, p->W1, (size_t)(p->d * p->h) * sizeof(double));
    memcpy(out->b1, p->b1, (size_t)p->h * sizeof(double));
    memcpy(out->W2, p->W2, (size_t)(p->h * p->k) * sizeof(double));
    memcpy(out->b2, p->b2, (size_t)p->k * sizeof(double));
}

/* The gradient of iteration s at p into e->g and its forward pass into e->fwd: net.numerical_gradient_batch
 * (series, then the perturbed method where the bound rejects it; or perturbed) or net.gradient_batch. */
static int gradient(struct engine *e, int64_t s, const sn_params *p)
{
    const sn_batch *b = &e->batch[s % 3];
    const int64_t *labels = e->batch_labels[s % 3];
    double h = e->run->h;
    int status;
    if (e->run->method == SN_PERTURBED)
        return sn_numgrad_perturbed(&e->g, &e->perturbed, b, labels, p, &e->fwd, h, e->units, e->logits);
    if (e->run->method == SN_BACKPROP) {
        status = sn_forward(&e->fwd, b, p);
        return status != SN_OK ? status : sn_backprop(&e->g, &e->backprop, b, labels, p, &e->fwd);
    }
    status = sn_numgrad_series(&e->g, &e->series, b, labels, p, &e->fwd, h);
    if (status != SN_OK)
        return status;
    int rejected = 0;
    for (int64_t j = 0; j < e->h; j++)
        rejected |= e->series.units[j];
    for (int64_t c = 0; c < e->k; c++)
        rejected |= e->series.logits[c];
    return rejected ? sn_numgrad_perturbed(&e->g, &e->perturbed, b, labels, p, &e->fwd, h, e->series.units,
                                           e->series.logits)
                    : SN_OK;
}

/* -- the work beside the gradient's first job ----------------------------------- */

/* Item 0: batch s + 1 (if next); then the loss rows of batch s - 1 (if loss), SN_FORWARD_CHUNK per item. */
struct beside {
    struct engine *e;
    int64_t next;            /* the iteration whose batch to take, or -1 */
    const sn_batch *loss;    /* the batch of the loss rows, or NULL */
    sn_params at;            /* the parameters of the loss rows */
    int take_status;
    _Atomic int bad;
};

static void beside_item(void *arg, int64_t item, int slot)
{
    struct beside *c = arg;
    if (c->next >= 0) {
        if (item == 0) {
            c->take_status = take_batch(c->e, c->next);
            return;
        }
        item--;
    }
    int64_t n = c->e->n, end = (item + 1) * SN_FORWARD_CHUNK < n ? (item + 1) * SN_FORWARD_CHUNK : n;
    for (int64_t r = item * SN_FORWARD_CHUNK; r < end; r++)
        if (sn_forward_row(&c->e->loss_fwd, c->loss, &c->at, r))
            atomic_store(&c->bad, 1);
}

/* loss = the chapter's loss of batch s after the update, from e->loss_fwd; FAIL unless it is finite. */
static int loss_of(struct engine *e, int64_t s, double *loss)
{
    if (!forward_finite(&e->loss_fwd, e->n, e->h, e->k))
        return FAIL;
    *loss = sn_cross_entropy_error(e->loss_fwd.y, e->batch_labels[s % 3], e->n, e->k);
    return isfinite(*loss) ? SN_OK : FAIL;
}

/* The stretch with its workspace allocated and batch 0 taken. *committed: the state[] holding the
 * parameters after *done iterations. */
static int stretch(struct engine *e, int64_t *done, double *losses, int *committed)
{
    const sn_stretch *run = e->run;
    int pending = 0; /* the state[] of the parameters the next gradient starts from (U of the last iteration) */
    double loss;
    for (int64_t s = 0; s < run->steps; s++) {
        sn_params p = view(&e->state[pending]);
        struct beside c = {e, s + 1 < run->steps ? s + 1 : -1, s > 0 ? &e->batch[(s - 1) % 3] : NULL, p, SN_OK, 0};
        sn_job job = {(c.next >= 0) + (c.loss ? (e->n + SN_FORWARD_CHUNK - 1) / SN_FORWARD_CHUNK : 0), beside_item, &c};
        sn_pool_attach(&job);
        int status = gradient(e, s, &p);
        sn_pool_flush();
        if (status != SN_OK)
            return status;
        if (atomic_load(&c.bad))
            return SN_BAD_INDEX;
        if (s > 0) { /* iteration s - 1 ends: its loss, then its commit */
            if (loss_of(e, s - 1, &loss) == FAIL)
                return SN_OK;
            losses[s - 1] = loss;
            *committed = pending;
            *done = s;
        }
        if (c.take_status != SN_OK)
            return c.take_status;
        if (!forward_finite(&e->fwd, e->n, e->h, e->k))
            return SN_OK;
        pending = 1 - *committed;
        if (!update(&e->state[pending], &e->state[*committed], &e->g, run->lr))
            return SN_OK;
    }
    sn_params u = view(&e->state[pending]); /* the last iteration's loss, on its own */
    int status = sn_forward(&e->loss_fwd, &e->batch[(run->steps - 1) % 3], &u);
    if (status != SN_OK)
        return status;
    if (loss_of(e, run->steps - 1, &loss) == FAIL)
        return SN_OK;
    losses[run->steps - 1] = loss;
    *committed = pending;
    *done = run->steps;
    return SN_OK;
}

int sn_train_stretch(int64_t *done, double *losses, const sn_params_rw *params, const sn_sparse_rows *data,
                     const int64_t *labels, const sn_stretch *run)
{
    *done = 0;
    if (run->steps == 0)
        return SN_OK;
    int64_t max_nnz = 0;
    struct engine e = {.data = data, .labels = labels, .run = run, .n = run->n};
    e.d = params->d, e.h = params->h, e.k = params->k;
    for (int64_t s = 0; s < run->steps; s++) { /* every index checked before the first update */
        int64_t nnz = batch_nnz(&e, s);
        if (nnz < 0)
            return SN_BAD_INDEX;
        max_nnz = nnz > max_nnz ? nnz : max_nnz;
    }
    struct arena sizes = {NULL, 0};
    carve_engine(&sizes, &e, max_nnz);
    struct arena block = {malloc(sizes.used), 0};
    if (block.base == NULL)
        return SN_NO_MEMORY;
    carve_engine(&block, &e, max_nnz);
    e.state[0] = *params;
    if (run->method == SN_PERTURBED) {
        memset(e.units, 1, (size_t)e.h);
        memset(e.logits, 1, (size_t)e.k);
    }
    int committed = 0;
    int status = take_batch(&e, 0);
    if (status == SN_OK)
        status = stretch(&e, done, losses, &committed);
    if (committed != 0)
        copy_params(params, &e.state[committed]);
    free(block.base);
    return status;
}

/* -- the epoch's accuracy ------------------------------------------------------- */

struct pair_ctx {
    const sn_sparse_rows *data[2];
    const int64_t *labels[2];
    const sn_params *p;
    int64_t items0;  /* items of the training set; the test set's follow */
    int64_t *counts; /* (items,) */
    double *scratch; /* (slots, 3 h + k) */
    _Atomic int bad;
};

static void pair_item(void *arg, int64_t item, int slot)
{
    struct pair_ctx *c = arg;
    int set = item >= c->items0;
    int64_t chunk = set ? item - c->items0 : item, n = c->data[set]->n;
    int64_t lo = chunk * SN_ACCURACY_CHUNK, hi = lo + SN_ACCURACY_CHUNK < n ? lo + SN_ACCURACY_CHUNK : n;
    double *scratch = c->scratch + slot * (3 * c->p->h + c->p->k);
    if (sn_count_correct_rows(&c->counts[item], scratch, c->data[set], c->labels[set], c->p, lo, hi))
        atomic_store(&c->bad, 1);
}

int sn_count_correct_pair(int64_t correct[2], const sn_sparse_rows *train, const int64_t *train_labels,
                          const sn_sparse_rows *test, const int64_t *test_labels, const sn_params *p)
{
    int64_t items0 = (train->n + SN_ACCURACY_CHUNK - 1) / SN_ACCURACY_CHUNK;
    int64_t items = items0 + (test->n + SN_ACCURACY_CHUNK - 1) / SN_ACCURACY_CHUNK;
    int slots = sn_pool_slots();
    int64_t *counts = malloc((size_t)(items > 0 ? items : 1) * sizeof *counts);
    double *scratch = malloc((size_t)slots * (size_t)(3 * p->h + p->k) * sizeof *scratch);
    int status = SN_NO_MEMORY;
    correct[0] = correct[1] = 0;
    if (counts && scratch) {
        struct pair_ctx c = {{train, test}, {train_labels, test_labels}, p, items0, counts, scratch, 0};
        sn_parallel_for(items, slots, pair_item, &c);
        for (int64_t i = 0; i < items; i++) /* exact integers: the order does not matter */
            correct[i >= items0] += counts[i];
        status = atomic_load(&c.bad) ? SN_BAD_INDEX : SN_OK;
    }
    free(counts);
    free(scratch);
    return status;
}
