"""Keep BLAS's own thread pool out of the way of the parallel kernels.

After a matrix product, OpenBLAS's worker threads busy-wait for more work.
On a small machine they then hold the cores that a Numba or C kernel started
right after needs, and a 1.4 ms numerical gradient becomes 30 ms or more
(measured on 2 cores). The products of a training batch are small, so one
BLAS thread is as fast for them and leaves the cores free.
"""

_controller = None


def single_threaded_blas():
    """Context manager: BLAS calls inside it use one thread."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()  # scans the loaded libraries once
    return _controller.limit(limits=1, user_api="blas")
