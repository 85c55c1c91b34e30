"""TwoLayerNet (784-50-10) gradients on a batch of real MNIST.

The numerical gradient is the chapter's bottleneck: 39,760 parameters, two
loss evaluations each. Its speedup over the chapter's own loop is tracked
as a number, measured in one process so the machine's load cancels out.
"""

import time

import numpy as np

from .common import (
    BACKENDS,
    N_PARAMS,
    THREADS,
    chapter_net,
    mnist,
    parameter_sample,
    require_backend,
    set_threads,
    textbook_partials,
)


class NumericalGradient:
    """``TwoLayerNet.numerical_gradient`` per backend, method, batch size and thread count."""

    params = (list(BACKENDS), ["series", "perturbed"], [10, 100, 1000], [1, 2])
    param_names = ["backend", "method", "batch", "threads"]
    # The numpy backend at batch 1000 takes seconds per call: one call per
    # sample, 3 to 10 samples within about 10 s, and no warm-up calls (setup
    # already made the first call).
    number = 1
    repeat = (3, 10, 10.0)
    warmup_time = 0.0
    timeout = 300.0

    def setup(self, backend, method, batch, threads):
        require_backend(backend)
        set_threads(threads)
        self.x, self.t, _, _ = mnist(n_train=batch, n_test=0)
        self.net = chapter_net()
        # Numba compilation; asv re-runs setup before every timed call, so
        # this also leaves the kernels' threads awake, as in a training loop.
        self.net.numerical_gradient(self.x, self.t, method=method, backend=backend)

    def time_numerical_gradient(self, backend, method, batch, threads):
        self.net.numerical_gradient(self.x, self.t, method=method, backend=backend)


class Backprop:
    """``TwoLayerNet.gradient`` (backpropagation) per backend and batch size."""

    params = (list(BACKENDS), [10, 100, 1000])
    param_names = ["backend", "batch"]

    def setup(self, backend, batch):
        require_backend(backend)
        set_threads(THREADS)
        self.x, self.t, _, _ = mnist(n_train=batch, n_test=0)
        self.net = chapter_net()
        # Numba compilation, and the kernels' threads awake, as in a training loop
        self.net.gradient(self.x, self.t, backend=backend)

    def time_gradient(self, backend, batch):
        self.net.gradient(self.x, self.t, backend=backend)


class SeriesOverBackprop:
    """The series numerical gradient's time over backprop's, measured side by side (batch 100, 2 threads)."""

    params = [b for b in BACKENDS if b != "numpy"]
    param_names = ["backend"]
    unit = "x"
    repeats = 21

    def setup(self, backend):
        require_backend(backend)
        set_threads(THREADS)
        self.x, self.t, _, _ = mnist(n_train=100, n_test=0)
        self.net = chapter_net()
        self.net.numerical_gradient(self.x, self.t, backend=backend)
        self.net.gradient(self.x, self.t, backend=backend)

    def track_series_over_backprop(self, backend):
        series, backprop = [], []
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            self.net.numerical_gradient(self.x, self.t, backend=backend)
            series.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            self.net.gradient(self.x, self.t, backend=backend)
            backprop.append(time.perf_counter() - t0)
        return float(np.median(series) / np.median(backprop))


class NumericalGradientSpeedup:
    """How many times faster the numba numerical gradient (series) is than the textbook loop.

    The textbook loop (perturb one parameter, two full NumPy forward passes,
    restore) costs the same for every parameter, so it is timed on 40
    parameters spread over W1, b1, W2 and b2 and scaled to all 39,760; the
    numba gradient is timed whole, at batch 100 (the chapter's) and 2 threads.
    Both are medians over repeats in the same call.
    """

    unit = "x"
    timeout = 120.0
    repeats = 7

    def setup(self):
        require_backend("numba")
        set_threads(THREADS)
        self.x, self.t, _, _ = mnist(n_train=100, n_test=0)
        self.x = self.x.astype(np.float64)  # the chapter's code promotes on the first matmul anyway
        self.net = chapter_net()
        self.sample = parameter_sample(self.net.params, per_param=10)
        # Numba compilation
        grads = self.net.numerical_gradient(self.x, self.t, backend="numba")
        # Both sides must compute the same partials, else the ratio means
        # nothing. Both take the same central difference, so they differ
        # only by the loop's rounding of two losses near 2.3: summing 100
        # log terms of about 2.3 rounds by at most 100 * 1.1e-16 * 230 / 100
        # = 2.5e-14 per loss, so the difference quotient by 2 * 2.5e-14 /
        # 2e-4 = 2.5e-10 (typically a few ulps of 2.3 / 2e-4 ~ 5e-12).
        ref = textbook_partials(self.net.params, self.x, self.t, self.sample)
        got = np.array([grads[name].reshape(-1)[j] for name, j in self.sample])
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)

    def track_speedup_over_textbook_loop(self):
        loop, fast = [], []
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            textbook_partials(self.net.params, self.x, self.t, self.sample)
            loop.append((time.perf_counter() - t0) / len(self.sample) * N_PARAMS)
            t0 = time.perf_counter()
            self.net.numerical_gradient(self.x, self.t, backend="numba")
            fast.append(time.perf_counter() - t0)
        return float(np.median(loop) / np.median(fast))
