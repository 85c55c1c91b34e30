"""One complete run: settings checked, data loaded, the net trained, evaluated and saved.

:func:`run_training` is what ``scratchnet train`` and every run of a sweep
do. It reports as it goes to a :class:`Reporter` (the command line's
progress bar and per-epoch lines) and asks a stop object whether to stop
(the command line's signal handling); by default it says nothing and runs
to the end.
"""

import contextlib
import dataclasses
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import backends
from .._blas import single_threaded_blas_unless_configured
from .._config import ACCURACY_CHUNK, EnvironmentVariableError
from .._threads import get_num_threads, set_num_threads
from .._version import __version__
from ..network import PARAM_NAMES, TwoLayerNet
from ..training import History, train
from . import directory
from .data import check_same_data, data_digests, load_data
from .errors import RunError
from .lock import locked
from .settings import (
    CHECKPOINT_EVERY,
    NUMERICAL_H,
    OUTPUT_SIZE,
    WEIGHT_INIT_STD,
    complete_settings,
    equivalent_argv,
    resumed_settings,
    seconds,
)


class Reporter:
    """What a run tells as it goes; this one says nothing (subclass it to show progress)."""

    def start(self, settings, sizes, done):
        """Training starts: ``settings`` complete, the net's ``sizes``, ``done`` iterations already (resumed)."""

    def iteration(self, i, loss):
        """Iteration ``i`` (counted from 1) ended with mini-batch loss ``loss``."""

    def epoch(self, i, train_acc, test_acc):
        """The chapter's per-epoch accuracies, measured after iteration ``i``."""

    def close(self):
        """Training is over (completed, stopped or failed)."""

    def note(self, text):
        """Something the user should know that is not an error (e.g. what crash recovery did)."""


class NeverStop:
    """The stop protocol of :func:`run_training` for a run nothing interrupts.

    A stop object has ``requested`` (stop after the current iteration),
    ``first`` (what asked, or None), and ``training()`` / ``saving()``,
    called as the run enters those phases.
    """

    first = None
    requested = False

    def training(self):
        pass

    def saving(self):
        pass


# -- set-up ------------------------------------------------------------------
@dataclasses.dataclass
class _Setup:
    settings: dict
    data: tuple  # ((x_train, t_train), (x_test, t_test))
    data_digests: tuple  # (combined, {file: digest})
    net: TwoLayerNet
    history: History  # None for a new run
    batch_seed: np.random.SeedSequence
    sessions: list  # the iteration at which each session of the run started
    initial_params: dict = None  # where a run started with --init-from took its parameters


def _use_backend(settings, threads):
    try:
        backends.load(settings["backend"])
    except EnvironmentVariableError as exc:  # the message names the variable
        raise RunError(str(exc)) from None
    except ImportError as exc:
        raise RunError(f"--backend {settings['backend']}: not available on this installation ({exc})") from None
    if threads is not None:
        try:
            set_num_threads(threads)
        except EnvironmentVariableError as exc:
            raise RunError(str(exc)) from None
        except ValueError as exc:
            raise RunError(f"--threads {threads}: {str(exc).removeprefix('n: ')}") from None


