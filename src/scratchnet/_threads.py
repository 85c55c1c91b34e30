"""One thread count for the whole process, for the Numba and the C kernels alike.

Numba's own count is per calling thread (``numba.set_num_threads`` in one
Python thread leaves the others at the default), the C pool's is global.
scratchnet keeps the count here and applies it to Numba before each Numba
kernel, in whatever Python thread calls it, and to the C pool when it
changes.

The default is the number of CPUs this process may run on
(``os.sched_getaffinity``; a process pinned to one core gets one thread),
at most the threads Numba was started with.

Numba's threads (:func:`configure_numba`, before Numba starts them):
Numba picks its threading layer in the order TBB, OpenMP, workqueue. The
``tbb`` package (``pip install "scratchnet[tbb]"``, x86-64 Linux and
Windows) puts TBB's library where Numba does not look; it is loaded here so
that Numba finds it. TBB balances work between threads and survives
``fork()``. With GNU OpenMP, whose barriers wait for every thread, idle
threads are made to wait passively (``OMP_WAIT_POLICY=passive``) unless
the environment says otherwise: a spinning thread would take the core a
descheduled thread needs, and on a busy machine each parallel region would
then wait milliseconds for it. GNU OpenMP cannot survive ``fork()``: Numba
terminates a child forked after its OpenMP threads ran; a message in the
parent says so and how to avoid it (the ``spawn`` start method, or TBB).
The C kernels use their own pool (kernels/pool.c), which is fork-safe.
"""

import ctypes
import importlib.metadata
import numbers
import os
import sys
import threading

MAX_THREADS = 256  # the C pool's limit

_state = {"threads": None}
_followers = []  # set_num_threads(n) of thread pools outside Numba (follow)
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
        for apply in _followers:
            apply(n)


def follow(apply):
    """Call ``apply(n)`` with the thread count now and at every change (the C backend's pool, when the
    registry loads it: backends.load)."""
    get_num_threads()  # sets the default, if it is not set
    with _lock:
        _followers.append(apply)
        apply(_state["threads"])


def configure_numba():
    """Set up Numba's threading before its first parallel kernel (once; see the module docstring)."""
    if _state.get("configured"):
        return
    with _lock:
        if _state.get("configured"):
            return
        _state["configured"] = True
        if "NUMBA_THREADING_LAYER" not in os.environ:
            _load_tbb()
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # read by libgomp when Numba loads it
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=_warn_before_fork)


def _load_tbb():
    """Load the tbb package's libtbb (if installed) so that Numba's default layer finds it."""
    try:
        files = importlib.metadata.files("tbb") or []
    except importlib.metadata.PackageNotFoundError:
        return
    for f in files:
        if f.name.startswith("libtbb.so.12"):
            try:
                ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                pass  # a broken tbb install: Numba falls back to OpenMP
            return


def threading_layer():
    """Numba's threading layer ("tbb", "omp" or "workqueue"), or None before its first parallel kernel."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return None


def _warn_before_fork():
    if threading_layer() == "omp":
        sys.stderr.write(
            "scratchnet: fork() after Numba's OpenMP threads ran: Numba terminates the child (GNU OpenMP "
            "cannot survive fork). Start processes with multiprocessing's 'spawn' method "
            "(multiprocessing.get_context('spawn')), or install TBB: pip install \"scratchnet[tbb]\"\n"
        )


def sync_numba():
    """Give the calling Python thread the process's thread count in Numba (its count is per thread)."""
    import numba

    configure_numba()
    n = get_num_threads()
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
