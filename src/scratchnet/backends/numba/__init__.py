"""The Numba backend (the default): ``@njit(parallel=True)`` kernels, arrays
in, preallocated arrays out, no validation.

Every parallel iteration writes only what it owns (an element, a row, a
column of a gradient) and sums in a fixed order, so 1 and N threads give
bitwise identical results. Each kernel module has a C twin of the same name
in kernels/ that agrees with it bit for bit; in a process forked after
Numba's OpenMP threads started, where these kernels cannot run, the twins
run instead (scratchnet._threads).
"""

import functools

from ..._config import check_numba_environment
from ..._threads import configure_numba, forked_after_openmp, sync_numba
from .. import load

check_numba_environment()  # a one-line error, not Numba's traceback at its import
configure_numba()  # before any Numba kernel starts its threads (TBB if installed; passive OpenMP)
# Submodules by other names: the kernels below take the names of some of them.
from . import activations as _activations
from . import backprop as _backprop
from . import engine as _engine
from . import forward as _forward
from . import losses as _losses
from . import numgrad_perturbed as _numgrad_perturbed
from . import numgrad_series as _numgrad_series
from . import sparse as _sparse


def _with_threads(kernel):
    """Run ``kernel`` with the process's thread count (Numba's is per Python thread), or its C twin in a
    process forked after Numba's OpenMP threads started."""

    @functools.wraps(kernel)
    def run(*args):
        if forked_after_openmp():
            return _c_twin(kernel.__name__)(*args)
        sync_numba()
        return kernel(*args)

    return run


def _c_twin(name):
    try:
        return getattr(load("c"), name)
    except ImportError:
        raise RuntimeError(
            "backend: the numba backend cannot run in a process forked after Numba's OpenMP threads "
            "started (GNU OpenMP does not survive fork), and the c backend that stands in for it there "
            "is not built. Start processes with multiprocessing's 'spawn' method "
            "(multiprocessing.get_context('spawn')), or install TBB, whose threads survive fork: "
            'pip install "scratchnet[tbb]"'
        ) from None


sigmoid = _with_threads(_activations.sigmoid)
softmax = _with_threads(_activations.softmax)
cross_entropy_error = _with_threads(_losses.cross_entropy_error)
sparse_rows = _with_threads(_sparse.sparse_rows)
batch_take = _with_threads(_sparse.batch_take)
batch_from_dense = _with_threads(_sparse.batch_from_dense)
forward = _with_threads(_forward.forward)
count_correct = _with_threads(_forward.count_correct)
backprop = _with_threads(_backprop.backprop)
numgrad_series = _with_threads(_numgrad_series.numgrad_series)
numgrad_perturbed = _with_threads(_numgrad_perturbed.numgrad_perturbed)
train_stretch = _with_threads(_engine.train_stretch)
count_correct_pair = _with_threads(_forward.count_correct_pair)

__all__ = [
    "backprop",
    "batch_from_dense",
    "batch_take",
    "count_correct",
    "count_correct_pair",
    "cross_entropy_error",
    "forward",
    "numgrad_perturbed",
    "numgrad_series",
    "sigmoid",
    "softmax",
    "sparse_rows",
    "train_stretch",
]
