"""Stop signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP end a run the same way.

A cluster scheduler pre-empting a job sends SIGTERM, a closed terminal
SIGHUP, a user Ctrl-C; each should leave a saved, resumable run, and the
exit status says which one came: 128 + the signal's number (130, 143, 129).

A run goes through three phases, and a signal means something different in each:

- ``setup`` (options, data, network): nothing to save yet, so a signal
  aborts at once (:class:`Aborted`).
- ``training``: the first signal asks the loop to stop after the current
  iteration; a second one aborts at once (an escape hatch when an iteration
  is slow), leaving whatever was saved before this session.
- ``saving`` (final accuracy, writing the run directory): signals are only
  recorded. The save always completes; the exit status is that of the first
  signal.
"""

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_status(signum):
    """The shell's convention for a process ended by signal ``signum``: 128 + its number."""
    return 128 + int(signum)


def signal_name(signum):
    return signal.Signals(signum).name


class Aborted(BaseException):
    """A stop signal ended the run before anything of it could be saved.

    A BaseException, like KeyboardInterrupt, so that ``except Exception``
    in the code it interrupts does not swallow it.
    """

    def __init__(self, signum):
        super().__init__(signal_name(signum))
        self.signum = signum
        self.status = exit_status(signum)


class StopSignals:
    """Context manager: SIGINT, SIGTERM and SIGHUP handled by phase (see the module docstring).

    Only the main thread can install signal handlers; elsewhere (a Dask
    worker's task thread) it installs nothing and behaves like :class:`scratchnet.runs.NeverStop`.
    """

    def __init__(self):
        self.first = None  # number of the first signal received
        self.phase = "setup"
        self._previous = {}

    @property
    def requested(self):
        return self.first is not None

    def training(self):
        self.phase = "training"

    def saving(self):
        self.phase = "saving"

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        return False

    def _handle(self, signum, frame):
        first_of_the_run = self.first is None
        if first_of_the_run:
            self.first = signum
        if self.phase == "saving" or (self.phase == "training" and first_of_the_run):
            return
        raise Aborted(self.first)
