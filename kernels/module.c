/* CPython glue for scratchnet._ckernels: check the arguments, release the GIL, call a kernel.
 *
 * Written once, driven by tables. Each Python argument is described by a
 * layout: a namedtuple of backends/structs.py (field by field: dtype and
 * shape, in named dimensions n, d, h, k, nnz, ...) or a single array. One
 * function unpacks and checks an argument against its layout into the C
 * struct of scratchnet.h, binding each dimension where it first appears and
 * requiring every later use to agree; each kernel is one row of KERNELS:
 * its argument layouts and a one-line adapter to the C function.
 *
 * Arrays arrive through the buffer protocol (no NumPy C API, so no NumPy
 * build dependency) and must be C-contiguous, native-endian, of the
 * expected type and shape (not just size), writable where written. Labels
 * are checked to lie in [0, k). Index arrays inside a batch are checked by
 * the kernels where they read them (SN_BAD_INDEX). So no call, however
 * wrong, reads or writes outside the buffers it was given.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stddef.h>

#include "scratchnet.h"

/* -- dimensions ------------------------------------------------------------ */

enum dim {
    D_N, D_D, D_H, D_K, D_NNZ, D_M, D_MNNZ, D_M2, D_MNNZ2, D_STEPS, D_METHOD, D_CHUNKS, D_ELEMS, D_DPAD, D_FIVE, D_TWO,
    NDIMS, D_NONE = -1
};
static const char *DIM_NAMES[NDIMS] = {"n", "d", "h", "k", "nnz", "rows", "data nnz", "test rows", "test nnz",
                                       "steps", "method", "chunks", "size", "dpad", "5", "2"};

struct extent {
    int dim;  /* enum dim */
    int plus; /* the extent is dims[dim] + plus (row_ptr: n + 1) */
};

/* -- layouts --------------------------------------------------------------- */

enum kind {
    F64,    /* float64 array */
    I64,    /* int64 array */
    I32,    /* int32 array */
    U8,     /* uint8 array (boolean masks) */
    LABELS, /* int64 array of labels in [0, k) */
    ROWS,   /* int64 array of row indices of data, in [0, rows) */
    REAL,   /* float64 array, or float32 if the field allows (dense x) */
    INT,    /* Python int, binds its dimension */
    FLOAT,  /* Python float */
};

struct field {
    const char *name;
    enum kind kind;
    int writable;
    int ndim;
    struct extent shape[3]; /* for INT: shape[0].dim is the dimension it binds */
    Py_ssize_t offset;      /* of the pointer or value in the C struct; -1: checked, not stored */
};

struct layout {
    const char *name;
    int tuple; /* a namedtuple of nfields fields, or (0) the object itself is fields[0] */
    int nfields;
    const struct field *fields;
    Py_ssize_t nnz_offset, d_offset, h_offset, k_offset; /* int64 fields filled from the dimensions, or -1 */
    int nnz_dim;
};

#define E(d) {D_##d, 0}
#define E1(d) {D_##d, 1}
#define ARRAY(nm, kd, w, st, f, ...) {nm, kd, w, sizeof((struct extent[]){__VA_ARGS__}) / sizeof(struct extent), {__VA_ARGS__}, offsetof(st, f)}

/* Rows of a data set whose row count and nnz are dimensions m and mnnz (a second set has its own). */
#define SPARSE_ROWS_FIELDS(m, mnnz)                                                                              \
    {                                                                                                            \
        {"n", INT, 0, 1, {E(m)}, offsetof(sn_sparse_rows, n)}, {"d", INT, 0, 1, {E(D)}, offsetof(sn_sparse_rows, d)}, \
            ARRAY("row_ptr", I64, 0, sn_sparse_rows, row_ptr, E1(m)),                                            \
            ARRAY("cols", I32, 0, sn_sparse_rows, cols, E(mnnz)), ARRAY("vals", F64, 0, sn_sparse_rows, vals, E(mnnz)), \
    }
static const struct field SPARSE_ROWS[] = SPARSE_ROWS_FIELDS(M, MNNZ);
static const struct field SPARSE_ROWS_TEST[] = SPARSE_ROWS_FIELDS(M2, MNNZ2);
static const struct layout SPARSE_ROWS_LAYOUT = {"data (SparseRows)", 1, 5, SPARSE_ROWS,
                                                  offsetof(sn_sparse_rows, nnz), -1, -1, -1, D_MNNZ};
static const struct layout TRAIN_ROWS_LAYOUT = {"train (SparseRows)", 1, 5, SPARSE_ROWS,
                                                 offsetof(sn_sparse_rows, nnz), -1, -1, -1, D_MNNZ};
