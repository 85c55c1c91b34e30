"""How scratchnet's kernels share a busy machine: the contention benchmark.

For the chapter's training iteration (784-50-10, batch 100, the numerical
gradient; epoch evaluations left out) and for one
``TwoLayerNet.numerical_gradient`` call, on the numba and c backends, it
measures the time per call with 1 thread and with the default threads:

- idle;
- beside 1 and beside 2 busy processes (``python -c "while True: pass"``,
  started here and always stopped, at most --timeout seconds each);
- two scratchnet trainings at once (each measured, both with the same settings).

Every measurement runs in a fresh interpreter (so thread settings and
warm-up are those a user gets), after a warm-up; each figure is the median
of --runs such processes, and every ratio compares figures of the same run
of this script. Usage::

    python tools/contention.py                 # the table (about 4 minutes on 2 cores)
    python tools/contention.py --runs 5 --iters 1500
    python tools/contention.py --main-command  # also the README's main command, idle and beside a busy process

Run it on an otherwise idle machine: it makes its own competition.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import numpy as np
import scratchnet as sn
backend, threads, iters, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if threads != "default":
    sn.set_num_threads(int(threads))
(x_train, t_train), (x_test, t_test) = sn.load_mnist()
net = sn.TwoLayerNet(784, 50, 10, seed=0)
sn.train(net, x_train, t_train, x_test[:100], t_test[:100], iters_num=5, backend=backend)  # compile, warm up
history = sn.train(sn.TwoLayerNet(784, 50, 10, seed=1), x_train, t_train, x_test, t_test, iters_num=iters,
                   backend=backend)
timings = history.timings  # the run less its epoch evaluations: the training iterations alone
mean_iteration = (timings["total"] - timings["evaluation"]) / iters
x, t = x_train[:100], t_train[:100]
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    net.numerical_gradient(x, t, backend=backend)
    times.append(time.perf_counter() - t0)
print(json.dumps({"iteration": mean_iteration, "numgrad": float(np.median(times)),
                  "threads": sn.get_num_threads()}))
"""

CONFIGS = [("numba", "1"), ("numba", "default"), ("c", "1"), ("c", "default")]
SCENARIOS = ["idle", "1 busy process", "2 busy processes", "two trainings at once"]


def start_busy(n, timeout):
    code = f"import time\nend = time.time() + {timeout}\nwhile time.time() < end: pass"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def stop(procs):
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def measure(backend, threads, iters, repeats, scenario, timeout):
    """One measurement (dict) in a fresh interpreter, under ``scenario``."""
    busy = start_busy({"1 busy process": 1, "2 busy processes": 2}.get(scenario, 0), timeout)
    try:
        time.sleep(0.2 if busy else 0.0)
        cmd = [sys.executable, "-c", CHILD, backend, threads, str(iters), str(repeats)]
        twins = 2 if scenario == "two trainings at once" else 1
        children = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(twins)]
        outs = [c.communicate(timeout=timeout)[0] for c in children]
    finally:
        stop(busy)
    results = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    return {k: statistics.mean(r[k] for r in results) for k in ("iteration", "numgrad")} | {
        "threads": results[0]["threads"]
    }


def table(args):
    medians = {}
    for scenario in SCENARIOS:
        for backend, threads in CONFIGS:
            runs = [
                measure(backend, threads, args.iters, args.repeats, scenario, args.timeout) for _ in range(args.runs)
            ]
            medians[scenario, backend, threads] = {
                k: statistics.median(r[k] for r in runs) for k in ("iteration", "numgrad")
            }
            default_threads = runs[0]["threads"]
            print(
                f"  {scenario:22s} {backend:5s} threads={threads:7s} "
                f"iteration {1e3 * medians[scenario, backend, threads]['iteration']:.3f} ms  "
                f"numerical_gradient {1e3 * medians[scenario, backend, threads]['numgrad']:.3f} ms",
                flush=True,
            )
    print(f"\ndefault threads: {default_threads} (CPUs this process may use: {len(os.sched_getaffinity(0))})")
    for what, label in (("iteration", "training iteration (ms)"), ("numgrad", "TwoLayerNet.numerical_gradient (ms)")):
        print(f"\n{label}, median of {args.runs} processes; in brackets: / the idle 1-thread time of the same backend")
        print("| | " + " | ".join(f"{b}, {'1 thread' if t == '1' else 'default'}" for b, t in CONFIGS) + " |")
        print("|---" * (len(CONFIGS) + 1) + "|")
        for scenario in SCENARIOS:
            cells = []
            for backend, threads in CONFIGS:
                v = medians[scenario, backend, threads][what]
                ref = medians["idle", backend, "1"][what]
                cells.append(f"{1e3 * v:.3f} ({v / ref:.2f}x)")
            print(f"| {scenario} | " + " | ".join(cells) + " |")
        for backend in ("numba", "c"):
            idle1 = medians["idle", backend, "1"][what]
            idle_d = medians["idle", backend, "default"][what]
            print(f"{backend}: default vs 1 thread idle: {idle1 / idle_d:.2f}x faster")


def main_command(args):
    """The README's main command (the chapter's run, writing results), wall time."""
    import tempfile

    def run(extra, busy_n):
        with tempfile.TemporaryDirectory() as out:
            busy = start_busy(busy_n, args.timeout)
            try:
                time.sleep(0.2 if busy else 0.0)
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "scratchnet", "train", "--no-progress", "--out", out, *extra],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    timeout=args.timeout,
                )
                return time.perf_counter() - t0
            finally:
                stop(busy)

    idle1 = statistics.median(run(["--threads", "1"], 0) for _ in range(args.runs))
    idle = statistics.median(run([], 0) for _ in range(args.runs))
    busy = statistics.median(run([], 1) for _ in range(args.runs))
    print(f"\nscratchnet train --out DIR (the README's main command), wall time, median of {args.runs}:")
    print(
        f"  idle, --threads 1: {idle1:.2f} s;  idle, default: {idle:.2f} s;  beside 1 busy process, default: "
        f"{busy:.2f} s ({busy / idle1:.2f}x the idle 1-thread time)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="processes per figure (median)")
    parser.add_argument("--iters", type=int, default=1000, help="training iterations per measurement")
    parser.add_argument("--repeats", type=int, default=50, help="numerical_gradient calls per measurement")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound on every child and busy process (s)")
    parser.add_argument("--main-command", action="store_true", help="also time the README's main command")
    parser.add_argument("--no-table", action="store_true", help="skip the table")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    if not args.no_table:
        table(args)
    if args.main_command:
        main_command(args)


if __name__ == "__main__":
    main()
