"""Fuzzing the input contract of the chapter's functions, TwoLayerNet's
methods, ``train`` and the command line, on every backend.

The contract, for any arguments (arrays of every dtype, 0-d to 3-d shapes
including empty ones, C, Fortran, reversed, strided, read-only, byte-swapped
and unaligned layouts, NaN, infinities, subnormals and huge values; parameter
dicts with keys missing, shapes swapped, dtypes wrong, lists, views, NaN;
labels out of range, one-hot rows that are not, float labels; any h, method
and training setting):

- a result of the documented type, shape and dtype, with the values the
  docstrings promise (probabilities in [0, 1] summing to 1, a loss in
  [-log(1 + 1e-7), -log(1e-7)], an accuracy that is a fraction of N, finite
  gradients), or one of the documented exceptions (TypeError, ValueError,
  KeyError, and FloatingPointError from ``train``) whose message starts with
  the name of the argument at fault;
- no warning (the project runs with warnings as errors), no crash, no hang;
- the caller's arrays are bitwise unchanged, and so are ``net.params``
  (the dict, its arrays and their bytes) after any method, and after a
  failed ``train``: as they were before the call, or, after a
  FloatingPointError, as they were at the end of the last completed
  iteration;
- every backend gives the same outcome: the same exception type, or results
  that agree, numba and c bit for bit, numpy within the rounding derived at
  each comparison below.

Every call runs in a child interpreter (:class:`Worker`), once per backend,
so that a segfault or a hang in a compiled kernel fails the one example
that caused it: the failure names the example (Hypothesis prints it, in a
form that rebuilds the arrays), the backend running when the child died,
the signal and the child's last stderr (with faulthandler's traceback).

CI runs ``FUZZ_EXAMPLES`` examples per test (tests/fuzzing.py), about 20 s
for the module on 2 cores (up to 30 s more where Numba's cache is cold);
``SCRATCHNET_FUZZ_EXAMPLES=2000 python -m pytest tests/test_fuzz_network.py``
runs longer. ``SCRATCHNET_TEST_BACKENDS=c,numpy`` restricts the backends
(tests/conftest.py), as the sanitizer run (tools/sanitize.sh) does.

What the fuzzing found is kept, each finding as its smallest example in a
plain test, beside the other tests of the module it exercised
(test_functions.py, test_network.py, test_training.py, test_c_extension.py).
"""

import contextlib
import dataclasses
import faulthandler
import functools
import io
import math
import os
import pickle
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import hypothesis
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import scratchnet as sn
from conftest import selected_backends
from fuzzing import FUZZ_EXAMPLES, fuzz_settings
from scratchnet._config import DELTA, SUM_BLOCK

pytestmark = pytest.mark.fuzz

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


# =============================================================================
# Inputs that cross to the child: arrays as a base and a layout
# =============================================================================
LAYOUTS = ("C", "C", "F", "reversed", "strided", "readonly", "swapped", "unaligned")