static const struct layout TEST_ROWS_LAYOUT = {"test (SparseRows)", 1, 5, SPARSE_ROWS_TEST,
                                                offsetof(sn_sparse_rows, nnz), -1, -1, -1, D_MNNZ2};

#define BATCH_FIELDS(w)                                                                                          \
    {                                                                                                            \
        {"n", INT, 0, 1, {E(N)}, offsetof(sn_batch, n)}, {"d", INT, 0, 1, {E(D)}, offsetof(sn_batch, d)},        \
            {"xmax", FLOAT, 0, 0, {E(N)}, offsetof(sn_batch, xmax)}, ARRAY("row_ptr", I64, w, sn_batch, row_ptr, E1(N)), \
            ARRAY("cols", I32, w, sn_batch, cols, E(NNZ)), ARRAY("vals", F64, w, sn_batch, vals, E(NNZ)),          \
            ARRAY("col_ptr", I64, w, sn_batch, col_ptr, E1(D)), ARRAY("rows", I32, w, sn_batch, rows, E(NNZ)),     \
            ARRAY("col_vals", F64, w, sn_batch, col_vals, E(NNZ)),                                                 \
    }
static const struct field BATCH[] = BATCH_FIELDS(0);
static const struct field BATCH_OUT[] = BATCH_FIELDS(1);
static const struct layout BATCH_LAYOUT = {"batch (Batch)", 1, 9, BATCH, offsetof(sn_batch, nnz), -1, -1, -1, D_NNZ};
static const struct layout BATCH_OUT_LAYOUT = {"out (Batch)", 1, 9, BATCH_OUT, offsetof(sn_batch, nnz), -1, -1, -1, D_NNZ};

#define PARAMS_FIELDS(w, type)                                                                                   \
    {                                                                                                            \
        ARRAY("W1", F64, w, type, W1, E(D), E(H)), ARRAY("b1", F64, w, type, b1, E(H)),                          \
            ARRAY("W2", F64, w, type, W2, E(H), E(K)), ARRAY("b2", F64, w, type, b2, E(K)),                      \
    }
#define PARAMS_LAYOUT_OF(fields, type) \
    {"params (Params)", 1, 4, fields, -1, offsetof(type, d), offsetof(type, h), offsetof(type, k), D_NONE}
static const struct field PARAMS[] = PARAMS_FIELDS(0, sn_params);
static const struct layout PARAMS_LAYOUT = PARAMS_LAYOUT_OF(PARAMS, sn_params);
/* Parameters updated in place (the engine). */
static const struct field PARAMS_RW[] = PARAMS_FIELDS(1, sn_params_rw);
static const struct layout PARAMS_RW_LAYOUT = PARAMS_LAYOUT_OF(PARAMS_RW, sn_params_rw);

static const struct field GRADS[] = {
    ARRAY("W1", F64, 1, sn_grads, W1, E(D), E(H)),
    ARRAY("b1", F64, 1, sn_grads, b1, E(H)),
    ARRAY("W2", F64, 1, sn_grads, W2, E(H), E(K)),
    ARRAY("b2", F64, 1, sn_grads, b2, E(K)),
};
static const struct layout GRADS_LAYOUT = {"grads (Grads)", 1, 4, GRADS, -1, -1, -1, -1, D_NONE};

#define FORWARD_FIELDS(w)                                                                                        \
    {                                                                                                            \
        ARRAY("a1", F64, w, sn_forward_pass, a1, E(N), E(H)), ARRAY("z", F64, w, sn_forward_pass, z, E(N), E(H)),          \
            ARRAY("zq", F64, w, sn_forward_pass, zq, E(N), E(H)), ARRAY("a2", F64, w, sn_forward_pass, a2, E(N), E(K)),      \
            ARRAY("e", F64, w, sn_forward_pass, e, E(N), E(K)), ARRAY("s", F64, w, sn_forward_pass, s, E(N)),                \
            ARRAY("y", F64, w, sn_forward_pass, y, E(N), E(K)),                                                         \
    }
static const struct field FORWARD[] = FORWARD_FIELDS(0);
static const struct field FORWARD_OUT[] = FORWARD_FIELDS(1);
static const struct layout FORWARD_LAYOUT = {"fwd (Forward)", 1, 7, FORWARD, -1, -1, -1, -1, D_NONE};
static const struct layout FORWARD_OUT_LAYOUT = {"out (Forward)", 1, 7, FORWARD_OUT, -1, -1, -1, -1, D_NONE};

static const struct field BACKPROP_WORK[] = {
    ARRAY("da2", F64, 1, sn_backprop_work, da2, E(N), E(K)),
    ARRAY("da1", F64, 1, sn_backprop_work, da1, E(N), E(H)),
};
static const struct layout BACKPROP_WORK_LAYOUT = {"work (BackpropWork)", 1, 2, BACKPROP_WORK, -1, -1, -1, -1, D_NONE};

