"""Activations and losses: every backend, a small and a large batch.

"100x784" is one mini-batch of MNIST pixels (call overhead dominates);
"1000000x10" is a million rows of logits (memory bandwidth and threads
dominate; on the large size c and numba are several times faster than numpy).
"""

import numpy as np

import scratchnet

from .common import BACKENDS, SEED, THREADS, require_backend, set_threads

SHAPES = {"100x784": (100, 784), "1000000x10": (1_000_000, 10)}


class Activations:
    """sigmoid and softmax of a standard-normal batch."""

    params = (list(BACKENDS), list(SHAPES))
    param_names = ["backend", "size"]

    def setup(self, backend, size):
        require_backend(backend)
        set_threads(THREADS)
        self.x = np.random.default_rng(SEED).standard_normal(SHAPES[size])
        # Numba compilation (and the first load of the C extension)
        scratchnet.sigmoid(self.x[:2], backend=backend)
        scratchnet.softmax(self.x[:2], backend=backend)

    def time_sigmoid(self, backend, size):
        scratchnet.sigmoid(self.x, backend=backend)

    def time_softmax(self, backend, size):
        scratchnet.softmax(self.x, backend=backend)

    def peakmem_sigmoid(self, backend, size):
        scratchnet.sigmoid(self.x, backend=backend)

    def peakmem_softmax(self, backend, size):
        scratchnet.softmax(self.x, backend=backend)


class Losses:
    """cross_entropy_error of softmax outputs against integer labels."""

    params = (list(BACKENDS), list(SHAPES))
    param_names = ["backend", "size"]

    def setup(self, backend, size):
        require_backend(backend)
        set_threads(THREADS)
        rng = np.random.default_rng(SEED)
        n, k = SHAPES[size]
        # Rows of probabilities, normalised in place: peakmem_ reports the
        # process's high-water mark, setup included, so setup allocates no
        # temporaries larger than y itself.
        self.y = rng.random((n, k))
        self.y /= self.y.sum(axis=1, keepdims=True)
        self.t = rng.integers(0, k, n)
        # Numba compilation
        scratchnet.cross_entropy_error(self.y[:2], self.t[:2], backend=backend)

    def time_cross_entropy_error(self, backend, size):
        scratchnet.cross_entropy_error(self.y, self.t, backend=backend)

    def peakmem_cross_entropy_error(self, backend, size):
        scratchnet.cross_entropy_error(self.y, self.t, backend=backend)
