"""What the fuzz tests of the chapter's functions, TwoLayerNet's methods,
``train`` and the command line share (test_fuzz_functions.py,
test_fuzz_net_methods.py, test_fuzz_train.py, test_fuzz_cli.py).

The contract they check, for any arguments (arrays of every dtype, 0-d to
3-d shapes including empty ones, C, Fortran, reversed, strided, read-only,
byte-swapped and unaligned layouts, NaN, infinities, subnormals and huge
values; parameter dicts with keys missing, shapes swapped, dtypes wrong,
lists, views, NaN; labels out of range, one-hot rows that are not, float
labels; any h, method and training setting):

- a result of the documented type, shape and dtype, with the values the
  docstrings promise, or one of the documented exceptions whose message
  starts with the name of the argument at fault;
- no warning (the project runs with warnings as errors), no crash, no hang;
- the caller's arrays are bitwise unchanged, and so are ``net.params``
  (the dict, its arrays and their bytes) after any method, and after a
  failed ``train`` (see test_fuzz_train.py);
- every backend gives the same outcome: the same exception type, or results
  that agree, numba and c bit for bit, numpy within the rounding derived at
  each comparison.

Every example runs in a child interpreter (:class:`Worker`, on
child_runner.Child), on each backend in turn, so that a segfault or a hang
in a compiled kernel fails the one example that caused it: the failure
names the example (Hypothesis prints it, in a form that rebuilds the
arrays), the backend running when the child died (the child logs each
backend it starts), the signal and the child's last stderr (with
faulthandler's traceback). An example crosses to the child as JSON, its
arrays as :class:`Arr` recipes that the child builds, so each call gets the
layout the example names.

CI runs ``FUZZ_EXAMPLES`` examples per test (tests/fuzzing.py), about 20 s
for the four files on 2 cores (up to 30 s more where Numba's cache is
cold); ``SCRATCHNET_FUZZ_EXAMPLES=2000 python -m pytest -m fuzz`` runs
longer. ``SCRATCHNET_TEST_BACKENDS=c,numpy`` restricts the backends
(tests/conftest.py), as the sanitizer run (tools/sanitize.sh) does.
"""

import dataclasses
import math
import os
import re
import sys
import traceback
import warnings
from pathlib import Path

import hypothesis
import numpy as np
import pytest
from hypothesis import event

import json_codec
import scratchnet as sn
from child_runner import Child, ChildFailed
from conftest import selected_backends
from scratchnet._config import DELTA

BACKENDS = selected_backends()
EPS = np.finfo(np.float64).eps
TINY = np.finfo(np.float64).tiny
# -log(y_t + 1e-7) for y_t in [0, 1], with the rounding of y_t + 1e-7 at y_t = 1
# and a mean's (relative 1e-12 covers N eps for any N here)
LOSS_MIN, LOSS_MAX = -math.log(1.0 + DELTA) * (1 + 1e-12), -math.log(DELTA) * (1 + 1e-12)
PARAM_NAMES = ("W1", "b1", "W2", "b2")
# Seconds per example, all backends: a call may compile a Numba specialisation
# (5-30 s on a cold cache); once an example has hung, the examples Hypothesis
# tries while shrinking it get HANG_TIMEOUT (a warm child runs any of them in
# well under a second).
CALL_TIMEOUT = 120.0
HANG_TIMEOUT = 15.0
START_TIMEOUT = 120.0  # the child's imports
# SCRATCHNET_FUZZ_SHRINK=0 (tools/sanitize.sh sets it): report the first
# failing example as it is. Shrinking a crash restarts the child for every
# candidate, seconds each under the sanitizers; the first example is small.
SHRINK = (
    {}
    if os.environ.get("SCRATCHNET_FUZZ_SHRINK", "1") != "0"
    else {"phases": [phase for phase in hypothesis.Phase if phase != hypothesis.Phase.shrink]}
)
FUNCTION_ERRORS = (TypeError, ValueError)
NETWORK_ERRORS = (TypeError, ValueError, KeyError, FloatingPointError)  # the last: an overflowing forward pass
TRAIN_ERRORS = (TypeError, ValueError, KeyError, FloatingPointError)


