"""The C backend: the compiled twins of the Numba kernels (kernels/*.c, scratchnet._ckernels).

Each function here has the signature of the kernel of the same name in
every backend (outputs first) and calls the C function of that name in
kernels/<module>.c, after allocating the C kernel's workspace. The
extension checks every array's dtype and shape against the others and the
labels' range; this module adds nothing but the allocations.

Importing this module raises ImportError when the extension was not built;
the registry then lists the backend as unavailable.
"""

import numpy as np

try:
    from .. import _ckernels
except ImportError as error:  # built without a C compiler (docs/installation.rst says what to install)
    raise ImportError(
        "backend: the c backend was not built on this installation (no C compiler or Python headers "
        "when scratchnet was installed); use 'numba' or 'numpy', or reinstall with a C compiler"
    ) from error
from .structs import BackpropWork, Batch, PerturbedWork, SeriesWork, SparseRows

SERIES_CHUNKS = 64  # work chunks of the series products (kernels/numgrad_series.c); no result depends on it
LANES = 8  # padding of the perturbed-loss tables (SN_LANES)


def sigmoid(out, x):
    """out = 1 / (1 + exp(-x)), exp only of -|x|. out, x (M,)"""
    _ckernels.sigmoid(out, x)


def softmax(out, x):
    """Row-wise stable softmax. out, x (N, K), K >= 1"""
    _ckernels.softmax(out, x)


def cross_entropy_error(y, t):
    """-mean(log(y[n, t[n]] + DELTA)), summed in fixed blocks. y (N, K), t (N,) intp labels"""
    return _ckernels.cross_entropy_error(y, t)


def sparse_rows(x):
    """SparseRows of a dense x (N, D), float32 or float64 (promoted exactly)."""
    n, d = x.shape
    counts = np.empty(n, dtype=np.int64)
    _ckernels.row_counts(counts, x)
    row_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=row_ptr[1:])
    cols = np.empty(row_ptr[n], dtype=np.int32)
    vals = np.empty(row_ptr[n])
    _ckernels.fill_rows(cols, vals, row_ptr, x)
    return SparseRows(n, d, row_ptr, cols, vals)


def _empty_batch(n, d, nnz):
    return Batch(
        n,
        d,
        0.0,
        np.empty(n + 1, dtype=np.int64),
        np.empty(nnz, dtype=np.int32),
        np.empty(nnz),
        np.empty(d + 1, dtype=np.int64),
        np.empty(nnz, dtype=np.int32),
        np.empty(nnz),
    )


def batch_take(data, rows):
    """The Batch of rows ``rows`` (B,) intp of ``data`` (SparseRows), in that order."""
    nnz = int(np.sum(data.row_ptr[rows + 1] - data.row_ptr[rows]))
    out = _empty_batch(len(rows), data.d, nnz)
    xmax = _ckernels.batch_take(out, data, np.ascontiguousarray(rows, dtype=np.int64))
    return out._replace(xmax=xmax)


def batch_from_dense(x):
    """The Batch of a dense x (N, D)."""
    s = sparse_rows(x)
    nnz = s.row_ptr[s.n]
    out = Batch(
        s.n,
        s.d,
        0.0,
        s.row_ptr,
        s.cols,
        s.vals,
        np.empty(s.d + 1, dtype=np.int64),
        np.empty(nnz, dtype=np.int32),
        np.empty(nnz),
    )
    return out._replace(xmax=_ckernels.columns(out))


def forward(out, batch, params):
    """out (Forward) = the forward pass of batch (Batch) through params (Params)."""
    _ckernels.forward(out, batch, params)


def count_correct(data, labels, params):
    """How many rows of ``data`` (SparseRows) have their largest logit at ``labels`` (N,)."""
    return _ckernels.count_correct(data, labels, params)


