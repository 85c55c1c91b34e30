"""Command line: ``scratchnet COMMAND ...``.

One module per subcommand (``train``); each provides ``add_parser(subparsers)``
and ``run(args) -> exit status``. This module holds what they share: the
parser, :class:`CLIError`, argument types and the entry point.

Exit status: 0 done, 1 the command failed, 2 bad options or data, 130
interrupted by Ctrl-C (SIGINT), 143 by SIGTERM, 129 by SIGHUP.
"""

import argparse
import contextlib
import importlib
import math
import os
import sys

# Subcommand name -> module of this package (imported when the parser is built).
COMMANDS = ("train", "figures", "sweep")


class CLIError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


# -- argument types --------------------------------------------------------
def int_at_least(lo):
    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {v}")
        return v

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def positive_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {s}")
    return v


def build_parser():
    """The ``scratchnet`` argument parser, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="scratchnet", description="Chapter 4 of 'Deep Learning from Scratch' as software."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        _command(name).add_parser(sub)
    return parser


def _command(name):
    return importlib.import_module(f".{name}", __name__)


def emit(text, stream="stdout"):
    """Print a line to sys.stdout or sys.stderr; never fails.

    When the stream is gone (a closed terminal after SIGHUP: EIO; a closed
    pipe: EPIPE), later lines go to os.devnull: losing output must not lose
    the run being saved.
    """
    try:
        print(text, file=getattr(sys, stream), flush=True)
    except OSError:
        setattr(sys, stream, open(os.devnull, "w"))  # noqa: SIM115 (for the rest of the process)


def single_threaded_blas():
    """One BLAS thread for the whole run.

    The products left to BLAS are small, and OpenBLAS's worker threads
    busy-wait after each one, taking the cores the parallel Numba and C
    kernels need next (see ``_blas.py``). A user's own BLAS thread setting
    wins.
    """
    from .._blas import single_threaded_blas as one_blas_thread

    if any(v in os.environ for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return contextlib.nullcontext()
    return one_blas_thread()


def main(argv=None):
    """Entry point of the ``scratchnet`` command; returns the exit status."""
    from ._signals import Aborted

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with single_threaded_blas():
            return _command(args.command).run(args)
    except CLIError as exc:
        emit(f"scratchnet: error: {exc}", "stderr")
        return exc.status
    except Aborted as exc:  # a signal before training started, or a second one before saving
        emit(f"scratchnet: aborted ({exc}); nothing of this session was saved", "stderr")
        return exc.status
    except KeyboardInterrupt:  # Ctrl-C before the command installed its handlers
        emit("scratchnet: aborted", "stderr")
        return 130


if __name__ == "__main__":
    sys.exit(main())
