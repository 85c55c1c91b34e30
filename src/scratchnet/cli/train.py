"""Command line: ``scratchnet train`` runs the chapter's experiment.

Defaults are the book's ``train_neuralnet.py``: TwoLayerNet(784, 50, 10) on
the shipped MNIST, 10,000 iterations of numerical-gradient SGD in batches
of 100 at learning rate 0.1, accuracy printed once per epoch.

:func:`run_training` does one complete run directory, exactly as
``scratchnet train --out DIR`` writes it; the command and ``scratchnet
sweep`` both call it. It goes set-up (settings, data, network, the output
directory checked), training loop, final evaluation, saving.

Exit status: 0 done, 1 training or output failed, 2 bad options or data,
130 / 143 / 129 stopped by SIGINT (Ctrl-C) / SIGTERM / SIGHUP (after saving
a resumable state with ``--out``).
"""

import argparse
import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .. import results
from .._config import BACKEND_NAMES, DEFAULT_BACKEND
from ..backends.numpy.forward import ACCURACY_CHUNK  # the largest block of rows an accuracy count holds
from ..network import NUMGRAD_METHODS, PARAM_NAMES
from ..training import GRADIENTS, History
from . import CLIError, emit, int_at_least, positive_float, single_threaded_blas
from ._signals import NoSignals, StopSignals, exit_status, signal_name

# The chapter's experiment; None in argparse means "not given", so --resume
# can tell an explicit option from a default. Every key is a setting of a
# run (and so sweepable); OPTION_TYPES / OPTION_CHOICES parse them.
DEFAULTS = {
    "gradient": "numerical",
    "numgrad_method": "series",
    "backend": DEFAULT_BACKEND,
    "iters": 10000,
    "batch_size": 100,
    "lr": 0.1,
    "hidden": 50,
    "seed": 0,
    "data_dir": None,
}
# Settings that change the computed numbers; a resumed run must keep them.
# (``iters`` may grow; ``threads`` never changes results.)
FIXED_ON_RESUME = ("gradient", "numgrad_method", "backend", "batch_size", "lr", "hidden", "seed", "data_dir")
WEIGHT_INIT_STD = 0.01
NUMERICAL_H = 1e-4  # the chapter's step
OUTPUT_SIZE = 10
PLOT_HINT = 'plots skipped: matplotlib is not installed; get them with: pip install "scratchnet[plot]"'

OPTION_TYPES = {
    "iters": int_at_least(0),
    "batch_size": int_at_least(1),
    "lr": positive_float,
    "hidden": int_at_least(1),
    "seed": int_at_least(0),
}
OPTION_CHOICES = {"gradient": GRADIENTS, "numgrad_method": NUMGRAD_METHODS, "backend": BACKEND_NAMES}
OPTION_HELP = {
    "gradient": ("", "how gradients are computed"),
    "numgrad_method": ("", "how the numerical gradient sums its central differences (the same quantity either way)"),
    "backend": ("", "backend of the kernels"),
    "iters": ("N", "total iterations"),
    "batch_size": ("B", "mini-batch size"),
    "lr": ("LR", "learning rate"),
    "hidden": ("H", "hidden units"),
    "seed": ("S", "seed of the initial weights and the mini-batches"),
}


def option_name(key):
    """``batch_size`` -> ``--batch-size``."""
    return "--" + key.replace("_", "-")


def add_parser(sub):
    """Register ``scratchnet train`` on the ``sub`` subparsers."""
    p = sub.add_parser(
        "train",
        help="train TwoLayerNet on MNIST by mini-batch SGD (the chapter's experiment)",
        description=(
            "Train TwoLayerNet(784, HIDDEN, 10) by mini-batch SGD. The defaults are the chapter's "
            "experiment: numerical gradients, 10,000 iterations, batch 100, learning rate 0.1, "
            "on the MNIST shipped with scratchnet. Ctrl-C, SIGTERM or SIGHUP stop after the current "
            "iteration and (with --out) save a state that --resume continues."
        ),
    )
    for key, (metavar, text) in OPTION_HELP.items():
        kind = {"choices": OPTION_CHOICES[key]} if key in OPTION_CHOICES else {"type": OPTION_TYPES[key]}
        p.add_argument(option_name(key), **kind, metavar=metavar or None, help=f"{text} (default: {DEFAULTS[key]})")
    p.add_argument(
        "--threads",
        type=int_at_least(1),
        metavar="T",
        help="threads of the Numba/C kernels (default: the CPUs this process may use)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder with the four MNIST-layout IDX files (default: the MNIST shipped with scratchnet)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write history.csv/json, params.npz, config.json, accuracy.png, loss.png there "
        "(checked before training; a DIR that holds a run needs --resume or --overwrite)",
    )
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run saved in DIR (its config supplies the settings; --iters may raise the total)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the run that --out DIR already holds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs and CI)")
    return p


