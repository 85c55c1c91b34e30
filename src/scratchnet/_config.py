"""The one place for Numba flags, package-wide defaults and the numbers the backends share.

Every Numba kernel in scratchnet is compiled through :func:`jit`, so the
flags below apply everywhere. ``fastmath`` stays off: the kernels must agree
with the NumPy reference to a few ulps, and reassociation would also make
results depend on vector width.
"""

import importlib.metadata
import os
import shlex
import stat
import tempfile

DEFAULT_BACKEND = "numba"
BACKEND_NAMES = ("numpy", "numba", "c")

# Each number below is written here once; the Python code uses it by name, and the C
# kernels' copies (kernels/scratchnet.h, kernels/numgrad_*.c) are checked against it
# (tests/test_backends.py). Messages print it with as_written.
DELTA = 1e-7  # the chapter's guard inside the log of cross_entropy_error: log(y + DELTA)
DEFAULT_H = 1e-4  # the chapter's step of the central difference
# Rows per dense block when the numpy backend counts correct predictions: the
# largest block of rows any backend's accuracy count holds.
ACCURACY_CHUNK = 2048
SUM_BLOCK = 1024  # samples per partial sum of a loss; fixed, so sums never depend on threads
SERIES_ORDER = 5  # highest power of the step kept by the series numerical gradient
# Radii r of the circles |d| = r on which the series' remainder is bounded (Cauchy),
# 0.01 * 1.15^k below pi, the bound taking the best; kernels/numgrad_series.c has the same literals.
SERIES_RADII = (
    0.01,
    0.0115,
    0.013225,
    0.0152087,
    0.0174901,
    0.0201136,
    0.0231306,
    0.0266002,
    0.0305902,
    0.0351788,
    0.0404556,
    0.0465239,
    0.0535025,
    0.0615279,
    0.0707571,
    0.0813706,
    0.0935762,
    0.107613,
    0.123755,
    0.142318,
    0.163665,
    0.188215,
    0.216447,
    0.248915,
    0.286252,
    0.32919,
    0.378568,
    0.435353,
    0.500656,
    0.575755,
    0.662118,
    0.761435,
    0.875651,
    1.007,
    1.15805,
    1.33176,
    1.53152,
    1.76125,
    2.02543,
    2.32925,
    2.67864,
    3.08043,
)
SERIES_ROUNDING = 2.0**-53  # the remainder must stay below this fraction of the result's scale
# The perturbed-loss method (docs/numerical_gradient.rst, section 'Method "perturbed"'):
NOMINAL_TOL = 2.0**-40  # a weight whose two real steps are within h * NOMINAL_TOL of h is stepped by h
SATURATED = 700.0  # beyond this |a1|, z zq (~e^-|a1|) underflows: sigmoid_step subtracts the sigmoids directly


def as_written(x):
    """A constant as the chapter writes it, ``"1e-4"`` for 1e-4 (repr gives ``0.0001``), for messages."""
    mantissa, exponent = f"{x:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


NUMBA_FLAGS = {"cache": True, "fastmath": False, "nogil": True, "error_model": "numpy"}

# The values Numba takes for NUMBA_THREADING_LAYER (case-insensitive), and its layers.
NUMBA_THREADING_LAYERS = ("default", "safe", "threadsafe", "forksafe", "tbb", "omp", "workqueue")
_NUMBA_LAYERS = ("tbb", "omp", "workqueue")


class EnvironmentVariableError(ValueError):
    """An environment variable that scratchnet or Numba reads has a value they cannot use.

    The message is one line: the variable and its value, what is wrong, and
    the values accepted. Raised where the value is first needed:
    ``SCRATCHNET_CACHE_DIR`` by :func:`~scratchnet.datasets.cache_dir` (and
    so :func:`~scratchnet.load_mnist`), Numba's variables before Numba is
    first used (the numba backend's first kernel, the thread count, the C
    backend, which follows it) rather than at ``import scratchnet``, so
    that the numpy backend works whatever they say.
    """


def env_setting(name, value):
    """``NAME=value`` as a shell would write it, for a message."""
    return f"{name}={shlex.quote(value)}"


