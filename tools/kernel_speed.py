"""The chapter functions' speed per backend in one run, without asv.

    python tools/kernel_speed.py

Prints, with every figure a median over repeated calls in this process
(ratios are measured in the same run, so the machine's load largely
cancels):

- sigmoid, softmax and cross_entropy_error on float64 (1,000,000 x 10) and
  (100 x 784), per backend at 2 threads, and numpy's time / the backend's
  (target: c and numba >= 2x on the large size);
- numerical_gradient of a Numba-jitted f over 10,000 elements at 1 and 2
  threads (target: >= 1.6x with 2 threads);
- ``import scratchnet`` in a fresh interpreter (target: < 1 s).
"""

import functools
import statistics
import subprocess
import sys
import time

import numba
import numpy as np

import scratchnet
from timing import median_time

SEED = 20261127
SHAPES = {"1000000x10": (1_000_000, 10), "100x784": (100, 784)}
RUNS = 7


def kernel_calls(shape, rng):
    """name -> function(backend) calling the kernel on data of ``shape``."""
    n, k = shape
    x = rng.standard_normal(shape)
    y = scratchnet.softmax(x, backend="numpy")
    t = rng.integers(0, k, n)
    return {
        "sigmoid": lambda b: scratchnet.sigmoid(x, backend=b),
        "softmax": lambda b: scratchnet.softmax(x, backend=b),
        "cross_entropy_error": lambda b: scratchnet.cross_entropy_error(y, t, backend=b),
    }


def report_kernels(backends):
    scratchnet.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    print(f"Kernels, float64, {scratchnet.get_num_threads()} threads, median of {RUNS} (ratio = numpy / backend)")
    header = f"  {'function':<20} {'size':<11}" + "".join(f" {b:>10} {'ratio':>6}" for b in backends)
    print(header)
    rng = np.random.default_rng(SEED)
    for size, shape in SHAPES.items():
        for name, call in kernel_calls(shape, rng).items():
            for b in backends:
                call(b)  # Numba compilation, first load of the C extension
            times = {b: median_time(functools.partial(call, b), RUNS) for b in backends}
            row = f"  {name:<20} {size:<11}"
            for b in backends:
                row += f" {_fmt(times[b]):>10} {times['numpy'] / times[b]:>5.2f}x"
            print(row)


@numba.njit
def mixing_sum(x):
    """An O(n) scalar function: squares plus neighbour products."""
    s = 0.0
    for i in range(1, x.size):
        s += x[i] * x[i] + 0.5 * x[i] * x[i - 1]
    return s + x[0] * x[0]


def report_numerical_gradient():
    x = np.random.default_rng(SEED).standard_normal(10_000)
    counts = [n for n in (1, 2) if n <= numba.config.NUMBA_NUM_THREADS]
    times = {}
    for n in counts:
        scratchnet.set_num_threads(n)
        scratchnet.numerical_gradient(mixing_sum, x[:10])  # Numba compilation
        times[n] = median_time(lambda: scratchnet.numerical_gradient(mixing_sum, x), runs=5)
    print("\nnumerical_gradient of a jitted O(n) f over 10,000 elements, median of 5")
    for n in counts:
        print(f"  {n} thread{'s' if n > 1 else ' '}  {_fmt(times[n]):>10}")
    if len(counts) == 2:
        print(f"  speedup 2 vs 1 thread: {times[1] / times[2]:.2f}x")


def report_import_time(runs=5):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import scratchnet"], check=True)
        times.append(time.perf_counter() - t0)
    median = _fmt(statistics.median(times))
    print(f"\nimport scratchnet in a fresh interpreter (incl. start-up), median of {runs}: {median}")


def _fmt(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def main():
    backends = scratchnet.available_backends()
    print(
        f"scratchnet {scratchnet.__version__}, numpy {np.__version__}, numba {numba.__version__}, "
        f"backends {', '.join(backends)}\n"
    )
    report_kernels(backends)
    report_numerical_gradient()
    report_import_time()


if __name__ == "__main__":
    main()
