"""Fuzzing TwoLayerNet's methods (predict, loss, accuracy,
numerical_gradient, gradient) and gradient_check on every backend, each
example in a child interpreter.

The contract (fuzz_harness.py): a result or a documented exception
(TypeError, ValueError, KeyError; FloatingPointError for a forward pass
that overflows) naming the argument at fault, no warning, crash or hang,
inputs and ``net.params`` unchanged, the same outcome on every backend;
here also probabilities, a loss in [LOSS_MIN, LOSS_MAX], an accuracy that
is a fraction of N, gradients without NaN, numba and c bit for bit, numpy
within the rounding bounds derived below.
"""

import dataclasses
import functools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import json_codec
import scratchnet as sn
from fuzz_harness import (
    BACKENDS,
    EPS,
    LOSS_MAX,
    LOSS_MIN,
    NETWORK_ERRORS,
    PARAM_NAMES,
    SHRINK,
    TINY,
    build,
    check_no_warnings,
    check_outcomes,
    check_twins,
    net_with,
    outcome,
    params_state,
    worker_fixture,
)
from fuzz_strategies import (
    DTYPES,
    REAL_DTYPES,
    arrays,
    bad_methods,
    bad_steps,
    data_floats,
    finite_data_floats,
    junk,
    labels,
    methods,
    params,
    shape_of,
    sizes,
    steps,
)
from fuzzing import fuzz_settings
from scratchnet._config import SUM_BLOCK

pytestmark = pytest.mark.fuzz

NETWORK_METHODS = ["predict", "loss", "accuracy", "numerical_gradient", "gradient", "gradient_check"]


@json_codec.record
@dataclasses.dataclass(frozen=True)
class NetCase:
    """One call ``net.<method>(*args, **kwargs)`` (or gradient_check(net, ...)) with ``net.params = params``."""

    method: str
    params: object
    args: tuple
    kwargs: dict


@st.composite
def net_cases(draw, valid=True):
    d, h, k = draw(sizes())
    p = draw(params(d, h, k, valid=valid))
    method = draw(st.sampled_from(NETWORK_METHODS))
    n = draw(st.integers(1, 4))
    d_x = shape_of(p, "W1", 0) or d
    k_t = shape_of(p, "W2", 1) or k
    if valid:
        x = draw(arrays(shape=(n, d_x), dtypes=REAL_DTYPES, floats=finite_data_floats))
        t = draw(labels(n, k_t))
    else:
        x = draw(
            st.one_of(
                arrays(shape=(n, d_x), dtypes=REAL_DTYPES),
                arrays(dtypes=DTYPES),
                junk,
                arrays(shape=(draw(st.integers(0, 3)), d_x), floats=data_floats),
            )
        )
        t = draw(st.one_of(labels(n, k_t, valid=False), junk))
    args = (x,) if method == "predict" else (x, t)
    kwargs = {}
    if method in ("numerical_gradient", "gradient_check") and draw(st.booleans()):
        kwargs["h"] = draw(steps if valid else bad_steps)
    if method == "numerical_gradient" and draw(st.booleans()):
        kwargs["method"] = draw(methods if valid else bad_methods)
    return NetCase(method, p, args, kwargs)


# -- in the child ------------------------------------------------------------------
def run_network(case):
    outcomes = []
    for backend in BACKENDS:
        net = net_with(case.params)
        before = params_state(net)
        args, kwargs = build(case.args), dict(build(case.kwargs), backend=backend)
        if case.method == "gradient_check":
            thunk = functools.partial(sn.gradient_check, net, *args, **kwargs)
        else:
            thunk = functools.partial(getattr(net, case.method), *args, **kwargs)
        out = outcome(backend, thunk, NETWORK_ERRORS, (args, kwargs))
        out["params_changed"] = params_state(net) != before
        outcomes.append(out)
    return outcomes


HANDLERS = {"network": run_network}


# -- in the test -------------------------------------------------------------------
worker = worker_fixture(__file__)


def _numbers(case):
    """The example's x and params as float64 arrays (for the bounds), or None."""
    x = np.asarray(build(case.args[0]), dtype=np.float64)
    p = {k: np.asarray(build(case.params[k]), dtype=np.float64) for k in PARAM_NAMES}
    return x, p