def check_numba_environment(environ=None):
    """Raise EnvironmentVariableError for a Numba variable that would fail in Numba.

    Checked before Numba reads them (at ``import numba``, and when it starts
    its threads), where they would raise a traceback from Numba's insides
    or, for an unreadable ``NUMBA_NUM_THREADS``, warn and be ignored:

    * ``NUMBA_NUM_THREADS``: a whole number >= 1;
    * ``NUMBA_THREADING_LAYER``: one of :data:`NUMBA_THREADING_LAYERS`;
    * ``NUMBA_THREADING_LAYER_PRIORITY``: tbb, omp and workqueue, each once.
    """
    environ = os.environ if environ is None else environ
    value = environ.get("NUMBA_NUM_THREADS")
    if value is not None:
        try:
            count = int(value)  # what Numba does
        except ValueError:
            count = None
        if count is None or count < 1:
            what = "not a whole number" if count is None else "Numba needs at least 1 thread"
            raise EnvironmentVariableError(
                f"{env_setting('NUMBA_NUM_THREADS', value)}: {what}; set it to a number of threads from 1 up "
                f"(this process may use {usable_cpus()} CPUs), or unset it for one thread per CPU"
            )
    value = environ.get("NUMBA_THREADING_LAYER")
    if value is not None and value.lower() not in NUMBA_THREADING_LAYERS:
        raise EnvironmentVariableError(
            f"{env_setting('NUMBA_THREADING_LAYER', value)}: not a threading layer of Numba; expected one of "
            f"{', '.join(NUMBA_THREADING_LAYERS)}, or unset it for Numba's default"
        )
    value = environ.get("NUMBA_THREADING_LAYER_PRIORITY")
    if value is not None and sorted(value.split()) != sorted(_NUMBA_LAYERS):
        raise EnvironmentVariableError(
            f"{env_setting('NUMBA_THREADING_LAYER_PRIORITY', value)}: expected the layers tbb, omp and workqueue, "
            "each once, in the order Numba should try them (e.g. 'omp tbb workqueue'), or unset it"
        )


def usable_cpus():
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def raise_if_layer_unavailable(exc, environ=None):
    """EnvironmentVariableError naming NUMBA_THREADING_LAYER if ``exc``, Numba's
    ValueError on starting its threads, says the layer it names cannot be
    loaded (e.g. ``tbb`` without TBB); otherwise nothing (the caller re-raises)."""
    environ = os.environ if environ is None else environ
    text = str(exc)
    value = environ.get("NUMBA_THREADING_LAYER")
    if value is None or not text.startswith("No threading layer could be loaded"):
        return
    hint = " ".join(text.partition("HINT:")[2].split())  # "Intel TBB is required, try: $ conda/pip install tbb"
    if "TBB" in hint and _installed("tbb"):
        # _threads.configure_numba loads the tbb package's library only when NUMBA_THREADING_LAYER is unset
        hint = "the tbb package is installed, but its library is loaded for Numba only when this is unset"
    raise EnvironmentVariableError(
        f"{env_setting('NUMBA_THREADING_LAYER', value)}: Numba could not load this threading layer"
        f"{f' ({hint})' if hint else ''}; install what it needs, set NUMBA_THREADING_LAYER=workqueue (always "
        "available), or unset it for Numba's default"
    ) from None


def _installed(distribution):
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _fallback_cache_dir():
    """A private per-user directory for Numba's cache, or None.

    Used when neither the package's ``__pycache__`` nor Numba's user-wide
    cache (``$XDG_CACHE_HOME/numba``, else ``~/.cache/numba``) is writable,
    so it lives in the temporary directory: ``$XDG_CACHE_HOME`` would be the
    directory that just failed. Numba's cache index is a pickle, so a
    directory that another user could have planted or can write to is
    never used.
    """
    if not hasattr(os, "getuid"):
        return None
    path = os.path.join(tempfile.gettempdir(), f"scratchnet-numba-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        return None
    return path


def jit(parallel=False, cache=True):
    """Decorator: ``numba.njit`` with scratchnet's flags.

    ``cache=True`` makes Numba write compiled code next to the source, else
    under ``~/.cache``; where neither is writable it raises "no locator
    available" at decoration time, which would break ``import scratchnet``
    on a read-only install. Then the cache moves to a private per-user
    directory under the temporary directory, and if even that is not
    possible the kernel is compiled without a cache.
    """
    check_numba_environment()
    import numba
    from numba.core import config as numba_config

    flags = dict(NUMBA_FLAGS, cache=cache)

    def decorate(func):
        try:
            return numba.njit(parallel=parallel, **flags)(func)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
        before = numba_config.CACHE_DIR  # set (NUMBA_CACHE_DIR) means that one failed too
        fallback = None if before else _fallback_cache_dir()
        if fallback is not None:
            # Numba picks the cache directory when the decorator runs, so the
            # setting is restored at once: other packages' caches stay put.
            numba_config.CACHE_DIR = fallback
            try:
                return numba.njit(parallel=parallel, **flags)(func)
            except RuntimeError as exc:
                if "no locator available" not in str(exc):
                    raise
            finally:
                numba_config.CACHE_DIR = before
        return numba.njit(parallel=parallel, **dict(flags, cache=False))(func)

    return decorate
