"""Setup helpers shared by the asv suites (imported, never benchmarked).

Every suite builds its data here from a fixed seed, so two commits are
timed on the same inputs.
"""

import functools

import scratchnet

# Every backend scratchnet knows: the parameter grid is the same on every
# machine, so the dashboard's columns line up; a backend that did not build
# here is skipped per parameter combination by ``require_backend``.
BACKENDS = ("numpy", "numba", "c")

# The thread count of the benchmarks that do not vary it.
THREADS = 2

SEED = 20261127

# The chapter's net: 784 pixels -> 50 hidden units -> 10 classes.
INPUT_SIZE, HIDDEN_SIZE, OUTPUT_SIZE = 784, 50, 10
N_PARAMS = INPUT_SIZE * HIDDEN_SIZE + HIDDEN_SIZE + HIDDEN_SIZE * OUTPUT_SIZE + OUTPUT_SIZE  # 39,760


def require_backend(backend):
    """Skip (asv's NotImplementedError) a backend that is not installed here."""
    if backend not in scratchnet.available_backends():
        raise NotImplementedError(f"backend {backend!r} is not available on this installation")


def set_threads(n):
    """Fix the kernels' thread count; skip a count this machine cannot run.

    ``set_num_threads`` refuses more threads than Numba started with (the
    number of cores): on a one-core machine the 2-thread rows are skipped
    instead of failing.
    """
    import numba

    if n > numba.config.NUMBA_NUM_THREADS:
        raise NotImplementedError(f"{n} threads requested, Numba has {numba.config.NUMBA_NUM_THREADS}")
    scratchnet.set_num_threads(n)


@functools.cache  # asv re-runs setup before every timed call
def mnist(n_train=None, n_test=None):
    """(x_train, t_train, x_test, t_test): the first ``n_*`` samples of MNIST.

    Normalised float32 images (N, 784) and integer labels (N,), exactly as
    the chapter's ``load_mnist(normalize=True)`` gives them; the subset is
    the head of each set (MNIST's order is already shuffled). Cached: the
    callers must not modify the arrays.
    """
    from scratchnet.datasets import load_mnist

    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, flatten=True, one_hot_label=False)
    # Copies, so the full sets are freed once the subsets are taken.
    return tuple(a[:n].copy() for a, n in ((x_train, n_train), (t_train, n_train), (x_test, n_test), (t_test, n_test)))


def chapter_net(seed=SEED):
    """A 784-50-10 TwoLayerNet with the chapter's initialisation."""
    return scratchnet.TwoLayerNet(INPUT_SIZE, HIDDEN_SIZE, OUTPUT_SIZE, seed=seed)


# -- the textbook's loop, for the speedup track: scratchnet.textbook ---------------
from scratchnet.textbook import numerical_partials as textbook_partials  # noqa: E402,F401
from scratchnet.textbook import parameter_sample  # noqa: E402,F401