def _check_memory(settings, n_features, train_size):
    """Refuse a network that cannot fit in memory before allocating it."""
    h = settings["hidden"]
    n_params = h * (n_features + 1) + OUTPUT_SIZE * (h + 1)
    rows = max(min(settings["batch_size"], train_size), min(ACCURACY_CHUNK, train_size))
    # parameters, gradients, one update temporary, the initial draw; activations of the largest pass
    need = 8 * (4 * n_params + 4 * rows * h)
    available = _available_memory()
    if need > available:
        raise RunError(
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


def _set_up(settings, saved, threads, init=None):
    """Backend, data, network (fresh, restored, or initialised from ``init``) and the mini-batch seed of a run."""
    _use_backend(settings, threads)
    data = load_data(settings)
    digests = data_digests(settings["data_dir"])
    (x_train, t_train), _ = data
    if settings["batch_size"] > len(t_train):
        raise RunError(f"--batch-size {settings['batch_size']}: larger than the training set ({len(t_train)} samples)")
    _check_memory(settings, x_train.shape[1], len(t_train))

    # Weights and mini-batches get independent streams from the one seed.
    init_seq, batch_seq = np.random.SeedSequence(settings["seed"]).spawn(2)
    net = TwoLayerNet(x_train.shape[1], settings["hidden"], OUTPUT_SIZE, WEIGHT_INIT_STD, seed=init_seq)
    if init is not None:
        _restore(net, init, "--init-from")
        initial = {"from": str(init.directory), "checkpoint_sha256": init.digest}
        return _Setup(settings, data, digests, net, None, batch_seq, [0], initial)
    if saved is None:
        return _Setup(settings, data, digests, net, None, batch_seq, [0])
    check_same_data(saved, *digests)
    _restore(net, saved, "--resume")
    sessions = [*saved.config.get("sessions", []), saved.history.iterations_done]
    initial = saved.config.get("initial_params")
    return _Setup(settings, data, digests, net, saved.history, batch_seq, sessions, initial)


def _restore(net, saved, option):
    for k in PARAM_NAMES:
        if saved.params[k].shape != net.params[k].shape:
            raise RunError(
                f"{option} {saved.directory}: params['{k}'] has shape {saved.params[k].shape}, "
                f"expected {net.params[k].shape} (--hidden {saved.config['settings']['hidden']} in that run)"
            )
    net.params = saved.params


# -- training and evaluation -------------------------------------------------
CHECKPOINT_SHARE = 0.02  # the most of a run's time its checkpoints may take


class _Checkpoints:
    """Commits the run's state to its directory every ``every`` seconds of work (the time saving takes not counted).

    Never more often than keeps the commits under CHECKPOINT_SHARE of the
    time: after a commit that took c seconds, the next waits at least
    c / CHECKPOINT_SHARE.
    """

    def __init__(self, out, setup, every, argv, reporter):
        self.out, self.setup, self.every, self.argv, self.reporter = out, setup, every, argv, reporter
        self.started = time.perf_counter()
        self.last = time.monotonic()
        self.cost = 0.0
        self.failed = False

    def __call__(self, history):
        if time.monotonic() - self.last < max(self.every, self.cost / CHECKPOINT_SHARE):
            return
        start = time.monotonic()
        config = _config(self.setup, history, None, time.perf_counter() - self.started, self.argv)
        try:
            directory.commit(self.out, self.setup.net.params, history, config)
        except OSError as exc:
            if not self.failed:  # said once; the final save tries again
                self.reporter.note(
                    f"--out {self.out}: cannot write a checkpoint ({exc.strerror or exc}); training goes on"
                )
            self.failed = True
        self.last = time.monotonic()
        self.cost = self.last - start


def _train_loop(setup, reporter, stop, checkpoint=None):
    """Train setup.net in place until the end or a stop request; returns (history, wall seconds)."""
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
            on_iteration=reporter.iteration, on_epoch=reporter.epoch, should_stop=lambda: stop.requested,
            checkpoint=checkpoint,
        )  # fmt: skip
    except FloatingPointError as exc:  # diverged: no use saving NaN parameters
        raise RunError(f"--lr {s['lr']}: {str(exc).removeprefix('learning_rate: ')}", status=1) from None
    except MemoryError:
        message = f"--hidden {s['hidden']}: out of memory while training; choose a smaller --hidden"
        raise RunError(message, status=1) from None
    finally:
        stop.saving()  # from here on, a stop request waits for the save
        reporter.close()
    return history, time.perf_counter() - start


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


def _config(setup, history, final, wall, argv):
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
        "sessions": setup.sessions,
        **({"initial_params": setup.initial_params} if setup.initial_params else {}),
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
        return directory.write_run(out, history, params, config, config["train_size"])
    except OSError as exc:
        reason = f"--out {out}: cannot write results ({exc.strerror or exc})"
    rescue = None
    try:
        rescue = Path(tempfile.mkdtemp(prefix="scratchnet-rescued-run-"))
        directory.write_run(rescue, history, params, config, config["train_size"])
    except OSError as exc:
        if rescue is not None:
            shutil.rmtree(rescue, ignore_errors=True)
        raise RunError(f"{reason}, nor in a temporary directory ({exc}): the run is lost", status=1) from None
    raise RunError(
        f"{reason}; saved the run to {rescue} instead (move it, or continue it with "
        f"scratchnet train --resume {rescue})",
        status=1,
    )