# =============================================================================
# Arrays as recipes: a base and a layout, built where the call is made
# =============================================================================
@json_codec.record
@dataclasses.dataclass(frozen=True, eq=False)
class Arr:
    """An array as a C-contiguous ``base`` and the ``layout`` to give it.

    An array crosses to the child as its values (json_codec keeps neither
    strides nor alignment), so the child builds each array from this; the
    repr rebuilds it too (with ``from numpy import *``), bit for bit, so a
    printed example reproduces.
    """

    base: np.ndarray
    layout: str = "C"

    def build(self):
        a = self.base.copy()
        movable = a.dtype != object and a.dtype.itemsize > 1
        if self.layout == "F":
            return np.asfortranarray(a)
        if self.layout == "reversed" and a.ndim:
            return a[(slice(None, None, -1),) * a.ndim]
        if self.layout == "strided" and a.ndim:
            return np.repeat(a, 2, axis=-1)[..., ::2]
        if self.layout == "readonly":
            a.flags.writeable = False
            return a
        if self.layout == "swapped" and movable and a.dtype.kind in "fiuc":
            return a.astype(a.dtype.newbyteorder())
        if self.layout == "unaligned" and movable:
            raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
            u = raw[1:].view(a.dtype).reshape(a.shape) if a.nbytes else a
            u[...] = a
            return u
        return a

    def __repr__(self):
        # every float to the digits that round-trip, so a printed example is the example
        with np.printoptions(floatmode="unique", threshold=sys.maxsize):
            return f"Arr({np.array_repr(self.base)}, {self.layout!r})"

    def _repr_pretty_(self, printer, cycle):  # how Hypothesis prints a failing example
        printer.text(repr(self))


def build(spec):
    """``spec`` with every Arr replaced by its array (in tuples, lists and dicts too)."""
    if isinstance(spec, Arr):
        return spec.build()
    if isinstance(spec, tuple):
        return tuple(build(v) for v in spec)
    if isinstance(spec, list):
        return [build(v) for v in spec]
    if isinstance(spec, dict):
        return {k: build(v) for k, v in spec.items()}
    return spec


def net_with(params_spec):
    """A TwoLayerNet of the sizes W1 and W2 in ``params_spec`` give (1 where
    they give none), with the built ``params_spec`` as its params."""
    net = sn.TwoLayerNet(*(max(size, 1) for size in net_sizes(params_spec)))
    net.params = build(params_spec)
    return net


def net_sizes(params_spec):
    """(D, H, K) as W1 (D, H) and W2 (., K) of a parameter spec say, 0 where they say nothing."""
    w1, w2 = (params_spec.get(name) if isinstance(params_spec, dict) else None for name in ("W1", "W2"))
    d, h = w1.base.shape if isinstance(w1, Arr) and w1.base.ndim == 2 else (0, 0)
    k = w2.base.shape[1] if isinstance(w2, Arr) and w2.base.ndim == 2 else 0
    return d, h, k


# =============================================================================
# The child's side: what a call did, and what it must not have changed
# =============================================================================
def _arrays_in(obj, found):
    if isinstance(obj, np.ndarray):
        found.append(obj)
        if isinstance(obj.base, np.ndarray):
            found.append(obj.base)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _arrays_in(v, found)
    elif isinstance(obj, dict):
        for v in obj.values():
            _arrays_in(v, found)
    return found


def _content(a):
    return repr(a.tolist()) if a.dtype == object else a.tobytes()


def _plain_repr(obj):
    if isinstance(obj, list):
        return "[" + ", ".join(_plain_repr(v) for v in obj) + "]"
    if isinstance(obj, np.ndarray):
        return "<array>"
    return repr(obj) if isinstance(obj, (int, float, str, type(None))) else type(obj).__name__


def snapshot(obj):
    """What must not change: every array in ``obj`` (and the array a view is
    of) with its bytes, and the repr of plain Python containers."""
    return [(a, _content(a)) for a in _arrays_in(obj, [])], _plain_repr(obj)


def changed(snap, obj):
    arrays, plain = snap
    return any(_content(a) != before for a, before in arrays) or _plain_repr(obj) != plain


def params_state(net):
    """net.params as far as a call must leave it: the dict object, its keys,
    each value's identity and content."""
    p = net.params
    if not isinstance(p, dict):
        return ("not a dict", id(p), repr(p) if not isinstance(p, np.ndarray) else _content(p))
    return (id(p), [(k, id(v), _content(v) if isinstance(v, np.ndarray) else repr(v)) for k, v in p.items()])


def params_bytes(params):
    return {k: params[k].tobytes() for k in PARAM_NAMES}


