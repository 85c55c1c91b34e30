"""The floor of one training iteration: only its multiply-adds, as plainly fast as Numba makes them.

One series iteration of the chapter's run (batch of N = 100 digits, H = 50
hidden units, K = 10 classes) must at least do, with every bit kept
(``fastmath=False``: no reassociation, no FMA contraction):

- the forward products, twice (the gradient's forward pass and the loss's
  after the update): a1 (N, H) = x W1 over x's non-zeros (CSR), a2 (N, K) = z W2;
- the series' products: sums over samples, for m = 1, 3, 5 over x's non-zeros
  (CSC) of ``x[r, i]^m C[m, r, :]`` (H wide; the even powers are skipped in
  the chapter's run), and for m = 1 .. 5 of ``z[r, j]^m L[m, r, :]``.

Nothing else (no sigmoid, no coefficients, no bound, no update; the three
sums of a row of dW1 are added so that none is dead code). Each loop is
written for speed only, in an order that still keeps every bit: four terms
per pass over an accumulator, one power at a time, dW2 transposed so that
every inner loop runs over the 50 hidden units (vectorized: 8-wide with
AVX-512). ``iteration_serial`` runs on one thread; ``iteration_parallel``
makes one parallel region per phase (rows of a1, a2; columns of x and powers
of z), each parallel iteration writing only what it owns. tools/floor.py
prints the floor beside the engine's ``train_stretch``; bench_engine_floor.py
tracks their ratio.
"""

import functools
import time

import numba
import numpy as np
from numba import prange

FLAGS = {"fastmath": False, "error_model": "numpy", "nogil": True, "cache": True}


@numba.njit(**FLAGS)
def add_scaled_rows(acc, idx, vals, lo, hi, A):
    """acc (M,) += vals[p] A[idx[p], :] for p = lo .. hi - 1, in turn; four per pass (a quarter of acc's traffic)."""
    p = lo
    while p + 4 <= hi:
        i0, i1, i2, i3 = idx[p], idx[p + 1], idx[p + 2], idx[p + 3]
        v0, v1, v2, v3 = vals[p], vals[p + 1], vals[p + 2], vals[p + 3]
        for j in range(acc.shape[0]):
            acc[j] = (((acc[j] + v0 * A[i0, j]) + v1 * A[i1, j]) + v2 * A[i2, j]) + v3 * A[i3, j]
        p += 4
    for q in range(p, hi):
        i, v = idx[q], vals[q]
        for j in range(acc.shape[0]):
            acc[j] += v * A[i, j]


@numba.njit(**FLAGS)
def forward_row(a1, a2, row_ptr, cols, vals, W1, z, W2, r):
    """Row r of a1 (N, H) = x W1 and a2 (N, K) = z W2."""
    a1[r] = 0.0
    add_scaled_rows(a1[r], cols, vals, row_ptr[r], row_ptr[r + 1], W1)
    a2[r] = 0.0
    for j in range(z.shape[1]):
        zj = z[r, j]
        for k in range(a2.shape[1]):
            a2[r, k] += zj * W2[j, k]


@numba.njit(**FLAGS)
def w1_column(dW1, acc, vpow, col_ptr, rows, col_vals, C, i):
    """dW1[i, :] (H,) = the sums over x's non-zeros x[r, i] = v of v^m C[m, r, :], m = 1, 3, 5 (C (3, N, H)).

    One power at a time, four samples per pass; acc (3, H), vpow (2, N) scratch.
    The three sums are added into dW1 so that none is dead code (2 adds per entry).
    """
    lo, hi = col_ptr[i], col_ptr[i + 1]
    for q in range(hi - lo):
        v = col_vals[lo + q]
        vpow[0, q] = v * v * v
        vpow[1, q] = vpow[0, q] * v * v
    acc[:] = 0.0
    add_scaled_rows(acc[0], rows, col_vals, lo, hi, C[0])
    add_scaled_rows(acc[1], rows[lo:hi], vpow[0], 0, hi - lo, C[1])
    add_scaled_rows(acc[2], rows[lo:hi], vpow[1], 0, hi - lo, C[2])
    for j in range(acc.shape[1]):
        dW1[i, j] = (acc[0, j] + acc[1, j]) + acc[2, j]


@numba.njit(**FLAGS)
def w2_power(dW2T, zpow, z, L, m):
    """dW2T[m - 1] (K, H) = the sums over samples r of z[r, :]^m L[m - 1, r, k] (L (5, N, K)); zpow (N, H) scratch.

    Transposed, so the inner loop runs over the 50 hidden units; z^m by m - 1 products (not counted).
    """
    zpow[:] = z
    for _ in range(m - 1):
        for r in range(z.shape[0]):
            for j in range(z.shape[1]):
                zpow[r, j] *= z[r, j]
    out = dW2T[m - 1]
    out[:] = 0.0
    for r in range(z.shape[0]):
        for k in range(out.shape[0]):
            lk = L[m - 1, r, k]
            for j in range(out.shape[1]):
                out[k, j] += lk * zpow[r, j]


