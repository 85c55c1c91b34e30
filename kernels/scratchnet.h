/* The kernel contract of scratchnet's compiled backend.
 *
 * One C function per kernel, named after its Python twin (sn_forward is
 * backends/numba/forward.py's forward), in a file of the same name as the
 * twin's module. Argument order, as in every backend: outputs first, then
 * inputs. The network kernels take the structs below, which mirror the
 * namedtuples of src/scratchnet/backends/structs.py field for field, so two
 * arrays cannot be swapped silently.
 *
 * Arrays are C-contiguous, float64 unless noted; module.c has checked every
 * dtype and shape. Index arrays inside a batch are checked where they are
 * read: a kernel never reads outside the arrays it was given, and returns
 * SN_BAD_INDEX if it met an index out of range.
 *
 * Each kernel computes every output with the same floating-point operations
 * in the same order as its Numba twin (no -ffast-math, no FMA contraction),
 * so the two agree bit for bit. Where a kernel's code differs from its
 * twin's (work split, index checks, vectorised passes), its file's header
 * says how.
 * Parallel loops (pool.c) give every item its own outputs and sum in a fixed
 * order, so results are bitwise identical for any thread count.
 *
 * Shapes: n samples, d inputs, h hidden units, k classes, nnz non-zero inputs.
 */
#ifndef SCRATCHNET_H
#define SCRATCHNET_H

#include <stdint.h>

/* The C copies of src/scratchnet/_config.py's DELTA, SUM_BLOCK and SERIES_ORDER (C cannot import them;
 * tests/test_backends.py checks every such copy against the Python value). */
#define SN_DELTA 1e-7     /* guard inside the log of cross_entropy_error, as in the chapter */
#define SN_SUM_BLOCK 1024 /* samples per partial sum of a loss; fixed, so sums never depend on threads */
#define SN_ORDER 5        /* powers of the step kept by the series numerical gradient */
/* Work split of forward.c's loops, which engine.c runs too; no result depends on them. */
#define SN_FORWARD_CHUNK 8    /* samples per parallel item of the forward pass */
#define SN_ACCURACY_CHUNK 256 /* rows per parallel item of count_correct */
#define SN_OK 0
#define SN_NO_MEMORY (-1)
#define SN_BAD_INDEX (-2)

/* Rows of a data set (structs.SparseRows): row r holds cols/vals[row_ptr[r] .. row_ptr[r + 1]). */
typedef struct {
    int64_t n, d, nnz;      /* nnz: the length of cols and vals (set by module.c) */
    const int64_t *row_ptr; /* (n + 1,) */
    const int32_t *cols;    /* (nnz,) ascending within a row */
    const double *vals;     /* (nnz,) */
} sn_sparse_rows;

/* One batch (structs.Batch): its non-zeros by rows (CSR) and by columns (CSC). */
typedef struct {
    int64_t n, d, nnz;      /* nnz: the length of cols, vals, rows, col_vals (set by module.c) */
    double xmax;            /* max |x| */
    int64_t *row_ptr;       /* (n + 1,) */
    int32_t *cols;          /* (nnz,) */
    double *vals;           /* (nnz,) */
    int64_t *col_ptr;       /* (d + 1,) */
    int32_t *rows;          /* (nnz,) samples ascending within a column */
    double *col_vals;       /* (nnz,) */
} sn_batch;

/* TwoLayerNet's parameters (structs.Params) and gradients (structs.Grads). */
typedef struct {
    const double *W1, *b1, *W2, *b2; /* (d, h), (h,), (h, k), (k,) */
    int64_t d, h, k;
} sn_params;

typedef struct {
    double *W1, *b1, *W2, *b2;
} sn_grads;

/* The forward pass (structs.Forward): a1, z, zq (n, h); a2, e, y (n, k); s (n,). */
typedef struct {
    double *a1, *z, *zq, *a2, *e, *s, *y;
} sn_forward_pass;

/* pool.c ------------------------------------------------------------------- */