# -- settings ----------------------------------------------------------------
def invalid_setting(settings):
    """``(key, value, reason)`` of the first invalid value of ``settings`` (all keys of DEFAULTS), or None."""
    for k in DEFAULTS:
        if k not in settings:
            return k, None, "missing"
    for k, parse in OPTION_TYPES.items():
        v = settings[k]
        try:
            if isinstance(v, bool) or parse(str(v)) != v:
                return k, v, f"expected {'a number' if parse is positive_float else 'an integer'}"
        except argparse.ArgumentTypeError as exc:
            return k, v, str(exc)
    for k, choices in OPTION_CHOICES.items():
        if settings[k] not in choices:
            return k, settings[k], f"expected one of {', '.join(choices)}"
    if settings["data_dir"] is not None and not isinstance(settings["data_dir"], str):
        return "data_dir", settings["data_dir"], "expected a path"
    return None


def complete_settings(settings):
    """``settings`` over DEFAULTS, checked, values normalised as the options parse them.

    Raises CLIError naming the option of an unknown or invalid setting.
    """
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise CLIError(f"unknown setting {unknown[0]!r}; the settings are: {', '.join(DEFAULTS)}")
    full = {**DEFAULTS, **settings}
    for k, parse in OPTION_TYPES.items():
        with contextlib.suppress(argparse.ArgumentTypeError):
            if not isinstance(full[k], bool):
                full[k] = parse(str(full[k]))  # 5.0 -> 5, numpy scalars -> Python's
    invalid = invalid_setting(full)
    if invalid:
        k, v, reason = invalid
        raise CLIError(f"{option_name(k)} {v!r}: {reason}")
    if full["data_dir"] is not None:
        full["data_dir"] = resolve_data_dir(full["data_dir"])
    return full


def resolve_data_dir(value):
    """--data-dir as the absolute path recorded in config.json."""
    try:
        return str(Path(value).expanduser().resolve())
    except RuntimeError as exc:  # ~nosuchuser
        raise CLIError(f"--data-dir {value}: {exc}; write the path without '~' or with an existing user") from None


def settings_from_args(args, saved=None):
    """Settings of this run: from the saved run's config (--resume), else the options and defaults."""
    given = {k: getattr(args, k) for k in DEFAULTS}
    if given["data_dir"] is not None:
        given["data_dir"] = resolve_data_dir(given["data_dir"])
    if saved is None:
        return {k: (DEFAULTS[k] if v is None else v) for k, v in given.items()}
    return resumed_settings(saved, {k: v for k, v in given.items() if v is not None})


def resumed_settings(saved, given):
    """The saved run's settings, ``given["iters"]`` if any; other ``given`` values must agree."""
    settings = dict(saved.config["settings"])
    conflicts = [
        f"{option_name(k)} {given[k]} (the run used {settings[k]})"
        for k in FIXED_ON_RESUME
        if k in given and given[k] != settings[k]
    ]
    if conflicts:
        raise CLIError(f"--resume {saved.directory}: conflicting settings: " + "; ".join(conflicts))
    settings["iters"] = given.get("iters", settings["iters"])
    done = saved.history.iterations_done
    if settings["iters"] < done:
        raise CLIError(f"--iters {settings['iters']}: the run in {saved.directory} has already done {done} iterations")
    return settings


# -- a saved run -------------------------------------------------------------
@dataclasses.dataclass
class SavedRun:
    """A run directory read back for --resume."""

    directory: Path
    config: dict
    history: History
    params: dict


def load_run(directory):
    """config, history and params of a run directory written by --out, checked."""
    directory = Path(directory)
    names = ("config.json", "history.json", "params.npz")
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise CLIError(f"--resume {directory}: not a scratchnet run directory (missing {', '.join(missing)})")
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
        raise CLIError(f"--resume {directory}: cannot resume the saved run: {exc}") from None
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


