"""MNIST that just works: shipped, verified, cached without pickle.

>>> from scratchnet.datasets import load_mnist
>>> (x_train, t_train), (x_test, t_test) = load_mnist()  # doctest: +SKIP
>>> x_train.shape, x_train.dtype  # doctest: +SKIP
((60000, 784), dtype('float32'))
"""

from .download import MIRRORS, MNIST_MD5, DownloadError, download_mnist
from .idx import MissingFileError, MNISTError, read_idx
from .mnist import cache_dir, load_mnist

__all__ = [
    "load_mnist",
    "read_idx",
    "download_mnist",
    "cache_dir",
    "MNISTError",
    "MissingFileError",
    "DownloadError",
    "MIRRORS",
    "MNIST_MD5",
]
