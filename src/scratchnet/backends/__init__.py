"""Backend registry: one module per backend, the same kernel names in each.

A backend module provides, for C-contiguous float64 arrays (no validation;
that is done by the public functions):

- ``sigmoid(x, out)``: x, out (M,)
- ``softmax(x, out)``: x, out (N, K), row-wise
- ``cross_entropy_error(y, t) -> float``: y (N, K), t (N,) intp labels in range
- ``affine(x, W, b, out)``: out = x @ W + b; x (N, D), W (D, M), b (M,),
  out (N, M). The compiled backends sum only x's non-zero entries (a zero
  adds exactly nothing), each output over i ascending and then + b, so
  they equal that term-by-term loop bit for bit; ``numpy`` uses BLAS
  (another order: equal up to rounding). Dense x is correct too, just
  slower than BLAS.
- ``affine_weight_grad(x, dout, out)``: out = x.T @ dout; x (N, D),
  dout (N, M), out (D, M); the same, summing over the samples ascending.
- ``network_numerical_gradient(x, t, a1, W2, a2, h, dW1, db1, dW2, db2)``:
  the central-difference gradient of :meth:`scratchnet.TwoLayerNet.loss`
  from the unperturbed forward pass; x (N, D), t (N,) intp, a1 (N, H)
  hidden pre-activations, W2 (H, K), a2 (N, K) logits; outputs
  preallocated with the parameters' shapes.

The three kernels that take the network's input x also take it as float32
(MNIST's pixels, as :func:`scratchnet.load_mnist` gives them): every use
promotes it to float64 exactly, so results equal those for
``x.astype(np.float64)``, without that copy of every batch.

Modules are imported on first use, so ``import scratchnet`` stays fast and
does not load Numba or the compiled extension.
"""

import importlib
import numbers
import threading

from .._config import BACKEND_NAMES, DEFAULT_BACKEND

_MODULES = {"numpy": "numpy_ref", "numba": "numba_kernels", "c": "c"}
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
            module = _loaded[name] = importlib.import_module(f".{_MODULES[name]}", __name__)
    return module


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


def set_num_threads(n):
    """Set the number of threads of the Numba and C kernels.

    Results do not depend on it: every parallel kernel writes disjoint
    outputs and sums in a fixed order.

    Parameters
    ----------
    n : int
        1 <= n <= the number of threads Numba was started with
        (``NUMBA_NUM_THREADS``, by default the number of cores).
    """
    import numba

    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n: number of threads must be an int, got {type(n).__name__}")
    n = int(n)  # np.int64 too
    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= limit:
        raise ValueError(f"n: number of threads must be between 1 and {limit}, got {n}")
    numba.set_num_threads(n)
    try:
        c = load("c")
    except ImportError:
        return
    c.set_num_threads(n)


def get_num_threads():
    """The number of threads the Numba and C kernels use."""
    import numba

    return numba.get_num_threads()