def outcome(backend, thunk, documented, inputs, convert=lambda v: v):
    """Run thunk() and describe what happened, for the parent to judge."""
    snap = snapshot(inputs)
    out = {
        "backend": backend,
        "kind": "result",
        "value": None,
        "type": None,
        "message": None,
        "documented": False,
        "traceback": None,
        "warnings": [],
    }
    print(f"[child] backend {backend}", file=sys.stderr, flush=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out["value"] = convert(thunk())
        except Exception as exc:
            out.update(
                kind="raised",
                type=type(exc).__name__,
                documented=isinstance(exc, documented),
                message=exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc),
            )
            if not out["documented"]:
                out["traceback"] = traceback.format_exc()
    out["warnings"] = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
    out["mutated"] = changed(snap, inputs)
    return out


# =============================================================================
# The parent's side: the worker, and the judgement common to every surface
# =============================================================================
class Worker:
    """A child serving the HANDLERS of the test module named ``module``;
    a crash or a hang fails the example, and the next one gets a new child."""

    def __init__(self, module):
        self.child, self.hung = Child(module, start_timeout=START_TIMEOUT), False

    def run(self, kind, spec, timeout=None):
        """HANDLERS[kind](spec) in the child: its reply, or the test failed, naming what happened."""
        timeout = timeout or (HANG_TIMEOUT if self.hung else CALL_TIMEOUT)
        try:
            return self.child.call(kind, spec, timeout, what=f"the {kind} example")
        except ChildFailed as failure:
            self.hung = self.hung or failure.how == "hang"
            # now, as well as in Hypothesis' report of the shrunk example:
            # shrinking a crash restarts the child for each candidate
            print(failure, file=sys.stderr, flush=True)
            pytest.fail(str(failure))

    def close(self):
        self.child.close()


def worker_fixture(test_file):
    """A module-scoped ``worker`` fixture: a Worker serving the HANDLERS of ``test_file`` (give it __file__)."""

    @pytest.fixture(scope="module")
    def worker():
        w = Worker(Path(test_file).stem)
        yield w
        w.close()

    return worker


def names_argument(message, names):
    """``message`` starts with one of ``names`` (as a word)."""
    return re.match("(" + "|".join(map(re.escape, names)) + r")\b", message or "") is not None


def check_outcomes(outcomes, names):
    """The contract common to every call: no mutation, a documented exception
    naming an argument, the same outcome on every backend. (Warnings are
    checked last, by check_no_warnings, so that a result's problems show first.)"""
    for out in outcomes:
        b = out["backend"]
        assert not out["mutated"], f"backend {b}: an input array was modified"
        if out["kind"] == "raised":
            event(f"raised {out['type']}")
            assert out["documented"], f"backend {b}: undocumented {out['type']}: {out['message']}\n{out['traceback']}"
            assert names_argument(out["message"], names), (
                f"backend {b}: the {out['type']} message names none of {names}: {out['message']!r}"
            )
        else:
            event("result")
    kinds = {(o["kind"], o["type"]) for o in outcomes}
    assert len(kinds) == 1, "backends disagree: " + "; ".join(
        f"{o['backend']}: {o['type'] or 'result'} {o['message'] or ''}" for o in outcomes
    )


def check_no_warnings(outcomes):
    for out in outcomes:
        assert not out["warnings"], f"backend {out['backend']}: warned {out['warnings']}"


def _bits(a):
    """The bytes of ``a`` with every NaN the same NaN (numba and c may differ in a NaN's sign only)."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isnan(a), np.nan, a).tobytes()


def check_twins(results):
    """numba and c results are bitwise equal (documented: "bit for bit")."""
    if "numba" in results and "c" in results:
        a, b = results["numba"], results["c"]
        if isinstance(a, dict):
            assert a.keys() == b.keys()
            for k in a:
                assert _bits(a[k]) == _bits(b[k]), f"numba and c differ in {k}: {a[k]!r} vs {b[k]!r}"
        else:
            assert _bits(a) == _bits(b), f"numba and c differ: {a!r} vs {b!r}"


def assert_close_to_numpy(results, rtol, atol, what=""):
    """Each compiled backend's result within rtol/atol of the NumPy reference, NaN where it is NaN."""
    if "numpy" not in results:
        return
    ref = np.asarray(results["numpy"], dtype=np.float64)
    for b, got in results.items():
        got = np.asarray(got, dtype=np.float64)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, err_msg=f"{what} {b} vs numpy")
