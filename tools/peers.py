"""scratchnet against its peers: the chapter's run trained by backprop in JAX and PyTorch.

The experiment: the two-layer net 784-50-10 (sigmoid, softmax, the chapter's
loss ``-mean(log(y_t + 1e-7))``), weights ``0.01 * normal`` (float32, from
``default_rng(1)``) and zero biases, 10,000 SGD iterations at lr 0.1 on
batches of 100 drawn with replacement by ``np.random.default_rng(0).choice``
(drawn one epoch at a time, ``choice(60000, (600, 100))``: the same stream as
600 calls of ``choice(60000, 100)``), and the accuracy on the full training
and test sets 18 times: before the first update and after every 600 updates
and the last (the chapter's count; its evaluations come one update later).
The entries, each run as a whole process:

- ``scratchnet numerical`` / ``scratchnet backprop``: ``python -m scratchnet
  train --no-progress`` [``--gradient backprop``] (float64, numba backend).
- ``jax-step``: JAX on CPU, float32, a ``jax.jit``-compiled SGD step called
  once per iteration from Python (dispatched asynchronously; the accuracies
  synchronise once per epoch).
- ``jax-scan``: JAX on CPU, float32, one jitted ``jax.lax.scan`` per epoch
  (600 steps; a second compile for the last 400).
- ``torch``: PyTorch on CPU, float32, autograd and ``torch.optim.SGD``, its
  default threads; only when ``import torch`` works.

In every peer the batch indices are drawn by NumPy outside the compiled
work; the gathers ``x[idx]`` are inside it. Each process reports two times:
the process wall time (measured here, start-up included: interpreter,
imports, data load) and the training time the process measured itself: from
after the imports and the data load (and JAX's backend start) to the last
accuracy, so it includes moving the data to the framework's arrays, JIT
compilation, the index draws and the 18 evaluations (for scratchnet: the
``wall time`` line it prints, the time of its training loop). Every entry runs
--runs times, round-robin (the order rotating each round); the table gives
the median and [min-max], and each median over the median of the fastest
peer (JAX or torch) in that column. Usage::

    pip install -e ".[peers]"        # JAX on CPU
    pip install torch==2.13.0        # optional: PyTorch (a CPU wheel on this machine; any CPU build works)
    python tools/peers.py            # 3 runs of each entry (several minutes on 2 cores)
    python tools/peers.py --runs 1

Run it on an otherwise idle machine: the entries use every core, and PyTorch's
default threads suffer most from a busy core (on a shared 2-core machine, 600
iterations took 1.2 s with ``torch.set_num_threads(1)``, 6-22 s with its 2).
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from importlib import metadata

import numpy as np

ITERS, BATCH, LR, HIDDEN, EPOCH = 10_000, 100, 0.1, 50, 600
CHUNKS = [min(EPOCH, ITERS - start) for start in range(0, ITERS, EPOCH)]  # updates between evaluations
SCRATCHNET = [sys.executable, "-m", "scratchnet", "train", "--no-progress"]
PEERS = ["jax-step", "jax-scan", "torch"]


def data():
    from scratchnet.datasets import load_mnist

    (x, t), (xt, tt) = load_mnist(normalize=True)
    return x, t.astype(np.int64), xt, tt.astype(np.int64)


def init_params():
    rng = np.random.default_rng(1)
    return {
        "W1": (0.01 * rng.standard_normal((784, HIDDEN))).astype(np.float32),
        "b1": np.zeros(HIDDEN, np.float32),
        "W2": (0.01 * rng.standard_normal((HIDDEN, 10))).astype(np.float32),
        "b2": np.zeros(10, np.float32),
    }


def train(run_chunk, accuracy):
    """The chapter's loop: run_chunk(indices of shape (n, BATCH)) per epoch; returns the last accuracies."""
    rng = np.random.default_rng(0)
    accuracies = [accuracy()]
    for n in CHUNKS:
        run_chunk(rng.choice(60000, (n, BATCH)))
        accuracies.append(accuracy())
    return accuracies[-1]


def jax_run(scan):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_platforms", "cpu")
    x, t, xt, tt = data()
    jax.devices()  # start the backend before the clock
    start = time.perf_counter()
    x, t, xt, tt = (jnp.asarray(a) for a in (x, t.astype(np.int32), xt, tt.astype(np.int32)))
    params = {k: jnp.asarray(v) for k, v in init_params().items()}

    def predict(p, xb):
        return jax.nn.sigmoid(xb @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]

    def loss(p, xb, tb):
        y = jax.nn.softmax(predict(p, xb))
        return -jnp.mean(jnp.log(jnp.take_along_axis(y, tb[:, None], axis=1) + 1e-7))

    def sgd(p, x, t, idx):
        value, g = jax.value_and_grad(loss)(p, x[idx], t[idx])
        return jax.tree.map(lambda w, d: w - LR * d, p, g), value

    step = jax.jit(sgd)
    epoch = jax.jit(lambda p, x, t, idxs: jax.lax.scan(lambda p, idx: sgd(p, x, t, idx), p, idxs))
    acc = jax.jit(lambda p, x, t: jnp.mean(jnp.argmax(predict(p, x), axis=1) == t))
    losses = []

    def run_chunk(idxs):
        nonlocal params
        if scan:
            params, values = epoch(params, x, t, idxs)
            losses.append(values)
        else:
            for idx in idxs:
                params, value = step(params, x, t, idx)
                losses.append(value)

    final = train(run_chunk, lambda: (float(acc(params, x, t)), float(acc(params, xt, tt))))
    return final, time.perf_counter() - start, f"XLA's default, {len(os.sched_getaffinity(0))}"


