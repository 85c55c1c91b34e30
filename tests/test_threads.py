"""Threads: one count for the whole process, and results independent of it
even on a busy machine.

(Each kernel's own 1-vs-2-thread check is in test_kernels.py and
test_network.py; the C pool's concurrency in test_c_extension.py;
processes forked after the kernels ran in test_fork.py.)
"""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import scratchnet as sn
from scratchnet import _config

COMPILED = [b for b in sn.available_backends() if b != "numpy"]


def test_a_worker_thread_uses_the_count_the_main_thread_set(threads):
    import numba

    seen = {}

    def worker():
        sn.sigmoid(np.zeros(5), backend="numba")  # applies the process's count to this thread
        seen["numba"] = numba.get_num_threads()
        seen["scratchnet"] = sn.get_num_threads()
        if "c" in sn.available_backends():
            seen["c"] = sn.backends.load("c").get_num_threads()

    for n in (1, 2):
        threads(n)
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert set(seen.values()) == {n}, seen


@pytest.mark.parametrize("backend", COMPILED)
def test_a_worker_thread_gets_the_same_bits(backend, threads, rng):
    x = rng.random((30, 784)).astype(np.float32) * (rng.random((30, 784)) < 0.2)
    t = rng.integers(0, 10, 30)
    net = sn.TwoLayerNet(784, 20, 10, seed=1)
    threads(2)
    here = net.numerical_gradient(x, t, backend=backend)
    there = {}
    worker = threading.Thread(target=lambda: there.update(net.numerical_gradient(x, t, backend=backend)))
    worker.start()
    worker.join()
    assert all(here[k].tobytes() == there[k].tobytes() for k in here)


def _busy(seconds):
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.mark.slow
@pytest.mark.parametrize("backend", COMPILED)
def test_threads_change_no_bit_beside_a_busy_process(backend, threads, rng):
    # A busy competitor deschedules the kernels' threads at random points: the
    # work claimed by each thread changes, the results must not.
    (x_train, t_train), _ = sn.load_mnist()
    x, t = x_train[:200], t_train[:200]
    busy = _busy(60)
    try:
        results = []
        for n in (1, 2, 2):
            threads(n)
            net = sn.TwoLayerNet(784, 50, 10, seed=2)
            sn.train(net, x_train[:2000], t_train[:2000], x, t, iters_num=30, backend=backend)
            results.append((net.params, net.numerical_gradient(x, t, backend=backend)))
    finally:
        busy.kill()
        busy.wait()
    for params, grads in results[1:]:
        assert all(params[k].tobytes() == results[0][0][k].tobytes() for k in params)
        assert all(grads[k].tobytes() == results[0][1][k].tobytes() for k in grads)


def test_the_default_thread_count_is_the_cpus_the_process_may_use():
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); import scratchnet as sn; "
        "print(sn.get_num_threads())"
    )
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity here")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1", out


def test_numba_waits_passively_unless_told_otherwise():
    code = (
        "import os, numpy as np, scratchnet as sn; sn.sigmoid(np.zeros(3), backend='numba'); "
        "print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.strip() == "passive"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env | {"OMP_WAIT_POLICY": "active"},
    )
    assert out.stdout.strip() == "active"  # the user's choice stands


# -- Numba's environment variables: one line naming the variable, not Numba's traceback ---------
def _numba_env_message(setting, what):
    cpus = _config.usable_cpus()
    return {
        "threads": f"{setting}: {what}; set it to a number of threads from 1 up (this process may use {cpus} CPUs), "
        "or unset it for one thread per CPU",
        "layer": f"{setting}: not a threading layer of Numba; expected one of default, safe, threadsafe, forksafe, "
        "tbb, omp, workqueue, or unset it for Numba's default",
        "priority": f"{setting}: expected the layers tbb, omp and workqueue, each once, in the order Numba should "
        "try them (e.g. 'omp tbb workqueue'), or unset it",
    }[what if what in ("layer", "priority") else "threads"]


