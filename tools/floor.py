"""How fast could one training iteration be? Its multiply-adds alone (the floor) beside the engine.

    python tools/floor.py [--stretch 200] [--calls 3]

One iteration of the chapter's run (784-50-10 net, batch of 100 MNIST
digits, numerical gradient by series) must at least do the multiply-adds of
benchmarks/floor_kernels.py: two forward products over the batch's
non-zeros and the series' sums over samples, with every bit kept. Prints,
at 1 thread (serial) and 2 threads (one parallel region per phase):

- the floor, median of many iterations on a real batch (rows
  ``default_rng(0).choice(60000, 100)``) with random coefficients, and how
  many multiply-adds it does;
- the engine's time per iteration, ``train_stretch`` of each compiled
  backend over ``--stretch`` iterations (median of ``--calls`` calls from
  the same parameters), for the series and backprop, and engine / floor at
  the same thread count ("engine: not available" where a backend has no
  ``train_stretch``). Backprop is divided by the same (series) floor:
  it does fewer multiply-adds (no third and fifth powers), so its ratio
  can be below 1.
"""

import argparse
import pathlib
import sys

import numba
import numpy as np

import scratchnet
from scratchnet.backends import resolve
from scratchnet.datasets import load_mnist
from scratchnet.training import DataSet
from timing import median_time

# benchmarks/floor_kernels.py is shared with the asv suite: the repository must be importable.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks import floor_kernels as fk  # noqa: E402

BATCH, HIDDEN, CLASSES = 100, 50, 10
FLOOR_RUNS = 500
METHODS = ("series", "backprop")


def set_threads(n):
    """Both scratchnet's kernels and the floor's (plain Numba) at n threads."""
    scratchnet.set_num_threads(n)
    numba.set_num_threads(n)


def floor_seconds(batch, counts):
    """thread count -> median seconds of one floor iteration (serial at 1 thread)."""
    operands = fk.floor_inputs(batch, HIDDEN, CLASSES)
    times = {}
    for n in counts:
        set_threads(n)
        call = fk.floor_call(batch, operands, n)
        call()  # Numba compilation
        times[n] = median_time(call, FLOOR_RUNS)
    return times


def engine_seconds(net, data, take, counts, calls):
    """(backend, method) -> {threads: seconds per iteration}, or None where there is no train_stretch."""
    rows = {}
    for backend in ("numba", "c"):
        stretch = None
        if backend in scratchnet.available_backends():
            stretch = getattr(resolve(backend), "train_stretch", None)
        for method in METHODS:
            if stretch is None:
                rows[backend, method] = None
                continue
            params = net.kernel_params()
            fk.engine_seconds_per_iteration(stretch, params, data, take[:2], method, 1)  # Numba compilation
            rows[backend, method] = {}
            for n in counts:
                set_threads(n)
                rows[backend, method][n] = fk.engine_seconds_per_iteration(stretch, params, data, take, method, calls)
    return rows


def report(floor, engine, counts, madds):
    us = lambda s: f"{s * 1e6:9.1f} us"  # noqa: E731
    head = "".join(f" {f'{n} thread' + ('s' if n > 1 else ''):>12} {'/ floor':>8}" for n in counts)
    print(f"\n  {'per iteration':<24}{head}")
    print(f"  {'floor':<24}" + "".join(f" {us(floor[n]):>12} {'':>8}" for n in counts))
    for (backend, method), times in engine.items():
        name = f"engine {backend} {method}"
        if times is None:
            print(f"  {name:<24} engine: not available")
            continue
        print(f"  {name:<24}" + "".join(f" {us(times[n]):>12} {times[n] / floor[n]:7.1f}x" for n in counts))
    print("\n  floor, multiply-adds per ns: " + ", ".join(f"{madds / floor[n] / 1e9:.2f} ({n}t)" for n in counts))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stretch", type=int, default=200, help="iterations per train_stretch call (S)")
    parser.add_argument("--calls", type=int, default=3, help="train_stretch calls per median")
    args = parser.parse_args()

    (x, t), _ = load_mnist(normalize=True)
    net = scratchnet.TwoLayerNet(784, HIDDEN, CLASSES, seed=0)
    kernels = resolve("numba")
    data = DataSet.from_arrays(net, x, t, kernels)
    batch = kernels.batch_take(data.rows, np.random.default_rng(0).choice(len(x), BATCH))
    take = np.random.default_rng(1).choice(len(x), (args.stretch, BATCH))
    counts = [n for n in (1, 2) if n <= numba.config.NUMBA_NUM_THREADS]
    madds = fk.multiply_adds(batch, HIDDEN, CLASSES)

    print(
        f"scratchnet {scratchnet.__version__}, numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads max)"
    )
    print(f"floor: {madds:,} multiply-adds per iteration (batch of {BATCH}, {batch.row_ptr[-1]:,} non-zeros)")
    print(f"floor: median of {FLOOR_RUNS}; engine: median of {args.calls} calls of {args.stretch} iterations")
    floor = floor_seconds(batch, counts)
    engine = engine_seconds(net, data, take, counts, args.calls)
    report(floor, engine, counts, madds)


if __name__ == "__main__":
    main()
