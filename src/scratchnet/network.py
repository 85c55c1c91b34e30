"""The chapter's two-layer net: affine -> sigmoid -> affine -> softmax.

Shapes: x (N, D), W1 (D, H), b1 (H,), W2 (H, K), b2 (K,), t (N,) labels or
(N, K) one-hot. Every computation runs on a backend's kernels
(:mod:`scratchnet.backends`), which read x through its list of non-zeros (a
:class:`~scratchnet.backends.structs.Batch`; about 81% of an MNIST digit
is zeros). Backends differ only in rounding.

Two ways in: the methods of the chapter (``predict``, ``loss``,
``accuracy``, ``numerical_gradient``, ``gradient``) check their arguments;
the ``*_batch`` methods and :meth:`TwoLayerNet.count_correct` take data
checked once and put in the kernels' form (``make_batch``), for a training
loop that should not check every mini-batch again.
"""

import numbers
import os

import numpy as np

from . import backends
from ._config import DEFAULT_H, as_written
from ._validation import (
    FAULT_PARAMS,
    FAULT_WEIGHTS,
    FAULT_X,
    as_array,
    as_float64,
    check_step,
    forward_overflow,
    kernel_array,
    labels_from_targets,
    make_rng,
    refuse_complex,
)
from .backends.structs import Forward, Grads, Params

PARAM_NAMES = ("W1", "b1", "W2", "b2")
NUMGRAD_METHODS = ("series", "perturbed")


