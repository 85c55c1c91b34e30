"""TwoLayerNet's numerical gradient, both methods, beside backprop and the book's loop, in one run.

    python tools/numgrad_vs_textbook.py [--runs 15] [--batch 100]

The chapter's net (784-50-10) on a batch of real MNIST digits. For each
backend: ``numerical_gradient(method="series")`` and ``(method="perturbed")``
at 1 and 2 threads, and backprop's ``gradient``; and the book's loop
(scratchnet.textbook: perturb one parameter, two full forward passes),
timed on a sample of parameters and scaled to all 39,760. Every figure is a
median over --runs calls in this process, so ratios compare figures taken
side by side. Run it on an idle machine.
"""

import argparse
import functools

import numpy as np

import scratchnet
from scratchnet import textbook
from scratchnet._blas import single_threaded_blas
from timing import median_time

SEED = 20261127
N_PARAMS = 784 * 50 + 50 + 50 * 10 + 10


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="calls per figure (median)")
    parser.add_argument("--batch", type=int, default=100, help="batch size (the chapter's: 100)")
    parser.add_argument("--per-param", type=int, default=10, help="parameters of each group timed in the loop")
    args = parser.parse_args()
    (x_train, t_train), _ = scratchnet.load_mnist()
    x, t = x_train[: args.batch], t_train[: args.batch].astype(np.intp)
    net = scratchnet.TwoLayerNet(784, 50, 10, seed=SEED)

    sample = textbook.parameter_sample(net.params, args.per_param)
    x64 = x.astype(np.float64)
    loop_partials = textbook.numerical_partials(net.params, x64, t, sample)
    per_param = median_time(lambda: textbook.numerical_partials(net.params, x64, t, sample), max(3, args.runs // 5))
    loop = per_param / len(sample) * N_PARAMS
    fast = net.numerical_gradient(x, t)
    agree = max(abs(fast[name].reshape(-1)[j] - v) for (name, j), v in zip(sample, loop_partials))

    rows = []
    for backend in scratchnet.available_backends():
        runs = max(3, args.runs // 10) if backend == "numpy" else args.runs
        for threads in (1, 2):
            scratchnet.set_num_threads(threads)
            net.gradient(x, t, backend=backend)  # compile, warm up
            backprop = median_time(functools.partial(net.gradient, x, t, backend=backend), runs)
            for method in ("series", "perturbed"):
                net.numerical_gradient(x, t, method=method, backend=backend)
                ms = median_time(functools.partial(net.numerical_gradient, x, t, method=method, backend=backend), runs)
                rows.append((f"{backend}, {method}, {threads} thread{'s' if threads > 1 else ''}", ms, backprop))
            rows.append((f"{backend}, backprop, {threads} thread{'s' if threads > 1 else ''}", backprop, backprop))
            if backend == "numpy":
                break  # no threads of its own

    print(
        f"TwoLayerNet 784-50-10, batch {args.batch} of MNIST; medians of {args.runs} calls "
        f"(numpy: {max(3, args.runs // 10)}); one process\n"
    )
    print("| | ms | loop / this | this / backprop (same backend, threads) |")
    print("|---|---|---|---|")
    print(f"| the book's loop ({len(sample)} parameters timed, scaled to {N_PARAMS}) | {1e3 * loop:,.1f} | 1 | |")
    for label, seconds, backprop in rows:
        print(f"| {label} | {1e3 * seconds:.3f} | {loop / seconds:,.0f}x | {seconds / backprop:.2f} |")
    print(f"\nlargest |default method - loop| over the {len(sample)} sampled partials: {agree:.1e}")


if __name__ == "__main__":
    with single_threaded_blas():  # OpenBLAS's spinning threads would take the kernels' cores (see _blas.py)
        main()
