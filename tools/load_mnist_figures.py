"""load_mnist's figures: first call on an empty cache, warm cache, peak memory; each in a fresh interpreter.

- first call with an empty cache (what a fresh install does once);
- warm-cache call;
- peak memory of load_mnist(normalize=True) against the returned arrays
  (tracemalloc, which counts NumPy's buffers).

Run: python tools/load_mnist_figures.py [--runs 5]
Prints medians over the runs.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time, tracemalloc
measure_memory = sys.argv[1] == "mem"
if measure_memory:
    tracemalloc.start()
from scratchnet import load_mnist
t = time.perf_counter()
(a, b), (c, d) = load_mnist(normalize=True)
elapsed = time.perf_counter() - t
returned = sum(x.nbytes for x in (a, b, c, d))
peak = tracemalloc.get_traced_memory()[1] if measure_memory else 0
print(json.dumps({"seconds": elapsed, "returned": returned, "peak": peak}))
"""


def child(mode, cache):
    env = dict(os.environ, SCRATCHNET_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    cold, warm, ratio = [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(child("time", cache)["seconds"])
            warm.append(child("time", cache)["seconds"])
        with tempfile.TemporaryDirectory() as cache:
            m = child("mem", cache)  # cold: the worst case for memory
            ratio.append(m["peak"] / m["returned"])
            returned = m["returned"]
    print(f"load_mnist() first call, empty cache: median {statistics.median(cold):.3f} s  (target < 3 s)")
    print(f"load_mnist() warm cache:              median {statistics.median(warm):.3f} s  (target < 0.5 s)")
    print(
        f"peak memory, empty cache: median {statistics.median(ratio):.2f}x the returned "
        f"{returned / 1e6:.1f} MB  (target < 2.5x)"
    )


if __name__ == "__main__":
    main()
