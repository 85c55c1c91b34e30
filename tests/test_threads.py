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
