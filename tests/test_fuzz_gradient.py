"""Fuzzing the input contract of numerical_diff, numerical_gradient and
gradient_descent.

Every call must end in a result of the documented type and shape, or in a
documented exception (TypeError, ValueError, MemoryError, FloatingPointError
as each docstring lists, or ``f``'s own exception, here ``FError``); it must
not crash or hang, and the caller's arrays must be bitwise unchanged after
either outcome. The ``f``s cover what users write: well behaved, vector
valued, one value per row, raising, NaN, ignoring the argument, jitted.
Hangs are excluded by construction: every ``f`` raises FError after a call
budget, so even ``step_num=10**12`` ends quickly (and allocates no history).
"""

import numba
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import scratchnet as sn
from fuzzing import fuzz_settings

pytestmark = pytest.mark.fuzz

CALL_BUDGET = 300


class FError(Exception):
    """f's own exception: must propagate unchanged."""


# -- the f's -------------------------------------------------------------------------
def _quiet(g):
    def f(x):
        with np.errstate(all="ignore"):  # huge x overflow to inf: a value, not a warning
            return g(x)

    return f


PY_FS = {
    "sum_squares": _quiet(lambda x: np.sum(np.square(x))),
    "elementwise": _quiet(lambda x: 0.01 * np.square(x) + 0.1 * x),
    "per_row": _quiet(lambda x: np.sum(np.square(x), axis=-1) if np.ndim(x) == 2 else np.sum(np.square(x))),
    "raises": lambda x: (_ for _ in ()).throw(FError("f failed")),
    "nan": lambda x: np.nan,
    "string": lambda x: "1.0",
    "none": lambda x: None,
    "first_two": lambda x: np.ravel(x)[:2],
}


@numba.njit
def _jit_sum_squares(x):
    return np.sum(x * x)


@numba.njit
def _jit_raises_above_one(x):
    for v in x.flat:
        if v > 1.0:
            raise ValueError("FError-like: jitted f refuses values above 1")
    return np.sum(x)


_FROZEN = np.array([1.0, 2.0])


@numba.njit
def _jit_frozen(x):
    return np.sum(_FROZEN * _FROZEN)


JIT_FS = {"jit_sum_squares": _jit_sum_squares, "jit_raises": _jit_raises_above_one, "jit_frozen": _jit_frozen}


def _budgeted(f):
    """f, raising FError after CALL_BUDGET calls."""
    calls = [0]

    def g(x):
        calls[0] += 1
        if calls[0] > CALL_BUDGET:
            raise FError("call budget spent")
        return f(x)

    return g


# -- inputs --------------------------------------------------------------------------
SPECIAL = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    5e-324,
    2.2250738585072014e-308,
    1e-300,
    1e300,
    1.7976931348623157e308,
    np.inf,
    -np.inf,
    np.nan,
    1e16,
    0.1,
]
any_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL))
# Hypothesis spreads its examples over the distinct values a strategy can
# take, so a narrow "valid" branch next to st.text() is rarely drawn. Each
# contract is therefore fuzzed twice: with arguments of the right types
# (values still anything, special ones included), and with junk arguments.
real_floats = st.one_of(st.floats(-1e6, 1e6), any_floats)
bad_scalars = st.one_of(
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.complex_numbers(max_magnitude=10),
    st.integers(10**300, 10**400),  # beyond float64
)
good_steps = st.one_of(st.floats(1e-8, 0.5), st.sampled_from([1e-4, 1e-7, 1e-2]))
steps = st.one_of(good_steps, st.sampled_from(SPECIAL))  # valid, or a special value
bad_steps = st.one_of(any_floats, st.integers(-2, 3), bad_scalars)
DTYPES = ["f8", "f4", "f2", "i8", "u1", "?", "c16", "U3", "O"]