# -- the output directory ----------------------------------------------------
def prepare_out_dir(out, *, resuming_from=None, overwrite=False):
    """Check before any training that the run can be saved in ``out``.

    Refuses an empty path and a directory that holds another run (unless
    ``overwrite`` or it is the run being resumed); creates the directory,
    writes and removes a probe file, and removes the temporary files of an
    interrupted earlier save. Returns ``out`` as a Path.
    """
    if str(out) == "":
        raise CLIError("--out '': an empty path; name a directory, e.g. --out results")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: exists and is not a directory")
    same = resuming_from is not None and out.exists() and out.resolve() == Path(resuming_from).resolve()
    if not same and not overwrite and results.holds_run(out):
        raise CLIError(
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
        raise CLIError(f"--out {out}: cannot write there ({reason}); choose a writable directory") from None
    results.remove_stale_temporaries(out)
    return out


# -- data --------------------------------------------------------------------
def load_data(settings):
    """((x_train, t_train), (x_test, t_test)) as the chapter loads them."""
    from ..datasets import load_mnist

    try:
        return load_mnist(normalize=True, flatten=True, one_hot_label=False, data_dir=settings["data_dir"])
    except (ValueError, OSError) as exc:  # MNISTError, MissingFileError, unreadable folder
        where = "--data-dir " + settings["data_dir"] if settings["data_dir"] else "shipped MNIST"
        raise CLIError(f"{where}: {exc}") from None


def data_digests(data_dir):
    """SHA-256 of the content of each of the four data files, and of the set.

    The content is the decompressed IDX bytes, so ``name.gz`` and ``name``
    with the same data agree, and the shipped set's digests are its
    published ones (which load_mnist verifies).
    """
    from ..datasets.mnist import FILES, SHIPPED_SHA256

    if data_dir is None:
        files = dict(SHIPPED_SHA256)
    else:
        files = {name: _content_sha256(Path(data_dir), name) for name in FILES.values()}
    combined = hashlib.sha256("".join(f"{name} {files[name]}\n" for name in sorted(files)).encode())
    return combined.hexdigest(), files


def _content_sha256(directory, name):
    h = hashlib.sha256()
    gz = directory / f"{name}.gz"
    try:
        with gzip.open(gz, "rb") if gz.is_file() else open(directory / name, "rb") as f:
            while chunk := f.read(2**20):
                h.update(chunk)
    except (OSError, EOFError) as exc:
        raise CLIError(f"--data-dir {directory}: cannot read {name}: {exc}") from None
    return h.hexdigest()


def _check_same_data(saved, digest, files):
    recorded = saved.config.get("data_sha256")
    if recorded is None or recorded == digest:
        return  # runs saved before data digests were recorded cannot be checked
    old = saved.config.get("data_files_sha256") or {}
    changed = [name for name in sorted(files) if old.get(name) != files[name]] or ["the data set"]
    raise CLIError(
        f"--resume {saved.directory}: the data changed since the run started ({', '.join(changed)}: "
        "SHA-256 differs from config.json); resume with the original data, or start a new run with --out"
    )


# -- set-up ------------------------------------------------------------------
@dataclasses.dataclass
class _Setup:
    settings: dict
    data: tuple  # ((x_train, t_train), (x_test, t_test))
    data_digests: tuple  # (combined, {file: digest})
    net: object
    history: History  # None for a new run
    batch_seed: np.random.SeedSequence


def _use_backend(settings, threads):
    from .. import backends, set_num_threads

    try:
        backends.load(settings["backend"])
    except ImportError as exc:
        raise CLIError(f"--backend {settings['backend']}: not available on this installation ({exc})") from None
    if threads is not None:
        try:
            set_num_threads(threads)
        except ValueError as exc:
            raise CLIError(f"--threads {threads}: {str(exc).removeprefix('n: ')}") from None


def _check_memory(settings, n_features, train_size):
    """Refuse a network that cannot fit in memory before allocating it."""
    h = settings["hidden"]
    n_params = h * (n_features + 1) + OUTPUT_SIZE * (h + 1)
    rows = max(min(settings["batch_size"], train_size), min(ACCURACY_CHUNK, train_size))
    # parameters, gradients, one update temporary, the initial draw; activations of the largest pass
    need = 8 * (4 * n_params + 4 * rows * h)
    available = _available_memory()
    if need > available:
        raise CLIError(
            f"--hidden {h}: needs about {_bytes(need)} of memory for the network, its gradients and "
            f"activations, and {_bytes(available)} is available; choose a smaller --hidden"
        )


def _available_memory():
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return float("inf")


def _bytes(n):
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000


def _set_up(settings, saved, threads):
    """Backend, data, network (fresh or restored) and the mini-batch seed of a run."""
    from ..network import TwoLayerNet

    _use_backend(settings, threads)
    data = load_data(settings)
    digests = data_digests(settings["data_dir"])
    (x_train, t_train), _ = data
    if settings["batch_size"] > len(t_train):
        raise CLIError(f"--batch-size {settings['batch_size']}: larger than the training set ({len(t_train)} samples)")
    _check_memory(settings, x_train.shape[1], len(t_train))

    # Weights and mini-batches get independent streams from the one seed.
    init_seq, batch_seq = np.random.SeedSequence(settings["seed"]).spawn(2)
    net = TwoLayerNet(x_train.shape[1], settings["hidden"], OUTPUT_SIZE, WEIGHT_INIT_STD, seed=init_seq)
    if saved is None:
        return _Setup(settings, data, digests, net, None, batch_seq)
    _check_same_data(saved, *digests)
    for k in PARAM_NAMES:
        if saved.params[k].shape != net.params[k].shape:
            raise CLIError(
                f"--resume {saved.directory}: params.npz['{k}'] has shape {saved.params[k].shape}, "
                f"expected {net.params[k].shape}"
            )
    net.params = saved.params
    return _Setup(settings, data, digests, net, saved.history, batch_seq)


# -- the training loop -------------------------------------------------------
COMPILE_NOTICE_S = 3.0  # a first iteration slower than this: say that the kernels are being compiled
COMPILING = (
    "compiling the Numba kernels: the first run after an install takes about 30 s more; "
    "later runs load them from Numba's cache"
)


class _Progress:
    """tqdm bar on stderr (optional) and the chapter's per-epoch line on stdout (optional).

    Output never ends a run: once writing fails (the terminal closed, SIGHUP),
    it stops writing.
    """

    def __init__(self, total, initial, bar, lines):
        self.bar = None
        self.lines = lines
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="train", unit="it", file=sys.stderr, dynamic_ncols=True)
        self._next_postfix = 0.0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._noticed = False
        self._notice = threading.Timer(COMPILE_NOTICE_S, self._compiling)
        self._notice.daemon = True
        self._notice.start()

    def _compiling(self):
        """Said when the first iteration is slow to come: the kernels are being compiled."""
        with self._lock:
            if self._notice is not None:
                self._noticed = True
                self.note(COMPILING)

    def _first_results(self):
        with self._lock:
            self._notice.cancel()
            self._notice = None
            if self._noticed:
                self.note(f"the kernels are ready ({time.monotonic() - self._started:.0f} s); training")

    def note(self, text):
        """A line on stderr, above the bar."""
        if self.bar is None:
            emit(text, "stderr")
            return
        try:
            self.bar.write(text, file=sys.stderr)
        except OSError:
            self.bar = None
            emit(text, "stderr")

    def iteration(self, i, loss):
        if self._notice is not None:
            self._first_results()
        if self.bar is None:
            return
        try:
            now = time.monotonic()
            if now >= self._next_postfix:  # formatting the postfix every iteration costs more than it shows
                self.bar.set_postfix_str(f"loss={loss:.4f}", refresh=False)
                self._next_postfix = now + 0.2
            self.bar.update(1)
        except OSError:
            self.bar = None

    def epoch(self, i, train_acc, test_acc):
        if self._notice is not None:
            self._first_results()
        if not self.lines:
            return
        text = f"train acc, test acc | {train_acc:.4f}, {test_acc:.4f}"
        if self.bar is None:
            emit(text)
            return
        try:
            self.bar.write(text, file=sys.stdout)
            sys.stdout.flush()
        except OSError:
            self.bar = None
            emit(text)

    def close(self):
        if self._notice is not None:
            self._notice.cancel()
        with contextlib.suppress(OSError):
            if self.bar is not None:
                self.bar.close()


