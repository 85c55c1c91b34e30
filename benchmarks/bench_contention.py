"""The numerical gradient beside a busy process: the slowdown a user on a shared machine sees.

A CPU-bound competitor (a Python busy loop in its own process, started in the
measurement and always stopped) runs beside ``TwoLayerNet.numerical_gradient``
at the default thread count; the track is its median time over the median
idle time at 1 thread, both measured in the same call. On 2 cores the goal
is at most 1.1: a busy neighbour must not make the default slower than one
thread on an idle machine. (tools/contention.py measures the whole table.)
"""

import subprocess
import sys
import time

import numpy as np

import scratchnet

from .common import BACKENDS, chapter_net, mnist, require_backend

# The competitor ends itself after a minute should the kill below never run.
BUSY = "import time\nend = time.time() + 60\nwhile time.time() < end:\n    pass"


class NumericalGradientBesideABusyProcess:
    params = [b for b in BACKENDS if b != "numpy"]
    param_names = ["backend"]
    unit = "x"
    timeout = 120.0
    calls = 40

    def setup(self, backend):
        require_backend(backend)
        self.x, self.t, _, _ = mnist(n_train=100, n_test=0)
        self.net = chapter_net()
        self.net.numerical_gradient(self.x, self.t, backend=backend)  # Numba compilation

    def _median(self, backend):
        times = []
        for _ in range(self.calls):
            t0 = time.perf_counter()
            self.net.numerical_gradient(self.x, self.t, backend=backend)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def track_slowdown_beside_a_busy_process(self, backend):
        default = scratchnet.get_num_threads()
        try:
            scratchnet.set_num_threads(1)
            idle_one_thread = self._median(backend)
            scratchnet.set_num_threads(default)
            busy = subprocess.Popen([sys.executable, "-c", BUSY])
            try:
                time.sleep(0.2)
                beside_busy = self._median(backend)
                if busy.poll() is not None:
                    raise RuntimeError(f"the busy competitor exited early (code {busy.returncode})")
            finally:
                busy.kill()
                busy.wait()
        finally:
            scratchnet.set_num_threads(default)
        return beside_busy / idle_one_thread
