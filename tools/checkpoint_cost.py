"""What checkpoints cost: the chapter's run with checkpoints every S seconds, against none.

    python tools/checkpoint_cost.py [--iters 10000] [--runs 3] [--every 10 1 0.1]

Each setting runs ``--runs`` times, interleaved (none, 10, 1, 0.1, none,
...), each a fresh process running ``scratchnet.runs.run_training`` on the
shipped MNIST into a temporary directory; the time is the training's wall
time (``RunResult.wall_time_s``: training and its checkpoints, not the set-up
or the final save). The table gives the median of each, the ratio to the
median without checkpoints, the checkpoints committed, the share of the
training's wall time spent committing them (timed around each commit:
the overhead without the noise of whole runs), and the median time of one
commit of the final state, measured alone.
"""

import argparse
import json
import statistics
import subprocess
import sys

CHILD = """
import json, sys, tempfile, time
from pathlib import Path
from scratchnet import runs
from scratchnet.runs import directory

iters, every = int(sys.argv[1]), float(sys.argv[2])
commits = []
real = directory.commit
def counted(*args):
    t0 = time.perf_counter()
    digest = real(*args)
    commits.append(time.perf_counter() - t0)
    return digest
directory.commit = counted
with tempfile.TemporaryDirectory() as tmp:
    result = runs.run_training({"iters": iters}, Path(tmp) / "run", checkpoint_every=every)
    saved = runs.load_run(result.out)
    alone = []
    for _ in range(5):
        t0 = time.perf_counter()
        real(result.out, saved.params, saved.history, saved.config)
        alone.append(time.perf_counter() - t0)
during = commits[:-1]  # the last commit is the final save's
print(json.dumps({"wall": result.wall_time_s, "checkpoints": len(during), "in_checkpoints_s": sum(during),
                  "commit_s": sorted(alone)[2]}))
"""


def one_run(iters, every):
    out = subprocess.run([sys.executable, "-c", CHILD, str(iters), str(every)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--every", type=float, nargs="+", default=[10.0, 1.0, 0.1])
    args = parser.parse_args()
    settings = [0.0, *args.every]
    one_run(10, 0)  # compile and cache the kernels before timing
    results = {s: [] for s in settings}
    for _ in range(args.runs):
        for s in settings:
            results[s].append(one_run(args.iters, s))
    base = statistics.median(r["wall"] for r in results[0.0])
    print(f"checkpoint cost: {args.iters} iterations, {args.runs} runs each, medians")
    print(f"{'every':>8}  {'wall s':>7}  {'ratio':>6}  {'checkpoints':>11}  {'in them':>8}  {'one commit ms':>13}")
    for s in settings:
        wall = statistics.median(r["wall"] for r in results[s])
        count = statistics.median(r["checkpoints"] for r in results[s])
        commit = statistics.median(r["commit_s"] for r in results[s]) * 1000
        share = statistics.median(r["in_checkpoints_s"] / r["wall"] for r in results[s])
        label = "none" if s == 0 else f"{s:g} s"
        print(f"{label:>8}  {wall:7.2f}  {wall / base:6.3f}  {count:11.0f}  {share:8.2%}  {commit:13.1f}")


if __name__ == "__main__":
    main()
