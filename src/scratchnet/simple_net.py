"""simpleNet: the chapter's first gradient of a network (section 4.4.2)."""

import numpy as np

from ._validation import as_array, make_rng, refuse_complex
from .functions import cross_entropy_error, softmax


class SimpleNet:
    """The chapter's one-layer net: 2 inputs, 3 classes, weights only.

    ``predict(x) = x @ W`` and ``loss(x, t) = cross_entropy_error(softmax(predict(x)), t)``.
    The chapter takes the gradient of the loss with respect to ``W`` by
    perturbing ``W`` in place while ``f`` ignores its argument:

    >>> import numpy as np, scratchnet as sn
    >>> net = sn.SimpleNet(seed=0)
    >>> x, t = np.array([0.6, 0.9]), np.array([0, 0, 1])
    >>> dW = sn.numerical_gradient(lambda W: net.loss(x, t), net.W)
    >>> dW.shape
    (2, 3)

    Parameters
    ----------
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator, optional
        Source of the initial ``W``, standard normal as in the book (which
        draws from the global ``np.random.randn``). None: fresh entropy.

    Attributes
    ----------
    W : ndarray of float64, shape (2, 3)
        Input ``i`` to class ``j``; may be replaced, e.g. by the values the
        chapter prints.
    """

    def __init__(self, seed=None):
        self.W = make_rng(seed).standard_normal((2, 3))

    def predict(self, x):
        """Scores ``x @ W``: shape (3,) for one input (2,), (N, 3) for a batch (N, 2)."""
        x = refuse_complex(as_array(x, "x"), "x")
        return np.asarray(x, dtype=np.float64) @ refuse_complex(as_array(self.W, "W"), "W")

    def loss(self, x, t):
        """Cross-entropy of the softmax of :meth:`predict`; ``t`` one-hot or labels."""
        return cross_entropy_error(softmax(self.predict(x)), t)


# The textbook's own (lower-case) name, so its code runs unchanged.
simpleNet = SimpleNet
