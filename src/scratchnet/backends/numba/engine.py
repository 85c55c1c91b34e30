"""The training engine: a stretch of SGD iterations in one compiled call. Numba twin of kernels/engine.c.

``train_stretch`` runs iteration after iteration of training._iteration,
the same kernels in the same order, so every bit is the same as the
per-iteration path (tests/test_engine.py checks it), with no Python
between the kernels. Per iteration (docs/performance.rst counts the
parallel regions):

1. the batch: rows ``take[s]`` of the data set, by rows and by columns;
2. the gradient (the series, the perturbed losses, or backprop), whose
   kernels compute the batch's forward pass;
3. ``updated = params - lr * grads``, checked finite;
4. the loss of the batch through ``updated``, checked finite;
5. ``params <- updated``.

A check that fails stops the stretch before step 5: the parameters stay
as the previous iteration left them, and the caller replays that iteration
through the per-iteration path, which raises the error with its message.
So does an iteration whose series bound sends units or logits to the
perturbed method: the per-iteration path computes it, then the next
stretch goes on (so a series run compiles the perturbed kernels only if it
needs them). Each method has its own driver, compiled on first use.
"""

import math

import numpy as np
from numba import prange

from ..._config import jit
from ..structs import Forward, Grads, Params
from .backprop import output_deltas, weight_gradients
from .forward import forward_row
from .losses import serial_cross_entropy_error
from .numgrad_perturbed import gradients_of
from .numgrad_series import ORDER, PRODUCT_CHUNKS, largest, products, rejected, sample_row
from .sparse import batch_take


@jit()
def all_finite(a):
    for v in a.ravel():
        if not math.isfinite(v):
            return False
    return True


@jit()
def forward_finite(fwd):
    """training's check after a forward pass: x W1 + b1 and the logits finite."""
    return all_finite(fwd.a1) and all_finite(fwd.a2)


@jit()
def subtract_scaled(out, p, lr, g):
    """out = p - lr * g, element by element; False if an entry is not finite."""
    ok = True
    o, a, b = out.ravel(), p.ravel(), g.ravel()
    for i in range(o.shape[0]):
        o[i] = a[i] - lr * b[i]
        ok = ok and math.isfinite(o[i])
    return ok


@jit()
def update(out, params, grads, lr):
    """out (Params) = params - lr * grads; False if an entry is not finite."""
    ok = subtract_scaled(out.W1, params.W1, lr, grads.W1)
    ok = subtract_scaled(out.b1, params.b1, lr, grads.b1) and ok
    ok = subtract_scaled(out.W2, params.W2, lr, grads.W2) and ok
    return subtract_scaled(out.b2, params.b2, lr, grads.b2) and ok


@jit()
def empty_like_params(p):
    return Params(np.empty_like(p.W1), np.empty_like(p.b1), np.empty_like(p.W2), np.empty_like(p.b2))


@jit()
def copy_params(out, p):
    out.W1[...] = p.W1
    out.b1[...] = p.b1
    out.W2[...] = p.W2
    out.b2[...] = p.b2


@jit()
def forward_arrays(n, hdim, k):
    return Forward(
        np.empty((n, hdim)),
        np.empty((n, hdim)),
        np.empty((n, hdim)),
        np.empty((n, k)),
        np.empty((n, k)),
        np.empty(n),
        np.empty((n, k)),
    )


@jit()
def batch_at(data, labels, take, s):
    """Iteration s's batch and its labels (training._iteration's batch_take and labels[rows])."""
    return batch_take(data, take[s]), labels[take[s]]


@jit()
def checked_loss(loss_fwd, t):
    """The loss after the update from its forward pass, or NaN if that pass is not finite."""
    return serial_cross_entropy_error(loss_fwd.y, t) if forward_finite(loss_fwd) else math.nan


@jit()
def commit(params, cur, done):
    """After ``done`` iterations alternating between the two buffers, the last state into params."""
    if done % 2 == 1:
        copy_params(params, cur)
    return done


@jit(parallel=True)
def rows_phase(C, L, fwd, batch, labels, n_grad, loss_fwd, loss_batch, n_loss, params, W2T):
    """One parallel region for the per-sample work that needs the same parameters: the forward pass and
    series coefficients of the first n_grad samples of batch (numgrad_series.coefficients), and the
    forward pass of the first n_loss samples of loss_batch (forward.forward)."""
    hdim = fwd.z.shape[1]
    for r in prange(n_grad + n_loss):
        if r < n_grad:
            sample_row(C, L, np.empty((ORDER, hdim)), fwd, batch, labels, params, W2T, r)
        else:
            forward_row(loss_fwd, loss_batch, params, r - n_grad)


