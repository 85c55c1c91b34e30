"""scratchnet: chapter 4 of "Deep Learning from Scratch" as real software.

The textbook's functions under their own names, with interchangeable
backends (``"numpy"`` reference, ``"numba"`` default, ``"c"`` compiled):

>>> import numpy as np, scratchnet as sn
>>> sn.numerical_gradient(lambda x: np.sum(x**2), np.array([3.0, 4.0]))
array([6., 8.])
"""

from ._config import EnvironmentVariableError
from ._threads import get_num_threads, set_num_threads
from ._version import __version__  # noqa: F401 (scratchnet.__version__)
from .backends import available_backends, get_backend, set_backend
from .datasets import load_mnist
from .functions import cross_entropy_error, sigmoid, softmax, sum_squared_error, sum_squares_error
from .gradcheck import gradient_check
from .gradient import gradient_descent, numerical_diff, numerical_gradient
from .network import TwoLayerNet
from .simple_net import SimpleNet, simpleNet
from .sweep import sweep
from .training import History, train

__all__ = [
    "available_backends",
    "cross_entropy_error",
    "EnvironmentVariableError",
    "get_backend",
    "get_num_threads",
    "History",
    "load_mnist",
    "gradient_check",
    "gradient_descent",
    "numerical_diff",
    "numerical_gradient",
    "set_backend",
    "set_num_threads",
    "sigmoid",
    "SimpleNet",
    "simpleNet",
    "softmax",
    "sum_squared_error",
    "sum_squares_error",
    "sweep",
    "train",
    "TwoLayerNet",
]