@numba.njit(**FLAGS)
def products_chunk(dW1, dW2T, col_ptr, rows, col_vals, C, z, L, c, chunks):
    """Items c, c + chunks, ... of the products: the D columns of x, then the 5 powers of z."""
    n, d = z.shape[0], dW1.shape[0]
    acc, vpow, zpow = np.empty((3, z.shape[1])), np.empty((2, n)), np.empty_like(z)
    for item in range(c, d + 5, chunks):
        if item < d:
            w1_column(dW1, acc, vpow, col_ptr, rows, col_vals, C, item)
        else:
            w2_power(dW2T, zpow, z, L, item - d + 1)


# The serial and the parallel phases are separate functions: Numba's cache
# keys on the source, not on ``parallel``, so one source jitted both ways
# would load one variant's machine code for the other.
@numba.njit(**FLAGS)
def forward_serial(a1, a2, row_ptr, cols, vals, W1, z, W2):
    for r in range(a1.shape[0]):
        forward_row(a1, a2, row_ptr, cols, vals, W1, z, W2, r)


@numba.njit(**FLAGS)
def iteration_serial(out, batch, W1, W2, z, C, L):
    """The floor's iteration on one thread. out: (a1 (N, H), a2 (N, K), dW1 (D, H), dW2T (5, K, H))."""
    a1, a2, dW1, dW2T = out
    forward_serial(a1, a2, batch.row_ptr, batch.cols, batch.vals, W1, z, W2)
    products_chunk(dW1, dW2T, batch.col_ptr, batch.rows, batch.col_vals, C, z, L, 0, 1)
    forward_serial(a1, a2, batch.row_ptr, batch.cols, batch.vals, W1, z, W2)


@numba.njit(parallel=True, **FLAGS)
def forward_parallel(a1, a2, row_ptr, cols, vals, W1, z, W2):
    for r in prange(a1.shape[0]):
        forward_row(a1, a2, row_ptr, cols, vals, W1, z, W2, r)


@numba.njit(parallel=True, **FLAGS)
def products_parallel(dW1, dW2T, col_ptr, rows, col_vals, C, z, L, chunks):
    for c in prange(chunks):
        products_chunk(dW1, dW2T, col_ptr, rows, col_vals, C, z, L, c, chunks)


@numba.njit(**FLAGS)
def iteration_parallel(out, batch, W1, W2, z, C, L, chunks):
    """The floor's iteration, one parallel region per phase, ``chunks`` (the thread count) chunks of products."""
    a1, a2, dW1, dW2T = out
    forward_parallel(a1, a2, batch.row_ptr, batch.cols, batch.vals, W1, z, W2)
    products_parallel(dW1, dW2T, batch.col_ptr, batch.rows, batch.col_vals, C, z, L, chunks)
    forward_parallel(a1, a2, batch.row_ptr, batch.cols, batch.vals, W1, z, W2)


def floor_inputs(batch, hidden, classes, seed=0):
    """(out, W1, W2, z, C, L): random operands of the right shapes, outputs preallocated."""
    rng = np.random.default_rng(seed)
    n, d = batch.n, batch.d
    out = (np.empty((n, hidden)), np.empty((n, classes)), np.empty((d, hidden)), np.empty((5, classes, hidden)))
    W1 = 0.01 * rng.standard_normal((d, hidden))
    W2 = 0.01 * rng.standard_normal((hidden, classes))
    z = rng.uniform(0.0, 1.0, (n, hidden))
    C = rng.standard_normal((3, n, hidden))  # the odd powers' coefficients only
    L = rng.standard_normal((5, n, classes))
    return out, W1, W2, z, C, L


def floor_call(batch, operands, threads):
    """A call of no arguments: one floor iteration on ``threads`` threads (serial at 1). Sets Numba's thread count."""
    numba.set_num_threads(threads)
    out, *inputs = operands
    if threads == 1:
        return functools.partial(iteration_serial, out, batch, *inputs)
    return functools.partial(iteration_parallel, out, batch, *inputs, threads)


def multiply_adds(batch, hidden, classes):
    """The multiply-adds of one floor iteration."""
    nnz = int(batch.row_ptr[batch.n])
    forward = nnz * hidden + batch.n * hidden * classes
    return 2 * forward + 3 * nnz * hidden + 5 * batch.n * hidden * classes


def engine_seconds_per_iteration(stretch, params, data, take, method, calls, lr=0.1, h=1e-4):
    """Median over ``calls`` of the time of ``stretch(...)`` over ``take`` (S, B), divided by S.

    Each call starts from a fresh copy of ``params`` (Params), so every call
    does the same work; a stretch that stops early (its ``done`` < S) raises.
    """
    losses = np.empty(len(take))
    times = []
    for _ in range(calls):
        fresh = type(params)(*(a.copy() for a in params))
        t0 = time.perf_counter()
        done = stretch(fresh, data.rows, data.labels, take, losses, lr, method, h)
        times.append(time.perf_counter() - t0)
        if done != len(take):
            raise RuntimeError(f"train_stretch({method!r}) stopped at iteration {done} of {len(take)}")
    return float(np.median(times)) / len(take)