/* A parallel loop body: item in [0, nitems), slot in [0, slots) names the thread's scratch. */
typedef void (*sn_task)(void *ctx, int64_t item, int slot);
/* Run task(ctx, item, slot) for every item; returns when all are done. At most `slots` threads. */
void sn_parallel_for(int64_t nitems, int slots, sn_task task, void *ctx);
/* A loop to run as extra items of the calling thread's next sn_parallel_for: two independent loops in one
 * job, so one barrier (the engine's loss rows of iteration s beside the first loop of s + 1's gradient).
 * One at a time; sn_pool_flush runs it now if no sn_parallel_for has taken it. */
typedef struct {
    int64_t nitems;
    sn_task task;
    void *ctx;
} sn_job;
void sn_pool_attach(const sn_job *job);
void sn_pool_flush(void);
/* Threads a call may use now (for sizing per-thread scratch). */
int sn_pool_slots(void);
int sn_set_num_threads(int n); /* 0, or -1 if n is not in 1..256 */
int sn_get_num_threads(void);

/* activations.c, losses.c ---------------------------------------------------- */

void sn_sigmoid(double *out, const double *x, int64_t m);          /* out, x (m,) */
void sn_softmax(double *out, const double *x, int64_t n, int64_t k); /* out, x (n, k), row-wise, k >= 1 */
/* -sum_i log(y[i, t[i]] + SN_DELTA) / n, summed in blocks of SN_SUM_BLOCK. y (n, k), t (n,) in [0, k), n >= 1 */
double sn_cross_entropy_error(const double *y, const int64_t *t, int64_t n, int64_t k);

/* sparse.c ----------------------------------------------------------------- */

/* counts (n,) = non-zeros per row of x (n, d), float32 if f32 else float64. */
void sn_row_counts(int64_t *counts, const void *x, int f32, int64_t n, int64_t d);
/* cols, vals (nnz,) = the non-zeros of each row of x, at row_ptr[r]. */
void sn_fill_rows(int32_t *cols, double *vals, const int64_t *row_ptr, const void *x, int f32, int64_t n, int64_t d);
/* out's CSR = rows `take` (out->n,) of data, whose non-zeros must number out->nnz; then sn_columns. */
int sn_batch_take(sn_batch *out, const sn_sparse_rows *data, const int64_t *take);
/* out's CSC and xmax from its CSR (a counting sort: samples ascending within a column).
 * Returns SN_BAD_INDEX unless row_ptr runs from 0 to nnz without decreasing and every column is in [0, d). */
int sn_columns(sn_batch *out);

/* forward.c ---------------------------------------------------------------- */

/* acc (m,) += vals[p] * A[cols[p], :] for p = lo .. hi - 1 in turn (A (d, m)); 1 if a cols[p] is not in [0, d). */
int sn_add_scaled_rows(double *restrict acc, const int32_t *restrict cols, const double *restrict vals, int64_t lo,
                       int64_t hi, const double *restrict A, int64_t d, int64_t m);

int sn_forward(const sn_forward_pass *out, const sn_batch *b, const sn_params *p);
/* Row r of every array of out: the forward pass of one sample (shared by the numerical-gradient kernels,
 * which compute the forward pass in their own per-sample regions). 1 on a bad index. */
int sn_forward_row(const sn_forward_pass *out, const sn_batch *b, const sn_params *p, int64_t r);
/* *correct = rows of data whose largest logit is at labels[r] (n,). */
int sn_count_correct(int64_t *correct, const sn_sparse_rows *data, const int64_t *labels, const sn_params *p);
/* *correct = the same count over rows lo .. hi - 1 only; scratch (3 h + k). 1 on a bad index. */
int sn_count_correct_rows(int64_t *correct, double *scratch, const sn_sparse_rows *data, const int64_t *labels,
                          const sn_params *p, int64_t lo, int64_t hi);

/* backprop.c --------------------------------------------------------------- */

