"""Fuzzing ``train`` on every backend, each example in a child interpreter.

The contract (fuzz_harness.py): a result or a documented exception
(TypeError, ValueError, KeyError, FloatingPointError) naming the argument
at fault, no warning, crash or hang, inputs and the given History
unchanged, the same outcome on every backend. After a failed ``train``,
``net.params`` are as they were before the call, or, after a
FloatingPointError, as they were at the end of the last completed
iteration. A finished run did the iterations asked for (or until
should_stop), its losses and accuracies are in range, its parameters
finite, numba and c bit for bit, and stopping and resuming it ends bitwise
where one run does.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import json_codec
import scratchnet as sn
from fuzz_harness import (
    BACKENDS,
    LOSS_MAX,
    LOSS_MIN,
    PARAM_NAMES,
    SHRINK,
    TRAIN_ERRORS,
    build,
    check_no_warnings,
    check_outcomes,
    check_twins,
    net_with,
    outcome,
    params_bytes,
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
    sizes,
    steps,
)
from fuzzing import fuzz_settings

pytestmark = pytest.mark.fuzz


@json_codec.record
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


# -- in the child ------------------------------------------------------------------
def _result_value(v):
    """A result as the parent receives it (History as a dict)."""
    if isinstance(v, sn.History):
        return {"history": v.to_dict()}
    return v


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
    net = net_with(case.params)
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
    if isinstance(case.should_stop, int):  # stop at the very iteration: documented to need stretch=1
        kwargs.update(should_stop=StopAfter(case.should_stop), stretch=1)
    elif case.should_stop is not None:
        kwargs["should_stop"] = case.should_stop
    out = outcome(
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
    net = net_with(case.params)
    for k in PARAM_NAMES:
        net.params[k][...] = start_params[k]
    kwargs = dict(kwargs, on_iteration=None, should_stop=None)
    part = sn.train(net, *data, **dict(kwargs, iters_num=kwargs["iters_num"] // 2))
    history = sn.train(net, *data, history=part, **kwargs)
    return history.to_dict() == whole["history"] and all(
        net.params[k].tobytes() == whole["params"][k].tobytes() for k in PARAM_NAMES
    )


HANDLERS = {"train": run_train}


# -- in the test -------------------------------------------------------------------
worker = worker_fixture(__file__)


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
