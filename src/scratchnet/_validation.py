"""Argument checks shared by the public functions.

Each helper names the argument in its message and returns a C-contiguous
array of the dtype the kernels expect. :func:`forward_overflow` makes the
error of a forward pass that left float64's range, marked with its cause.
"""

import math
import numbers

import numpy as np

from ._config import DEFAULT_H, as_written


def as_array(a, name):
    """``np.asarray(a)``; an input NumPy cannot read (a ragged list) is refused by name."""
    try:
        return np.asarray(a)
    except (ValueError, TypeError) as exc:  # "setting an array element with a sequence ..."
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from None


def refuse_complex(a, name, fix="pass real numbers"):
    """``a`` itself; a TypeError naming ``name`` if it is complex (a complex
    array or scalar), which NumPy would otherwise cast to real, dropping the
    imaginary parts with only a warning."""
    dtype = getattr(a, "dtype", None)
    if isinstance(a, (complex, np.complexfloating)) or (isinstance(dtype, np.dtype) and dtype.kind == "c"):
        got = f"dtype {dtype}" if isinstance(dtype, np.dtype) else type(a).__name__
        raise TypeError(f"{name}: complex values are not supported (got {got}); {fix}")
    return a


def kernel_array(a, dtype=None):
    """``a`` as the kernels read it: C-contiguous and aligned (a copy only if it is not)."""
    # not np.ascontiguousarray: it turns a 0-d array into shape (1,), and keeps unaligned data
    return np.require(a, dtype, ["C", "A"])


def as_float64(a, name):
    """``a`` as a C-contiguous, aligned float64 array of the same shape (0-d
    stays 0-d); booleans, complex, strings and objects are refused."""
    arr = refuse_complex(as_array(a, name), name)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    return kernel_array(arr, np.float64)


def labels_from_targets(t, n, k, name="t"):
    """Integer labels (n,) from one-hot targets (n, k) or labels (n,).

    Returns a C-contiguous ``intp`` array with every label in [0, k).
    """
    t = refuse_complex(as_array(t, name), name)
    if t.shape == (n, k):
        if t.dtype.kind not in "fiub":
            raise TypeError(f"{name}: one-hot targets must be numeric, got dtype {t.dtype}")
        is_binary = (t == 0) | (t == 1)
        if not is_binary.all() or not (np.count_nonzero(t, axis=1) == 1).all():
            raise ValueError(f"{name}: one-hot targets must have exactly one 1 per row and 0 elsewhere")
        return kernel_array(np.argmax(t, axis=1), np.intp)
    if t.shape != (n,):
        raise ValueError(
            f"{name}: expected integer labels of shape ({n},) or one-hot targets of shape "
            f"({n}, {k}), got shape {t.shape}"
        )
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: labels must be integers, got dtype {t.dtype}")
    if n:
        lo, hi = t.min(), t.max()
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name}: label {bad} out of range [0, {k})")
    return kernel_array(t, np.intp)


def as_real(v):
    """``v`` as a float if it is a real number (not a bool), else None. An
    integer beyond float64's range becomes +-inf, to be refused as such."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        return None
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def short_repr(v, limit=60):
    """repr(v), cut to ``limit`` characters for an error message."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def make_rng(seed, name="seed"):
    """``np.random.default_rng(seed)``; a seed it cannot take is refused by name.

    Takes what NumPy takes: None, an int >= 0 or a sequence of them, a
    SeedSequence, a BitGenerator or a Generator (bools and RandomState too).
    """
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)) and seed < 0:
        raise ValueError(f"{name}: expected an integer >= 0 (or a Generator or SeedSequence), got {seed!r}")
    try:
        return np.random.default_rng(seed)
    except TypeError:  # "SeedSequence expects int or sequence of ints for entropy not a"
        raise TypeError(
            f"{name}: expected an int >= 0 (or a sequence of them), a numpy SeedSequence, BitGenerator or "
            f"Generator, or None; got {short_repr(seed)}"
        ) from None
    except ValueError:  # "expected non-negative integer": a negative int in a sequence
        raise ValueError(f"{name}: expected integers >= 0, got {short_repr(seed)}") from None


_TINY = np.finfo(np.float64).tiny  # smallest normal float64
_HUGE = np.finfo(np.float64).max


def check_step(h):
    """A central-difference step as a float: positive, finite, normal, and 2h finite.

    A subnormal step has lost precision bits and 1 / (2h) overflows.
    """
    value = as_real(h)
    if value is None or not math.isfinite(value) or value <= 0:
        raise ValueError(f"h: expected a positive finite step, got {short_repr(h)}")
    if value < _TINY:
        raise ValueError(
            f"h: {value!r} is subnormal (below {_TINY:.4g}): it has lost precision bits and 1 / (2h) overflows; "
            f"use a step near the chapter's {as_written(DEFAULT_H)}"
        )
    if 2 * value > _HUGE:
        raise ValueError(
            f"h: {value!r} is so large that 2h overflows; use a step near the chapter's {as_written(DEFAULT_H)}"
        )
    return value


# What a forward pass that left float64's range blames (FloatingPointError.fault).
FAULT_X = "x"  # the inputs: x W1 + b1 overflows
FAULT_PARAMS = "params"  # a parameter already holds NaN or inf
FAULT_WEIGHTS = "weights"  # finite weights whose logits z W2 + b2 overflow: they diverged


def forward_overflow(fault, argument, detail):
    """``FloatingPointError(f"{argument}: {detail}")``, marked with what is at fault.

    The error is a plain FloatingPointError, so what a user sees is its
    message alone; the marks are for a caller that words the message for
    its own arguments (training names ``x_train``, or the learning rate):
    ``fault`` (one of the FAULT_* above), ``argument`` (the name the
    message starts with) and ``detail`` (the message after it).
    """
    exc = FloatingPointError(f"{argument}: {detail}")
    exc.fault, exc.argument, exc.detail = fault, argument, detail
    return exc
