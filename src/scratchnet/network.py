"""The chapter's two-layer net: affine -> sigmoid -> affine -> softmax.

Shapes: x (N, D), W1 (D, H), b1 (H,), W2 (H, K), b2 (K,), t (N,) labels or
(N, K) one-hot. The forward pass runs on the backend's kernels (affine,
sigmoid, softmax); backpropagation is NumPy apart from the products with x,
the bulk of the work. The backend's ``affine`` and ``affine_weight_grad``
kernels skip x's zeros (about 81% of an MNIST digit); their sums differ
from a BLAS product only in rounding. The numerical gradient goes to a
backend kernel that evaluates exactly the perturbed losses of the chapter's
loop, touching only what each perturbation changes.
"""

import numbers

import numpy as np

from . import backends
from ._validation import as_float64, labels_from_targets
from .backends.numpy_ref import DELTA

PARAM_NAMES = ("W1", "b1", "W2", "b2")


def _affine(kernel, x, W, b):
    """x @ W + b (N, M) by a backend's affine kernel. x (N, D), W (D, M), b (M,)"""
    out = np.empty((x.shape[0], W.shape[1]))
    # params may be set by hand: give the kernel the C-contiguous float64 it expects (no copy if so)
    kernel(x, np.ascontiguousarray(W, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64), out)
    return out


