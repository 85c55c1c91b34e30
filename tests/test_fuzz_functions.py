"""Fuzzing the chapter's functions (sigmoid, softmax, cross_entropy_error,
sum_squares_error) on every backend, each example in a child interpreter.

The contract (fuzz_harness.py): a result or a documented exception
(TypeError, ValueError) naming the argument at fault, no warning, crash or
hang, inputs unchanged, the same outcome on every backend; here also
probabilities in [0, 1] with rows summing to 1, a finite float loss, numba
and c bit for bit, numpy within the rounding derived below.
"""

import functools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratchnet as sn
from fuzz_harness import (
    BACKENDS,
    EPS,
    FUNCTION_ERRORS,
    SHRINK,
    TINY,
    Arr,
    assert_close_to_numpy,
    build,
    check_no_warnings,
    check_outcomes,
    check_twins,
    outcome,
    worker_fixture,
)
from fuzz_strategies import REAL_DTYPES, SPECIAL, any_floats, arrays, data_floats, junk, labels
from fuzzing import fuzz_settings
from scratchnet._config import SUM_BLOCK

pytestmark = pytest.mark.fuzz


# -- in the child ------------------------------------------------------------------
def run_function(spec):
    name, args = spec
    fn = getattr(sn, name)
    outcomes = []
    for backend in BACKENDS if name != "sum_squares_error" else (None,):
        built = build(args)
        kwargs = {} if backend is None else {"backend": backend}
        outcomes.append(outcome(backend, functools.partial(fn, *built, **kwargs), FUNCTION_ERRORS, built))
    return outcomes


HANDLERS = {"function": run_function}


# -- in the test -------------------------------------------------------------------
worker = worker_fixture(__file__)


def _check_sigmoid(x, results):
    for b, y in results.items():
        assert isinstance(y, (np.ndarray, np.floating)) and y.dtype == np.float64 and np.shape(y) == x.shape, b
        nan = np.isnan(x)
        assert (np.isnan(y) == nan).all(), f"{b}: NaN where x is not, or not where it is"
        assert ((y[~nan] >= 0) & (y[~nan] <= 1)).all(), b
    check_twins(results)
    # exp differs by <= 1 ulp between libm, NumPy and LLVM; 1 + e, the
    # division and the mirror round once each: 4 ulp, subnormal outputs
    # to 4 * 2**-1074 (test_functions.py derives the same).
    assert_close_to_numpy(results, rtol=4 * EPS, atol=4 * 2.0**-1074, what="sigmoid")


def _check_softmax(x, results):
    for b, y in results.items():
        assert isinstance(y, np.ndarray) and y.dtype == np.float64 and y.shape == x.shape, b
        rows, ys = x.reshape(-1, x.shape[-1]), y.reshape(-1, x.shape[-1])
        nan_rows = np.isnan(rows).any(1) | np.isposinf(rows).any(1) | np.isneginf(rows).all(1)
        assert np.isnan(ys[nan_rows]).all(), f"{b}: a row with NaN, +inf or only -inf is not all NaN"
        ok = ys[~nan_rows]
        assert np.isfinite(ok).all() and (ok >= 0).all() and (ok <= 1).all(), f"{b}: {ok}"
        # each of the k terms rounded once, the sum k - 1 times: (2k + 2) eps
        assert (np.abs(ok.sum(1) - 1) <= (2 * x.shape[-1] + 2) * EPS).all(), f"{b}: rows do not sum to 1"
    check_twins(results)
    # (k + 4) eps relative, as test_functions.py derives; below TINY only absolute
    assert_close_to_numpy(results, rtol=(x.shape[-1] + 4) * EPS, atol=TINY, what="softmax")


ACTIVATIONS = {"sigmoid": _check_sigmoid, "softmax": _check_softmax}


def _check_activation(worker, name, x):
    outcomes = worker.run("function", (name, (x,)))
    check_outcomes(outcomes, ["x", "backend"])
    if outcomes[0]["kind"] == "result":
        ACTIVATIONS[name](np.asarray(build(x), dtype=np.float64), {o["backend"]: o["value"] for o in outcomes})
    check_no_warnings(outcomes)


@fuzz_settings(**SHRINK)
@given(name=st.sampled_from(sorted(ACTIVATIONS)), x=arrays(dtypes=REAL_DTYPES, floats=data_floats))
def test_activation_contract(worker, name, x):
    _check_activation(worker, name, x)


@fuzz_settings(**SHRINK)
@given(name=st.sampled_from(sorted(ACTIVATIONS)), x=st.one_of(junk, any_floats, st.integers(-5, 5)))
def test_activation_junk(worker, name, x):
    _check_activation(worker, name, x)


def _check_losses(worker, name, y, t):
    outcomes = worker.run("function", (name, (y, t)))
    check_outcomes(outcomes, ["y", "t", "backend"])
    if outcomes[0]["kind"] == "result":
        _check_loss_results(name, y, {o["backend"]: o["value"] for o in outcomes})
    check_no_warnings(outcomes)


def _check_loss_results(name, y, results):
    for b, v in results.items():
        assert type(v) is float, f"{b}: {type(v).__name__}"
    if name == "cross_entropy_error":
        for b, v in results.items():  # documented: a non-finite loss is a ValueError
            assert math.isfinite(v), f"{b}: {v}"
        check_twins(results)
        yy = np.asarray(build(y), dtype=float)
        n = 1 if yy.ndim == 1 else yy.shape[0]
        # each log to 1 ulp, summed in blocks of SUM_BLOCK (test_functions.py)
        rtol = (SUM_BLOCK + n / SUM_BLOCK + 2) * EPS
        assert_close_to_numpy(results, rtol=rtol, atol=0, what="cross_entropy_error")


LOSSES = ["cross_entropy_error", "sum_squares_error"]


@st.composite
def loss_inputs(draw, valid=True):
    n, k = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    vector = draw(st.booleans())
    probabilities = st.one_of(st.floats(0, 1), st.just(0.0), st.just(1.0), st.sampled_from(SPECIAL))
    y = draw(arrays(shape=(k,) if vector else (n, k), dtypes=REAL_DTYPES, floats=probabilities))
    if draw(st.booleans()):  # sum_squares_error's t: y's shape
        return y, draw(arrays(shape=y.base.shape, dtypes=REAL_DTYPES, floats=probabilities))
    t = draw(labels(1 if vector else n, k, valid=valid))
    if vector and isinstance(t, Arr):
        t = Arr(t.base.reshape(-1) if t.base.ndim == 2 else t.base[:1].reshape(()), t.layout)
    return y, t


@fuzz_settings(**SHRINK)
@given(name=st.sampled_from(LOSSES), yt=loss_inputs())
def test_loss_contract(worker, name, yt):
    _check_losses(worker, name, *yt)


@fuzz_settings(**SHRINK)
@given(name=st.sampled_from(LOSSES), yt=st.one_of(loss_inputs(valid=False), st.tuples(junk, junk)))
def test_loss_junk(worker, name, yt):
    _check_losses(worker, name, *yt)
