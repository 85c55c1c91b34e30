"""NumPy reference of ``TwoLayerNet.numerical_gradient``: the idea, vectorised.

The chapter's loop perturbs one parameter at a time and recomputes the whole
batch loss. Here each perturbation is applied only where it acts, starting
from the unperturbed forward pass:

- ``b2[k] +- h`` shifts logit k of every sample by ``+-h``;
- ``W2[j, k] +- h`` shifts logit k of sample n by ``+-h * z1[n, j]``;
- ``b1[j] +- h`` and ``W1[i, j] +- h`` shift the hidden pre-activation
  ``a1[n, j]`` by ``eps = +-h`` and ``+-h * x[n, i]`` (nothing where
  ``x[n, i] == 0``); then every logit k moves by ``dz * W2[j, k]`` with
  ``dz = sigmoid(a1 + eps) - sigmoid(a1)``.

The new logits go through a plain softmax; each sample contributes
``l(+h) - l(-h) = log((y_t(-h) + 1e-7) / (y_t(+h) + 1e-7))`` and the
gradient is the sum over samples divided by N and 2h (no subtraction of
two batch losses, so none of the loop's cancellation). The step is the
nominal h, see :mod:`scratchnet.backends.numba_network`.
"""

import numpy as np

DELTA = 1e-7  # the chapter's guard inside the log of cross_entropy_error


def _sigmoid(a):
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _true_class_prob(a2, t):
    """softmax(a2)[..., t]: a2 (..., K) logits, t (...) labels broadcast against a2[..., 0]."""
    e = np.exp(a2 - a2.max(axis=-1, keepdims=True))
    t = np.broadcast_to(t, e.shape[:-1])[..., None]
    return np.take_along_axis(e, t, axis=-1)[..., 0] / e.sum(axis=-1)


def _loss_diff(a2_plus, a2_minus, t):
    """Per-sample l(+h) - l(-h) from the two perturbed logits (..., K)."""
    return np.log((_true_class_prob(a2_minus, t) + DELTA) / (_true_class_prob(a2_plus, t) + DELTA))


def _sigmoid_step(a, eps):
    """sigmoid(a + eps) - sigmoid(a) without cancellation or overflow, for any a and eps.

    With s = sigmoid(a), q = sigmoid(-a) it equals s q (e^eps - 1) / (q + s e^eps)
    and s q (1 - e^-eps) / (s + q e^-eps); the form with exp of -|eps| is used.
    """
    s, q = _sigmoid(a), _sigmoid(-a)
    up = eps > 0
    num = np.where(up, -np.expm1(-np.abs(eps)), np.expm1(-np.abs(eps)))
    den = np.where(up, s + q * np.exp(-np.abs(eps)), q + s * np.exp(-np.abs(eps)))
    return s * q * num / den


def network_numerical_gradient(x, t, a1, W2, a2, h, dW1, db1, dW2, db2):
    """Central differences of the chapter's loss for every parameter of TwoLayerNet.

    x (N, D), t (N,) intp, a1 (N, H) = x W1 + b1, W2 (H, K), a2 (N, K) logits,
    h > 0; fills dW1 (D, H), db1 (H,), dW2 (H, K), db2 (K,).
    """
    x = x.astype(np.float64, copy=False)  # float32 pixels: h * x must be float64 (NumPy keeps float32 * float)
    n, d = x.shape
    k = a2.shape[1]
    scale = 1.0 / n / (2.0 * h)
    z1 = _sigmoid(a1)
    onehot = np.eye(k)  # onehot[c] shifts logit c

    # b2[c]: logits (K, N, K), all samples' logit c moved by +-h
    db2[:] = _loss_diff(a2 + h * onehot[:, None, :], a2 - h * onehot[:, None, :], t).sum(axis=1) * scale

    rows, cols = np.nonzero(x)  # the (n, i) pairs a W1[i, j] step acts on, n ascending within each i
    eps = h * x[rows, cols]
    for j in range(W2.shape[0]):
        # W2[j, c]: logit c of sample n moved by +-h z1[n, j]; logits (K, N, K)
        u = h * z1[:, j][None, :, None] * onehot[:, None, :]
        dW2[j] = _loss_diff(a2 + u, a2 - u, t).sum(axis=1) * scale

        # b1[j]: a1[:, j] moved by +-h
        dz_p, dz_m = _sigmoid_step(a1[:, j], h), _sigmoid_step(a1[:, j], -h)
        db1[j] = _loss_diff(a2 + dz_p[:, None] * W2[j], a2 + dz_m[:, None] * W2[j], t).sum() * scale

        # W1[i, j]: a1[n, j] moved by +-h x[n, i], only for the non-zero pixels
        dz_p, dz_m = _sigmoid_step(a1[rows, j], eps), _sigmoid_step(a1[rows, j], -eps)
        diff = _loss_diff(a2[rows] + dz_p[:, None] * W2[j], a2[rows] + dz_m[:, None] * W2[j], t[rows])
        dW1[:, j] = np.bincount(cols, weights=diff, minlength=d) * scale