BAD_NUMBA_ENV = [
    ({"NUMBA_NUM_THREADS": "0"}, "NUMBA_NUM_THREADS=0", "Numba needs at least 1 thread"),
    ({"NUMBA_NUM_THREADS": "-2"}, "NUMBA_NUM_THREADS=-2", "Numba needs at least 1 thread"),
    ({"NUMBA_NUM_THREADS": "two"}, "NUMBA_NUM_THREADS=two", "not a whole number"),
    ({"NUMBA_NUM_THREADS": ""}, "NUMBA_NUM_THREADS=''", "not a whole number"),
    ({"NUMBA_THREADING_LAYER": "bogus"}, "NUMBA_THREADING_LAYER=bogus", "layer"),
    ({"NUMBA_THREADING_LAYER": "open mp"}, "NUMBA_THREADING_LAYER='open mp'", "layer"),
    ({"NUMBA_THREADING_LAYER_PRIORITY": "omp tbb"}, "NUMBA_THREADING_LAYER_PRIORITY='omp tbb'", "priority"),
    ({"NUMBA_THREADING_LAYER_PRIORITY": "omp omp tbb"}, "NUMBA_THREADING_LAYER_PRIORITY='omp omp tbb'", "priority"),
]


@pytest.mark.parametrize(("environ", "setting", "what"), BAD_NUMBA_ENV)
def test_a_numba_variable_numba_cannot_use_is_named(environ, setting, what):
    with pytest.raises(sn.EnvironmentVariableError) as info:
        _config.check_numba_environment(environ)
    assert str(info.value) == _numba_env_message(setting, what)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"NUMBA_NUM_THREADS": "1"},
        {"NUMBA_NUM_THREADS": " 3 "},  # what int() and so Numba take
        {"NUMBA_THREADING_LAYER": "OMP"},  # Numba lower-cases it
        {"NUMBA_THREADING_LAYER": "workqueue", "NUMBA_THREADING_LAYER_PRIORITY": "workqueue omp tbb"},
        *({"NUMBA_THREADING_LAYER": layer} for layer in _config.NUMBA_THREADING_LAYERS),
    ],
)
def test_numba_variables_numba_takes_pass(environ):
    _config.check_numba_environment(environ)


NUMBA_ENV_SCRIPT = """
import sys, numpy as np, scratchnet as sn
print("imported")
print(sn.sigmoid(np.zeros(2), backend="numpy"))  # the numpy backend needs no Numba
calls = [lambda: sn.sigmoid(np.zeros(2)), sn.get_num_threads, lambda: sn.set_num_threads(1)]
if sys.argv[1] == "c":  # the C pool follows the thread count, NUMBA_NUM_THREADS at most
    calls.append(lambda: sn.sigmoid(np.zeros(2), backend="c"))
for call in calls:
    try:
        call()
        print("no error")
    except sn.EnvironmentVariableError as exc:
        print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize(("environ", "setting", "what"), [BAD_NUMBA_ENV[0], BAD_NUMBA_ENV[4]])
def test_a_bad_numba_variable_fails_at_first_use_not_at_import(environ, setting, what):
    # Once: Numba's ValueError and traceback, at import numba (NUMBA_NUM_THREADS) or the first kernel.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")} | environ
    with_c = "c" if "c" in sn.available_backends() else "no c"
    out = subprocess.run(
        [sys.executable, "-c", NUMBA_ENV_SCRIPT, with_c], capture_output=True, text=True, timeout=120, env=env
    )
    lines = out.stdout.splitlines()
    assert lines[:2] == ["imported", "[0.5 0.5]"], (out.stdout, out.stderr)
    message = "EnvironmentVariableError " + _numba_env_message(setting, what)
    assert lines[2:] == [message] * (4 if "c" in sn.available_backends() else 3), out.stderr


def test_a_threading_layer_numba_cannot_load_is_named():
    # "safe" is TBB: without it, Numba's multi-line "No threading layer could be loaded. HINT: ..."
    code = "import numpy as np, scratchnet as sn; sn.sigmoid(np.zeros(2)); print(sn._threads.threading_layer())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")} | {"NUMBA_THREADING_LAYER": "safe"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    if out.returncode == 0:
        pytest.skip(f"Numba loads TBB here ({out.stdout.strip()})")
    last = out.stderr.strip().splitlines()[-1]
    prefix = "scratchnet._config.EnvironmentVariableError: NUMBA_THREADING_LAYER=safe: Numba could not load this "
    assert last.startswith(prefix + "threading layer ("), out.stderr
    assert last.endswith(
        "); install what it needs, set NUMBA_THREADING_LAYER=workqueue (always available), or unset it for "
        "Numba's default"
    ), out.stderr
