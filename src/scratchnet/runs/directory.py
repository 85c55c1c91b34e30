"""The run directory: written by a run, read back to resume it.

history.csv and history.json (loss of every iteration, accuracies of every
epoch), params.npz (NumPy's format, no pickle), config.json (settings and
versions), and the chapter's figures accuracy.png and loss.png when
matplotlib is installed. Every file is written atomically; history.json
records params.npz's SHA-256, so files of two different saves are never
resumed together.
"""

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .._atomic import atomic_open, atomic_write_text
from ..network import PARAM_NAMES
from ..training import History
from .errors import RunError
from .settings import invalid_setting

# Every file a run directory can hold; the first three make it resumable.
RUN_FILES = ("params.npz", "history.json", "config.json", "history.csv", "accuracy.png", "loss.png")
PLOT_FILES = ("accuracy.png", "loss.png")


# -- writing -----------------------------------------------------------------
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


def prepare_out_dir(out, *, resuming_from=None, overwrite=False):
    """Check before any training that the run can be saved in ``out``.

    Refuses an empty path and a directory that holds another run (unless
    ``overwrite`` or it is the run being resumed); creates the directory,
    writes and removes a probe file, and removes the temporary files of an
    interrupted earlier save. Returns ``out`` as a Path.
    """
    if str(out) == "":
        raise RunError("--out '': an empty path; name a directory, e.g. --out results")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a directory")
    same = resuming_from is not None and out.exists() and out.resolve() == Path(resuming_from).resolve()
    if not same and not overwrite and holds_run(out):
        raise RunError(
            f"--out {out}: holds a run already; continue it with --resume {out}, "
            "replace it with --overwrite, or choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".scratchnet-probe.", suffix=".tmp")
        try:
            os.write(fd, b"scratchnet checks that it can save a run here\n")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RunError(f"--out {out}: cannot write there ({reason}); choose a writable directory") from None
    remove_stale_temporaries(out)
    return out


def epoch_of(iteration, settings, train_size):
    return iteration * settings["batch_size"] // train_size


def write_run(out, history, params, config, train_size):
    """Every file of a run directory, each written atomically; False if the plots were skipped.

    params.npz first and history.json (which records params.npz's SHA-256)
    after it, so a crash between the two is detected by :func:`load_run`
    instead of resuming from mismatched files.
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


# -- reading -----------------------------------------------------------------
@dataclasses.dataclass
class SavedRun:
    """A run directory read back, checked, ready to resume."""

    directory: Path
    config: dict
    history: History
    params: dict


def load_run(directory):
    """config, history and params of a run directory, checked; raises RunError saying what is wrong."""
    directory = Path(directory)
    names = ("config.json", "history.json", "params.npz")
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise RunError(f"--resume {directory}: not a scratchnet run directory (missing {', '.join(missing)})")
    try:
        config = _read_json(directory / "config.json")
        hist = _read_json(directory / "history.json")
        history = History.from_dict(hist)
        params = _read_params(directory / "params.npz", hist.get("params_sha256"))
        invalid = invalid_setting(config["settings"])
        if invalid:
            raise ValueError("config.json: invalid {} {!r} ({})".format(*invalid))
        _check_rng_state(history.rng_state)
    except (OSError, ValueError, KeyError, TypeError, OverflowError, AttributeError) as exc:
        raise RunError(f"--resume {directory}: cannot resume the saved run: {exc}") from None
    return SavedRun(directory, config, history, params)


def _read_json(path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(f"{path.name}: nested too deeply to be a scratchnet file") from None
    except ValueError as exc:
        raise ValueError(f"{path.name}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_params(path, expected_sha256):
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != expected_sha256:
        raise ValueError("params.npz does not belong to history.json (different SHA-256)")
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        params = {k: np.array(npz[k], dtype=np.float64) for k in PARAM_NAMES}
    for k, a in params.items():
        if not np.isfinite(a).all():
            raise ValueError(
                f"params.npz['{k}'] contains NaN or inf (the saved run diverged or is damaged); "
                "start a new run with --out"
            )
    return params


def _check_rng_state(state):
    if state is None:
        raise ValueError("history.json has no generator state (rng_state)")
    try:
        np.random.PCG64().state = state
    except (TypeError, ValueError, KeyError) as exc:
        name = state.get("bit_generator") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"history.json: rng_state is not a PCG64 generator state ({name}: {exc}); "
            "scratchnet train writes PCG64 states only"
        ) from None