@dataclasses.dataclass(frozen=True, eq=False)
class Arr:
    """An array as a C-contiguous ``base`` and the ``layout`` to give it.

    Pickling an array keeps neither its strides nor its flags, so the child
    rebuilds each array from this; the repr rebuilds it too (with
    ``from numpy import *``), bit for bit, so a printed example reproduces.
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


def snapshot(obj):
    """What must not change: every array in ``obj`` (and the array a view is
    of) with its bytes, and the repr of plain Python containers."""
    return [(a, _content(a)) for a in _arrays_in(obj, [])], _plain_repr(obj)


def _plain_repr(obj):
    if isinstance(obj, list):
        return "[" + ", ".join(_plain_repr(v) for v in obj) + "]"
    if isinstance(obj, np.ndarray):
        return "<array>"
    return repr(obj) if isinstance(obj, (int, float, str, type(None))) else type(obj).__name__


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


# =============================================================================
# The child: runs one example on every backend, reports each outcome
# =============================================================================
def _outcome(backend, thunk, documented, inputs, convert=lambda v: v):
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


def _result_value(v):
    """A result as the parent receives it (History as a dict)."""
    if isinstance(v, sn.History):
        return {"history": v.to_dict()}
    return v


FUNCTION_ERRORS = (TypeError, ValueError)
NETWORK_ERRORS = (TypeError, ValueError, KeyError)
TRAIN_ERRORS = (TypeError, ValueError, KeyError, FloatingPointError)


def run_function(spec):
    name, args = spec
    fn = getattr(sn, name)
    outcomes = []
    for backend in BACKENDS if name != "sum_squares_error" else (None,):
        built = build(args)
        kwargs = {} if backend is None else {"backend": backend}
        outcomes.append(_outcome(backend, functools.partial(fn, *built, **kwargs), FUNCTION_ERRORS, built))
    return outcomes


def _net(params_spec):
    net = sn.TwoLayerNet(1, 1, 1)
    net.params = build(params_spec)
    return net


def run_network(case):
    outcomes = []
    for backend in BACKENDS:
        net = _net(case.params)
        before = params_state(net)
        args, kwargs = build(case.args), dict(build(case.kwargs), backend=backend)
        if case.method == "gradient_check":
            thunk = functools.partial(sn.gradient_check, net, *args, **kwargs)
        else:
            thunk = functools.partial(getattr(net, case.method), *args, **kwargs)
        out = _outcome(backend, thunk, NETWORK_ERRORS, (args, kwargs))
        out["params_changed"] = params_state(net) != before
        outcomes.append(out)
    return outcomes


class StopAfter:
    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self):
        self.calls += 1
        return self.calls >= self.n


def run_train(case):
    outcomes = []
    for backend in BACKENDS:
        out = _run_train_on(case, backend)
        outcomes.append(out)
    return outcomes


def _run_train_on(case, backend):
    net = _net(case.params)
    data = build(case.data)
    kwargs = dict(build(case.kwargs), backend=backend)
    history = case.history
    if history == "resume":  # a valid history of a shorter run of the same settings
        first = dict(kwargs, iters_num=case.resume_at, on_iteration=None, should_stop=None)
        try:
            history = sn.train(net, *data, **first)
        except Exception as exc:  # the run itself is fuzzed below, with history=None
            return {"backend": backend, "kind": "setup failed", "message": f"{type(exc).__name__}: {exc}"}
    elif history == "bad state":
        history = sn.History(rng_state={"bit_generator": "PCG64", "state": "junk"})
    start = params_state(net)
    start_params = {k: np.copy(v) for k, v in net.params.items()} if isinstance(net.params, dict) else None
    history_before = history.to_dict() if isinstance(history, sn.History) else None
    ends = []  # params at the end of each completed iteration
    if case.on_iteration == "record":
        kwargs["on_iteration"] = lambda i, loss: ends.append(params_bytes(net.params))
    elif case.on_iteration is not None:
        kwargs["on_iteration"] = case.on_iteration
    if case.should_stop is not None:
        kwargs["should_stop"] = StopAfter(case.should_stop) if isinstance(case.should_stop, int) else case.should_stop
    out = _outcome(
        backend, lambda: sn.train(net, *data, history=history, **kwargs), TRAIN_ERRORS, (data,), convert=_result_value
    )
    out["history_mutated"] = history_before is not None and history.to_dict() != history_before
    out["params_unchanged"] = params_state(net) == start
    out["iterations_recorded"] = len(ends)
    if out["kind"] == "raised" and out["type"] == "FloatingPointError" and ends:
        out["params_unchanged"] = params_bytes(net.params) == ends[-1]  # the last completed iteration's
    if out["kind"] == "result":
        out["value"]["params"] = {k: np.copy(net.params[k]) for k in PARAM_NAMES}
        if case.history is None and case.should_stop is None and kwargs.get("iters_num", 0) >= 2:
            out["resumed_equal"] = _resume_equals(case, data, kwargs, out["value"], start_params)
    return out


def _resume_equals(case, data, kwargs, whole, start_params):
    """train in two parts (stopped, then resumed) ends bitwise where one run does (documented)."""
    net = _net(case.params)
    for k in PARAM_NAMES:
        net.params[k][...] = start_params[k]
    kwargs = dict(kwargs, on_iteration=None, should_stop=None)
    part = sn.train(net, *data, **dict(kwargs, iters_num=kwargs["iters_num"] // 2))
    history = sn.train(net, *data, history=part, **kwargs)
    return history.to_dict() == whole["history"] and all(
        net.params[k].tobytes() == whole["params"][k].tobytes() for k in PARAM_NAMES
    )


_CLI_STATE = {}


def _cli_fixtures():
    """A tiny MNIST-layout folder, a regular file and a finished run, made once per child."""
    if not _CLI_STATE:
        from idx_helpers import write_small_mnist
        from scratchnet import cli

        root = Path(tempfile.mkdtemp(prefix="fuzz-cli-"))
        write_small_mnist(root / "data")
        (root / "file").write_text("not a folder")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = cli.main(
                [
                    "train",
                    "--data-dir",
                    str(root / "data"),
                    "--iters",
                    "2",
                    "--batch-size",
                    "2",
                    "--hidden",
                    "3",
                    "--backend",
                    BACKENDS[-1],
                    "--no-progress",
                    "--out",
                    str(root / "run"),
                ]
            )
        assert status == 0
        _CLI_STATE.update(root=root, data=root / "data", file=root / "file", run=root / "run")
    return _CLI_STATE


def run_cli(argv):
    from scratchnet import cli

    fixtures = _cli_fixtures()
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-cli-run-"))
    if any("{run}" in a for a in argv):
        shutil.copytree(fixtures["run"], tmp / "run")
    values = {"tmp": str(tmp), "data": str(fixtures["data"]), "file": str(fixtures["file"]), "run": str(tmp / "run")}
    for key, value in values.items():  # not str.format: a random word may hold braces
        argv = [a.replace("{" + key + "}", value) for a in argv]
    threads, cwd = sn.get_num_threads(), os.getcwd()
    stdout, stderr = io.StringIO(), io.StringIO()
    result = {"argv": argv, "status": None, "traceback": None}
    print(f"[child] cli {argv}", file=sys.stderr, flush=True)
    os.chdir(tmp)  # a random word may become a relative --out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                result["status"] = cli.main(argv)
        except SystemExit as exc:  # argparse: 2 for bad options, 0 for --help
            result["status"] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            result["traceback"] = traceback.format_exc()
        finally:
            sn.set_num_threads(threads)
            os.chdir(cwd)
    result["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    result["stderr"] = stderr.getvalue()
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def run_selftest(what):
    """Misbehave on purpose, for test_the_worker_reports_crashes_and_hangs."""
    if what == "segfault":
        import ctypes

        ctypes.string_at(0)  # reads address 0: SIGSEGV
    time.sleep(3600)


RUNNERS = {
    "function": run_function,
    "network": run_network,
    "train": run_train,
    "cli": run_cli,
    "selftest": run_selftest,
}


def serve():
    """The child's loop: one pickled request per message on stdin, one pickled reply on the saved stdout."""
    faulthandler.enable()
    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else written to stdout (C code too) goes to the stderr log
    sys.stdout = sys.stderr
    _send(replies, "ready")
    while True:
        header = requests.read(8)
        if len(header) < 8:
            return
        kind, spec = pickle.loads(requests.read(struct.unpack("<Q", header)[0]))
        print(f"[child] {kind} {spec!r}"[:2000], file=sys.stderr, flush=True)
        try:
            reply = ("ok", RUNNERS[kind](spec))
        except BaseException:
            reply = ("harness error", traceback.format_exc())
        _send(replies, reply)


