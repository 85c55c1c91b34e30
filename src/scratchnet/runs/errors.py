"""The one error type of :mod:`scratchnet.runs`."""


class RunError(Exception):
    """A run that cannot start, continue or be saved; the message is one line naming the setting at fault.

    ``status`` is the exit status the command line gives it: 2 for bad
    settings, data or output directory (fixable before running), 1 for a
    run that failed (diverged, out of memory, could not be saved).
    """

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status