# -- one run -----------------------------------------------------------------
@dataclasses.dataclass
class RunResult:
    """What :func:`run_training` did.

    ``status`` is "completed" or "interrupted" (a stop request); ``final``
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
    settings, out_dir=None, *, resume_from=None, init_from=None, overwrite=False, threads=None, reporter=None,
    stop=None, argv=None, checkpoint_every=CHECKPOINT_EVERY,
):  # fmt: skip
    """One complete run, written to ``out_dir`` exactly as ``scratchnet train --out`` writes it.

    Parameters
    ----------
    settings : dict
        Any of the keys of :data:`scratchnet.runs.DEFAULTS` (``gradient``,
        ``numgrad_method``, ``backend``, ``iters``, ``batch_size``, ``lr``,
        ``hidden``, ``seed``, ``data_dir``); the rest take the defaults.
        With ``resume_from``, the saved run's settings are used and
        ``settings`` may only raise ``iters``.
    out_dir : str or Path, optional
        The run directory; checked, and locked against other processes,
        before training. None: nothing written.
    resume_from : str, Path or SavedRun, optional
        Continue this saved run (read by :func:`scratchnet.runs.load_run`).
    init_from : str, Path or SavedRun, optional
        Start a new run from this saved run's parameters (not its history
        or settings).
    overwrite : bool
        Replace a run ``out_dir`` already holds.
    threads : int, optional
        Threads of the Numba/C kernels (:func:`scratchnet.set_num_threads`).
    reporter : Reporter, optional
        Told of each iteration and epoch; None: nothing shown.
    stop : optional
        Asked after each iteration whether to stop (:class:`NeverStop`
        describes the protocol); None: runs to the end.
    argv : list of str, optional
        Recorded in config.json; default: the equivalent ``scratchnet train`` arguments.
    checkpoint_every : float, optional
        Seconds of work between two commits of the run's state to
        ``out_dir`` (a process killed at any moment loses at most this
        much work); 0: only at the end. Commits never take more than 2% of
        the time: after one that took c seconds, the next waits at least
        50 c (0.4 s for the chapter's run).

    Returns
    -------
    RunResult

    Raises
    ------
    RunError
        A one-line message naming the setting at fault (status 2: settings,
        data or output directory; 1: training diverged or saving failed).
    """
    reporter = Reporter() if reporter is None else reporter
    stop = NeverStop() if stop is None else stop
    try:
        checkpoint_every = seconds(checkpoint_every)
    except ValueError as exc:
        raise RunError(f"--checkpoint-every {checkpoint_every!r}: {exc}") from None
    if resume_from is not None and init_from is not None:
        raise RunError("--init-from: starts a new run; it cannot be combined with --resume")
    saved = _saved(resume_from, "--resume")
    init = _saved(init_from, "--init-from")
    if saved is not None:  # the saved settings; the given ones must agree, but for iters
        given = complete_settings({**saved.config["settings"], **settings})
        settings = resumed_settings(saved, {k: given[k] for k in settings})
    settings = complete_settings(settings)
    with single_threaded_blas_unless_configured(), contextlib.ExitStack() as hold:
        setup = _set_up(settings, saved, threads, init)
        out = None
        if out_dir is not None:
            out = directory.make_out_dir(out_dir)
            hold.enter_context(locked(out))
            removed = directory.claim_out_dir(out, resuming=saved, overwrite=overwrite)
            if removed:
                reporter.note(
                    f"{out}: removed {len(removed)} temporary file(s) of an interrupted save: {', '.join(removed)}"
                )
        done = 0 if setup.history is None else setup.history.iterations_done
        argv = equivalent_argv(settings, out) if argv is None else argv
        checkpoints = None
        if out is not None and checkpoint_every > 0:
            checkpoints = _Checkpoints(out, setup, checkpoint_every, argv, reporter)
        reporter.start(settings, setup.net.sizes, done)
        history, wall = _train_loop(setup, reporter, stop, checkpoints)
        final = _final_accuracies(setup) if history.iterations_done == settings["iters"] else None
        config = _config(setup, history, final, wall, argv)
        plotted = _save(out, history, setup.net.params, config) if out is not None else True
    return RunResult(
        config["status"], history.iterations_done, settings["iters"], history.iterations_done - done, final,
        max(history.test_acc, default=None), config["wall_time_s"], out, plotted, config,
    )  # fmt: skip


def _saved(run, option):
    """A SavedRun from a run directory (or one already read)."""
    if run is None or isinstance(run, directory.SavedRun):
        return run
    return directory.load_run(run, option)