def _train_loop(setup, progress, stop):
    """Train setup.net in place until the end or a stop signal; returns (history, wall seconds)."""
    from ..training import train

    s = setup.settings
    (x_train, t_train), (x_test, t_test) = setup.data
    start = time.perf_counter()
    stop.training()
    try:
        history = train(
            setup.net, x_train, t_train, x_test, t_test,
            iters_num=s["iters"], batch_size=s["batch_size"], learning_rate=s["lr"], gradient=s["gradient"],
            seed=setup.batch_seed, backend=s["backend"], h=NUMERICAL_H, numgrad_method=s["numgrad_method"],
            history=setup.history,
            on_iteration=progress.iteration, on_epoch=progress.epoch, should_stop=lambda: stop.requested,
        )  # fmt: skip
    except FloatingPointError as exc:  # diverged: no use saving NaN parameters
        raise CLIError(f"--lr {s['lr']}: {str(exc).removeprefix('learning_rate: ')}", status=1) from None
    except MemoryError:
        raise CLIError(
            f"--hidden {s['hidden']}: out of memory while training; choose a smaller --hidden", status=1
        ) from None
    finally:
        stop.saving()  # from here on, signals wait for the save
        progress.close()
    return history, time.perf_counter() - start


# -- evaluation --------------------------------------------------------------
def _final_accuracies(setup):
    (x_train, t_train), (x_test, t_test) = setup.data
    backend = setup.settings["backend"]
    return {
        "train_acc": setup.net.accuracy(x_train, t_train, backend=backend),
        "test_acc": setup.net.accuracy(x_test, t_test, backend=backend),
    }