def _send(stream, obj):
    data = pickle.dumps(obj)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


_CHILD = """
import sys, tempfile
sys.path.insert(0, sys.argv[1])
tempfile.tempdir = sys.argv[2]  # the parent removes it, also after killing the child
import test_fuzz_network
test_fuzz_network.serve()
"""


# =============================================================================
# The parent's side: the worker, and the judgement of the outcomes
# =============================================================================
class Worker:
    """A child interpreter running examples; replaced after a crash or a hang."""

    def __init__(self):
        self.proc, self.log, self.scratch, self.hung = None, None, None, False

    def _start(self):
        self.log = tempfile.TemporaryFile()
        self.scratch = tempfile.mkdtemp(prefix="fuzz-child-")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(Path(__file__).parent), self.scratch],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self._read(START_TIMEOUT, "starting the child")

    def run(self, kind, spec, timeout=None):
        """The runner's reply for ``spec``; fails the test, naming what happened, on a crash or a hang."""
        if self.proc is None:
            self._start()
        start = self.log.seek(0, os.SEEK_END)
        data = pickle.dumps((kind, spec))
        try:
            self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # reported by _read as a death
        timeout = timeout or (HANG_TIMEOUT if self.hung else CALL_TIMEOUT)
        status, reply = self._read(timeout, f"{kind} example", start)
        assert status == "ok", f"the harness failed in the child:\n{reply}"
        return reply

    def _read(self, timeout, what, log_start=0):
        fd = self.proc.stdout.fileno()
        buf, need = b"", None
        deadline = time.monotonic() + timeout
        while need is None or len(buf) < need:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            chunk = os.read(fd, 1 << 20) if ready else None
            if not chunk:
                self._fail(what, "hang" if chunk is None else "died", timeout, log_start)
            buf += chunk
            if need is None and len(buf) >= 8:
                need = 8 + struct.unpack("<Q", buf[:8])[0]
        return pickle.loads(buf[8:need])

    def _fail(self, what, how, timeout, log_start):
        if how == "hang":
            self.proc.kill()
        code = self.proc.wait()
        self.log.seek(log_start)
        log = self.log.read().decode(errors="replace")[-6000:]
        self.close()
        if how == "hang":
            self.hung = True
            message = f"HANG: the {what} was still running after {timeout} s."
        else:
            name = signal.Signals(-code).name if code < 0 else f"exit status {code}"
            message = f"CRASH: the child died ({name}) running the {what}."
        # now, as well as in Hypothesis' report of the shrunk example: shrinking a crash restarts the child each time
        print(f"{message} Child's stderr:\n{log}", file=sys.stderr, flush=True)
        pytest.fail(f"{message} Child's stderr:\n{log}")

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.proc.stdout.close()
            self.log.close()
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.proc, self.log, self.scratch = None, None, None


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


