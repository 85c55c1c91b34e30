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
then wait milliseconds for it.

Fork: GNU OpenMP cannot survive ``fork()``. In a child forked after Numba
started its OpenMP layer, Numba's first parallel kernel sends the child
SIGTERM (a ``multiprocessing.Pool`` then waits forever for the lost task;
under a Python SIGTERM handler the kernel returns without computing); in a
grandchild, or once the parent has exited, it deadlocks in libgomp. So such
a child (:func:`forked_after_openmp`, set by an at-fork hook) never calls
a parallel Numba kernel: the numba backend's kernels run their C twins,
with bitwise the same results, and the gradient loop around a jitted ``f``
runs on one thread. Without the C backend the numba backend's kernels
raise :class:`RuntimeError` there, saying what to do instead. TBB and
Numba's workqueue layer survive ``fork()``: nothing changes with them.
The C kernels use their own pool (kernels/pool.c), which is fork-safe.
"""

import ctypes
import importlib.metadata
import numbers
import os
import sys
import threading

from ._config import check_numba_environment, raise_if_layer_unavailable, usable_cpus

MAX_THREADS = 256  # the C pool's limit

_state = {"threads": None, "forked_after_openmp": False}
_followers = []  # set_num_threads(n) of thread pools outside Numba (follow)
_lock = threading.Lock()


def numba_limit():
    """The threads Numba was started with (``NUMBA_NUM_THREADS``)."""
    check_numba_environment()  # before import numba reads them
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


def forked_after_openmp():
    """True in a process forked after Numba started its OpenMP layer: it must not call a parallel
    Numba kernel (see the module docstring)."""
    return _state["forked_after_openmp"]


def _after_fork_in_child():
    # Numba is in sys.modules only if this process imported it; a grandchild keeps the flag.
    if "numba" in sys.modules and threading_layer() == "omp":
        _state["forked_after_openmp"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def sync_numba():
    """Give the calling Python thread the process's thread count in Numba (its count is per thread)."""
    import numba

    configure_numba()
    n = get_num_threads()
    try:
        current = numba.get_num_threads()  # the first call starts Numba's threads
    except ValueError as exc:  # "No threading layer could be loaded. HINT: ..."
        raise_if_layer_unavailable(exc)
        raise
    if current != n:
        numba.set_num_threads(n)
