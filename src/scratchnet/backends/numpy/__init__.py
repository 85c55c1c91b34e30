"""The NumPy backend: the readable reference and oracle of the compiled backends.

Vectorised NumPy, what the book would write; arrays arrive validated
(C-contiguous float64, labels in range) and outputs preallocated, as for
every backend (see ``scratchnet.backends``).
"""

from .activations import sigmoid, softmax
from .backprop import backprop
from .forward import count_correct, forward
from .losses import cross_entropy_error
from .numgrad_perturbed import numgrad_perturbed
from .numgrad_series import numgrad_series
from .sparse import batch_from_dense, batch_take, sparse_rows

__all__ = [
    "backprop",
    "batch_from_dense",
    "batch_take",
    "count_correct",
    "cross_entropy_error",
    "forward",
    "numgrad_perturbed",
    "numgrad_series",
    "sigmoid",
    "softmax",
    "sparse_rows",
]