def _names_argument(message, names):
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
            assert _names_argument(out["message"], names), (
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


def test_the_worker_reports_crashes_and_hangs():
    # The harness itself: a segfault and a hang in the child each fail the
    # example with what happened and the child's last words; the next
    # example gets a fresh child. (Under ASan a segfault ends in its report
    # and exit status 1.)
    w = Worker()
    crash = r"(?s)CRASH: the child died \((SIGSEGV|SIGABRT|exit status 1)\).*selftest"
    try:
        with pytest.raises(pytest.fail.Exception, match=crash):
            w.run("selftest", "segfault")
        with pytest.raises(pytest.fail.Exception, match=r"(?s)HANG: .* still running after 2.0 s.*selftest"):
            w.run("selftest", "sleep", timeout=2.0)
        assert w.run("function", ("sum_squares_error", ([1.0], [0.0])))[0]["value"] == 0.5
    finally:
        w.close()


# =============================================================================
# Strategies
# =============================================================================
SPECIAL = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    255.0,
    5e-324,
    2.2250738585072014e-308,
    1e-300,
    1e-8,
    40.0,
    -40.0,
    745.2,
    -745.2,
    1e7,
    -1e7,
    1e16,
    1e300,
    -1e300,
    1e308,
    1.7976931348623157e308,
    -1e308,
    np.inf,
    -np.inf,
    np.nan,
]
FINITE_SPECIAL = [v for v in SPECIAL if np.isfinite(v)]
any_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL))
# Values a net meets: pixels in [0, 1] and 0-255, zeros (the kernels list the
# non-zeros), moderate reals, and the special values.
data_floats = st.one_of(st.just(0.0), st.floats(0, 1), st.floats(-300, 300), st.sampled_from(SPECIAL))
finite_data_floats = st.one_of(st.just(0.0), st.floats(0, 1), st.floats(-300, 300), st.sampled_from(FINITE_SPECIAL))
bad_scalars = st.one_of(
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.complex_numbers(max_magnitude=10),
    st.integers(10**300, 10**400),
)
DTYPES = ["f8", "f4", "f2", "i8", "i4", "u1", "u8", "?", "c16", "U3", "O"]
REAL_DTYPES = ["f8", "f8", "f8", "f4", "f2", "i8", "u1"]


def _elements(dtype, floats):
    if dtype == np.float64:
        return floats
    if dtype.kind == "f":
        return hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True)
    if dtype.kind == "O":
        return st.one_of(st.floats(-3, 3), st.none(), st.text(max_size=2), st.integers(-3, 3))
    return None


