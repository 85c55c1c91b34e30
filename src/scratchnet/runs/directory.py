"""The run directory: written by a run, read back to resume it.

``checkpoint.npz`` is the run's state, the one file resuming reads: the
parameters, the history (with the mini-batch generator's state) and the
config, with a SHA-256 of them all. A new state is committed as one atomic
step: the file is written under a fresh name, flushed to disk, renamed over
the old one, and the directory flushed. At every instant the directory
therefore holds one complete, resumable state, the last committed one,
whatever kills the process (docs/cli.rst, "Crash safety").

The other files are exports for people and tools, rewritten from the state
at the end of each session: history.csv and history.json (loss of every
iteration, accuracies of every epoch), params.npz (NumPy's format, no
pickle), the chapter's figures accuracy.png and loss.png when matplotlib
is installed, and config.json (settings and versions) last, naming the
checkpoint it was written from. Each is written atomically.
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
from zipfile import BadZipFile

import numpy as np

from .._atomic import atomic_open, atomic_write_text
from ..network import PARAM_NAMES
from ..training import History
from .errors import RunError
from .settings import invalid_setting, option_name

CHECKPOINT = "checkpoint.npz"
CHECKPOINT_FORMAT = 1
# Every file a run directory can hold; each of the first four marks a run
# (the three after the checkpoint made a run resumable before version 0.2).
RUN_FILES = (CHECKPOINT, "params.npz", "history.json", "config.json", "history.csv", "accuracy.png", "loss.png")
PLOT_FILES = ("accuracy.png", "loss.png")
# What reading a damaged or hand-made run directory can raise: each becomes one RunError line.
UNREADABLE = (OSError, ValueError, KeyError, TypeError, OverflowError, AttributeError, EOFError, BadZipFile)


# -- writing -----------------------------------------------------------------
def holds_run(directory):
    """True if ``directory`` holds (part of) a saved run."""
    return any((directory / name).exists() for name in RUN_FILES[:4])


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


def make_out_dir(out):
    """Check that a run can be saved in ``out``, creating it; returns it as a Path.

    Refuses an empty path and a path that is not a directory; writes and
    removes a probe file, so that a run never trains only to find it cannot
    save.
    """
    if str(out) == "":
        raise RunError("--out '': an empty path; name a directory, e.g. --out results")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a directory")
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
    return out


def claim_out_dir(out, *, resuming=None, overwrite=False):
    """With ``out`` locked: refuse another run's directory, and remove what an interrupted save left.

    ``out`` may hold a run only if it is the run being resumed (and nobody
    saved to it since it was read) or ``overwrite`` is set. Returns the
    names of the temporary files removed.
    """
    same = resuming is not None and out.resolve() == Path(resuming.directory).resolve()
    if not same and not overwrite and holds_run(out):
        raise RunError(
            f"--out {out}: holds a run already; continue it with --resume {out}, "
            "replace it with --overwrite, or choose another --out"
        )
    if same and resuming.digest is not None and _recorded_sha256(out / CHECKPOINT) != resuming.digest:
        raise RunError(f"--resume {out}: another process saved to it since it was read; run the command again")
    return remove_stale_temporaries(out)


def _recorded_sha256(path):
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
            return str(npz["sha256"])
    except (OSError, ValueError, KeyError, EOFError, BadZipFile):
        return None


def epoch_of(iteration, settings, train_size):
    return iteration * settings["batch_size"] // train_size


def commit(out, params, history, config):
    """Commit the run's state to ``out/checkpoint.npz`` in one atomic step; returns its SHA-256.

    ``history.rng_state`` must be the generator's state after
    ``history.iterations_done`` iterations, and ``params`` the parameters
    reached there.
    """
    state = json.dumps({"format": CHECKPOINT_FORMAT, "config": config, "history": history.to_dict()})
    arrays = {k: np.ascontiguousarray(params[k], dtype=np.float64) for k in PARAM_NAMES}
    digest = _state_sha256(arrays, state)
    buf = io.BytesIO()
    np.savez(buf, **arrays, state=np.frombuffer(state.encode(), dtype=np.uint8), sha256=np.array(digest))
    with atomic_open(out / CHECKPOINT, "wb") as f:
        f.write(buf.getvalue())
    _sync_directory(out)  # the rename itself survives a power loss
    return digest


def _state_sha256(arrays, state):
    h = hashlib.sha256()
    for k in PARAM_NAMES:
        h.update(arrays[k].tobytes())
    h.update(state.encode())
    return h.hexdigest()


def _sync_directory(directory):
    with contextlib.suppress(OSError):  # not every filesystem can
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_run(out, history, params, config, train_size):
    """Commit the state, then write the exports; False if the plots were skipped (no matplotlib)."""
    out.mkdir(parents=True, exist_ok=True)
    digest = commit(out, params, history, config)
    buf = io.BytesIO()
    np.savez(buf, **params)
    blob = buf.getvalue()
    with atomic_open(out / "params.npz", "wb") as f:
        f.write(blob)
    hist = history.to_dict()
    hist["params_sha256"] = hashlib.sha256(blob).hexdigest()
    atomic_write_text(out / "history.json", json.dumps(hist, indent=1) + "\n")

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
    # Last: a config.json naming this checkpoint says every export above is this state's.
    atomic_write_text(out / "config.json", json.dumps({**config, "checkpoint_sha256": digest}, indent=2) + "\n")
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
    digest: str = None  # checkpoint.npz's SHA-256; None for a run saved before checkpoints


def load_run(directory, option="--resume"):
    """The state of a run directory, checked; raises RunError saying what is wrong.

    Reads checkpoint.npz (or, for a run saved before it existed, the
    params.npz, history.json and config.json that held the state then).
    Refuses exports edited after the save: a resumed run continues the
    saved one exactly, so an edited setting would silently not apply.
    """
    directory = Path(directory)
    if not (directory / CHECKPOINT).is_file():
        return _load_exports(directory, option)
    try:
        config, history, params, digest = _read_checkpoint(directory / CHECKPOINT)
        _check_valid(config, history, params, CHECKPOINT)
        edited = _edited_export(directory, config, history, params, digest)
    except UNREADABLE as exc:
        raise RunError(f"{option} {directory}: cannot {_verb(option)} the saved run: {exc}") from None
    if edited:
        raise RunError(
            f"{option} {directory}: {edited} after the save; a resumed run continues the saved run exactly, "
            f"so undo the change, or start a new run from its parameters: scratchnet train --init-from "
            f"{directory} --out NEW_DIR [options]"
        )
    return SavedRun(directory, config, history, params, digest)


def _verb(option):
    return "resume" if option == "--resume" else "read"


def _read_checkpoint(path):
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
        missing = [k for k in (*PARAM_NAMES, "state", "sha256") if k not in npz.files]
        if missing:
            raise ValueError(f"{CHECKPOINT}: not a scratchnet checkpoint (no {', '.join(missing)})")
        arrays = {k: np.ascontiguousarray(npz[k], dtype=np.float64) for k in PARAM_NAMES}
        state_bytes = npz["state"].tobytes()
        recorded = str(npz["sha256"])
    state = state_bytes.decode("utf-8")
    if _state_sha256(arrays, state) != recorded:
        raise ValueError(f"{CHECKPOINT} was damaged or edited (its SHA-256 differs from the one recorded at the save)")
    data = json.loads(state)
    if data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{CHECKPOINT}: format {data.get('format')!r}, this scratchnet reads {CHECKPOINT_FORMAT}")
    return data["config"], History.from_dict(data["history"]), arrays, recorded


def _check_valid(config, history, params, source):
    for k, a in params.items():
        if not np.isfinite(a).all():
            raise ValueError(
                f"{source}['{k}'] contains NaN or inf (the saved run diverged or is damaged); "
                "start a new run with --out"
            )
    invalid = invalid_setting(config["settings"])
    if invalid:
        raise ValueError("config.json: invalid {} {!r} ({})".format(*invalid))
    _check_rng_state(history.rng_state)


def _edited_export(directory, config, history, params, digest):
    """What was changed by hand in the exports of this very checkpoint, or None.

    config.json is written last and names its checkpoint: exports of an
    earlier state (a session killed before its end) are simply stale.
    """
    try:
        exported = _read_json(directory / "config.json")
    except (OSError, ValueError):
        return None  # missing or half-edited beyond reading: stale exports, rewritten at the session's end
    if exported.pop("checkpoint_sha256", None) != digest:
        return None
    changed = [k for k in config["settings"] if exported.get("settings", {}).get(k) != config["settings"][k]]
    if changed:
        k = changed[0]
        edited, was = exported["settings"].get(k), config["settings"][k]
        return f"config.json was edited ({option_name(k)} {edited!r}, saved {was!r})"
    if exported != config:
        return "config.json was edited"
    try:
        hist = _read_json(directory / "history.json")
        blob = (directory / "params.npz").read_bytes()
    except (OSError, ValueError):
        return "history.json or params.npz was removed or damaged"
    if hist.pop("params_sha256", None) != hashlib.sha256(blob).hexdigest():
        return "params.npz was replaced"
    for key, value in history.to_dict().items():
        if hist.get(key) != value:
            return f"history.json was edited ({key})"
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        if any(k not in npz.files or npz[k].tobytes() != params[k].tobytes() for k in PARAM_NAMES):
            return "params.npz was edited"
    return None


def _load_exports(directory, option):
    """A run saved before checkpoint.npz: params.npz, history.json and config.json, checked."""
    names = ("config.json", "history.json", "params.npz")
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise RunError(f"{option} {directory}: not a scratchnet run directory (missing {', '.join(missing)})")
    try:
        config = _read_json(directory / "config.json")
        hist = _read_json(directory / "history.json")
        history = History.from_dict(hist)
        params = _read_params(directory / "params.npz", hist.get("params_sha256"))
        _check_valid(config, history, params, "params.npz")
    except UNREADABLE as exc:
        raise RunError(f"{option} {directory}: cannot {_verb(option)} the saved run: {exc}") from None
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
        return {k: np.array(npz[k], dtype=np.float64) for k in PARAM_NAMES}


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
