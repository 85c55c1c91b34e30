"""The run directory that ``scratchnet train --out DIR`` writes.

history.csv and history.json (loss of every iteration, accuracies of every
epoch), params.npz (NumPy's format, no pickle), config.json (settings and
versions), and the chapter's figures accuracy.png and loss.png when
matplotlib is installed. Every file is written atomically.
"""

import contextlib
import csv
import hashlib
import io
import json

import numpy as np

from ._atomic import atomic_open, atomic_write_text

# Every file a run directory can hold; the first three make it resumable.
RUN_FILES = ("params.npz", "history.json", "config.json", "history.csv", "accuracy.png", "loss.png")
PLOT_FILES = ("accuracy.png", "loss.png")


def holds_run(directory):
    """True if ``directory`` holds (part of) a saved run."""
    return any((directory / name).exists() for name in RUN_FILES[:3])


def remove_stale_temporaries(directory):
    """Remove the temporary files an interrupted save left in ``directory``.

    :func:`scratchnet._atomic.atomic_open` writes ``.<name>.<random>.tmp``
    beside ``<name>`` and removes it on any error, but not when the process
    is killed (SIGKILL, power loss). Only the run's own names are touched.
    Returns the names removed.
    """
    removed = []
    for name in RUN_FILES:
        for path in directory.glob(f".{name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
    return removed


def epoch_of(iteration, settings, train_size):
    return iteration * settings["batch_size"] // train_size


def write_run(out, history, params, config, train_size):
    """Every file of a run directory, each written atomically.

    params.npz first and history.json (which records params.npz's SHA-256)
    after it, so a crash between the two is detected by --resume instead of
    resuming from mismatched files.
    """
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **params)
    blob = buf.getvalue()
    with atomic_open(out / "params.npz", "wb") as f:
        f.write(blob)
    hist = history.to_dict()
    hist["params_sha256"] = hashlib.sha256(blob).hexdigest()
    atomic_write_text(out / "history.json", json.dumps(hist, indent=1) + "\n")
    atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")

    acc = {i: (a, b) for i, a, b in history.epochs}
    with atomic_open(out / "history.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["iteration", "epoch", "train_loss", "train_acc", "test_acc"])
        for i, loss in zip(history.iterations, history.train_loss):
            a, b = acc.get(i, ("", ""))
            w.writerow([i, epoch_of(i, config["settings"], train_size), repr(loss), a, b])
    plotted = write_plots(out, history, config["settings"], train_size)
    if not plotted:  # plots of an earlier save would not match this history
        for name in PLOT_FILES:
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
    return plotted


def write_plots(out, history, settings, train_size):
    """accuracy.png (the book's figure) and loss.png; False if matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False

    # The book's figure: accuracy per epoch, train solid, test dashed.
    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)  # Agg without pyplot: no global backend, no GUI
    ax = fig.add_subplot()
    epochs = [epoch_of(i, settings, train_size) for i, _, _ in history.epochs]
    ax.plot(epochs, history.train_acc, marker="o", label="train acc")
    ax.plot(epochs, history.test_acc, marker="s", linestyle="--", label="test acc")
    ax.set_xlabel("epochs")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.0)
    ax.legend(loc="lower right")
    with atomic_open(out / "accuracy.png", "wb") as f:
        fig.savefig(f, format="png")

    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(history.iterations, history.train_loss, linewidth=0.5, label="train loss (mini-batch)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right")
    with atomic_open(out / "loss.png", "wb") as f:
        fig.savefig(f, format="png")
    return True