def rounding_bounds(x, p):
    """Bounds on the rounding of one backend's forward pass and backprop at
    x (N, D) and params p; two backends differ by at most twice these.

    a1 = x W1 + b1 sums D + 1 terms: (D + 1) eps sum|terms|; z and zq move
    by at most a quarter of that (sigmoid's slope) plus their own 4 ulp; a2
    sums H + 1 terms of z W2 (z <= 1) plus the propagated |W2| dz; softmax
    of logits off by da2 is off by 2 da2 relatively, plus its own (K + 4)
    eps. Backprop: g2 = (y - onehot) y_t / (y_t + 1e-7) / N has |g2| <= 1/N
    per sample (sum over k <= 2/N), off by (3 yrel + 4 eps) / N; each
    gradient is a sum over samples of products with z, W2, z zq <= 1/4 and
    x, whose errors add as below, plus the rounding of the sums.
    Returns (da2 (N,), yrel (N,), {name: tolerance array of its shape}).
    """
    n, d = x.shape
    hdim, k = p["W2"].shape
    with np.errstate(all="ignore"):
        ax, aw2 = np.abs(x), np.abs(p["W2"])
        da1 = (d + 1) * EPS * (ax @ np.abs(p["W1"]) + np.abs(p["b1"]))  # (N, H)
        dz = da1 / 4 + 4 * EPS
        da2 = ((hdim + 1) * EPS * (aw2.sum(0) + np.abs(p["b2"])) + dz @ aw2).max(axis=1)  # (N,)
        yrel = 2 * da2 + (k + 4) * EPS
        dg2 = (3 * yrel + 4 * EPS) / n  # (N,)
        w_sum, w_max = aw2.sum(1), aw2.max(1, initial=0)  # (H,)
        dda1 = (dg2[:, None] * w_sum + (k + 2) * EPS * 2 * w_max / n) / 4 + 4 * w_max * dz / n  # (N, H)
        tol = {
            "W2": np.broadcast_to((dz.sum(0) / n)[:, None] + dg2.sum() + (n + 2) * EPS, (hdim, k)),
            "b2": np.broadcast_to(dg2.sum() + (n + 2) * EPS, (k,)),
            "b1": dda1.sum(0) + n * EPS * w_max / 2,
            "W1": ax.T @ dda1 + n * EPS * ax.T @ np.broadcast_to(w_max / (2 * n), (n, hdim)),
        }
    # an overflowed bound (x or params near the float64 limit) bounds nothing
    return da2, yrel, {name: np.where(np.isnan(t), np.inf, t) for name, t in tol.items()}


def _check_network_results(case, results):
    check_twins(results)
    x, p = _numbers(case)
    n, k = x.shape[0], p["W2"].shape[1]
    da2, yrel, tol = rounding_bounds(x, p)
    if case.method == "predict":
        for b, y in results.items():
            assert y.dtype == np.float64 and y.shape == (n, k), b
            assert np.isfinite(y).all() and (y >= 0).all() and (y <= 1).all(), f"{b}: not probabilities: {y}"
            assert (np.abs(y.sum(1) - 1) <= (2 * k + 2) * EPS).all(), f"{b}: rows do not sum to 1: {y}"
        for b, y in results.items():
            with np.errstate(all="ignore"):
                diff, bound = np.abs(y - results.get("numpy", y)), 2 * yrel[:, None] * y + TINY
            assert ((diff == 0) | (diff <= bound)).all(), (
                f"{b} and numpy differ beyond the rounding: {y} vs {results['numpy']} (bound {bound})"
            )
    elif case.method == "loss":
        for b, v in results.items():
            assert type(v) is float and LOSS_MIN <= v <= LOSS_MAX, f"{b}: loss {v}"
        # each sample's log off by its y_t's relative error; the mean's own rounding as in test_functions
        tol = 2 * yrel.max() + (SUM_BLOCK + 2) * EPS * max(1.0, abs(results.get("numpy", 1.0)))
        assert all(abs(v - results.get("numpy", v)) <= tol for v in results.values()), (results, tol)
    elif case.method == "accuracy":
        for b, v in results.items():
            assert type(v) is float and 0 <= v <= 1 and (v * n) == round(v * n), f"{b}: accuracy {v}"
        # the largest logit can differ between backends only where two are within the rounding
        with np.errstate(all="ignore"):
            a2 = 1 / (1 + np.exp(-(x @ p["W1"] + p["b1"]))) @ p["W2"] + p["b2"]
        top2 = np.sort(a2, axis=1)[:, -2:] if k > 1 else None
        if top2 is None or (np.isfinite(a2).all() and (top2[:, 1] - top2[:, 0] > 4 * da2).all()):
            assert len(set(results.values())) == 1, results
    elif case.method in ("gradient", "numerical_gradient"):
        _check_gradients(case, results, x, p, tol)
    elif case.method == "gradient_check":
        for b, v in results.items():
            assert v.keys() == set(PARAM_NAMES) and all(type(e) is float and e >= 0 for e in v.values()), (b, v)
            assert all(math.isfinite(e) for e in v.values()), f"{b}: {v}"


