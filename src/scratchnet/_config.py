"""The one place for Numba flags and package-wide defaults.

Every Numba kernel in scratchnet is compiled through :func:`jit`, so the
flags below apply everywhere. ``fastmath`` stays off: the kernels must agree
with the NumPy reference to a few ulps, and reassociation would also make
results depend on vector width.
"""

import os
import tempfile

DEFAULT_BACKEND = "numba"
BACKEND_NAMES = ("numpy", "numba", "c")

NUMBA_FLAGS = {"cache": True, "fastmath": False, "nogil": True, "error_model": "numpy"}


def _fallback_cache_dir():
    """A per-user directory for Numba's cache when the package folder and
    ``~/.cache`` are both read-only."""
    base = os.environ.get("XDG_CACHE_HOME") or tempfile.gettempdir()
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(base, f"scratchnet-numba-{uid}")


def jit(parallel=False):
    """Decorator: ``numba.njit`` with scratchnet's flags.

    ``cache=True`` makes Numba write compiled code next to the source, else
    under ``~/.cache``; where neither is writable it raises "no locator
    available" at decoration time, which would break ``import scratchnet``
    on a read-only install. Then the cache moves to a per-user directory,
    and if even that fails the kernel is compiled without a cache.
    """
    import numba
    from numba.core import config as numba_config

    def decorate(func):
        try:
            return numba.njit(parallel=parallel, **NUMBA_FLAGS)(func)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
        if not numba_config.CACHE_DIR:
            numba_config.CACHE_DIR = _fallback_cache_dir()
            try:
                return numba.njit(parallel=parallel, **NUMBA_FLAGS)(func)
            except RuntimeError as exc:
                if "no locator available" not in str(exc):
                    raise
        flags = dict(NUMBA_FLAGS, cache=False)
        return numba.njit(parallel=parallel, **flags)(func)

    return decorate
