"""Command line: ``scratchnet sweep --out DIR`` runs many ``train`` runs on Dask.

Every ``scratchnet train`` setting is an option taking a list
(``--lr 0.01,0.1,1``) or, for integers, a range (``--seeds 0-9``); the
full grid runs (up to 100,000 runs), or ``--random N`` points of it,
drawn from a grid of any size. Each run is an ordinary run directory
``DIR/runs/<id>/``; a sweep started again skips the runs that exist
(resuming is the default) and does the rest. See :mod:`scratchnet.sweep`.

Exit status: 0 every run completed, 1 some failed (see results.csv), 2 bad
options, 130 / 143 / 129 stopped by SIGINT / SIGTERM / SIGHUP (completed
runs kept).
"""

import signal
import sys
import threading

from ..runs.settings import CHECKPOINT_EVERY, DEFAULTS, option_name, seconds
from ..sweep import MAX_RUNS
from . import CLIError, argument_type, emit, int_at_least
from ._signals import STOP_SIGNALS, exit_status, signal_name
from .train import OPTION_HELP


def add_parser(sub):
    """Register ``scratchnet sweep`` on the ``sub`` subparsers."""
    p = sub.add_parser(
        "sweep",
        help="run a grid of train settings on Dask (a LocalCluster, or your cluster)",
        description=(
            "Run scratchnet train over a grid of settings: each setting option takes a list "
            "(--lr 0.01,0.1,1) or an integer range (--seeds 0-9); the full grid runs, up to "
            f"{MAX_RUNS:,} runs, or --random N points of it, drawn from a grid of any size. Each run "
            "is written to DIR/runs/<id>/ exactly as 'scratchnet train --out' writes it; starting "
            "the same sweep again skips the runs already done. At the end: DIR/results.csv and "
            "DIR/summary.png. Runs execute on a Dask LocalCluster on this machine (one worker "
            "process per core, one kernel thread per run) unless --scheduler or --scheduler-file "
            'names an existing Dask cluster. Needs: pip install "scratchnet[sweep]".'
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the sweep directory (required)")
    for key, default in DEFAULTS.items():
        names = [option_name(key), "--seeds"] if key == "seed" else [option_name(key)]
        text = OPTION_HELP.get(key, ("", key.replace("_", " ")))[1]
        p.add_argument(*names, dest=key, metavar="LIST", help=f"{text}: values, comma-separated (default: {default})")
    p.add_argument(
        "--random",
        type=int_at_least(1),
        metavar="N",
        help=f"run N points of the grid (at most {MAX_RUNS:,}), drawn at random without replacement; "
        f"needed for a grid of more than {MAX_RUNS:,} runs",
    )
    p.add_argument(
        "--random-seed",
        type=int_at_least(0),
        default=0,
        metavar="S",
        help="seed of --random: the same S, the same points (default: 0)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--scheduler-file", metavar="FILE", help="the scheduler file of an existing Dask cluster")
    p.add_argument(
        "--workers", type=int_at_least(1), metavar="W", help="worker processes of the local cluster (default: cores)"
    )
    p.add_argument(
        "--threads", type=int_at_least(1), default=1, metavar="T", help="kernel threads per run (default: 1)"
    )
    p.add_argument(
        "--checkpoint-every",
        type=argument_type(seconds),
        default=CHECKPOINT_EVERY,
        metavar="S",
        help="each run saves a resumable state every S seconds of work, so that a run whose worker dies "
        f"resumes there; 0: never (default: {CHECKPOINT_EVERY:g})",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args):
    """Run ``scratchnet sweep``; returns the exit status."""
    sweeps = sys.modules["scratchnet.sweep"]  # the module (scratchnet.sweep is also the function)
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise CLIError(sweeps.INSTALL_HINT, status=1) from None
    where = args.scheduler or args.scheduler_file or "a LocalCluster on this machine"
    try:
        grid = {k: sweeps.parse_values(k, getattr(args, k)) for k in DEFAULTS if getattr(args, k) is not None}
        with _SignalsAsInterrupt() as received:
            result = sweeps.sweep(
                args.out, grid, random=args.random, random_seed=args.random_seed, scheduler=args.scheduler,
                scheduler_file=args.scheduler_file, workers=args.workers, threads=args.threads,
                progress=not args.no_progress, checkpoint_every=args.checkpoint_every,
                on_start=lambda n, done: emit(f"sweep: {n} runs, {done} done already, {n - done} to run on {where}"),
            )  # fmt: skip
    except sweeps.SweepError as exc:
        raise CLIError(str(exc)) from None
    return _report(result, received)


def _report(result, received):
    emit(sweeps_table(result))
    emit(
        f"results in {result.out / 'results.csv'}"
        + (f", figure {result.out / 'summary.png'}" if result.plotted else "")
    )
    done = sum(r["status"] == "completed" for r in result.rows)
    if result.interrupted:
        name = signal_name(received[0]) if received else "SIGINT"
        emit(
            f"scratchnet: sweep interrupted ({name}); {done} of {len(result.rows)} runs done and kept in "
            f"{result.out / 'runs'}; run the same command again to do the rest",
            "stderr",
        )
        return exit_status(received[0]) if received else 130
    if result.failed:
        emit(
            f"scratchnet: {len(result.failed)} of {len(result.rows)} runs failed; "
            "the error column of results.csv says why",
            "stderr",
        )
        return 1
    return 0


def sweeps_table(result):
    return sys.modules["scratchnet.sweep"].format_table(result.rows, result.swept)


class _SignalsAsInterrupt:
    """SIGTERM and SIGHUP stop a sweep as Ctrl-C does (KeyboardInterrupt); the list holds the signal."""

    def __enter__(self):
        self.received = []
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self.received

    def _handle(self, signum, frame):
        if not self.received:
            self.received.append(signum)
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        return False