# -- saving ------------------------------------------------------------------
def _versions():
    import numba

    from .. import __version__

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "scratchnet": __version__,
    }
    with contextlib.suppress(ImportError):
        import tqdm

        versions["tqdm"] = tqdm.__version__
    return versions


def equivalent_argv(settings, out=None):
    """The ``scratchnet train`` arguments that run ``settings`` (for config.json)."""
    argv = ["train"]
    for k, v in settings.items():
        if v is not None:
            argv += [option_name(k), str(v)]
    return argv + (["--out", str(out)] if out is not None else [])


def _config(setup, history, final, wall, argv):
    from .. import get_num_threads

    (_, t_train), (_, t_test) = setup.data
    return {
        "command": "train",
        "settings": setup.settings,
        "weight_init_std": WEIGHT_INIT_STD,
        "numerical_gradient_h": NUMERICAL_H,
        "seeding": "np.random.SeedSequence(seed).spawn(2): [0] initial weights, [1] mini-batches",
        "data_sha256": setup.data_digests[0],
        "data_files_sha256": setup.data_digests[1],
        "train_size": len(t_train),
        "test_size": len(t_test),
        "threads": get_num_threads(),
        "iterations_done": history.iterations_done,
        "status": "completed" if final is not None else "interrupted",
        "final": final,
        "wall_time_s": round(wall, 3),
        "timings": {k: round(v, 3) for k, v in history.timings.items()},
        "argv": argv,
        "versions": _versions(),
    }


def _save(out, history, params, config):
    """Write the run directory; if that fails after all, save it elsewhere rather than lose it."""
    try:
        return results.write_run(out, history, params, config, config["train_size"])
    except OSError as exc:
        reason = f"--out {out}: cannot write results ({exc.strerror or exc})"
    try:
        rescue = Path(tempfile.mkdtemp(prefix="scratchnet-rescued-run-"))
        results.write_run(rescue, history, params, config, config["train_size"])
    except OSError as exc:
        raise CLIError(f"{reason}, nor in a temporary directory ({exc}): the run is lost", status=1) from None
    raise CLIError(
        f"{reason}; saved the run to {rescue} instead (move it, or continue it with "
        f"scratchnet train --resume {rescue})",
        status=1,
    )


# -- one run -----------------------------------------------------------------
@dataclasses.dataclass
class RunResult:
    """What :func:`run_training` did.

    ``status`` is "completed" or "interrupted" (a stop signal); ``final``
    the final train and test accuracy of a completed run; ``ran`` the
    iterations of this session; ``out`` the run directory (None without one).
    """

    status: str
    iterations_done: int
    iters: int
    ran: int
    final: dict
    best_test_acc: float
    wall_time_s: float
    out: Path
    plotted: bool
    config: dict