@st.composite
def arrays(draw, shape=None, dtypes=("f8",), floats=data_floats, max_dims=3, max_side=4):
    """An Arr of one of ``dtypes``, of ``shape`` (or any shape, 0-d and empty included), any layout."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    base = draw(hnp.arrays(dtype, shape, elements=_elements(dtype, floats)))
    return Arr(base, draw(st.sampled_from(LAYOUTS)))


junk = st.one_of(
    bad_scalars,
    arrays(dtypes=DTYPES),
    st.lists(st.floats(-3, 3), max_size=3),
    st.lists(st.lists(st.integers(0, 2), max_size=3), max_size=3),
)


@st.composite
def labels(draw, n, k, valid=True):
    """Targets for n samples of k classes: integer labels or one-hot rows,
    in range, or (``valid=False``, half the time) out of range, one-hot
    rows with no 1 or two, floats, another count."""
    kind = draw(st.sampled_from(["labels", "labels", "one-hot", "list"]))
    wrong = not valid and draw(st.booleans())
    if kind == "one-hot":
        rows = draw(st.lists(st.integers(0, max(k - 1, 0)), min_size=n, max_size=n))
        onehot = np.zeros((n, k))
        onehot[np.arange(n), rows] = 1.0 if k else 0.0
        if wrong and n and k:
            how = draw(st.sampled_from(["two", "none", "2", "nan", "0.5"]))
            r = draw(st.integers(0, n - 1))
            value = {"two": 1.0, "none": 0.0, "2": 2.0, "nan": np.nan, "0.5": 0.5}[how]
            onehot[r, rows[r] if how != "two" else (rows[r] + 1) % k] = value
        dtype = draw(st.sampled_from(["f8", "i8", "?", "f4"])) if np.isfinite(onehot).all() else "f8"
        return Arr(onehot.astype(dtype), draw(st.sampled_from(LAYOUTS)))
    values = draw(st.lists(st.integers(0, max(k - 1, 0)), min_size=n, max_size=n))
    if wrong and n:
        how = draw(st.sampled_from(["-1", "k", "huge", "float", "count"]))
        if how == "count":
            values = values + [0]
        elif how == "float":
            return Arr(np.array(values, dtype=float) + draw(st.sampled_from([0.0, 0.5])))
        else:
            values[draw(st.integers(0, n - 1))] = {"-1": -1, "k": k, "huge": 2**62}[how]
    if kind == "list":
        return values
    dtype = draw(st.sampled_from(["i8", "i4", "u1", "i1", "u8"]))
    if min(values, default=0) < 0 and dtype[0] == "u" or max(values, default=0) > np.iinfo(dtype).max:
        dtype = "i8"
    return Arr(np.array(values, dtype=dtype), draw(st.sampled_from(LAYOUTS)))


# -- parameters ---------------------------------------------------------------------
WEIGHT_SCALES = [0.01, 0.01, 1.0, 30.0, 1e3]
PARAM_LAYOUTS = ("C", "C", "F", "reversed", "strided")


@st.composite
def sizes(draw):
    return draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))


def fresh_params(d, h, k, std, seed):
    return sn.TwoLayerNet(d, h, k, std, seed=seed).params


@st.composite
def params(draw, d, h, k, valid=True):
    """A parameter dict of a d-h-k net (weights of std 0.01 to 1000, special
    values in a few entries), with one change when ``valid=False``: a key
    missing, W1 and W2 swapped, a transposed or reshaped array, another
    dtype, a list, a 0-size hidden layer or output, not a dict at all."""
    p = fresh_params(d, h, k, draw(st.sampled_from(WEIGHT_SCALES)), draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(0, 2))):  # a few special entries; NaN/inf only when anything goes
        name = draw(st.sampled_from(PARAM_NAMES))
        index = tuple(draw(st.integers(0, s - 1)) for s in p[name].shape)
        p[name][index] = draw(st.sampled_from(SPECIAL if not valid else FINITE_SPECIAL))
    # Layouts kernel_params copies (F, views) per array; read-only (as
    # np.load(..., mmap_mode="r") gives them, passed on as they are) for all
    # four at once: each combination of flags is another Numba signature to
    # compile, 5-30 s each on a cold cache. (Unaligned data reaches the
    # kernels through x.)
    together = draw(st.sampled_from(["per array"] * 7 + ["readonly"]))
    spec = {
        name: Arr(a, draw(st.sampled_from(PARAM_LAYOUTS)) if together == "per array" else together)
        for name, a in p.items()
    }
    if valid:
        return spec
    change = draw(
        st.sampled_from(
            ["none", "missing", "swap", "transpose", "dtype", "list", "empty", "scalar", "extra", "3-d", "not a dict"]
        )
    )
    event(f"params: {change}")
    name = draw(st.sampled_from(PARAM_NAMES))
    if change == "missing":
        del spec[name]
    elif change == "swap":
        spec["W1"], spec["W2"] = spec["W2"], spec["W1"]
    elif change == "transpose":
        spec[name] = Arr(np.ascontiguousarray(p[name].T), spec[name].layout)
    elif change == "dtype":
        dtype = draw(st.sampled_from(["f4", "f2", "i8", "?", "c16", "O", "U3", "longdouble"]))
        with np.errstate(all="ignore"):  # 1e308 as float16 is inf, as an integer anything
            spec[name] = Arr(p[name].astype(dtype), spec[name].layout)
    elif change == "list":
        spec[name] = p[name].tolist()
    elif change == "empty":  # no hidden unit, or no class
        if draw(st.booleans()):
            spec.update(W1=Arr(np.zeros((d, 0))), b1=Arr(np.zeros(0)), W2=Arr(np.zeros((0, k))))
        else:
            spec.update(W2=Arr(np.zeros((h, 0))), b2=Arr(np.zeros(0)))
    elif change == "scalar":
        spec[name] = draw(st.sampled_from([0.0, 1, None, "W"]))
    elif change == "extra":
        spec[draw(st.sampled_from(["W3", "w1", 1]))] = Arr(np.zeros(2))
    elif change == "3-d":
        spec[name] = Arr(p[name][None], spec[name].layout)
    elif change == "not a dict":
        return draw(st.sampled_from([None, [], "params", ("W1", "b1")])) if draw(st.booleans()) else list(spec.values())
    return spec


def _shape_of(spec, name, axis):
    """The size of an axis of a parameter in a spec, or None."""
    a = spec.get(name) if isinstance(spec, dict) else None
    return a.base.shape[axis] if isinstance(a, Arr) and a.base.ndim > axis else None


steps = st.one_of(
    st.floats(1e-8, 0.5), st.sampled_from([1e-4, 1e-4, 1e-7, 1e-2, 1, 3.0, 1e3, 1e-300, 2.2250738585072014e-308, 1e300])
)
bad_steps = st.one_of(st.sampled_from(SPECIAL), st.integers(-2, 3), bad_scalars, steps)
methods = st.sampled_from(["series", "perturbed"])
bad_methods = st.one_of(methods, st.sampled_from(["Series", "", "numpy", None, 1, ("series",)]))
NETWORK_METHODS = ["predict", "loss", "accuracy", "numerical_gradient", "gradient", "gradient_check"]


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
    d_x = _shape_of(p, "W1", 0) or d
    k_t = _shape_of(p, "W2", 1) or k
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


# =============================================================================
# The chapter's functions
# =============================================================================
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


# =============================================================================
# TwoLayerNet's methods
# =============================================================================
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


# =============================================================================
# train
# =============================================================================
@dataclasses.dataclass(frozen=True)
class TrainCase:
    """``train(net, *data, history=..., **kwargs)`` with ``net.params = params``.

    ``history``: None, "resume" (the History of a first run of ``resume_at``
    iterations with the same settings), "bad state" (a History whose
    generator state is junk) or junk. ``on_iteration``: "record" (the
    child records the params after each iteration) or junk;
    ``should_stop``: None, n (stop after n iterations) or junk.
    """

    params: object
    data: tuple
    kwargs: dict
    history: object = None
    resume_at: int = 0
    on_iteration: object = "record"
    should_stop: object = None


LEARNING_RATES = [0.1, 0.1, 1e-3, 1.0, 10.0, 1e3, 1e300, 1.7976931348623157e308]
TRAIN_NAMES = [
    "x_train",
    "t_train",
    "x_test",
    "t_test",
    "iters_num",
    "batch_size",
    "learning_rate",
    "gradient",
    "numgrad_method",
    "seed",
    "h",
    "history",
    "on_iteration",
    "on_epoch",
    "should_stop",
    "params",
    "backend",
]


@st.composite
def train_cases(draw, valid=True):
    d, h, k = draw(sizes())
    p = draw(params(d, h, k))
    n, m = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    x_train = draw(arrays(shape=(n, d), dtypes=REAL_DTYPES, floats=finite_data_floats))
    x_test = draw(arrays(shape=(m, d), dtypes=REAL_DTYPES, floats=finite_data_floats))
    data = [x_train, draw(labels(n, k)), x_test, draw(labels(m, k))]
    iters = draw(st.integers(0, 3))
    kwargs = {
        "iters_num": iters,
        "batch_size": draw(st.integers(1, n)),
        "learning_rate": draw(st.one_of(st.sampled_from(LEARNING_RATES), st.floats(1e-6, 10))),
        "gradient": draw(st.sampled_from(["numerical", "backprop"])),
        "numgrad_method": draw(methods),
        "seed": draw(st.one_of(st.integers(0, 2**70), st.just(0))),
        "h": draw(steps),
    }
    case = dict(params=p, data=tuple(data), kwargs=kwargs)
    if draw(st.integers(0, 3)) == 0:
        case.update(history="resume", resume_at=draw(st.integers(0, iters)))
    elif draw(st.integers(0, 3)) == 0:
        case["should_stop"] = draw(st.integers(1, 2))
    if valid:
        return TrainCase(**case)
    # one to three settings, arrays or parameters wrong
    for _ in range(draw(st.integers(1, 3))):
        what = draw(
            st.sampled_from(
                sorted(BAD_TRAIN_SETTINGS) + ["data", "params", "history", "on_iteration", "should_stop", "on_epoch"]
            )
        )
        event(f"train: bad {what}")
        if what == "data":
            i = draw(st.integers(0, 3))
            if i % 2 == 0:
                bad = draw(
                    st.one_of(
                        arrays(shape=(n if i == 0 else m, d), dtypes=DTYPES, floats=data_floats),
                        arrays(shape=(n, d + 1)),
                        junk,
                    )
                )
            else:
                bad = draw(st.one_of(labels(n if i == 1 else m, k, valid=False), junk))
            data[i] = bad
            case["data"] = tuple(data)
        elif what == "params":
            case["params"] = draw(params(d, h, k, valid=False))
        elif what == "history":
            case["history"] = draw(st.sampled_from(["bad state", "history", 0, {"iterations_done": 0}]))
        elif what in ("on_iteration", "should_stop"):
            case[what] = draw(st.sampled_from([1, "f", [print]]))
        elif what == "on_epoch":
            kwargs["on_epoch"] = draw(st.sampled_from([1, "f"]))
        else:
            kwargs[what] = draw(BAD_TRAIN_SETTINGS[what])
    if case.get("history") == "resume" and not (isinstance(kwargs["iters_num"], int) and kwargs["iters_num"] >= 0):
        case["history"] = None
    return TrainCase(**case)


BAD_TRAIN_SETTINGS = {
    "iters_num": st.sampled_from([-1, 2.0, True, None, "2", np.float64(1.0)]),
    "batch_size": st.sampled_from([0, 6, -1, 1.5, True, None, "1"]),
    "learning_rate": st.sampled_from(
        [0, -0.1, np.nan, np.inf, -np.inf, "0.1", True, None, 10**400, 1j, np.array([0.1])]
    ),
    "gradient": st.sampled_from(["Numerical", "", None, 1]),
    "numgrad_method": bad_methods,
    "seed": st.sampled_from([-1, 1.5, None, "0", True, -(2**70)]),
    "h": bad_steps,
}


def _check_train_result(case, results, outcomes):
    kwargs = case.kwargs
    for out in outcomes:
        b, v = out["backend"], out["value"]
        hist, p = v["history"], v["params"]
        done = hist["iterations_done"]
        expected = kwargs["iters_num"]
        if case.should_stop is not None:
            expected = min(expected, max(case.resume_at if case.history == "resume" else 0, 0) + case.should_stop)
            expected = max(expected, case.resume_at if case.history == "resume" else 0)
        assert done == expected, f"{b}: {done} iterations done, expected {expected}"
        assert hist["iterations"] == list(range(done)) and len(hist["train_loss"]) == done, b
        assert all(LOSS_MIN <= v <= LOSS_MAX for v in hist["train_loss"]), f"{b}: losses {hist['train_loss']}"
        for e in hist["epochs"]:
            assert 0 <= e["train_acc"] <= 1 and 0 <= e["test_acc"] <= 1, f"{b}: epoch {e}"
        for name in PARAM_NAMES:
            assert p[name].dtype == np.float64 and np.isfinite(p[name]).all(), f"{b}: params[{name}] {p[name]}"
        assert out.get("resumed_equal", True), f"{b}: stopping and resuming did not end where one run does"
    check_twins({b: dict(v["params"], loss=np.array(v["history"]["train_loss"])) for b, v in results.items()})
    dones = {b: v["history"]["iterations_done"] for b, v in results.items()}
    assert len(set(dones.values())) == 1, dones


def _check_train(worker, case):
    outcomes = worker.run("train", case)
    if any(o["kind"] == "setup failed" for o in outcomes):  # the first part of a resumed run failed: no example
        assert all(o["kind"] == "setup failed" for o in outcomes), "backends disagree on the first part: " + "; ".join(
            f"{o['backend']}: {o.get('message') or o['kind']}" for o in outcomes
        )
        event("resume setup failed")
        return
    for out in outcomes:
        b = out["backend"]
        assert not out["history_mutated"], f"backend {b}: train modified the history it was given"
        if out["kind"] == "raised":
            when = "at the last completed iteration" if out["type"] == "FloatingPointError" else "as they were"
            assert out["params_unchanged"], (
                f"backend {b}: after {out['type']} ({out['message']}) net.params are not {when}"
            )
    check_outcomes(outcomes, TRAIN_NAMES)
    if outcomes[0]["kind"] == "result":
        _check_train_result(case, {o["backend"]: o["value"] for o in outcomes}, outcomes)
    check_no_warnings(outcomes)


@fuzz_settings(**SHRINK)
@given(case=train_cases())
def test_train_contract(worker, case):
    _check_train(worker, case)


@fuzz_settings(**SHRINK)
@given(case=train_cases(valid=False))
def test_train_junk(worker, case):
    _check_train(worker, case)


# =============================================================================
# The command line (lightly: its own tests are in test_cli.py)
# =============================================================================
CLI_OPTIONS = {
    "--gradient": ["numerical", "backprop", "Backprop"],
    "--backend": list(BACKENDS) + ["cuda"],
    "--batch-size": ["1", "2", "5", "6", "0", "x"],
    "--lr": ["0.1", "1e-3", "1e300", "nan", "inf", "-1", "0", "x"],
    "--hidden": ["1", "3", "0", "-2", "x"],
    "--seed": ["0", "7", "-1", "x", "99999999999999999999999"],
    "--threads": ["1", "2", "0", "300", "x"],
    "--data-dir": ["{data}", "{data}", "{tmp}/missing", "{file}", ""],
    "--out": ["{tmp}/out", "{file}", "{tmp}", "{run}"],
    "--resume": ["{run}", "{tmp}/missing", "{file}", "{tmp}"],
}
TINY_ITERS = ["0", "1", "2", "-1", "x", "1.5", ""]


@st.composite
def cli_argvs(draw):
    """``scratchnet`` argument lists: mostly ``train`` with a few options
    (``--iters`` at most 2, ``--data-dir`` a 5-sample folder unless junk,
    outputs in a temporary folder), some unknown options and values,
    ``figures`` only where it fails before drawing, other commands."""
    command = draw(st.sampled_from(["train"] * 8 + ["figures", "trian", "", "--help"]))
    if command == "":
        return []
    if command == "figures":
        return ["figures"] + draw(st.sampled_from([[], ["--out", "{file}"], ["--out"], ["--bogus", "1"]]))
    argv = [
        command,
        "--iters",
        draw(st.sampled_from(TINY_ITERS)),
        "--batch-size",
        "2",
        "--hidden",
        "3",
        "--backend",
        BACKENDS[-1],
    ]
    argv += ["--data-dir", "{data}"] if draw(st.integers(0, 3)) else []
    for option in draw(st.lists(st.sampled_from(sorted(CLI_OPTIONS)), max_size=4, unique=True)):
        argv += [option, draw(st.sampled_from(CLI_OPTIONS[option]))]
    if draw(st.booleans()):
        argv.append("--no-progress")
    if draw(st.integers(0, 4)) == 0:  # anything: an unknown option, a stray value
        argv.insert(draw(st.integers(1, len(argv))), draw(st.one_of(st.text(max_size=6), st.just("--frobnicate"))))
    if "--resume" in argv and "{run}" in argv and draw(st.booleans()):  # a resume that runs: raise the total
        argv[argv.index("--iters") + 1] = "3"
    return argv


@fuzz_settings(max_examples=max(1, FUZZ_EXAMPLES // 2), **SHRINK)
@given(argv=cli_argvs())
def test_cli_exit_status(worker, argv):
    out = worker.run("cli", argv)
    event(f"exit status {out['status']}")
    assert out["traceback"] is None, f"scratchnet {out['argv']} raised:\n{out['traceback']}"
    assert out["status"] in (0, 1, 2, 130), f"scratchnet {out['argv']}: exit status {out['status']}"
    assert "Traceback" not in out["stderr"], out["stderr"]
    assert not out["warnings"], out["warnings"]
