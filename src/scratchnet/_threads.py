"""One thread count for the whole process, for the Numba and the C kernels alike.

Numba's own count is per calling thread (``numba.set_num_threads`` in one
Python thread leaves the others at the default), the C pool's is global.
scratchnet keeps the count here and applies it to Numba before each Numba
kernel, in whatever Python thread calls it, and to the C pool when it
changes.

The default is the number of CPUs this process may run on
(``os.sched_getaffinity``; a process pinned to one core gets one thread),
at most the threads Numba was started with.
"""

import numbers
import os
import threading

MAX_THREADS = 256  # the C pool's limit

_state = {"threads": None}
_lock = threading.Lock()


def usable_cpus():
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def numba_limit():
    """The threads Numba was started with (``NUMBA_NUM_THREADS``)."""
    import numba

    return numba.config.NUMBA_NUM_THREADS


def get_num_threads():
    """The number of threads of the Numba and C kernels."""
    n = _state["threads"]
    if n is None:
        with _lock:
            if _state["threads"] is None:
                _state["threads"] = max(1, min(usable_cpus(), numba_limit(), MAX_THREADS))
            n = _state["threads"]
    return n


def set_num_threads(n):
    """Set the threads of the Numba and C kernels, for every Python thread of the process.

    Results do not depend on it: every parallel kernel writes disjoint
    outputs and sums in a fixed order.

    Parameters
    ----------
    n : int
        1 <= n <= the number of threads Numba was started with
        (``NUMBA_NUM_THREADS``, by default the number of cores).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n: number of threads must be an int, got {type(n).__name__}")
    n = int(n)  # np.int64 too
    limit = min(numba_limit(), MAX_THREADS)
    if not 1 <= n <= limit:
        raise ValueError(f"n: number of threads must be between 1 and {limit}, got {n}")
    with _lock:
        _state["threads"] = n
        _apply_to_c(n)


def _apply_to_c(n):
    from . import backends

    c = backends.loaded("c")
    if c is not None:
        c.set_num_threads(n)


def sync_numba():
    """Give the calling Python thread the process's thread count in Numba (its count is per thread)."""
    import numba

    n = get_num_threads()
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