static const struct field SERIES_WORK[] = {
    ARRAY("C", F64, 1, sn_series_work, C, E(FIVE), E(N), E(H)),
    ARRAY("L", F64, 1, sn_series_work, L, E(FIVE), E(N), E(K)),
    ARRAY("W2T", F64, 1, sn_series_work, W2T, E(K), E(H)),
    ARRAY("steps_w1", F64, 1, sn_series_work, steps_w1, E(CHUNKS), E(TWO), E(H)),
    ARRAY("steps_w2", F64, 1, sn_series_work, steps_w2, E(TWO), E(H), E(K)),
    ARRAY("steps_b1", F64, 1, sn_series_work, steps_b1, E(TWO), E(H)),
    ARRAY("steps_b2", F64, 1, sn_series_work, steps_b2, E(TWO), E(K)),
    ARRAY("units", U8, 1, sn_series_work, units, E(H)),
    ARRAY("logits", U8, 1, sn_series_work, logits, E(K)),
};
static const struct layout SERIES_WORK_LAYOUT = {"work (SeriesWork)", 1, 9, SERIES_WORK, -1, -1, -1, -1, D_NONE};

static const struct field PERTURBED_WORK[] = {
    ARRAY("slot", I64, 1, sn_perturbed_work, slot, E(NNZ)),
    ARRAY("value", F64, 1, sn_perturbed_work, value, E(N), E(D)),
    ARRAY("m_plus", F64, 1, sn_perturbed_work, m_plus, E(N), E(DPAD)),
    ARRAY("m_minus", F64, 1, sn_perturbed_work, m_minus, E(N), E(DPAD)),
    ARRAY("ndist", I64, 1, sn_perturbed_work, ndist, E(N)),
    ARRAY("xmax", F64, 1, sn_perturbed_work, xmax, E(N)),
};
static const struct layout PERTURBED_WORK_LAYOUT = {"work (PerturbedWork)", 1, 6, PERTURBED_WORK, -1, -1, -1, -1,
                                                     D_NONE};

/* The plain arrays and scalars of the kernels, each stored in struct args. */
struct args {
    sn_sparse_rows data;
    sn_batch batch;
    sn_params params;
    sn_params_rw params_rw;
    sn_sparse_rows test;
    sn_grads grads;
    sn_forward_pass fwd;
    sn_backprop_work backprop_work;
    sn_series_work series_work;
    sn_perturbed_work perturbed_work;
    double *out;
    const double *x;
    const void *dense;
    int dense_f32;
    int64_t *counts;
    int32_t *cols;
    double *vals;
    const int64_t *row_ptr;
    const int64_t *labels, *test_labels;
    const int64_t *take;
    const uint8_t *units, *logits;
    double h;
    double *losses;
    double lr;
    int64_t method;
};

