/* CPython glue for scratchnet._ckernels: parse arguments, check buffers,
 * release the GIL, call the kernels of scratchnet.h.
 *
 * Arrays arrive through the buffer protocol (no NumPy C API, so no NumPy
 * build dependency). The Python wrapper (backends/c.py) validates first;
 * the checks here repeat the ones that guard memory safety (type, size,
 * contiguity, label range), so a wrong call raises instead of crashing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "scratchnet.h"

/* Threads for the kernels. Stored here and applied to the calling thread
 * before every kernel: OpenMP's count is per OS thread, and a kernel may be
 * called from any Python thread. */
static int num_threads = 1;

static void apply_num_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* -- buffers ----------------------------------------------------------- */

enum kind { FLOAT64, INT64 };

/* The format character of a native-order buffer, or 0 if it is not native
 * ('@', '=' and, on this machine's byte order, '<' or '>' are native). */
static char native_format_char(const char *fmt)
{
    if (fmt == NULL)
        return 'B';
    if (fmt[0] == '@' || fmt[0] == '=' || fmt[0] == (PY_LITTLE_ENDIAN ? '<' : '>'))
        fmt++;
    return (fmt[0] != '\0' && fmt[1] == '\0') ? fmt[0] : 0;
}

/* Get a C-contiguous buffer of `count` items of `kind` from `obj`, writable
 * if asked. On failure raise an error naming `name` and return -1 (with
 * nothing to release). */
static int get_buffer(PyObject *obj, Py_buffer *view, const char *name, enum kind kind,
                      Py_ssize_t count, int writable)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous%s buffer, got %.100s (%S)", name,
                     writable ? " writable" : "", Py_TYPE(obj)->tp_name, value ? value : Py_None);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return -1;
    }
    char c = native_format_char(view->format);
    int ok = kind == FLOAT64 ? (c == 'd' && view->itemsize == 8)
                             : ((c == 'l' || c == 'q') && view->itemsize == 8);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s: expected %s in native byte order, got buffer format '%s'", name,
                     kind == FLOAT64 ? "float64 (format 'd')" : "int64 (format 'l' or 'q')",
                     view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    if (view->len != count * 8) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd elements, got %zd", name, count, view->len / 8);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

struct arg {
    PyObject *obj;
    const char *name;
    enum kind kind;
    Py_ssize_t count;
    int writable;
};

/* get_buffer for each of args[0..n), into views; on failure release those
 * already taken and return -1. */
static int get_buffers(const struct arg *args, Py_buffer *views, int n)
{
    for (int i = 0; i < n; i++) {
        if (get_buffer(args[i].obj, &views[i], args[i].name, args[i].kind, args[i].count, args[i].writable) < 0) {
            while (i-- > 0)
                PyBuffer_Release(&views[i]);
            return -1;
        }
    }
    return 0;
}

static void release_buffers(Py_buffer *views, int n)
{
    for (int i = 0; i < n; i++)
        PyBuffer_Release(&views[i]);
}

/* Index of the first label outside [0, k), or -1. t (n,) */
static int64_t first_bad_label(const int64_t *t, int64_t n, int64_t k)
{
    for (int64_t i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= k)
            return i;
    return -1;
}

static void raise_bad_label(const int64_t *t, int64_t bad, long long k)
{
    PyErr_Format(PyExc_ValueError, "t: label %lld at index %lld out of range [0, %lld)", (long long)t[bad],
                 (long long)bad, k);
}

/* n * k as an element count, or -1 with ValueError if negative or too large. */
static Py_ssize_t element_count(long long n, long long k)
{
    if (n < 0 || k < 0) {
        PyErr_Format(PyExc_ValueError, "shape: expected non-negative sizes, got (%lld, %lld)", n, k);
        return -1;
    }
    if (k > 0 && n > PY_SSIZE_T_MAX / 8 / k) {
        PyErr_Format(PyExc_ValueError, "shape: (%lld, %lld) is too large", n, k);
        return -1;
    }
    return (Py_ssize_t)(n * k);
}

/* -- kernels ----------------------------------------------------------- */

PyDoc_STRVAR(sigmoid_doc, "sigmoid(out, x, m)\n--\n\n"
                          "out = 1 / (1 + exp(-x)) element-wise. out, x: float64 buffers of m elements.");

