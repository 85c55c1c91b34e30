"""Keep BLAS's own thread pool out of the way of the parallel kernels.

After a matrix product, OpenBLAS's worker threads busy-wait for more work.
On a small machine they then hold the cores that a Numba or C kernel started
right after needs, and a 1.4 ms numerical gradient becomes 30 ms or more
(measured on 2 cores). The products of a training batch are small, so one
BLAS thread is as fast for them and leaves the cores free.
"""


def single_threaded_blas():
    """Context manager: BLAS calls inside it use one thread.

    The loaded libraries are scanned at each call: a BLAS loaded since (SciPy's,
    brought in by another package) is limited too.
    """
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().limit(limits=1, user_api="blas")