#define SINGLE(lname, nm, kd, w, f, ...)                                                                         \
    static const struct field lname##_F[] = {{nm, kd, w, sizeof((struct extent[]){__VA_ARGS__}) / sizeof(struct extent), \
                                             {__VA_ARGS__}, offsetof(struct args, f)}};                          \
    static const struct layout lname = {nm, 0, 1, lname##_F, -1, -1, -1, -1, D_NONE}

SINGLE(OUT_FLAT, "out", F64, 1, out, E(ELEMS));
SINGLE(X_FLAT, "x", F64, 0, x, E(ELEMS));
SINGLE(OUT_ROWS, "out", F64, 1, out, E(N), E(K));
SINGLE(X_ROWS, "x", F64, 0, x, E(N), E(K));
SINGLE(Y_ROWS, "y", F64, 0, x, E(N), E(K));
SINGLE(T_LABELS, "t", LABELS, 0, labels, E(N));
SINGLE(LABELS_N, "labels", LABELS, 0, labels, E(N));
SINGLE(LABELS_M, "labels", LABELS, 0, labels, E(M));
SINGLE(TRAIN_LABELS, "train_labels", LABELS, 0, labels, E(M));
SINGLE(TEST_LABELS, "test_labels", LABELS, 0, test_labels, E(M2));
SINGLE(DENSE, "x", REAL, 0, dense, E(M), E(D));
SINGLE(COUNTS, "counts", I64, 1, counts, E(M));
SINGLE(COLS_OUT, "cols", I32, 1, cols, E(MNNZ));
SINGLE(VALS_OUT, "vals", F64, 1, vals, E(MNNZ));
SINGLE(ROW_PTR, "row_ptr", I64, 0, row_ptr, E1(M));
SINGLE(TAKE, "take", I64, 0, take, E(N));
SINGLE(UNITS, "units", U8, 0, units, E(H));
SINGLE(LOGITS, "logits", U8, 0, logits, E(K));
SINGLE(STEP, "h", FLOAT, 0, h, E(N));
SINGLE(TAKE_STEPS, "take", ROWS, 0, take, E(STEPS), E(N));
SINGLE(LOSSES, "losses", F64, 1, losses, E(STEPS));
SINGLE(RATE, "lr", FLOAT, 0, lr, E(N));
SINGLE(METHOD, "method", INT, 0, method, E(METHOD));

/* -- checking and unpacking ------------------------------------------------ */

struct state {
    int64_t dims[NDIMS];
    Py_buffer views[40];
    int nviews;
    int dense_f32;
};

static int bind(struct state *st, const char *layout, const char *field, int dim, int64_t value)
{
    if (dim == D_DPAD) { /* determined by d */
        int64_t want = (st->dims[D_D] + SN_LANES - 1) / SN_LANES * SN_LANES;
        if (value != want) {
            PyErr_Format(PyExc_ValueError, "%s.%s: expected dpad = %lld (d rounded up to %d), got %lld", layout,
                         field, (long long)want, SN_LANES, (long long)value);
            return -1;
        }
        return 0;
    }
    if ((dim == D_FIVE && value != SN_ORDER) || (dim == D_TWO && value != 2)) {
        PyErr_Format(PyExc_ValueError, "%s.%s: expected %d, got %lld", layout, field, dim == D_TWO ? 2 : SN_ORDER,
                     (long long)value);
        return -1;
    }
    if (st->dims[dim] < 0) {
        st->dims[dim] = value;
        return 0;
    }
    if (st->dims[dim] != value) {
        PyErr_Format(PyExc_ValueError, "%s.%s: %s is %lld here but %lld elsewhere in the call", layout, field,
                     DIM_NAMES[dim], (long long)value, (long long)st->dims[dim]);
        return -1;
    }
    return 0;
}

/* The format character of a native-order buffer, or 0. */
static char native_format(const char *fmt)
{
    if (fmt == NULL)
        return 'B';
    if (fmt[0] == '@' || fmt[0] == '=' || fmt[0] == (PY_LITTLE_ENDIAN ? '<' : '>'))
        fmt++;
    return (fmt[0] != '\0' && fmt[1] == '\0') ? fmt[0] : 0;
}

static int format_ok(enum kind kind, char c, Py_ssize_t itemsize, int *f32)
{
    switch (kind) {
    case F64:
        return c == 'd' && itemsize == 8;
    case REAL:
        *f32 = c == 'f' && itemsize == 4;
        return *f32 || (c == 'd' && itemsize == 8);
    case I64:
    case LABELS:
    case ROWS:
        return (c == 'l' || c == 'q') && itemsize == 8;
    case I32:
        return (c == 'i' || (c == 'l' && sizeof(long) == 4)) && itemsize == 4;
    case U8:
        return (c == 'B' || c == '?') && itemsize == 1;
    default:
        return 0;
    }
}

/* The raised exception (a new reference), cleared. */
static PyObject *take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static const char *KIND_NAMES[] = {"float64", "int64", "int32", "uint8", "int64 labels", "int64 row indices",
                                   "float32 or float64"};

static int unpack_array(struct state *st, const char *layout, const struct field *f, PyObject *obj, void *dest)
{
    Py_buffer *view = &st->views[st->nviews];
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (f->writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyObject *exc = take_exception();
        PyErr_Format(PyExc_TypeError, "%s.%s: expected a C-contiguous%s array, got %.100s (%S)", layout, f->name,
                     f->writable ? " writable" : "", Py_TYPE(obj)->tp_name, exc ? exc : Py_None);
        Py_XDECREF(exc);
        return -1;
    }
    st->nviews++;
    int f32 = 0;
    if (!format_ok(f->kind, native_format(view->format), view->itemsize, &f32)) {
        PyErr_Format(PyExc_TypeError, "%s.%s: expected %s in native byte order, got buffer format '%s'", layout,
                     f->name, KIND_NAMES[f->kind], view->format ? view->format : "B");
        return -1;
    }
    if (view->ndim != f->ndim) {
        PyErr_Format(PyExc_ValueError, "%s.%s: expected a %d-d array, got %d dimensions", layout, f->name, f->ndim,
                     view->ndim);
        return -1;
    }
    if ((uintptr_t)view->buf % (uintptr_t)view->itemsize != 0) { /* the kernels load whole items */
        PyErr_Format(PyExc_ValueError, "%s.%s: expected an aligned array (its data starts at an address not a "
                     "multiple of its item size, %zd)", layout, f->name, view->itemsize);
        return -1;
    }
    for (int i = 0; i < f->ndim; i++)
        if (bind(st, layout, f->name, f->shape[i].dim, (int64_t)view->shape[i] - f->shape[i].plus) < 0)
            return -1;
    if (f->kind == REAL)
        st->dense_f32 = f32;
    *(void **)dest = view->buf;
    return 0;
}

static int unpack_field(struct state *st, const char *layout, const struct field *f, PyObject *obj, char *base)
{
    void *dest = base + f->offset;
    if (f->kind == INT) {
        long long v = PyLong_AsLongLong(obj);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (v < 0) {
            PyErr_Format(PyExc_ValueError, "%s.%s: expected a size >= 0, got %lld", layout, f->name, v);
            return -1;
        }
        *(int64_t *)dest = v;
        return bind(st, layout, f->name, f->shape[0].dim, v);
    }
    if (f->kind == FLOAT) {
        double v = PyFloat_AsDouble(obj);
        if (v == -1.0 && PyErr_Occurred())
            return -1;
        *(double *)dest = v;
        return 0;
    }
    return unpack_array(st, layout, f, obj, dest);
}

/* Check `obj` against layout `L` and fill the C struct at `base`. */
static int unpack(struct state *st, const struct layout *L, PyObject *obj, char *base)
{
    if (!L->tuple)
        return unpack_field(st, L->name, &L->fields[0], obj, base);
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != L->nfields) {
        PyErr_Format(PyExc_TypeError, "%s: expected a tuple of %d fields, got %.100s", L->name, L->nfields,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    for (int i = 0; i < L->nfields; i++)
        if (unpack_field(st, L->name, &L->fields[i], PyTuple_GET_ITEM(obj, i), base) < 0)
            return -1;
    return 0;
}

/* The int64 fields a layout fills from the dimensions (params' d, h, k; a batch's nnz). */
static void fill_sizes(const struct state *st, const struct layout *L, char *base)
{
    if (L->nnz_offset >= 0)
        *(int64_t *)(base + L->nnz_offset) = st->dims[L->nnz_dim];
    if (L->d_offset >= 0)
        *(int64_t *)(base + L->d_offset) = st->dims[D_D];
    if (L->h_offset >= 0)
        *(int64_t *)(base + L->h_offset) = st->dims[D_H];
    if (L->k_offset >= 0)
        *(int64_t *)(base + L->k_offset) = st->dims[D_K];
}

/* -- the kernels ----------------------------------------------------------- */

/* An adapter calls the kernel with the unpacked arguments; it runs without the GIL. It returns an
 * SN_ status; a value result goes to result[0] (a float, or an int if the kernel's `returns` is 'i'),
 * a pair of ints to result[0] and result[1] ('p'). */
typedef int (*adapter)(struct args *a, const int64_t *dims, double *result);

struct kernel {
    const char *name;
    const char *doc;
    int nargs;
    const struct layout *args[9];
    Py_ssize_t offsets[9]; /* where each argument's struct goes in struct args */
    adapter call;
    char returns; /* 0: None, 'f': float, 'i': int, 'p': a tuple of two ints */
    int min_n;    /* the smallest n (or number of rows) accepted: 1 for the kernels that divide by n */
};

#define AT(f) offsetof(struct args, f)
#define NOWHERE 0 /* SINGLE layouts store into struct args themselves: base offset 0 */

static int call_sigmoid(struct args *a, const int64_t *dims, double *result)
{
    sn_sigmoid(a->out, a->x, dims[D_ELEMS]);
    return SN_OK;
}

static int call_softmax(struct args *a, const int64_t *dims, double *result)
{
    sn_softmax(a->out, a->x, dims[D_N], dims[D_K]);
    return SN_OK;
}

static int call_cross_entropy_error(struct args *a, const int64_t *dims, double *result)
{
    *result = sn_cross_entropy_error(a->x, a->labels, dims[D_N], dims[D_K]);
    return SN_OK;
}

static int call_row_counts(struct args *a, const int64_t *dims, double *result)
{
    sn_row_counts(a->counts, a->dense, a->dense_f32, dims[D_M], dims[D_D]);
    return SN_OK;
}

static int call_fill_rows(struct args *a, const int64_t *dims, double *result)
{
    int64_t m = dims[D_M];
    if (a->row_ptr[0] != 0 || a->row_ptr[m] != dims[D_MNNZ])
        return SN_BAD_INDEX;
    for (int64_t r = 0; r < m; r++)
        if (a->row_ptr[r + 1] < a->row_ptr[r] || a->row_ptr[r + 1] - a->row_ptr[r] > dims[D_D])
            return SN_BAD_INDEX;
    sn_fill_rows(a->cols, a->vals, a->row_ptr, a->dense, a->dense_f32, m, dims[D_D]);
    return SN_OK;
}

static int call_batch_take(struct args *a, const int64_t *dims, double *result)
{
    int status = sn_batch_take(&a->batch, &a->data, a->take);
    *result = a->batch.xmax;
    return status;
}

static int call_columns(struct args *a, const int64_t *dims, double *result)
{
    int status = sn_columns(&a->batch);
    *result = a->batch.xmax;
    return status;
}

static int call_forward(struct args *a, const int64_t *dims, double *result)
{
    return sn_forward(&a->fwd, &a->batch, &a->params);
}

static int call_count_correct(struct args *a, const int64_t *dims, double *result)
{
    int64_t correct;
    int status = sn_count_correct(&correct, &a->data, a->labels, &a->params);
    *result = (double)correct; /* exact: correct <= rows < 2^53 */
    return status;
}

static int call_backprop(struct args *a, const int64_t *dims, double *result)
{
    return sn_backprop(&a->grads, &a->backprop_work, &a->batch, a->labels, &a->params, &a->fwd);
}

static int call_numgrad_series(struct args *a, const int64_t *dims, double *result)
{
    a->series_work.chunks = dims[D_CHUNKS];
    return sn_numgrad_series(&a->grads, &a->series_work, &a->batch, a->labels, &a->params, &a->fwd, a->h);
}

static int call_numgrad_perturbed(struct args *a, const int64_t *dims, double *result)
{
    return sn_numgrad_perturbed(&a->grads, &a->perturbed_work, &a->batch, a->labels, &a->params, &a->fwd, a->h,
                                a->units, a->logits);
}

static int call_train_stretch(struct args *a, const int64_t *dims, double *result)
{
    sn_stretch run = {a->take, dims[D_STEPS], dims[D_N], (int)a->method, a->lr, a->h};
    int64_t done;
    int status = sn_train_stretch(&done, a->losses, &a->params_rw, &a->data, a->labels, &run);
    *result = (double)done; /* exact: done <= steps < 2^53 */
    return status;
}

static int call_count_correct_pair(struct args *a, const int64_t *dims, double *result)
{
    int64_t correct[2];
    int status = sn_count_correct_pair(correct, &a->data, a->labels, &a->test, a->test_labels, &a->params);
    result[0] = (double)correct[0], result[1] = (double)correct[1];
    return status;
}

static const struct kernel KERNELS[] = {
    {"sigmoid", "sigmoid(out, x): out = 1 / (1 + exp(-x)); out, x float64 (m,)", 2, {&OUT_FLAT, &X_FLAT},
     {NOWHERE, NOWHERE}, call_sigmoid, 0, 0},
    {"softmax", "softmax(out, x): row-wise softmax; out, x float64 (n, k), k >= 1", 2, {&OUT_ROWS, &X_ROWS},
     {NOWHERE, NOWHERE}, call_softmax, 0, 0},
    {"cross_entropy_error", "cross_entropy_error(y, t) -> float: -mean(log(y[i, t[i]] + SN_DELTA)); n >= 1", 2,
     {&Y_ROWS, &T_LABELS}, {NOWHERE, NOWHERE}, call_cross_entropy_error, 'f', 1},
    {"row_counts", "row_counts(counts, x): non-zeros per row of x (rows, d), float32 or float64", 2,
     {&COUNTS, &DENSE}, {NOWHERE, NOWHERE}, call_row_counts, 0, 0},
    {"fill_rows", "fill_rows(cols, vals, row_ptr, x): each row's non-zeros of x at row_ptr", 4,
     {&COLS_OUT, &VALS_OUT, &ROW_PTR, &DENSE}, {NOWHERE, NOWHERE, NOWHERE, NOWHERE}, call_fill_rows, 0, 0},
    {"batch_take", "batch_take(out, data, take) -> xmax: out (Batch) = rows take of data (SparseRows)", 3,
     {&BATCH_OUT_LAYOUT, &SPARSE_ROWS_LAYOUT, &TAKE}, {AT(batch), AT(data), NOWHERE}, call_batch_take, 'f', 0},
    {"columns", "columns(out) -> xmax: out's (Batch) columns from its rows", 1, {&BATCH_OUT_LAYOUT}, {AT(batch)},
     call_columns, 'f', 0},
    {"forward", "forward(out, batch, params): out (Forward) = the forward pass of batch", 3,
     {&FORWARD_OUT_LAYOUT, &BATCH_LAYOUT, &PARAMS_LAYOUT}, {AT(fwd), AT(batch), AT(params)}, call_forward, 0, 0},
    {"count_correct", "count_correct(data, labels, params) -> int: rows whose largest logit is their label", 3,
     {&SPARSE_ROWS_LAYOUT, &LABELS_M, &PARAMS_LAYOUT}, {AT(data), NOWHERE, AT(params)}, call_count_correct, 'i', 0},
    {"backprop", "backprop(grads, work, batch, labels, params, fwd): the exact gradient", 6,
     {&GRADS_LAYOUT, &BACKPROP_WORK_LAYOUT, &BATCH_LAYOUT, &LABELS_N, &PARAMS_LAYOUT, &FORWARD_LAYOUT},
     {AT(grads), AT(backprop_work), AT(batch), NOWHERE, AT(params), AT(fwd)}, call_backprop, 0, 1},
    {"numgrad_series", "numgrad_series(grads, work, batch, labels, params, fwd, h): central differences by series; "
                       "fwd is filled with the forward pass",
     7, {&GRADS_LAYOUT, &SERIES_WORK_LAYOUT, &BATCH_LAYOUT, &LABELS_N, &PARAMS_LAYOUT, &FORWARD_OUT_LAYOUT, &STEP},
     {AT(grads), AT(series_work), AT(batch), NOWHERE, AT(params), AT(fwd), NOWHERE}, call_numgrad_series, 0, 1},
    {"numgrad_perturbed",
     "numgrad_perturbed(grads, work, batch, labels, params, fwd, h, units, logits): by perturbed losses; "
     "fwd is filled with the forward pass", 9,
     {&GRADS_LAYOUT, &PERTURBED_WORK_LAYOUT, &BATCH_LAYOUT, &LABELS_N, &PARAMS_LAYOUT, &FORWARD_OUT_LAYOUT, &STEP,
      &UNITS, &LOGITS},
     {AT(grads), AT(perturbed_work), AT(batch), NOWHERE, AT(params), AT(fwd), NOWHERE, NOWHERE, NOWHERE},
     call_numgrad_perturbed, 0, 1},
    {"train_stretch",
     "train_stretch(params, data, labels, take, losses, lr, method, h) -> done: take.shape[0] SGD iterations in "
     "place on rows take[s] (steps, n) of data; method 0 series, 1 perturbed, 2 backprop", 8,
     {&PARAMS_RW_LAYOUT, &SPARSE_ROWS_LAYOUT, &LABELS_M, &TAKE_STEPS, &LOSSES, &RATE, &METHOD, &STEP},
     {AT(params_rw), AT(data), NOWHERE, NOWHERE, NOWHERE, NOWHERE, NOWHERE, NOWHERE}, call_train_stretch, 'i', 1},
    {"count_correct_pair",
     "count_correct_pair(train, train_labels, test, test_labels, params) -> (int, int): count_correct of both sets",
     5, {&TRAIN_ROWS_LAYOUT, &TRAIN_LABELS, &TEST_ROWS_LAYOUT, &TEST_LABELS, &PARAMS_LAYOUT},
     {AT(data), NOWHERE, AT(test), NOWHERE, AT(params)}, call_count_correct_pair, 'p', 0},
};
#define NKERNELS (sizeof KERNELS / sizeof KERNELS[0])

/* Labels in [0, k) (a label out of range would index outside y), row indices in [0, data rows). */
static int check_indices(const struct field *f, const struct args *a, const int64_t *dims)
{
    const int64_t *v = *(const int64_t *const *)((const char *)a + f->offset);
    int64_t count = 1, bound = f->kind == LABELS ? dims[D_K] : dims[D_M];
    for (int i = 0; i < f->ndim; i++)
        count *= dims[f->shape[i].dim];
    for (int64_t i = 0; i < count; i++)
        if (v[i] < 0 || v[i] >= bound) {
            if (f->kind == LABELS) /* "labels", as the Python side says, for the single "t" too */
                PyErr_Format(PyExc_ValueError, "%s: label %lld at index %lld out of range [0, %lld)",
                             strcmp(f->name, "t") ? f->name : "labels", (long long)v[i], (long long)i,
                             (long long)bound);
            else
                PyErr_Format(PyExc_ValueError, "%s: row %lld at flat index %lld out of range [0, %lld) (the rows of data)",
                             f->name, (long long)v[i], (long long)i, (long long)bound);
            return -1;
        }
    return 0;
}

static PyObject *dispatch(const struct kernel *kern, PyObject *const *argv, Py_ssize_t argc)
{
    if (argc != kern->nargs) {
        PyErr_Format(PyExc_TypeError, "%s: expected %d arguments, got %zd", kern->name, kern->nargs, argc);
        return NULL;
    }
    struct state st;
    struct args a;
    memset(&a, 0, sizeof a);
    for (int i = 0; i < NDIMS; i++)
        st.dims[i] = -1;
    st.nviews = 0;
    st.dense_f32 = 0;
    PyObject *ret = NULL;
    for (int i = 0; i < kern->nargs; i++)
        if (unpack(&st, kern->args[i], argv[i], (char *)&a + kern->offsets[i]) < 0)
            goto done;
    for (int i = 0; i < kern->nargs; i++)
        fill_sizes(&st, kern->args[i], (char *)&a + kern->offsets[i]);
    a.dense_f32 = st.dense_f32;
    int64_t rows = st.dims[D_N] >= 0 ? st.dims[D_N] : st.dims[D_M];
    if (kern->min_n && rows < kern->min_n) {
        PyErr_Format(PyExc_ValueError, "%s: expected at least %d sample(s), got %lld", kern->name, kern->min_n,
                     (long long)rows);
        goto done;
    }
    if (st.dims[D_K] == 0) {
        PyErr_Format(PyExc_ValueError, "%s: k (classes, or columns of a softmax row) must be >= 1", kern->name);
        goto done;
    }
    for (int i = 0; i < kern->nargs; i++) {
        const struct field *f = &kern->args[i]->fields[0];
        if (!kern->args[i]->tuple && (f->kind == LABELS || f->kind == ROWS) && check_indices(f, &a, st.dims) < 0)
            goto done;
    }
    int stretch = kern->call == call_train_stretch;
    if (stretch && !(a.method >= SN_SERIES && a.method <= SN_BACKPROP)) {
        PyErr_Format(PyExc_ValueError, "method: expected 0 (series), 1 (perturbed) or 2 (backprop), got %lld",
                     (long long)a.method);
        goto done;
    }
    if (kern->call == call_numgrad_series || kern->call == call_numgrad_perturbed ||
        (stretch && a.method != SN_BACKPROP))
        if (!(a.h > 0 && isfinite(a.h))) {
            PyErr_Format(PyExc_ValueError, "h: expected a positive finite step, got %R", argv[stretch ? 7 : 6]);
            goto done;
        }
    double result[2] = {0.0, 0.0};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = kern->call(&a, st.dims, result);
    Py_END_ALLOW_THREADS
    if (status == SN_NO_MEMORY) {
        PyErr_NoMemory();
        goto done;
    }
    if (status == SN_BAD_INDEX) {
        PyErr_Format(PyExc_ValueError, "%s: an index array (row_ptr, cols, col_ptr, rows or take) is out of range",
                     kern->name);
        goto done;
    }
    ret = kern->returns == 'f'   ? PyFloat_FromDouble(result[0])
          : kern->returns == 'i' ? PyLong_FromLongLong((long long)result[0])
          : kern->returns == 'p' ? Py_BuildValue("(LL)", (long long)result[0], (long long)result[1])
                                 : Py_NewRef(Py_None);
done:
    for (int i = 0; i < st.nviews; i++)
        PyBuffer_Release(&st.views[i]);
    return ret;
}

/* One C entry per kernel (METH_FASTCALL), each handing its row of KERNELS to dispatch. */
#define ENTRY(i)                                                                                                 \
    static PyObject *entry_##i(PyObject *self, PyObject *const *argv, Py_ssize_t argc)                           \
    {                                                                                                            \
        return dispatch(&KERNELS[i], argv, argc);                                                                \
    }
ENTRY(0)
ENTRY(1)
ENTRY(2)
ENTRY(3)
ENTRY(4)
ENTRY(5)
ENTRY(6)
ENTRY(7)
ENTRY(8)
ENTRY(9)
ENTRY(10)
ENTRY(11)
ENTRY(12)
ENTRY(13)
static PyObject *(*const ENTRIES[])(PyObject *, PyObject *const *, Py_ssize_t) = {
    entry_0, entry_1, entry_2, entry_3, entry_4, entry_5, entry_6, entry_7, entry_8, entry_9, entry_10, entry_11,
    entry_12, entry_13,
};
_Static_assert(sizeof ENTRIES / sizeof ENTRIES[0] == NKERNELS, "one entry per kernel");

/* -- threads --------------------------------------------------------------- */

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg)
{
    if (PyBool_Check(arg) || !PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "n: number of threads must be an int, got %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 1 || n > 256 || sn_set_num_threads((int)n) < 0) {
        PyErr_Format(PyExc_ValueError, "n: number of threads must be between 1 and 256, got %ld", n);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(sn_get_num_threads());
}

static PyMethodDef methods[NKERNELS + 3] = {
    {"set_num_threads", py_set_num_threads, METH_O, "set_num_threads(n): threads of every kernel, 1..256"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "get_num_threads() -> int"},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_ckernels",
    .m_doc = "scratchnet's compiled kernels (kernels/scratchnet.h); use scratchnet.backends.c.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__ckernels(void)
{
    for (size_t i = 0; i < NKERNELS; i++)
        methods[2 + i] = (PyMethodDef){KERNELS[i].name, (PyCFunction)(void (*)(void))ENTRIES[i], METH_FASTCALL,
                                       KERNELS[i].doc};
    return PyModule_Create(&moduledef);
}
