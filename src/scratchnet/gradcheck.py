"""Gradient check: numerical against backpropagated gradients (section 5.7)."""

import numpy as np

from ._config import DEFAULT_H
from .network import PARAM_NAMES


def gradient_check(network, x, t, *, h=DEFAULT_H, backend=None):
    """Largest absolute difference between the numerical and backprop gradients.

    The chapter prints the mean difference and leaves the reader to judge;
    this returns the maximum per parameter, for a caller or a test to assert.

    Parameters
    ----------
    network : TwoLayerNet
    x : array_like, shape (N, D)
    t : array_like, shape (N,) labels or (N, K) one-hot
    h : float, optional
        Step of :meth:`TwoLayerNet.numerical_gradient`.
    backend : {"numpy", "numba", "c"}, optional
        Backend of the numerical gradient.

    Returns
    -------
    dict of str to float
        ``W1``, ``b1``, ``W2``, ``b2``: ``max |numerical - backprop|``. With
        the chapter's ``h`` and data this is the central difference's
        truncation, about 1e-10 for a fresh 784-50-10 net
        (docs/numerical_gradient.rst, section 'How exact').

    Examples
    --------
    >>> import numpy as np, scratchnet as sn
    >>> net = sn.TwoLayerNet(4, 3, 2, seed=0)
    >>> x = np.random.default_rng(0).random((5, 4))
    >>> max(sn.gradient_check(net, x, [0, 1, 1, 0, 1]).values()) < 1e-9
    True
    """
    numerical = network.numerical_gradient(x, t, h=h, backend=backend)
    backprop = network.gradient(x, t)
    return {name: float(np.max(np.abs(numerical[name] - backprop[name]))) for name in PARAM_NAMES}