static PyObject *py_sigmoid(PyObject *self, PyObject *args)
{
    PyObject *out_obj, *x_obj;
    long long m;
    if (!PyArg_ParseTuple(args, "OOL:sigmoid", &out_obj, &x_obj, &m))
        return NULL;
    Py_ssize_t count = element_count(m, 1);
    if (count < 0)
        return NULL;
    const struct arg spec[2] = {{out_obj, "out", FLOAT64, count, 1}, {x_obj, "x", FLOAT64, count, 0}};
    Py_buffer v[2];
    if (get_buffers(spec, v, 2) < 0)
        return NULL;
    int nt = num_threads; /* read with the GIL held */
    Py_BEGIN_ALLOW_THREADS
    apply_num_threads(nt);
    sn_sigmoid(v[0].buf, v[1].buf, m);
    Py_END_ALLOW_THREADS
    release_buffers(v, 2);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(softmax_doc, "softmax(out, x, n, k)\n--\n\n"
                          "Row-wise softmax. out, x: float64 buffers of n * k elements (n rows), k >= 1.");

static PyObject *py_softmax(PyObject *self, PyObject *args)
{
    PyObject *out_obj, *x_obj;
    long long n, k;
    if (!PyArg_ParseTuple(args, "OOLL:softmax", &out_obj, &x_obj, &n, &k))
        return NULL;
    if (k < 1) {
        PyErr_Format(PyExc_ValueError, "k: a softmax row needs at least one entry, got k=%lld", k);
        return NULL;
    }
    Py_ssize_t count = element_count(n, k);
    if (count < 0)
        return NULL;
    const struct arg spec[2] = {{out_obj, "out", FLOAT64, count, 1}, {x_obj, "x", FLOAT64, count, 0}};
    Py_buffer v[2];
    if (get_buffers(spec, v, 2) < 0)
        return NULL;
    int nt = num_threads; /* read with the GIL held */
    Py_BEGIN_ALLOW_THREADS
    apply_num_threads(nt);
    sn_softmax(v[0].buf, v[1].buf, n, k);
    Py_END_ALLOW_THREADS
    release_buffers(v, 2);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(cross_entropy_error_doc,
             "cross_entropy_error(y, t, n, k) -> float\n--\n\n"
             "-sum(log(y[i, t[i]] + 1e-7)) / n. y: float64 buffer of n * k elements, "
             "t: int64 buffer of n labels in [0, k); n, k >= 1.");

static PyObject *py_cross_entropy_error(PyObject *self, PyObject *args)
{
    PyObject *y_obj, *t_obj;
    long long n, k;
    if (!PyArg_ParseTuple(args, "OOLL:cross_entropy_error", &y_obj, &t_obj, &n, &k))
        return NULL;
    if (n < 1 || k < 1) {
        PyErr_Format(PyExc_ValueError, "y: expected n, k >= 1, got (%lld, %lld)", n, k);
        return NULL;
    }
    Py_ssize_t count = element_count(n, k);
    if (count < 0)
        return NULL;
    const struct arg spec[2] = {{y_obj, "y", FLOAT64, count, 0}, {t_obj, "t", INT64, (Py_ssize_t)n, 0}};
    Py_buffer v[2];
    if (get_buffers(spec, v, 2) < 0)
        return NULL;
    /* A label out of range would read outside y: check them all (cheap
     * next to the logs) before the kernel runs. */
    const int64_t *labels = v[1].buf;
    int64_t bad;
    double loss = 0.0;
    int nt = num_threads; /* read with the GIL held */
    Py_BEGIN_ALLOW_THREADS
    bad = first_bad_label(labels, n, k);
    if (bad < 0) {
        apply_num_threads(nt);
        loss = sn_cross_entropy_error(v[0].buf, labels, n, k);
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0)
        raise_bad_label(labels, bad, k);
    release_buffers(v, 2);
    return bad >= 0 ? NULL : PyFloat_FromDouble(loss);
}

PyDoc_STRVAR(affine_doc, "affine(out, x, W, b, n, d, m)\n--\n\n"
                         "out = x @ W + b over the non-zero entries of x (kernels/affine.c). out (n, m), x (n, d), "
                         "W (d, m), b (m,): float64 buffers, C-contiguous; n, d, m >= 1.");

static PyObject *py_affine(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    long long n, d, m;
    if (!PyArg_ParseTuple(args, "OOOOLLL:affine", &o[0], &o[1], &o[2], &o[3], &n, &d, &m))
        return NULL;
    if (n < 1 || d < 1 || m < 1) {
        PyErr_Format(PyExc_ValueError, "shape: expected n, d, m >= 1, got (%lld, %lld, %lld)", n, d, m);
        return NULL;
    }
    Py_ssize_t nm = element_count(n, m), nd = element_count(n, d), dm = element_count(d, m);
    if (nm < 0 || nd < 0 || dm < 0)
        return NULL;
    const struct arg spec[4] = {
        {o[0], "out", FLOAT64, nm, 1},
        {o[1], "x", FLOAT64, nd, 0},
        {o[2], "W", FLOAT64, dm, 0},
        {o[3], "b", FLOAT64, (Py_ssize_t)m, 0},
    };
    Py_buffer v[4];
    if (get_buffers(spec, v, 4) < 0)
        return NULL;
    int status;
    int nt = num_threads; /* read with the GIL held */
    Py_BEGIN_ALLOW_THREADS
    apply_num_threads(nt);
    status = sn_affine(v[0].buf, v[1].buf, v[2].buf, v[3].buf, n, d, m);
    Py_END_ALLOW_THREADS
    release_buffers(v, 4);
    if (status < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(affine_weight_grad_doc,
             "affine_weight_grad(out, x, dout, n, d, m)\n--\n\n"
             "out = x.T @ dout over the non-zero entries of x (kernels/affine.c). out (d, m), x (n, d), "
             "dout (n, m): float64 buffers, C-contiguous; n, d, m >= 1.");

static PyObject *py_affine_weight_grad(PyObject *self, PyObject *args)
{
    PyObject *o[3];
    long long n, d, m;
    if (!PyArg_ParseTuple(args, "OOOLLL:affine_weight_grad", &o[0], &o[1], &o[2], &n, &d, &m))
        return NULL;
    if (n < 1 || d < 1 || m < 1) {
        PyErr_Format(PyExc_ValueError, "shape: expected n, d, m >= 1, got (%lld, %lld, %lld)", n, d, m);
        return NULL;
    }
    Py_ssize_t dm = element_count(d, m), nd = element_count(n, d), nm = element_count(n, m);
    if (dm < 0 || nd < 0 || nm < 0)
        return NULL;
    const struct arg spec[3] = {
        {o[0], "out", FLOAT64, dm, 1},
        {o[1], "x", FLOAT64, nd, 0},
        {o[2], "dout", FLOAT64, nm, 0},
    };
    Py_buffer v[3];
    if (get_buffers(spec, v, 3) < 0)
        return NULL;
    int status;
    int nt = num_threads; /* read with the GIL held */
    Py_BEGIN_ALLOW_THREADS
    apply_num_threads(nt);
    status = sn_affine_weight_grad(v[0].buf, v[1].buf, v[2].buf, n, d, m);
    Py_END_ALLOW_THREADS
    release_buffers(v, 3);
    if (status < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(network_numerical_gradient_doc,
             "network_numerical_gradient(dW1, db1, dW2, db2, x, t, a1, W2, a2, h, n, d, hdim, k)\n--\n\n"
             "Central-difference gradient of TwoLayerNet's loss (kernels/numgrad.c). Outputs dW1 (d, hdim), "
             "db1 (hdim,), dW2 (hdim, k), db2 (k,); x (n, d), t (n,) int64 labels in [0, k), a1 (n, hdim), "
             "W2 (hdim, k), a2 (n, k); all float64 but t, C-contiguous; h > 0; n, d, hdim, k >= 1.");

static PyObject *py_network_numerical_gradient(PyObject *self, PyObject *args)
{
    PyObject *o[9];
    double h;
    long long n, d, hdim, k;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOdLLLL:network_numerical_gradient", &o[0], &o[1], &o[2], &o[3], &o[4],
                          &o[5], &o[6], &o[7], &o[8], &h, &n, &d, &hdim, &k))
        return NULL;
    if (n < 1 || d < 1 || hdim < 1 || k < 1) {
        PyErr_Format(PyExc_ValueError, "shape: expected n, d, hdim, k >= 1, got (%lld, %lld, %lld, %lld)", n, d,
                     hdim, k);
        return NULL;
    }
    if (!(h > 0 && isfinite(h))) {
        PyErr_Format(PyExc_ValueError, "h: expected a positive finite step, got %R", PyTuple_GET_ITEM(args, 9));
        return NULL;
    }
    Py_ssize_t nd = element_count(n, d), dh = element_count(d, hdim), nh = element_count(n, hdim),
               hk = element_count(hdim, k), nk = element_count(n, k);
    if (nd < 0 || dh < 0 || nh < 0 || hk < 0 || nk < 0)
        return NULL;
    const struct arg spec[9] = {
        {o[0], "dW1", FLOAT64, dh, 1},    {o[1], "db1", FLOAT64, (Py_ssize_t)hdim, 1},
        {o[2], "dW2", FLOAT64, hk, 1},    {o[3], "db2", FLOAT64, (Py_ssize_t)k, 1},
        {o[4], "x", FLOAT64, nd, 0},      {o[5], "t", INT64, (Py_ssize_t)n, 0},
        {o[6], "a1", FLOAT64, nh, 0},     {o[7], "W2", FLOAT64, hk, 0},
        {o[8], "a2", FLOAT64, nk, 0},
    };
    Py_buffer v[9];
    if (get_buffers(spec, v, 9) < 0)
        return NULL;
    const int64_t *labels = v[5].buf;
    int64_t bad;
    int status = 0;
    int nt = num_threads; /* read with the GIL held */
    Py_BEGIN_ALLOW_THREADS
    bad = first_bad_label(labels, n, k);
    if (bad < 0) {
        apply_num_threads(nt);
        status = sn_network_numerical_gradient(v[0].buf, v[1].buf, v[2].buf, v[3].buf, v[4].buf, labels,
                                               v[6].buf, v[7].buf, v[8].buf, h, n, d, hdim, k);
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0)
        raise_bad_label(labels, bad, k);
    else if (status < 0)
        PyErr_NoMemory();
    release_buffers(v, 9);
    if (bad >= 0 || status < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* -- threads ----------------------------------------------------------- */

PyDoc_STRVAR(set_num_threads_doc, "set_num_threads(n)\n--\n\n"
                                  "Threads for the kernels, n >= 1 (ignored without OpenMP).");

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg)
{
    if (PyBool_Check(arg) || !PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "n: number of threads must be an int, got %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 1 || n > 4096) {
        PyErr_Format(PyExc_ValueError, "n: number of threads must be between 1 and 4096, got %ld", n);
        return NULL;
    }
#ifdef _OPENMP
    num_threads = (int)n;
#endif
    Py_RETURN_NONE;
}

PyDoc_STRVAR(get_num_threads_doc, "get_num_threads() -> int\n--\n\n"
                                  "Threads the kernels use (1 without OpenMP).");

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(num_threads);
}

static PyMethodDef methods[] = {
    {"sigmoid", py_sigmoid, METH_VARARGS, sigmoid_doc},
    {"softmax", py_softmax, METH_VARARGS, softmax_doc},
    {"cross_entropy_error", py_cross_entropy_error, METH_VARARGS, cross_entropy_error_doc},
    {"affine", py_affine, METH_VARARGS, affine_doc},
    {"affine_weight_grad", py_affine_weight_grad, METH_VARARGS, affine_weight_grad_doc},
    {"network_numerical_gradient", py_network_numerical_gradient, METH_VARARGS, network_numerical_gradient_doc},
    {"set_num_threads", py_set_num_threads, METH_O, set_num_threads_doc},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, get_num_threads_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_ckernels",
    .m_doc = "scratchnet's compiled kernels (see kernels/scratchnet.h); use scratchnet.backends.c.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__ckernels(void)
{
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
#ifdef _OPENMP
    num_threads = omp_get_max_threads();
    int openmp = 1;
#else
    int openmp = 0;
#endif
    PyObject *flag = PyBool_FromLong(openmp);
    if (PyModule_AddObject(m, "openmp", flag) < 0) { /* steals flag only on success */
        Py_DECREF(flag);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
