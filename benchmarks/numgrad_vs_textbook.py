"""The numerical gradient of the chapter's net against the chapter's own loop.

    python benchmarks/numgrad_vs_textbook.py [--sample 200] [--runs 9]

One process, one real-MNIST batch (784-50-10, batch 100, float64 params):

- the textbook loop (perturb one parameter, two full forward passes, restore)
  on a random sample of parameters; every parameter costs the same two
  forward passes, so its time is extrapolated to all 39,760;
- ``TwoLayerNet.numerical_gradient`` of every available backend at 1 and 2
  threads (JIT warmed first; the thread counts alternate run by run, so a
  change in the machine's load hits both alike);
- backprop ``TwoLayerNet.gradient``, for scale.

Figures are medians (and minima) over ``--runs`` calls; ratios are taken
within this run.

The textbook loop runs with NumPy's default BLAS threads, as the book's
code would; scratchnet's own products use one BLAS thread (see
``scratchnet/_blas.py``). The sampled loop partials are also checked
against each backend's gradient (|difference| <= 1e-9), so the timed work
is the same.
"""

import argparse
import os
import statistics
import time

import numpy as np

import scratchnet

# The asv suite's helpers: as a package module when asv imports this file,
# from this script's own folder when it is run directly.
if __package__:
    from .common import N_PARAMS, SEED, chapter_net, textbook_partials
else:
    from common import N_PARAMS, SEED, chapter_net, textbook_partials

BATCH = 100


def timed(f, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=200, help="parameters timed with the textbook loop")
    parser.add_argument("--runs", type=int, default=9, help="calls per timing (>= 7)")
    args = parser.parse_args()

    from scratchnet.datasets import load_mnist

    (x_train, t_train), _ = load_mnist(normalize=True, flatten=True, one_hot_label=False)
    x, t = x_train[:BATCH], t_train[:BATCH].astype(np.intp)
    net = chapter_net()
    names = ("W1", "b1", "W2", "b2")
    n_params = N_PARAMS
    rng = np.random.default_rng(SEED)
    offsets = np.cumsum([0] + [net.params[k].size for k in names])
    sample = []
    for flat in np.sort(rng.choice(n_params, args.sample, replace=False)):
        i = int(np.searchsorted(offsets, flat, side="right")) - 1
        sample.append((names[i], int(flat - offsets[i])))

    print(f"load average at start: {os.getloadavg()}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}")
    print(f"784-50-10, batch {BATCH}, {n_params} parameters; medians of {args.runs} runs\n")

    params = {k: v.copy() for k, v in net.params.items()}
    x64 = x.astype(np.float64)
    t0 = time.perf_counter()
    partials = textbook_partials(params, x64, t, sample)
    loop_s = (time.perf_counter() - t0) / len(sample) * n_params
    rows = [("textbook loop", "-", loop_s * 1e3, float("nan"), f"extrapolated from {len(sample)} parameters")]

    thread_counts = [1, 2] if scratchnet.get_num_threads() >= 2 else [1]
    before = scratchnet.get_num_threads()
    speedups = {}
    for backend in scratchnet.available_backends():
        if not hasattr(scratchnet.backends.load(backend), "network_numerical_gradient"):
            print(f"(backend {backend!r} has no network_numerical_gradient yet: skipped)")
            continue
        grads = net.numerical_gradient(x, t, backend=backend)  # Numba compilation; correctness check
        worst = max(abs(grads[name].flat[j] - p) for (name, j), p in zip(sample, partials))
        assert worst <= 1e-9, (backend, worst)
        counts = [1] if backend == "numpy" else thread_counts
        times = {n: [] for n in counts}
        for _ in range(args.runs):
            for n in counts:
                scratchnet.set_num_threads(n)
                times[n] += timed(lambda: net.numerical_gradient(x, t, backend=backend), 1)
        for n in counts:
            label = "-" if backend == "numpy" else str(n)
            med, low = statistics.median(times[n]) * 1e3, min(times[n]) * 1e3
            rows.append((f"numerical_gradient {backend}", label, med, low, ""))
        if len(counts) == 2:
            ratio_med = statistics.median(times[1]) / statistics.median(times[2])
            speedups[backend] = (ratio_med, min(times[1]) / min(times[2]))
    scratchnet.set_num_threads(before)
    net.gradient(x, t)
    bp = timed(lambda: net.gradient(x, t), args.runs)
    rows.append(("backprop gradient", "-", statistics.median(bp) * 1e3, min(bp) * 1e3, ""))

    print(f"{'':28} {'threads':>7} {'median ms':>11} {'min ms':>9} {'loop / this':>12} {'this / backprop':>16}")
    bp_ms = rows[-1][2]
    for name, threads, med, low, note in rows:
        print(f"{name:28} {threads:>7} {med:11.3f} {low:9.3f} {loop_s * 1e3 / med:12.0f} {med / bp_ms:16.1f}  {note}")
    for backend, (med, low) in speedups.items():
        print(f"\n{backend}: 2 threads vs 1: {med:.2f}x (medians), {low:.2f}x (minima)")
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