def run_training(
    settings, out_dir=None, *, resume_from=None, overwrite=False, threads=None, progress=False, lines=False,
    stop=None, argv=None,
):  # fmt: skip
    """One complete run, written to ``out_dir`` exactly as ``scratchnet train --out`` writes it.

    Parameters
    ----------
    settings : dict
        Any of DEFAULTS' keys (``gradient``, ``backend``, ``iters``,
        ``batch_size``, ``lr``, ``hidden``, ``seed``, ``data_dir``); the
        rest take the defaults. With ``resume_from``, the saved run's
        settings are used and ``settings`` may only raise ``iters``.
    out_dir : str or Path, optional
        The run directory; checked before training. None: nothing written.
    resume_from : str, Path or SavedRun, optional
        Continue this saved run (from :func:`load_run`).
    overwrite : bool
        Replace a run ``out_dir`` already holds.
    threads : int, optional
        Threads of the Numba/C kernels (:func:`scratchnet.set_num_threads`).
    progress, lines : bool
        A tqdm bar on stderr; the chapter's accuracy lines on stdout.
    stop : StopSignals, optional
        Stop requests (the CLI's signal handling); None: never stops early.
    argv : list of str, optional
        Recorded in config.json; default: the equivalent ``scratchnet train`` arguments.

    Returns
    -------
    RunResult

    Raises
    ------
    CLIError
        A one-line message naming the option at fault (status 2: settings,
        data or output directory; 1: training diverged or saving failed).
    """
    stop = NoSignals() if stop is None else stop
    saved = resume_from if resume_from is None or isinstance(resume_from, SavedRun) else load_run(resume_from)
    if saved is not None:  # the saved settings; the given ones must agree, but for iters
        given = complete_settings({**saved.config["settings"], **settings})
        settings = resumed_settings(saved, {k: given[k] for k in settings})
    settings = complete_settings(settings)
    with single_threaded_blas():
        setup = _set_up(settings, saved, threads)
        out = (
            None
            if out_dir is None
            else prepare_out_dir(out_dir, resuming_from=saved and saved.directory, overwrite=overwrite)
        )
        done = 0 if setup.history is None else setup.history.iterations_done
        if lines:
            emit(_describe(setup, done))
        history, wall = _train_loop(setup, _Progress(settings["iters"], done, progress, lines), stop)
        final = _final_accuracies(setup) if history.iterations_done == settings["iters"] else None
        argv = equivalent_argv(settings, out) if argv is None else argv
        config = _config(setup, history, final, wall, argv)
        plotted = _save(out, history, setup.net.params, config) if out is not None else True
    return RunResult(
        config["status"], history.iterations_done, settings["iters"], history.iterations_done - done, final,
        max(history.test_acc, default=None), config["wall_time_s"], out, plotted, config,
    )  # fmt: skip


def _describe(setup, done):
    """The line that opens a run: what is computed, where, on how many threads."""
    from .. import get_num_threads

    s = setup.settings
    how = "backprop"
    if s["gradient"] == "numerical":
        how = f"numerical gradients ({s['numgrad_method']} method, h={NUMERICAL_H:g})"
    start = f", resumed at iteration {done}" if done else ""
    return (
        f"training TwoLayerNet{setup.net.sizes}: {how}, {s['iters']} iterations of batch {s['batch_size']}, "
        f"lr {s['lr']:g}, backend {s['backend']} on {get_num_threads()} thread(s){start}"
    )


# -- the command -------------------------------------------------------------
def run(args):
    """Run ``scratchnet train``; returns the exit status."""
    with StopSignals() as stop:
        saved = load_run(args.resume) if args.resume is not None else None
        settings = settings_from_args(args, saved)
        out = args.out if args.out is not None else args.resume
        result = run_training(
            settings, out, resume_from=saved, overwrite=args.overwrite, threads=args.threads,
            progress=not args.no_progress, lines=True, stop=stop, argv=sys.argv[1:],
        )  # fmt: skip
        return _report(result, stop)


def _report(result, stop):
    """Print the outcome; the exit status."""
    out = result.out
    if result.status == "interrupted":
        saved = f"saved to {out}; continue with: scratchnet train --resume {out}" if out else "nothing saved (no --out)"
        emit(
            f"scratchnet: interrupted after iteration {result.iterations_done} of {result.iters} "
            f"({signal_name(stop.first)}); {saved}",
            "stderr",
        )
        return exit_status(stop.first)
    emit(f"final train acc, test acc | {result.final['train_acc']:.4f}, {result.final['test_acc']:.4f}")
    per_it = f" ({1000 * result.wall_time_s / result.ran:.2f} ms/iteration)" if result.ran else ""
    emit(f"wall time {result.wall_time_s:.1f} s for {result.ran} iterations{per_it}")
    t = result.config.get("timings")
    if t and t.get("compiled"):
        emit(
            f"time split | {t['compiled']:.1f} s compiled training calls, {t['evaluation']:.1f} s epoch "
            f"evaluations, {t['python']:.1f} s Python"
        )
    if out is not None:
        emit(f"results in {out}")
        if not result.plotted:
            emit(PLOT_HINT, "stderr")
    if stop.requested:  # a signal came while the completed run was being evaluated and saved
        emit(f"scratchnet: {signal_name(stop.first)} received while saving; the completed run is saved", "stderr")
        return exit_status(stop.first)
    return 0
