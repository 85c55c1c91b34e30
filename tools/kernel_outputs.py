"""Outputs of a fixed set of C-kernel calls, to compare builds bit for bit.

    python tools/kernel_outputs.py save OUT.npz        # with the installed scratchnet
    python tools/kernel_outputs.py compare A.npz B.npz

``save`` runs every call below on the ``c`` backend, with 2 threads, on
inputs from fixed seeds, and stores each output array under its name.
``compare`` exits 1 unless every array of A equals B's bit for bit, naming
each one that differs and by how many ulps. .ci/isa-builds compares each
instruction-set build (and the clones and serial builds) with the x86-64 one.

The calls go through the public API, so they reach every kernel, including
the loops compiled once per instruction set (clones.h): the forward pass's
sparse row sums and the perturbed gradient's series and logit differences.
Shapes are chosen for vector tails: 13 hidden units, 37 inputs, odd batches.
"""

import sys

import numpy as np


def _sparse_x(rng, n, d, dtype=np.float64):
    """MNIST-like inputs: about 80% zeros, the rest in (0, 1]."""
    x = np.where(rng.random((n, d)) < 0.8, 0.0, 1.0 - rng.random((n, d)))
    return x.astype(dtype)


def outputs():
    """name -> array, for every call of the fixed set."""
    import scratchnet as sn

    if "c" not in sn.available_backends():
        sys.exit("kernel_outputs: the c backend is not built in this installation")
    sn.set_num_threads(2)
    rng = np.random.default_rng(20261129)
    out = {}

    x = np.concatenate([rng.standard_normal(10_001) * 20.0, [0.0, -0.0, 709.0, -745.0, 1e-300]])
    out["sigmoid"] = sn.sigmoid(x, backend="c")
    scores = rng.standard_normal((257, 10)) * 5.0
    y = sn.softmax(scores, backend="c")
    out["softmax"] = y
    labels = rng.integers(0, 10, 257)
    out["cross_entropy_error"] = np.array(sn.cross_entropy_error(y, labels, backend="c"))

    shapes = {"chapter": (784, 50, 10, 100), "tails": (37, 13, 7, 33)}
    for name, (d, h, k, n) in shapes.items():
        net = sn.TwoLayerNet(d, h, k, seed=7)
        # a trained-looking net: weights of several sizes, not just N(0, 0.01^2)
        for value in net.params.values():
            value += rng.standard_normal(value.shape) * 0.3
        x64 = _sparse_x(rng, n, d)
        x32 = _sparse_x(rng, n, d, np.float32)
        t = rng.integers(0, k, n)
        out[f"{name}.predict"] = net.predict(x64, backend="c")
        out[f"{name}.predict_float32"] = net.predict(x32, backend="c")
        out[f"{name}.loss"] = np.array(net.loss(x64, t, backend="c"))
        out[f"{name}.accuracy"] = np.array(net.accuracy(x64, t, backend="c"))
        for grad_name, grads in [
            ("backprop", net.gradient(x64, t, backend="c")),
            ("series", net.numerical_gradient(x64, t, backend="c")),
            ("perturbed", net.numerical_gradient(x64, t, method="perturbed", backend="c")),
            # a large step: the series falls back to the perturbed kernel for some units
            ("series_h1e-2", net.numerical_gradient(x64 * 255.0, t, h=1e-2, backend="c")),
        ]:
            for key, value in grads.items():
                out[f"{name}.{grad_name}.{key}"] = value
    return out


def ulps(a, b):
    """Largest distance in units in the last place between float64 arrays a and b."""
    ia = a.astype(np.float64).view(np.int64)
    ib = b.astype(np.float64).view(np.int64)
    # map the sign-magnitude integers to a monotonic line
    ia = np.where(ia < 0, np.iinfo(np.int64).min - ia, ia)
    ib = np.where(ib < 0, np.iinfo(np.int64).min - ib, ib)
    return int(np.max(np.abs(ia - ib), initial=0))


def compare(path_a, path_b):
    a, b = np.load(path_a), np.load(path_b)
    problems = [f"{name}: only in {path_a}" for name in sorted(set(a.files) - set(b.files))]
    problems += [f"{name}: only in {path_b}" for name in sorted(set(b.files) - set(a.files))]
    for name in sorted(set(a.files) & set(b.files)):
        if a[name].shape != b[name].shape or a[name].dtype != b[name].dtype:
            problems.append(f"{name}: {a[name].dtype}{a[name].shape} against {b[name].dtype}{b[name].shape}")
        elif a[name].tobytes() != b[name].tobytes():
            problems.append(f"{name}: differs, by up to {ulps(a[name], b[name])} ulp")
    for line in problems:
        print(f"kernel_outputs: {line}", file=sys.stderr)
    if problems:
        print(
            f"kernel_outputs: {path_b} differs from {path_a} in {len(problems)} of {len(a.files)} outputs",
            file=sys.stderr,
        )
        return 1
    print(f"kernel_outputs: {path_b} equals {path_a} bit for bit ({len(a.files)} outputs)")
    return 0


def main(argv):
    if len(argv) == 2 and argv[0] == "save":
        result = outputs()
        np.savez(argv[1], **result)
        print(f"kernel_outputs: {len(result)} outputs saved in {argv[1]}")
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(argv[1], argv[2])
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