def _check_gradients(case, results, x, p, tol):
    h = case.kwargs.get("h", 1e-4)
    for b, g in results.items():
        assert isinstance(g, dict) and list(g) == list(PARAM_NAMES), b
        for name in PARAM_NAMES:
            assert g[name].dtype == np.float64 and g[name].shape == p[name].shape, (b, name)
            assert not np.isnan(g[name]).any(), f"{b}: NaN in the gradient of {name}: {g[name]}"
    if case.method == "numerical_gradient":
        # (loss(p+) - loss(p-)) / 2h with both losses in [LOSS_MIN, LOSS_MAX]
        bound = (LOSS_MAX - LOSS_MIN) / (2 * h)
        for b, g in results.items():
            for name in PARAM_NAMES:
                assert not (np.abs(g[name]) > bound * (1 + 4 * EPS)).any(), f"{b}: |{name}| above {bound}: {g[name]}"
        # Each backend's per-sample loss differences are exact to a few ulps
        # of the loss (<= LOSS_MAX), over 2h (test_network.py derives 8 eps
        # max(1, loss) / 2h), besides the forward pass's rounding, which moves
        # them as it moves backprop's derivative.
        slack = 16 * EPS * LOSS_MAX / (2 * h)
        tol = {name: 2 * t + slack for name, t in tol.items()}
    else:
        # |dL/da2| <= 1, |dL/da1| <= K max|W2| / 4, dW1 = x^T da1 / N: representable when this is
        with np.errstate(over="ignore"):
            scale = np.abs(x).max(initial=0) * p["W2"].shape[1] * np.abs(p["W2"]).max(initial=0)
        if scale < 1e300:
            for b, g in results.items():
                assert all(np.isfinite(g[n]).all() for n in PARAM_NAMES), f"{b}: non-finite backprop {g}"
        tol = {name: 2 * t for name, t in tol.items()}
    if "numpy" in results and np.isfinite(x).all():
        for b, g in results.items():
            for name in PARAM_NAMES:
                with np.errstate(invalid="ignore"):
                    diff = np.abs(g[name] - results["numpy"][name])
                bad = ~(diff <= tol[name])  # NaN-safe: where both are inf, diff is NaN
                bad &= ~(g[name] == results["numpy"][name])
                assert not bad.any(), (
                    f"{b} and numpy differ in {name} beyond the rounding: {g[name]} vs {results['numpy'][name]}, "
                    f"tolerance {tol[name]}"
                )


def _check_network(worker, case):
    outcomes = worker.run("network", case)
    for out in outcomes:
        assert not out["params_changed"], f"backend {out['backend']}: {case.method} changed net.params"
    names = ["x", "t", "params", "backend", "h", "method"]
    check_outcomes(outcomes, names)
    if outcomes[0]["kind"] == "result":
        _check_network_results(case, {o["backend"]: o["value"] for o in outcomes})
    check_no_warnings(outcomes)


@fuzz_settings(**SHRINK)
@given(case=net_cases())
def test_network_contract(worker, case):
    _check_network(worker, case)


@fuzz_settings(**SHRINK)
@given(case=net_cases(valid=False))
def test_network_junk(worker, case):
    _check_network(worker, case)