class TwoLayerNet:
    """Two-layer net with a sigmoid hidden layer and a softmax output.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
        D, H and K (784, 50 and 10 in the chapter).
    weight_init_std : float, optional
        Weights start as ``weight_init_std * standard_normal``; biases at 0.
    seed : int or numpy.random.Generator, optional
        Source of the initial weights.

    Attributes
    ----------
    params : dict of str to ndarray of float64
        ``W1`` (D, H), ``b1`` (H,), ``W2`` (H, K), ``b2`` (K,).
    """

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, *, seed=None):
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": weight_init_std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": weight_init_std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }

    # -- forward ---------------------------------------------------------
    def _forward(self, x, backend=None):
        """a1 (N, H), z1 (N, H), a2 (N, K), y (N, K) for a validated x."""
        kernels = backends.resolve(backend)
        p = self.params
        a1 = _affine(kernels.affine, x, p["W1"], p["b1"])  # skips x's zeros
        z1 = np.empty_like(a1)
        kernels.sigmoid(a1.reshape(-1), z1.reshape(-1))
        a2 = _affine(kernels.affine, z1, p["W2"], p["b2"])  # z1 is dense, nothing to skip; but no BLAS threads either
        y = np.empty_like(a2)
        kernels.softmax(a2, y)
        return a1, z1, a2, y

    def predict(self, x, *, backend=None):
        """Class probabilities, shape (N, K), for inputs ``x`` of shape (N, D).

        ``backend`` (``"numpy"``, ``"numba"`` or ``"c"``; None for the
        global one) runs the forward pass, here and in :meth:`loss` and
        :meth:`accuracy`; backends differ only in rounding.
        """
        return self._forward(self._check_x(x), backend)[3]

    def loss(self, x, t, *, backend=None):
        """The chapter's cross-entropy: ``-mean(log(y[n, t_n] + 1e-7))``."""
        return self._loss(*self._check_batch(x, t), backend)

    def _loss(self, x, labels, backend):
        y = self._forward(x, backend)[3]
        return -np.sum(np.log(y[np.arange(len(labels)), labels] + DELTA)) / len(labels)

    def accuracy(self, x, t, *, backend=None):
        """Fraction of samples whose most probable class is the label."""
        x, labels = self._check_batch(x, t)
        return float(np.mean(np.argmax(self._forward(x, backend)[3], axis=1) == labels))

    # -- gradients -------------------------------------------------------
    def numerical_gradient(self, x, t, *, h=1e-4, backend=None):
        """Central-difference gradient of :meth:`loss` for every parameter.

        For each parameter p: ``(loss with p + h - loss with p - h) / 2h``,
        the quantity the chapter's loop computes, two forward passes per
        parameter. Here each perturbed loss is evaluated from the unperturbed
        forward pass by recomputing only what the perturbation changes: a
        ``W1[i, j]`` step moves hidden unit j of the samples whose pixel i is
        non-zero; a ``W2[j, k]`` or ``b2[k]`` step moves logit k. The
        per-sample loss differences are summed (instead of subtracting two
        batch losses), which avoids the loop's cancellation: the result
        differs from the loop only by the loop's own rounding, about
        1e-12 absolute for the chapter's net. The parameters are never
        modified, not even temporarily.

        Parameters
        ----------
        x : array_like, shape (N, D)
            float32 input (as :func:`load_mnist` gives) is promoted to
            float64 exactly as NumPy does in the chapter's code.
        t : array_like, shape (N,) labels or (N, K) one-hot
        h : float, optional
        backend : {"numpy", "numba", "c"}, optional

        Returns
        -------
        dict of str to ndarray
            ``W1``, ``b1``, ``W2``, ``b2``: gradients with the parameters' shapes.
        """
        if isinstance(h, bool) or not isinstance(h, numbers.Real) or not np.isfinite(h) or h <= 0:
            raise ValueError(f"h: expected a positive finite step, got {h!r}")
        self._check_params(for_numerical=True)
        return self._numerical_gradient(*self._check_batch(x, t), float(h), backend)

    def _numerical_gradient(self, x, labels, h, backend):
        a1, _, a2, _ = self._forward(x, backend)
        p = self.params
        grads = {name: np.empty_like(p[name]) for name in PARAM_NAMES}
        backends.resolve(backend).network_numerical_gradient(
            x, labels, a1, np.ascontiguousarray(p["W2"]), a2,
            h, grads["W1"], grads["b1"], grads["W2"], grads["b2"],
        )
        return grads

    def gradient(self, x, t, *, backend=None):
        """Backpropagation: the exact derivative of :meth:`loss`.

        With ``y_t`` the probability of the true class, the loss of a sample
        is ``-log(y_t + 1e-7)``, whose derivative with respect to the logits
        is ``(y - onehot(t)) * y_t / (y_t + 1e-7)``. The chapter's backprop
        drops the factor ``y_t / (y_t + 1e-7)`` (it differs from 1 by less
        than 1e-7 / y_t); keeping it makes this the derivative of the loss
        as defined, so a gradient check leaves only the truncation and
        rounding of the central difference.

        Parameters
        ----------
        x : array_like, shape (N, D)
        t : array_like, shape (N,) labels or (N, K) one-hot
        backend : {"numpy", "numba", "c"}, optional
            Backend of the products with ``x`` (forward ``x @ W1`` and
            ``dW1 = x.T @ da1``, which skip x's zeros); None uses the global
            backend. Backends differ only in the rounding of these sums.

        Returns
        -------
        dict of str to ndarray
            ``W1``, ``b1``, ``W2``, ``b2``, with the parameters' shapes.
        """
        self._check_params(for_numerical=False)
        return self._gradient(*self._check_batch(x, t), backend)

    def _gradient(self, x, labels, backend):
        n = len(labels)
        p = self.params
        kernels = backends.resolve(backend)
        _, z1, _, y = self._forward(x, backend)
        # softmax + cross-entropy: dL/da2
        rows = np.arange(n)
        y_t = y[rows, labels]
        da2 = y.copy()
        da2[rows, labels] -= 1.0
        da2 *= (y_t / (y_t + DELTA) / n)[:, None]  # (N, K)
        # a2 = z1 W2 + b2
        dW2 = z1.T @ da2  # (H, K); this and the next product are too small for BLAS's threads
        dz1 = da2 @ p["W2"].T  # (N, H)
        # z1 = sigmoid(a1)
        da1 = dz1 * z1 * (1.0 - z1)
        # a1 = x W1 + b1
        dW1 = np.empty_like(p["W1"])
        kernels.affine_weight_grad(x, da1, dW1)  # (D, H), skips x's zeros
        return {"W1": dW1, "b1": da1.sum(axis=0), "W2": dW2, "b2": da2.sum(axis=0)}

    # -- validation ------------------------------------------------------
    # The public methods check their arguments and call the private ones
    # (_loss, _gradient, _numerical_gradient), which take a checked C-contiguous
    # float32 or float64 x and intp labels; a training loop checks its data once and
    # calls those directly.
    def _check_params(self, for_numerical):
        p = self.params
        missing = [k for k in PARAM_NAMES if k not in p]
        if missing:
            raise KeyError(f"params: missing {missing}")
        d, hdim = np.shape(p["W1"])
        k = np.shape(p["W2"])[1]
        expected = {"W1": (d, hdim), "b1": (hdim,), "W2": (hdim, k), "b2": (k,)}
        for name in PARAM_NAMES:
            a = p[name]
            if not isinstance(a, np.ndarray) or a.shape != expected[name]:
                raise ValueError(f"params['{name}']: expected an array of shape {expected[name]}, got {np.shape(a)}")
            if a.dtype != np.float64:
                if for_numerical and a.dtype.kind == "f":
                    raise TypeError(
                        f"params['{name}']: dtype {a.dtype} cannot represent a step h=1e-4 of the numerical "
                        "gradient to useful precision; keep parameters float64"
                    )
                raise TypeError(f"params['{name}']: expected float64, got {a.dtype}")
            if not np.isfinite(a).all():
                raise ValueError(f"params['{name}']: contains NaN or inf")

    def _check_x(self, x):
        x = np.asarray(x)
        # float32 (load_mnist's pixels) goes to the kernels as it is: they
        # promote it to float64 exactly, as NumPy does in the chapter's code.
        x = np.ascontiguousarray(x) if x.dtype == np.float32 else as_float64(x, "x")
        d = self.params["W1"].shape[0]
        if x.ndim != 2 or x.shape[1] != d or x.shape[0] == 0:
            raise ValueError(f"x: expected a batch of shape (N, {d}) with N >= 1, got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("x: contains NaN or inf")
        return x

    def _check_batch(self, x, t):
        x = self._check_x(x)
        labels = labels_from_targets(t, x.shape[0], self.params["W2"].shape[1])
        return x, labels
