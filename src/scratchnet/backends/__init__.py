"""Backend registry: one package (or module) per backend, the same kernels in each.

=========  ======================  ==================================================
backend    where                   what
=========  ======================  ==================================================
``numpy``  ``backends/numpy/``     the readable reference and oracle, vectorised NumPy
``numba``  ``backends/numba/``     ``@njit(parallel=True)`` kernels (the default)
``c``      ``backends/c.py``       the compiled twins, ``kernels/*.c`` (``_ckernels``)
=========  ======================  ==================================================

Each provides every kernel of :data:`KERNELS`, under the same name and
signature: outputs first, then inputs, arrays C-contiguous float64 (float32
too for a dense ``x``), already validated by the caller. The network
kernels take the named structures of :mod:`.structs`. Each Numba kernel
module has a C twin of the same name in ``kernels/``, and both agree with
each other bit for bit and with NumPy up to rounding. docs/kernels.rst maps
every kernel to its public function, its three implementations and its
naive twin in ``tests/naive.py``.

Modules are imported on first use, so ``import scratchnet`` stays fast and
does not load Numba or the compiled extension.
"""

import importlib
import threading

from .._config import BACKEND_NAMES, DEFAULT_BACKEND

# Every backend provides these, same names, same signatures.
KERNELS = (
    "sigmoid",  # (out, x): out = 1 / (1 + exp(-x)); (M,)
    "softmax",  # (out, x): row-wise; (N, K)
    "cross_entropy_error",  # (y, t) -> float: -mean(log(y[n, t_n] + DELTA))
    "sparse_rows",  # (x) -> SparseRows: the non-zeros of a dense x (N, D), float32 or float64
    "batch_take",  # (data, rows) -> Batch: rows of a SparseRows, as rows and columns
    "batch_from_dense",  # (x) -> Batch
    "forward",  # (out: Forward, batch, params): the network's forward pass
    "count_correct",  # (data, labels, params) -> int: rows whose largest logit is the label
    "backprop",  # (grads, batch, labels, params, fwd): the exact gradient
    "numgrad_series",  # (grads, batch, labels, params, fwd, h) -> (units, logits): by series; fills fwd too
    "numgrad_perturbed",  # (grads, batch, labels, params, fwd, h, units=None, logits=None); fills fwd too
)

_MODULES = {"numpy": "numpy", "numba": "numba", "c": "c"}
_state = {"backend": DEFAULT_BACKEND}
_loaded = {}
_lock = threading.Lock()


def _check_name(name):
    if not isinstance(name, str) or name not in _MODULES:
        raise ValueError(f"backend: unknown backend {name!r}; choose one of {list(BACKEND_NAMES)}")


def load(name):
    """Import and return the module of backend ``name``."""
    module = _loaded.get(name)  # the hot path: every kernel call passes here
    if module is None:
        _check_name(name)
        with _lock:
            module = importlib.import_module(f".{_MODULES[name]}", __name__)
            if name == "c":  # the pool's count follows the process's (scratchnet._threads)
                from .._threads import follow

                follow(module.set_num_threads)
            _loaded[name] = module
    return module


def loaded(name):
    """The module of backend ``name`` if it has been imported, else None."""
    return _loaded.get(name)


def resolve(backend=None):
    """The module for ``backend``, or for the global backend when None."""
    return load(_state["backend"] if backend is None else backend)


def available_backends():
    """Names of the backends that load on this installation.

    Returns
    -------
    tuple of str
        A subset of ``("numpy", "numba", "c")``; ``"c"`` is missing only if
        the compiled extension ``scratchnet._ckernels`` was not built.
    """
    names = []
    for name in BACKEND_NAMES:
        try:
            load(name)
        except ImportError:
            continue
        names.append(name)
    return tuple(names)


def set_backend(name):
    """Choose the backend used when a function is called without ``backend=``.

    Parameters
    ----------
    name : {"numpy", "numba", "c"}
    """
    load(name)  # fail now, not at the first call
    _state["backend"] = name


def get_backend():
    """The name of the current global backend (``"numba"`` by default)."""
    return _state["backend"]