@st.composite
def arrays(draw, max_dims=3, max_side=4, dtypes=("f8",)):
    """An ndarray of one of ``dtypes``, any shape (incl. 0-d and empty), layout, writability."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    if dtype == np.float64:
        elements = real_floats
    elif dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True)
    elif dtype.kind == "O":
        elements = st.one_of(st.floats(-3, 3), st.none(), st.text(max_size=2))
    else:
        elements = None
    base = draw(hnp.arrays(dtype, shape, elements=elements))
    layout = draw(st.sampled_from(["C", "C", "F", "reversed", "strided", "readonly"]))
    if layout == "F":
        return np.asfortranarray(base)
    if layout == "reversed" and base.ndim:
        return base[::-1]
    if layout == "strided" and base.ndim:
        return np.repeat(base, 2, axis=0)[::2]
    if layout == "readonly":
        base.flags.writeable = False
    return base


def _snapshot(a):
    """What must not change: the bytes of a's owning array (a view's base too), or a list's contents,
    nested lists included (repr: NaN reads equal to NaN, and -0.0 differs from 0.0)."""
    if isinstance(a, list):
        return a, repr(a)
    if not isinstance(a, np.ndarray):
        return None
    owner = a if a.base is None else a.base
    return owner, (owner.tobytes() if owner.dtype != object else repr(owner.tolist()))


def _unchanged(snap):
    if snap is None:
        return True
    owner, before = snap
    if isinstance(owner, list):
        return repr(owner) == before
    return (owner.tobytes() if owner.dtype != object else repr(owner.tolist())) == before


def _outcome(call, documented):
    """Run call(); return (True, result) or (False, exception) for a documented exception."""
    try:
        result = call()
    except documented as exc:
        event(f"raised {type(exc).__name__}")
        return False, exc
    event("result")
    return True, result


# -- numerical_diff ------------------------------------------------------------------
DIFF_ERRORS = (TypeError, ValueError, FError)


def _check_diff(x, f, h):
    snap = _snapshot(x)
    ok, d = _outcome(lambda: sn.numerical_diff(_budgeted(PY_FS[f]), x, h=h), DIFF_ERRORS)
    if ok and np.ndim(x) == 0:
        assert isinstance(d, float)
    elif ok:
        assert isinstance(d, np.ndarray) and d.dtype == np.float64 and d.shape == np.shape(x)
    assert _unchanged(snap)


@fuzz_settings()
@given(
    x=st.one_of(
        real_floats,
        st.integers(-(10**6), 10**6),
        arrays(max_dims=2, max_side=5),
        st.lists(st.floats(-1e3, 1e3), max_size=4),
    ),
    f=st.sampled_from(sorted(PY_FS)),
    h=steps,
)
def test_numerical_diff_contract(x, f, h):
    _check_diff(x, f, h)


@fuzz_settings()
@given(
    x=st.one_of(bad_scalars, arrays(max_dims=2, dtypes=DTYPES), real_floats),
    f=st.sampled_from(sorted(PY_FS)),
    h=st.one_of(bad_steps, good_steps),
)
def test_numerical_diff_junk(x, f, h):
    _check_diff(x, f, h)


# -- numerical_gradient --------------------------------------------------------------
def _python_f(name, x, k):
    if name == "closure":  # the chapter's f = lambda W: net.loss(x, t): ignores its argument
        if not isinstance(x, np.ndarray):
            return PY_FS["nan"]
        return _quiet(lambda _: np.sum(np.square(x.astype(float))) if x.dtype.kind in "fiub" else 0.0)
    if name == "raise_at_call":
        calls = []

        def f(v):
            calls.append(1)
            if len(calls) == k:
                raise FError("f failed at call k")
            return PY_FS["sum_squares"](v)

        return f
    return PY_FS[name]


def _check_gradient(x, f, h):
    snap = _snapshot(x)
    ok, g = _outcome(lambda: sn.numerical_gradient(f, x, h=h), (TypeError, ValueError, FError))
    if ok:
        assert isinstance(g, np.ndarray) and g.dtype == np.float64 and g.shape == x.shape
    assert _unchanged(snap)  # restored exactly, also after f raised
    return ok, g


PY_F_NAMES = sorted(PY_FS) + ["closure", "raise_at_call"]


@fuzz_settings()
@given(x=arrays(), f=st.sampled_from(PY_F_NAMES), h=steps, k=st.integers(1, 8))
def test_numerical_gradient_python_f_contract(x, f, h, k):
    _check_gradient(x, _budgeted(_python_f(f, x, k)), h)


@fuzz_settings()
@given(
    x=st.one_of(arrays(dtypes=DTYPES), real_floats, bad_scalars, st.lists(st.floats(-3, 3), max_size=3)),
    f=st.sampled_from(PY_F_NAMES),
    h=st.one_of(bad_steps, good_steps),
)
def test_numerical_gradient_junk(x, f, h):
    _check_gradient(x, _budgeted(_python_f(f, x, 1)), h)


@fuzz_settings()
# 0-d and 1-D only: each (f, ndim) pair compiles the parallel loop again
# (~2 s); every layout reaches it as a C-contiguous copy, and 2-D jitted
# inputs have their unit tests.
@given(x=arrays(max_dims=1, max_side=6), f=st.sampled_from(sorted(JIT_FS)), h=steps)
def test_numerical_gradient_jitted_f_contract(x, f, h):
    ok, g = _check_gradient(x, JIT_FS[f], h)  # the jitted f's own exception is a ValueError
    if ok and f == "jit_sum_squares" and h <= 1e-2 and np.all(np.abs(x) < 1e100):
        # a quadratic: exact up to the rounding of f, eps |f| / h
        tol = 4 * np.finfo(float).eps * (np.sum(x * x) + 1) / h
        np.testing.assert_allclose(g, 2 * x, rtol=0, atol=tol)


# -- gradient_descent ----------------------------------------------------------------
DESCENT_ERRORS = (TypeError, ValueError, MemoryError, FloatingPointError, FError)


def _check_descent(init_x, lr, step_num, return_history, f):
    snap = _snapshot(init_x)
    ok, out = _outcome(
        lambda: sn.gradient_descent(
            _budgeted(PY_FS[f]), init_x, lr=lr, step_num=step_num, return_history=return_history
        ),
        DESCENT_ERRORS,
    )
    if ok:
        x, history = out if return_history else (out, None)
        assert x.dtype == np.float64 and x.shape == np.shape(init_x)
        if history is not None:
            assert history.shape == (step_num,) + x.shape
    assert _unchanged(snap)  # arrays and lists alike


DESCENT_FS = ["sum_squares", "per_row", "raises", "nan", "string"]


@fuzz_settings()
@given(
    init_x=st.one_of(
        arrays(max_dims=2, max_side=3),
        st.lists(st.floats(-5, 5), min_size=1, max_size=3),
        st.lists(st.lists(st.floats(-5, 5), min_size=2, max_size=2), min_size=1, max_size=3),  # rows, as x is
    ),
    lr=st.one_of(st.floats(1e-3, 0.5), st.sampled_from([0.1, 10.0, 1e-10, 1e300])),
    step_num=st.one_of(st.integers(0, 5), st.sampled_from([10**12])),  # 10**12: the call budget ends it
    return_history=st.booleans(),
    f=st.sampled_from(DESCENT_FS),
)
def test_gradient_descent_contract(init_x, lr, step_num, return_history, f):
    _check_descent(init_x, lr, step_num, return_history, f)


@fuzz_settings()
@given(
    init_x=st.one_of(arrays(max_dims=2, max_side=3, dtypes=DTYPES), bad_scalars),
    lr=st.one_of(any_floats, st.integers(-2, 3), bad_scalars, st.just(np.array([0.1])), st.floats(1e-3, 0.5)),
    step_num=st.one_of(st.integers(-2, 5), st.sampled_from([10**12, 10**30]), st.floats(0, 5), bad_scalars),
    return_history=st.one_of(st.booleans(), st.sampled_from([1, None, "yes"])),
    f=st.sampled_from(DESCENT_FS),
)
def test_gradient_descent_junk(init_x, lr, step_num, return_history, f):
    _check_descent(init_x, lr, step_num, return_history, f)
