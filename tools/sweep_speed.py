"""What a sweep saves: 8 backprop runs on the default LocalCluster against the same runs one by one.

Three ways to do the same 8 runs (``--gradient backprop --iters 2000``,
seeds 0-7), each timed as a user would, from the command line:

- ``scratchnet sweep`` on its default LocalCluster (one worker process per
  core, one kernel thread per run), cluster start and stop included;
- ``scratchnet train --threads 1``, one run after another;
- ``scratchnet train`` with its default threads, one run after another.

The sweep's own overhead per run is what the sweep costs beyond its runs'
own wall times (``wall_time_s`` in results.csv), in core-seconds per run:
``(sweep wall x workers - sum of run walls) / runs``. Each figure is the
median of --runs repetitions; ratios compare medians of the same run of
this script. Usage::

    python tools/sweep_speed.py             # about 4 minutes on 2 idle cores
    python tools/sweep_speed.py --runs 5

Run it on an otherwise idle machine.
"""

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEEDS = range(8)
RUN = ["--gradient", "backprop", "--iters", "2000", "--no-progress"]


def wall(argv):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scratchnet", *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def one_sweep(workers):
    with tempfile.TemporaryDirectory(prefix="sweep-speed-") as tmp:
        seconds = wall(["sweep", "--out", tmp, "--seeds", "0-7", "--workers", str(workers), *RUN])
        with open(Path(tmp) / "results.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    assert len(rows) == len(SEEDS) and all(r["status"] == "completed" for r in rows), rows
    runs_wall = sum(float(r["wall_time_s"]) for r in rows)
    return seconds, (seconds * workers - runs_wall) / len(rows)


def one_by_one(threads):
    extra = [] if threads is None else ["--threads", str(threads)]
    return sum(wall(["train", "--seed", str(s), *RUN, *extra]) for s in SEEDS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement (default 3)")
    args = parser.parse_args()
    workers = len(os.sched_getaffinity(0))
    sweeps, overheads, single, default = [], [], [], []
    for _ in range(args.runs):
        seconds, overhead = one_sweep(workers)
        sweeps.append(seconds)
        overheads.append(overhead)
        single.append(one_by_one(1))
        default.append(one_by_one(None))
    sweep, one, dflt = (statistics.median(v) for v in (sweeps, single, default))
    print(f"8 backprop runs of 2000 iterations, {workers} cores, median of {args.runs}:")
    print(f"  scratchnet sweep (LocalCluster, {workers} workers) {sweep:7.1f} s")
    print(f"  scratchnet train --threads 1, one by one    {one:7.1f} s   sweep / this = {sweep / one:.2f}")
    print(f"  scratchnet train (default threads), one by one {dflt:4.1f} s   sweep / this = {sweep / dflt:.2f}")
    print(f"  the sweep's own overhead: {statistics.median(overheads):.2f} s per run (core-seconds beyond the runs)")


if __name__ == "__main__":
    main()