def torch_run():
    import torch

    x, t, xt, tt = data()
    start = time.perf_counter()
    x, t, xt, tt = (torch.from_numpy(a) for a in (x, t, xt, tt))
    p = {k: torch.from_numpy(v).requires_grad_() for k, v in init_params().items()}
    opt = torch.optim.SGD(p.values(), lr=LR)

    def predict(xb):
        return torch.sigmoid(xb @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]

    def run_chunk(idxs):
        for idx in torch.from_numpy(idxs):
            y = torch.softmax(predict(x[idx]), dim=1)
            loss = -torch.log(y.gather(1, t[idx, None]) + 1e-7).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def accuracy():
        with torch.inference_mode():
            return tuple((predict(a).argmax(1) == b).float().mean().item() for a, b in ((x, t), (xt, tt)))

    final = train(run_chunk, accuracy)
    return final, time.perf_counter() - start, f"torch's default, {torch.get_num_threads()}"


def one(name):
    """Run one peer in this process and print scratchnet train's lines about it."""
    (train_acc, test_acc), seconds, threads = torch_run() if name == "torch" else jax_run(scan=name == "jax-scan")
    print(f"{name}: backprop, float32, on {threads} thread(s)")
    print(f"final train acc, test acc | {train_acc:.4f}, {test_acc:.4f}")
    print(f"wall time {seconds:.3f} s for {ITERS} iterations")


def measure(cmd, timeout):
    """Run an entry's process; returns (process wall time, its own wall time, train acc, test acc, threads)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}")
    own = float(re.search(r"^wall time ([\d.]+) s", proc.stdout, re.M).group(1))
    accs = re.search(r"^final train acc, test acc \| ([\d.]+), ([\d.]+)", proc.stdout, re.M).groups()
    threads = re.search(r"on (.*?) thread\(s\)", proc.stdout).group(1)
    return wall, own, float(accs[0]), float(accs[1]), threads


def version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine():
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    versions = ", ".join(f"{p} {version(p)}" for p in ("scratchnet", "numpy", "numba", "jax", "jaxlib", "torch"))
    return f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; {versions}"


def spread(values, fmt="{:.2f}"):
    """The median and [min-max] of values, or the value when they all agree."""
    values = sorted(values)
    if values[0] == values[-1]:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} [{fmt.format(values[0])}-{fmt.format(values[-1])}]"


def table(args):
    entries = {"scratchnet numerical": SCRATCHNET, "scratchnet backprop": [*SCRATCHNET, "--gradient", "backprop"]}
    for peer in PEERS:
        entries[peer] = [sys.executable, os.path.abspath(__file__), "--one", peer]
    if subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode != 0:
        print("torch: skipped (`import torch` fails; pip install torch==2.13.0 to include it)")
        del entries["torch"]
    names = list(entries)
    results = {name: [] for name in names}
    for r in range(args.runs):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            results[name].append(measure(entries[name], args.timeout))
            wall, own, train_acc, test_acc, _ = results[name][-1]
            print(f"  run {r + 1}/{args.runs} {name:20s} process {wall:6.2f} s, training {own:6.2f} s, "
                  f"train/test acc {train_acc:.4f}/{test_acc:.4f}", flush=True)  # fmt: skip
    med = {name: [statistics.median(r[i] for r in results[name]) for i in (0, 1)] for name in names}
    fastest = [min((n for n in names if n in PEERS), key=lambda n: med[n][i]) for i in (0, 1)]
    print(f"\ncommand: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine: {machine()}; load average at the end {os.getloadavg()}")
    print(f"median and [min-max] of {args.runs} run(s); x fastest peer: the median over that of "
          f"{fastest[0]} (process) and {fastest[1]} (training)\n")  # fmt: skip
    print("| entry | threads | process wall (s) | training (s) | process, x fastest peer | training, x fastest peer "
          "| final train acc | final test acc |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        runs = results[name]
        cells = [
            runs[0][4],
            spread([r[0] for r in runs]),
            spread([r[1] for r in runs]),
            f"{med[name][0] / med[fastest[0]][0]:.2f}",
            f"{med[name][1] / med[fastest[1]][1]:.2f}",
            spread([r[2] for r in runs], "{:.4f}"),
            spread([r[3] for r in runs], "{:.4f}"),
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="processes per entry, round-robin (median, min-max)")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound on every process (s)")
    parser.add_argument("--one", choices=PEERS, help=argparse.SUPPRESS)  # internal: run one peer in this process
    args = parser.parse_args()
    if args.one:
        one(args.one)
    else:
        table(args)


if __name__ == "__main__":
    main()