def backprop(grads, batch, labels, params, fwd):
    """grads (Grads) = the exact derivative of the chapter's loss at fwd (Forward)."""
    n, h = fwd.z.shape
    work = BackpropWork(np.empty((n, fwd.y.shape[1])), np.empty((n, h)))
    _ckernels.backprop(grads, work, batch, labels, params, fwd)


def numgrad_series(grads, batch, labels, params, fwd, h):
    """grads (Grads) = the loop's central differences, by series (see the NumPy reference).

    Returns (units, logits): boolean masks of the hidden units and logits the
    remainder bound sent to the perturbed-loss method.
    """
    n, hdim = fwd.z.shape
    k = fwd.y.shape[1]
    work = SeriesWork(
        np.empty((5, n, hdim)),
        np.empty((5, n, k)),
        np.empty((k, hdim)),
        np.empty((SERIES_CHUNKS, 2, hdim)),
        np.empty((2, hdim, k)),
        np.empty((2, hdim)),
        np.empty((2, k)),
        np.empty(hdim, dtype=np.uint8),
        np.empty(k, dtype=np.uint8),
    )
    _ckernels.numgrad_series(grads, work, batch, labels, params, fwd, float(h))
    units, logits = work.units.view(np.bool_), work.logits.view(np.bool_)
    if units.any() or logits.any():
        numgrad_perturbed(grads, batch, labels, params, fwd, h, units, logits)
    return units, logits


def numgrad_perturbed(grads, batch, labels, params, fwd, h, units=None, logits=None):
    """grads (Grads) = the loop's central differences, each perturbed loss evaluated exactly.

    Only the hidden units in ``units`` (bool (H,)) and logits in ``logits``
    (bool (K,)) are written; None means all.
    """
    n, d = batch.n, batch.d
    hdim, k = params.W2.shape
    units = np.ones(hdim, dtype=np.bool_) if units is None else units
    logits = np.ones(k, dtype=np.bool_) if logits is None else logits
    dpad = -(-d // LANES) * LANES
    nnz = len(batch.cols)
    work = PerturbedWork(
        np.empty(nnz, dtype=np.int64),
        np.empty((n, d)),
        np.empty((n, dpad)),
        np.empty((n, dpad)),
        np.empty(n, dtype=np.int64),
        np.empty(n),
    )
    _ckernels.numgrad_perturbed(
        grads,
        work,
        batch,
        labels,
        params,
        fwd,
        float(h),
        np.ascontiguousarray(units, dtype=np.uint8),
        np.ascontiguousarray(logits, dtype=np.uint8),
    )


METHODS = {"series": 0, "perturbed": 1, "backprop": 2}  # the method codes of kernels/engine.c


def train_stretch(params, data, labels, take, losses, lr, method, h):
    """Run ``len(take)`` SGD iterations in one call; returns how many were done.

    Iteration s is ``training._iteration`` on the rows ``take[s]`` of ``data``
    (SparseRows), bit for bit: the gradient by ``method`` ("series",
    "perturbed" or "backprop"; step ``h``), ``params -= lr * grads`` in place,
    and ``losses[s]`` the batch's loss after the update. take (S, B) int64,
    losses (S,) float64, labels (N,) intp. If iteration s's gradient, update
    or loss is not finite it stops there: returns s with ``params`` as after
    iteration s - 1. The contract: kernels/engine.c and scratchnet.h.
    """
    return _ckernels.train_stretch(params, data, labels, take, losses, float(lr), METHODS[method], float(h))


def count_correct_pair(train, train_labels, test, test_labels, params):
    """(count_correct(train, train_labels, params), count_correct(test, test_labels, params)), in one job."""
    return _ckernels.count_correct_pair(train, train_labels, test, test_labels, params)


def set_num_threads(n):
    """Threads of the C kernels, 1 <= n <= 256."""
    _ckernels.set_num_threads(n)


def get_num_threads():
    """Threads the C kernels use."""
    return _ckernels.get_num_threads()
