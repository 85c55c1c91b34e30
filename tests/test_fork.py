"""Processes forked after the kernels ran: the child works and gets the
parent's bits, or stops at once with a message that says what to do; the
parent never hangs (issue 21).

GNU OpenMP does not survive fork: Numba's kernels would terminate the child
(a Pool then waits forever for the lost task) or deadlock in a grandchild.
scratchnet._threads says how the child avoids them. Each case runs in a
fresh interpreter, in its own session, killed after a hard timeout: a
regression fails, it does not hang the suite.
"""

import functools
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import scratchnet as sn

SCRIPT = r"""
import multiprocessing as mp, os, sys, time, traceback
import numba
import numpy as np
import scratchnet as sn

if sys.argv[1] == "absent":
    sys.modules["scratchnet._ckernels"] = None  # as if the c backend had not been built
KINDS = [*sn.available_backends(), "jitted", "plain"]
sn.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
rng = np.random.default_rng(21)
x = rng.random((20, 784)) * (rng.random((20, 784)) < 0.2)
t = rng.integers(0, 10, 20)
net = sn.TwoLayerNet(784, 16, 10, seed=1)
z = np.linspace(-3.0, 3.0, 100_000)


@numba.njit
def f(w):
    return np.sum(np.sin(w) * w)


def work(kind):
    # The bytes of one kind of work: a backend's kernels, Numba's parallel
    # gradient loop around a jitted f, or nothing of scratchnet.
    if kind == "plain":
        return b"plain"
    if kind == "jitted":
        return sn.numerical_gradient(f, np.linspace(-1.0, 1.0, 64)).tobytes()
    parts = [sn.sigmoid(z, backend=kind), np.float64(net.loss(x, t, backend=kind))]
    parts += net.gradient(x, t, backend=kind).values()
    parts += net.numerical_gradient(x[:4], t[:4], backend=kind).values()
    return b"".join(p.tobytes() for p in parts)


def say(*words):
    print(f"{mode}:", *words, flush=True)


def verdict(results):
    say(*(f"{k}:{'same' if r == expected[k] else 'different'}" for k, r in zip(KINDS, results)))


def forked(job):
    # Run job() in a forked child; say its exit status, or "hang" (and kill it) after 30 s.
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            job()
        except BaseException:
            traceback.print_exc()
            status = 1
        sys.stderr.flush()
        os._exit(status)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return say("exit", os.waitstatus_to_exitcode(status))
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    say("hang")


def in_child():
    verdict([work(k) for k in KINDS])


expected = {k: work(k) for k in KINDS}  # Numba's threads (OpenMP by default) have run
mode = "pool"
with mp.get_context("fork").Pool(2) as pool:
    try:
        verdict(pool.map_async(work, KINDS, chunksize=1).get(timeout=60))
    except mp.TimeoutError:
        say("hang")
    except Exception as exc:
        say("error", type(exc).__name__, exc)
mode = "fork"
forked(in_child)
mode = "grandchild"
forked(lambda: forked(in_child))
"""


@functools.cache
def run(c_backend):
    """SCRIPT's lines by mode, and its stderr; its whole process group is killed after 180 s."""
    with subprocess.Popen(
        [sys.executable, "-c", SCRIPT, c_backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"still running after 180 s\nstdout:\n{out}\nstderr:\n{err}")
    lines = {}
    for line in out.splitlines():
        mode, _, said = line.partition(": ")
        lines.setdefault(mode, []).append(said)
    return lines, err


def all_same():
    return " ".join(f"{k}:same" for k in [*sn.available_backends(), "jitted", "plain"])


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("pool", [all_same()]),
        ("fork", [all_same(), "exit 0"]),
        ("grandchild", [all_same(), "exit 0", "exit 0"]),  # the grandchild's exit, then the child's
    ],
)
def test_a_process_forked_after_the_kernels_ran_gets_the_parents_bits(mode, said):
    lines, err = run("built")
    assert lines.get(mode) == said, (lines, err)


MESSAGE = "the numba backend cannot run in a process forked after Numba's OpenMP threads started"


def numba_layer():
    from scratchnet._threads import threading_layer

    sn.sigmoid(np.zeros(3), backend="numba")
    return threading_layer()


def test_without_the_c_backend_a_forked_child_stops_at_once_and_says_why():
    if numba_layer() != "omp":
        pytest.skip("Numba's kernels run in a forked child with this threading layer")
    lines, err = run("absent")
    # In a Pool, the child's exception, raised in the parent by get(); a child of os.fork exits with 1.
    assert lines["pool"][0].startswith(f"error RuntimeError backend: {MESSAGE}"), (lines, err)
    assert lines["fork"] == ["exit 1"], (lines, err)
    assert f"RuntimeError: backend: {MESSAGE}" in err, err


def test_the_serial_gradient_loop_of_a_forked_child_gets_the_bits_and_errors_of_the_parallel_one(monkeypatch):
    import numba

    from scratchnet import _threads

    @numba.njit
    def f(w):
        if w[7] > 0.5:
            raise ValueError("w[7] above 0.5")
        return np.sum(np.sin(w) * w)

    x = np.linspace(-1.0, 0.4, 18)
    parallel = sn.numerical_gradient(f, x.copy())
    monkeypatch.setitem(_threads._state, "forked_after_openmp", True)  # as in such a child
    assert sn.numerical_gradient(f, x.copy()).tobytes() == parallel.tobytes()
    x[7] = 0.5
    with pytest.raises(ValueError, match=r"w\[7\] above 0.5"):
        sn.numerical_gradient(f, x)