@jit()
def series_stretch(params, data, labels, take, losses, lr, h):
    """The iterations of take (S, B) by the series numerical gradient; returns how many completed.

    Two parallel regions per iteration: the products of iteration s, then
    the rows of the loss of s and of the gradient of s + 1, which both start
    from the parameters after s (the coefficients of s + 1 are thrown away
    if the loss of s is not finite). An iteration whose bound needs the
    perturbed method is left to Python (which compiles that method only for
    the runs that need it).
    """
    steps, n = take.shape
    hdim, k = params.W2.shape
    fwd, loss_fwd = forward_arrays(n, hdim, k), forward_arrays(n, hdim, k)
    grads = Grads(*empty_like_params(params))
    cur, nxt = params, empty_like_params(params)
    C, L = np.empty((ORDER, n, hdim)), np.empty((ORDER, n, k))
    steps_w1, steps_w2 = np.empty((PRODUCT_CHUNKS, 2, hdim)), np.empty((2, hdim, k))
    steps_b1, steps_b2 = np.empty((2, hdim)), np.empty((2, k))
    units, logits = np.empty(hdim, dtype=np.bool_), np.empty(k, dtype=np.bool_)
    if steps == 0:
        return 0
    batch, t = batch_at(data, labels, take, 0)
    rows_phase(C, L, fwd, batch, t, n, loss_fwd, batch, 0, cur, np.ascontiguousarray(cur.W2.T))
    for s in range(steps):
        if not forward_finite(fwd):
            return commit(params, cur, s)
        products(grads, steps_w1, steps_w2, steps_b1, steps_b2, batch, fwd, C, L, cur, h)
        rejected(units, logits, grads, C, L, steps_w1, steps_w2, steps_b1, steps_b2, batch.xmax, largest(fwd.z),
                 cur.W2, h)  # fmt: skip
        if units.any() or logits.any() or not update(nxt, cur, grads, lr):
            return commit(params, cur, s)
        last = s + 1 == steps
        next_batch, next_t = (batch, t) if last else batch_at(data, labels, take, s + 1)
        rows_phase(C, L, fwd, next_batch, next_t, 0 if last else n, loss_fwd, batch, n, nxt,
                   np.ascontiguousarray(nxt.W2.T))  # fmt: skip
        loss = checked_loss(loss_fwd, t)
        if not math.isfinite(loss):
            return commit(params, cur, s)
        losses[s] = loss
        cur, nxt = nxt, cur
        batch, t = next_batch, next_t
    return commit(params, cur, steps)


@jit()
def perturbed_stretch(params, data, labels, take, losses, lr, h):
    """The iterations of take (S, B) by the perturbed-loss numerical gradient; returns how many completed."""
    n = take.shape[1]
    hdim, k = params.W2.shape
    fwd, loss_fwd = forward_arrays(n, hdim, k), forward_arrays(n, hdim, k)
    grads = Grads(*empty_like_params(params))
    cur, nxt = params, empty_like_params(params)
    all_units, all_logits = np.ones(hdim, dtype=np.bool_), np.ones(k, dtype=np.bool_)
    for s in range(take.shape[0]):
        batch, t = batch_at(data, labels, take, s)
        gradients_of(grads, batch, t, cur, fwd, h, all_units, all_logits)
        if not (forward_finite(fwd) and update(nxt, cur, grads, lr)):
            return commit(params, cur, s)
        forward_rows(fwd, batch, 0, loss_fwd, batch, n, nxt)
        loss = checked_loss(loss_fwd, t)
        if not math.isfinite(loss):
            return commit(params, cur, s)
        losses[s] = loss
        cur, nxt = nxt, cur
    return commit(params, cur, take.shape[0])


@jit(parallel=True)
def forward_rows(fwd, batch, n_grad, loss_fwd, loss_batch, n_loss, params):
    """One parallel region: the forward pass of the first n_grad samples of batch into fwd and of the
    first n_loss samples of loss_batch into loss_fwd (forward.forward, twice)."""
    for r in prange(n_grad + n_loss):
        if r < n_grad:
            forward_row(fwd, batch, params, r)
        else:
            forward_row(loss_fwd, loss_batch, params, r - n_grad)


@jit()
def backprop_stretch(params, data, labels, take, losses, lr):
    """The iterations of take (S, B) by backprop; returns how many completed. Two parallel regions per
    iteration, as series_stretch: the weight gradients of s, then the forward passes of the loss of s and
    of the gradient of s + 1."""
    steps, n = take.shape
    hdim, k = params.W2.shape
    fwd, loss_fwd = forward_arrays(n, hdim, k), forward_arrays(n, hdim, k)
    grads = Grads(*empty_like_params(params))
    cur, nxt = params, empty_like_params(params)
    da2, da1 = np.empty((n, k)), np.empty((n, hdim))
    if steps == 0:
        return 0
    batch, t = batch_at(data, labels, take, 0)
    forward_rows(fwd, batch, n, loss_fwd, batch, 0, cur)
    for s in range(steps):
        if not forward_finite(fwd):
            return commit(params, cur, s)
        output_deltas(da2, da1, fwd, t, cur.W2)
        weight_gradients(grads, batch, fwd, da2, da1)
        if not update(nxt, cur, grads, lr):
            return commit(params, cur, s)
        last = s + 1 == steps
        next_batch, next_t = (batch, t) if last else batch_at(data, labels, take, s + 1)
        forward_rows(fwd, next_batch, 0 if last else n, loss_fwd, batch, n, nxt)
        loss = checked_loss(loss_fwd, t)
        if not math.isfinite(loss):
            return commit(params, cur, s)
        losses[s] = loss
        cur, nxt = nxt, cur
        batch, t = next_batch, next_t
    return commit(params, cur, steps)


def train_stretch(params, data, labels, take, losses, lr, method, h):
    """Run the SGD iterations of ``take`` (S, B) int64 (module docstring); losses (S,) gets each iteration's
    loss; returns how many completed. Iteration ``done`` < S is left to the caller's per-iteration path."""
    if method == "backprop":
        return backprop_stretch(params, data, labels, take, losses, float(lr))
    stretch = series_stretch if method == "series" else perturbed_stretch
    return stretch(params, data, labels, take, losses, float(lr), float(h))