/* Workspace: da2 (n, k), da1 (n, h). */
typedef struct {
    double *da2, *da1;
} sn_backprop_work;

int sn_backprop(const sn_grads *g, const sn_backprop_work *w, const sn_batch *b, const int64_t *labels,
                const sn_params *p, const sn_forward_pass *f);

/* numgrad_series.c --------------------------------------------------------- */

/* Workspace and results: C (5, n, h), L (5, n, k) the coefficients; W2T (k, h);
 * steps_w1 (chunks, 2, h), steps_w2 (2, h, k), steps_b1 (2, h), steps_b2 (2, k):
 * [0] the largest real step, [1] the largest |h+ - h-| (per chunk and column
 * of W1, per entry of the others); units (h,), logits (k,) set to 1 where the
 * remainder bound sends the entry to the perturbed-loss method. */
typedef struct {
    double *C, *L, *W2T, *steps_w1, *steps_w2, *steps_b1, *steps_b2;
    uint8_t *units, *logits;
    int64_t chunks;
} sn_series_work;

/* The forward pass of b is computed here, into f. */
int sn_numgrad_series(const sn_grads *g, const sn_series_work *w, const sn_batch *b, const int64_t *labels,
                      const sn_params *p, const sn_forward_pass *f, double h);

/* numgrad_perturbed.c ------------------------------------------------------ */

/* Workspace: per sample's distinct pixel values. slot (nnz,); value (n, d);
 * m_plus, m_minus (n, dpad) with dpad = d rounded up to SN_LANES; ndist (n,); xmax (n,). */
#define SN_LANES 8
typedef struct {
    int64_t *slot;
    double *value, *m_plus, *m_minus;
    int64_t *ndist;
    double *xmax;
} sn_perturbed_work;

/* Only the hidden units with units[j] (column j of W1, b1[j]) and the logits with logits[c] (column c of W2, b2[c]).
 * The forward pass of b is computed here, into f. */
int sn_numgrad_perturbed(const sn_grads *g, const sn_perturbed_work *w, const sn_batch *b, const int64_t *labels,
                         const sn_params *p, const sn_forward_pass *f, double h, const uint8_t *units,
                         const uint8_t *logits);

/* engine.c ----------------------------------------------------------------- */

/* The parameters the engine updates in place: sn_params' arrays, writable (module.c checked). */
typedef struct {
    double *W1, *b1, *W2, *b2; /* (d, h), (h,), (h, k), (k,) */
    int64_t d, h, k;
} sn_params_rw;

enum { SN_SERIES = 0, SN_PERTURBED = 1, SN_BACKPROP = 2 }; /* the gradient of a stretch */

/* One stretch of SGD iterations. */
typedef struct {
    const int64_t *take; /* (steps, n): the rows of data in iteration s's mini-batch, each in [0, data n) */
    int64_t steps, n;
    int method;   /* SN_SERIES, SN_PERTURBED or SN_BACKPROP */
    double lr, h; /* the learning rate; the step of the numerical gradient (unused by SN_BACKPROP) */
} sn_stretch;

/* run->steps iterations of training._iteration / _step, the same kernels in the same order (bitwise the
 * per-iteration path at any thread count): losses (steps,) the batch losses after each update; params
 * updated in place. *done = steps, or the first iteration s whose gradient, update or loss was not finite:
 * params are then as after iteration s - 1, and losses[s ..] unwritten. labels (data n,) in [0, k). */
int sn_train_stretch(int64_t *done, double *losses, const sn_params_rw *params, const sn_sparse_rows *data,
                     const int64_t *labels, const sn_stretch *run);
/* correct[0], correct[1] = sn_count_correct of (train, train_labels) and of (test, test_labels): one job. */
int sn_count_correct_pair(int64_t correct[2], const sn_sparse_rows *train, const int64_t *train_labels,
                          const sn_sparse_rows *test, const int64_t *test_labels, const sn_params *p);

#endif /* SCRATCHNET_H */