class TwoLayerNet:
    """Two-layer net with a sigmoid hidden layer and a softmax output.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
        D, H and K (784, 50 and 10 in the chapter).
    weight_init_std : float, optional
        Weights start as ``weight_init_std * standard_normal``; biases at 0.
    seed : int >= 0, numpy.random.SeedSequence or numpy.random.Generator, optional
        Source of the initial weights: anything ``numpy.random.default_rng``
        takes (also a sequence of ints >= 0, or a BitGenerator). None: fresh
        entropy.

    Raises
    ------
    TypeError
        ``seed`` (or ``weight_init_std``) is of a type that cannot be used.
    ValueError
        A size is not a positive integer, ``weight_init_std`` is not finite,
        or ``seed`` is negative.
    MemoryError
        The parameters alone would not fit in this machine's memory.

    Attributes
    ----------
    params : dict of str to ndarray of float64
        ``W1`` (D, H), ``b1`` (H,), ``W2`` (H, K), ``b2`` (K,). Arrays may be
        replaced, by arrays of these shapes: every method checks them.
    sizes : tuple of int
        (D, H, K), fixed at construction.
    """

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01, *, seed=None):
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        if isinstance(weight_init_std, bool) or not isinstance(weight_init_std, numbers.Real):
            raise TypeError(f"weight_init_std: expected a real number, got {type(weight_init_std).__name__}")
        if not np.isfinite(weight_init_std):
            raise ValueError(f"weight_init_std: expected a finite number, got {weight_init_std!r}")
        rng = make_rng(seed)
        _check_memory(input_size, hidden_size, output_size)
        self.sizes = (int(input_size), int(hidden_size), int(output_size))
        self.params = {
            "W1": weight_init_std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": weight_init_std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }

    # -- the chapter's methods (checked) ---------------------------------------
    def predict(self, x, *, backend=None):
        """Class probabilities, shape (N, K), for inputs ``x`` of shape (N, D).

        ``backend`` (``"numpy"``, ``"numba"`` or ``"c"``; None for the
        global one) runs the forward pass, here and in every method.
        """
        self.check_params()
        return self.forward_batch(self.make_batch(x, backend=backend), backend=backend).y

    def loss(self, x, t, *, backend=None):
        """The chapter's cross-entropy: ``-mean(log(y[n, t_n] + 1e-7))``."""
        self.check_params()
        batch, labels = self._checked_batch(x, t, backend)
        return self.loss_batch(batch, labels, backend=backend)

    def accuracy(self, x, t, *, backend=None):
        """Fraction of samples whose largest logit (most probable class) is the label."""
        self.check_params()
        x = self._check_x(x)
        labels = labels_from_targets(t, x.shape[0], self.sizes[2])
        data = backends.resolve(backend).sparse_rows(x)
        return self.count_correct(data, labels, backend=backend) / len(labels)

    def numerical_gradient(self, x, t, *, h=DEFAULT_H, method="series", backend=None):
        """Central-difference gradient of :meth:`loss` for every parameter.

        For each parameter p, the quantity the chapter's loop computes,
        ``(loss with p + h - loss with p - h) / 2h`` with the loop's real
        steps ``fl(p + h) - p`` and ``p - fl(p - h)``; the parameters are
        never modified, not even temporarily. Two methods compute it:

        ``"series"`` (default)
            Each perturbed loss as a power series in the step, summed over
            the samples like backprop (about two backprops); exact to a few
            ulps. A hidden unit or logit whose remainder bound is not below
            the result's rounding takes ``"perturbed"`` instead (none on the
            chapter's data; every hidden unit on unscaled 0-255 pixels).
        ``"perturbed"``
            Each perturbed loss from the unperturbed forward pass, the
            per-sample differences summed: no cancellation of two batch
            losses, about 1e-12 absolute on the chapter's net, any input;
            a few times slower.

        Both are derived in docs/numerical_gradient.rst
        (:doc:`/numerical_gradient`), sections 'Method "series" (the
        default)', 'The remainder bound' (where the series gives way) and
        'Method "perturbed"'.

        Parameters
        ----------
        x : array_like, shape (N, D)
            float32 input (as :func:`load_mnist` gives) is promoted to
            float64 exactly, as NumPy does in the chapter's code.
        t : array_like, shape (N,) labels or (N, K) one-hot
        h : float, optional
            The step: positive, finite and normal, with 2h finite.
        method : {"series", "perturbed"}, optional
        backend : {"numpy", "numba", "c"}, optional

        Returns
        -------
        dict of str to ndarray
            ``W1``, ``b1``, ``W2``, ``b2``: gradients with the parameters' shapes.

        Raises
        ------
        ValueError
            A bad ``h`` or ``method``; NaN or inf in ``x`` or a parameter;
            shapes that do not fit the net; labels out of range.
        TypeError
            float32 parameters (a step of 1e-4 keeps only a few of their
            digits); ``x`` or labels of the wrong kind.
        FloatingPointError
            The forward pass overflows (inputs or weights of extreme size);
            the message says which.
        """
        h = check_step(h)
        _check_method(method)
        self.check_params(for_numerical=True)
        batch, labels = self._checked_batch(x, t, backend)
        return self.numerical_gradient_batch(batch, labels, h=h, method=method, backend=backend)

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

        Returns
        -------
        dict of str to ndarray
            ``W1``, ``b1``, ``W2``, ``b2``, with the parameters' shapes.
        """
        self.check_params()
        batch, labels = self._checked_batch(x, t, backend)
        return self.gradient_batch(batch, labels, backend=backend)

    # -- data checked once (unchecked) -----------------------------------------
    def make_batch(self, x, *, backend=None):
        """``x`` (N, D) checked and listed as a Batch of its non-zeros, for the ``*_batch`` methods."""
        return backends.resolve(backend).batch_from_dense(self._check_x(x))

    def forward_batch(self, batch, *, backend=None):
        """The forward pass (a :class:`~scratchnet.backends.structs.Forward`) of a Batch.

        Raises FloatingPointError, saying which, if x W1 + b1 or the logits
        overflow (inputs or weights of extreme size).
        """
        kernels = backends.resolve(backend)
        params = self.kernel_params()
        fwd = _forward_arrays(batch.n, *params.W2.shape)
        kernels.forward(fwd, batch, params)
        if not (np.isfinite(fwd.a1).all() and np.isfinite(fwd.a2).all()):
            raise self._overflow(fwd, batch)
        return fwd

    def _overflow(self, fwd, batch):
        """The FloatingPointError of a non-finite forward pass, marked with its cause
        (:func:`~scratchnet._validation.forward_overflow`): a parameter, the hidden pre-activations or the logits."""
        for name in PARAM_NAMES:
            if not np.isfinite(self.params[name]).all():
                return forward_overflow(FAULT_PARAMS, f"params['{name}']", "contains NaN or inf")
        if not np.isfinite(fwd.a1).all():
            return forward_overflow(
                FAULT_X,
                "x",
                f"the hidden pre-activations x W1 + b1 overflow (the largest |x| is {batch.xmax:.3g}, the largest "
                f"|W1| {np.abs(self.params['W1']).max():.3g}); scale the inputs or the weights",
            )
        return forward_overflow(
            FAULT_WEIGHTS,
            "params['W2']",
            f"the logits z W2 + b2 overflow (the largest |W2| is {np.abs(self.params['W2']).max():.3g}, "
            f"|b2| {np.abs(self.params['b2']).max():.3g}): the weights diverged",
        )

    def loss_batch(self, batch, labels, *, backend=None):
        """:meth:`loss` of a Batch and labels (N,) intp in range, as checked by the caller."""
        fwd = self.forward_batch(batch, backend=backend)
        return float(backends.resolve(backend).cross_entropy_error(fwd.y, labels))

    def numerical_gradient_batch(self, batch, labels, *, h=DEFAULT_H, method="series", backend=None):
        """:meth:`numerical_gradient` of a Batch and labels (N,) intp; h and method as checked by the caller."""
        kernels = backends.resolve(backend)
        params = self.kernel_params()
        fwd = _forward_arrays(batch.n, *params.W2.shape)  # the kernels compute the forward pass themselves
        grads = Grads(*(np.empty_like(p) for p in params))
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is diagnosed just below
            if method == "series":
                kernels.numgrad_series(grads, batch, labels, params, fwd, h)
            else:
                kernels.numgrad_perturbed(grads, batch, labels, params, fwd, h)
        if not (np.isfinite(fwd.a1).all() and np.isfinite(fwd.a2).all()):
            raise self._overflow(fwd, batch)
        return dict(zip(PARAM_NAMES, grads))

    def gradient_batch(self, batch, labels, *, backend=None):
        """:meth:`gradient` of a Batch and labels (N,) intp."""
        kernels = backends.resolve(backend)
        params = self.kernel_params()
        fwd = self.forward_batch(batch, backend=backend)
        grads = Grads(*(np.empty_like(p) for p in params))
        kernels.backprop(grads, batch, labels, params, fwd)
        return dict(zip(PARAM_NAMES, grads))

    def count_correct(self, data, labels, *, backend=None):
        """Rows of ``data`` (SparseRows) whose largest logit is at ``labels`` (N,) intp."""
        return int(backends.resolve(backend).count_correct(data, labels, self.kernel_params()))

    # -- parameters -------------------------------------------------------------
    def kernel_params(self):
        """The parameters as the kernels take them (Params, C-contiguous float64).

        Checks what any kernel's memory safety needs, in constant time: the
        four arrays are present, float64 and of consistent shapes
        (contiguous copies where they are not contiguous). Finiteness is
        checked by :meth:`check_params`.
        """
        p = self.params
        if not isinstance(p, dict):
            raise TypeError(f"params: expected a dict of arrays, got {type(p).__name__}")
        missing = [name for name in PARAM_NAMES if name not in p]
        if missing:
            raise KeyError(f"params: missing {missing}")
        for name in PARAM_NAMES:
            a = p[name]
            if not isinstance(a, np.ndarray):
                raise TypeError(f"params['{name}']: expected a numpy array, got {type(a).__name__}")
            refuse_complex(a, f"params['{name}']", "keep parameters real float64")
            if a.dtype != np.float64:
                raise TypeError(f"params['{name}']: expected float64, got {a.dtype}")
        d, h, k = self.sizes
        expected = {"W1": (d, h), "b1": (h,), "W2": (h, k), "b2": (k,)}
        for name in PARAM_NAMES:
            if p[name].shape != expected[name]:
                raise ValueError(
                    f"params['{name}']: expected shape {expected[name]} (TwoLayerNet({d}, {h}, {k})), "
                    f"got {p[name].shape}"
                )
        return Params(*(kernel_array(p[name]) for name in PARAM_NAMES))

    def check_params(self, *, for_numerical=False):
        """Check the parameters fully: :meth:`kernel_params`, and every entry finite.

        ``for_numerical`` refuses float32 parameters with the reason (a step
        of 1e-4 keeps only a few of its digits in float32).
        """
        p = self.params
        if for_numerical and isinstance(p, dict):
            for name in PARAM_NAMES:
                a = p.get(name)
                if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.dtype != np.float64:
                    raise TypeError(
                        f"params['{name}']: dtype {a.dtype} cannot represent a step h={as_written(DEFAULT_H)} of the "
                        "numerical gradient to useful precision; keep parameters float64"
                    )
        params = self.kernel_params()
        for name, a in zip(PARAM_NAMES, params):
            if not np.isfinite(a).all():
                raise ValueError(f"params['{name}']: contains NaN or inf")
        return params

    # -- data -------------------------------------------------------------------
    def _check_x(self, x):
        x = as_array(x, "x")
        # float32 (load_mnist's pixels) goes to the kernels as it is: they
        # promote it to float64 exactly, as NumPy does in the chapter's code.
        x = kernel_array(x) if x.dtype == np.float32 else as_float64(x, "x")
        d = self.sizes[0]
        if x.ndim != 2 or x.shape[1] != d or x.shape[0] == 0:
            raise ValueError(f"x: expected a batch of shape (N, {d}) with N >= 1, got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("x: contains NaN or inf")
        return x

    def _checked_batch(self, x, t, backend):
        x = self._check_x(x)
        labels = labels_from_targets(t, x.shape[0], self.sizes[2])
        return backends.resolve(backend).batch_from_dense(x), labels


def _forward_arrays(n, h, k):
    """An empty Forward for n samples."""
    return Forward(*(np.empty(shape) for shape in ((n, h), (n, h), (n, h), (n, k), (n, k), (n,), (n, k))))


def _check_memory(d, h, k):
    """Refuse sizes whose parameters alone would not fit in this machine's memory."""
    need = 8 * (d * h + h + h * k + k)
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: let NumPy say it
        return
    if need > have:
        raise MemoryError(
            f"hidden_size: {h} hidden units need {need / 2**30:.3g} GiB for the parameters alone, more than "
            f"this machine's {have / 2**30:.3g} GiB of memory"
        )


def _check_method(method):
    if method not in NUMGRAD_METHODS:
        raise ValueError(f"method: expected one of {list(NUMGRAD_METHODS)}, got {method!r}")
