"""One process at a time in a run or sweep directory.

The lock is ``DIR/.scratchnet.lock``, held with ``flock`` for as long as the
run or sweep lasts, and holding the holder's pid and command line. The
kernel releases an ``flock`` when its process ends, however it ends, so a
lock left by a killed process never blocks anyone: the next process takes
it. The file is removed on a normal release.
"""

import contextlib
import fcntl
import os
import sys
from pathlib import Path

from .errors import RunError

LOCK_FILE = ".scratchnet.lock"


@contextlib.contextmanager
def locked(directory, option="--out"):
    """Context manager: hold ``directory``'s lock, or raise RunError naming the process that holds it."""
    path = Path(directory) / LOCK_FILE
    fd = _acquire(path, directory, option)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {' '.join(['scratchnet', *sys.argv[1:]])[:500]}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before the unlock: a process waiting on this file then sees it is gone
        os.close(fd)


def _acquire(path, directory, option):
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunError(
                f"{option} {directory}: in use by another scratchnet ({holder}); "
                "wait for it to end, or choose another directory"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise RunError(f"{option} {directory}: cannot lock it ({exc.strerror or exc})") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder released and removed it between our open and lock: take the new one


def _holder(fd):
    with contextlib.suppress(OSError, ValueError):
        pid, _, command = os.pread(fd, 1000, 0).decode().strip().partition(" ")
        if pid:
            return f"pid {int(pid)}: {command}"
    return "a process that is starting"
