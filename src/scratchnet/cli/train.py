"""Command line: ``scratchnet train`` runs the chapter's experiment.

Defaults are the book's ``train_neuralnet.py``: TwoLayerNet(784, 50, 10) on
the shipped MNIST, 10,000 iterations of numerical-gradient SGD in batches
of 100 at learning rate 0.1, accuracy printed once per epoch. The run
itself is :func:`scratchnet.runs.run_training`; this module turns options
into its settings and prints what it does.

Exit status: 0 done, 1 training or output failed, 2 bad options or data,
130 / 143 / 129 stopped by SIGINT (Ctrl-C) / SIGTERM / SIGHUP (after saving
a resumable state with ``--out``).
"""

import contextlib
import sys
import threading
import time

from .._threads import get_num_threads
from ..runs import Reporter, load_run, run_training
from ..runs.settings import (
    CHECKPOINT_EVERY,
    DEFAULTS,
    NUMERICAL_H,
    OPTION_CHOICES,
    OPTION_TYPES,
    option_name,
    resolve_data_dir,
    resumed_settings,
    seconds,
)
from . import argument_type, emit, int_at_least
from ._signals import StopSignals, exit_status, signal_name

PLOT_HINT = 'plots skipped: matplotlib is not installed; get them with: pip install "scratchnet[plot]"'
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
        kind = {"choices": OPTION_CHOICES[key]} if key in OPTION_CHOICES else {"type": argument_type(OPTION_TYPES[key])}
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
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run saved in DIR (its config supplies the settings; --iters may raise the total)",
    )
    start.add_argument(
        "--init-from",
        metavar="DIR",
        help="start a new run from the parameters saved in DIR, with these options (same --hidden)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=argument_type(seconds),
        default=CHECKPOINT_EVERY,
        metavar="S",
        help=f"save a resumable state to --out every S seconds of work; 0: only at the end "
        f"(default: {CHECKPOINT_EVERY:g})",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the run that --out DIR already holds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs and CI)")
    return p


def settings_from_args(args, saved=None):
    """Settings of this run: from the saved run's config (--resume), else the options and defaults."""
    given = {k: getattr(args, k) for k in DEFAULTS}
    if given["data_dir"] is not None:
        given["data_dir"] = resolve_data_dir(given["data_dir"])
    if saved is None:
        return {k: (DEFAULTS[k] if v is None else v) for k, v in given.items()}
    return resumed_settings(saved, {k: v for k, v in given.items() if v is not None})


# -- what the command shows --------------------------------------------------
COMPILE_NOTICE_S = 3.0  # a first iteration slower than this: say that the kernels are being compiled
COMPILING = (
    "compiling the Numba kernels: the first run after an install takes about 30 s more; "
    "later runs load them from Numba's cache"
)


class _Progress(Reporter):
    """The run's opening line, a tqdm bar on stderr (optional) and the chapter's per-epoch lines on stdout.

    Output never ends a run: once writing fails (the terminal closed, SIGHUP),
    it stops writing.
    """

    def __init__(self, bar):
        self.show_bar = bar
        self.bar = None
        self._notice = None  # the compile notice's timer, until the first results

    def start(self, settings, sizes, done):
        emit(describe(settings, sizes, done))
        if self.show_bar:
            from tqdm import tqdm

            self.bar = tqdm(
                total=settings["iters"], initial=done, desc="train", unit="it", file=sys.stderr, dynamic_ncols=True
            )
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


def describe(settings, sizes, done):
    """The line that opens a run: what is computed, where, on how many threads."""
    s = settings
    how = "backprop"
    if s["gradient"] == "numerical":
        how = f"numerical gradients ({s['numgrad_method']} method, h={NUMERICAL_H:g})"
    start = f", resumed at iteration {done}" if done else ""
    return (
        f"training TwoLayerNet{sizes}: {how}, {s['iters']} iterations of batch {s['batch_size']}, "
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
            settings, out, resume_from=saved, init_from=args.init_from, overwrite=args.overwrite,
            threads=args.threads, reporter=_Progress(bar=not args.no_progress), stop=stop, argv=sys.argv[1:],
            checkpoint_every=args.checkpoint_every,
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
        name = signal_name(stop.first)
        if out is not None:
            emit(f"scratchnet: {name} received while saving; the completed run is saved", "stderr")
        else:
            emit(f"scratchnet: {name} received at the end; the run completed (nothing saved: no --out)", "stderr")
        return exit_status(stop.first)
    return 0
