"""Keep BLAS's own thread pool out of the way of the parallel kernels.

After a matrix product, OpenBLAS's worker threads busy-wait for more work.
On a small machine they then hold the cores that a Numba or C kernel started
right after needs, and a 1.4 ms numerical gradient becomes 30 ms or more
(measured on 2 cores). The products of a training batch are small, so one
BLAS thread is as fast for them and leaves the cores free.
"""

import contextlib
import os


def single_threaded_blas():
    """Context manager: BLAS calls inside it use one thread.

    The loaded libraries are scanned at each call: a BLAS loaded since (SciPy's,
    brought in by another package) is limited too.
    """
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().limit(limits=1, user_api="blas")


def single_threaded_blas_unless_configured():
    """:func:`single_threaded_blas` for a whole run, unless the user set BLAS's thread count.

    A run's products left to BLAS are small, and the cores are the parallel
    kernels'; but ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` or
    ``MKL_NUM_THREADS`` in the environment is the user's choice and wins.
    """
    if any(v in os.environ for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return contextlib.nullcontext()
    return single_threaded_blas()
