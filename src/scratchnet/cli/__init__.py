"""Command line: ``scratchnet COMMAND ...``.

One module per subcommand (``train``); each provides ``add_parser(subparsers)``
and ``run(args) -> exit status``. This module holds what they share: the
parser, :class:`CLIError`, argument types and the entry point. What a
run does is :mod:`scratchnet.runs`; the commands parse and print.

Exit status: 0 done, 1 the command failed, 2 bad options, data or environment variables, 130
interrupted by Ctrl-C (SIGINT), 143 by SIGTERM, 129 by SIGHUP.
"""

import argparse
import importlib
import os
import signal
import sys

from .._blas import single_threaded_blas_unless_configured
from .._config import EnvironmentVariableError, check_numba_environment
from ..datasets import cache_dir
from ..runs import RunError, settings
from ._signals import STOP_SIGNALS

# Subcommand name -> module of this package (imported when the parser is built).
COMMANDS = ("train", "figures", "sweep")


class CLIError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


# -- argument types --------------------------------------------------------
def argument_type(parse):
    """argparse type of a settings parser: its ValueError message is what argparse prints."""

    def checked(s):
        try:
            return parse(s)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    checked.__name__ = parse.__name__  # argparse names the type in some messages
    return checked


def int_at_least(lo):
    return argument_type(settings.int_at_least(lo))


positive_float = argument_type(settings.positive_float)


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


def check_environment():
    """Refuse, before any work, an environment variable that every command would trip on later
    (EnvironmentVariableError): the dataset cache's folder, Numba's threads."""
    cache_dir()
    check_numba_environment()


def main(argv=None):
    """Entry point of the ``scratchnet`` command; returns the exit status."""
    from ._signals import Aborted

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_environment()
        with single_threaded_blas_unless_configured():
            return _command(args.command).run(args)
    except (CLIError, RunError) as exc:
        emit(f"scratchnet: error: {exc}", "stderr")
        return exc.status
    except EnvironmentVariableError as exc:  # also one found late, e.g. a threading layer Numba cannot load
        emit(f"scratchnet: error: {exc}", "stderr")
        return 2
    except Aborted as exc:  # a signal before training started, or a second one before saving
        emit(f"scratchnet: aborted ({exc}); nothing of this session was saved", "stderr")
        return exc.status
    except KeyboardInterrupt:  # Ctrl-C before the command installed its handlers
        emit("scratchnet: aborted", "stderr")
        return 130


def entry_point():
    """The ``scratchnet`` program: :func:`main`, then exit with its status.

    Once the command is over its exit status is decided; a stop signal
    arriving after that (a second Ctrl-C as the process exits) is ignored
    rather than killing the process with another status.
    """
    status = main()
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(status)


if __name__ == "__main__":
    entry_point()
