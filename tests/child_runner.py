"""The tests' one child-process runner: a child interpreter serving JSON requests.

Code that may crash the interpreter (a segfault in a compiled kernel), hang
(a FIFO opened for reading) or exhaust memory runs in a :class:`Child`, one
request at a time, each with a timeout. A crash or a hang costs that
request (:class:`ChildFailed`, saying what happened, with the signal and
the child's last stderr) and that child; the next request starts another.

The child imports a module of tests/ and serves its ``HANDLERS``, a dict of
name -> function(payload) -> reply. Requests and replies are lines of JSON
(json_codec.py: floats bit for bit, arrays with their dtype and order,
registered records); nothing is pickled. The child's stdout goes to its
stderr, which is kept in a file for the report; faulthandler writes a
crashing thread's traceback there.
"""

import faulthandler
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import json_codec

_BOOT = """
import sys
tests, module, scratch, memory = sys.argv[1:]
if memory:
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (int(memory), int(memory)))
import tempfile
tempfile.tempdir = scratch  # the parent removes it, also after killing the child
sys.path.insert(0, tests)
import importlib, child_runner
child_runner.serve(importlib.import_module(module).HANDLERS)
"""


class ChildFailed(Exception):
    """The child crashed or hung: ``how`` is "died" or "hang"; str() is the whole report."""

    def __init__(self, how, message, stderr):
        super().__init__(f"{message} Child's stderr:\n{stderr}")
        self.how, self.stderr = how, stderr


class ChildError(AssertionError):
    """A handler raised in the child (a bug of the test's own); the child's traceback."""


class Child:
    """A child interpreter serving ``module``'s HANDLERS; started on the first call.

    ``memory``: an address-space limit in bytes (MemoryError beyond it);
    ``python_options``: e.g. ("-W", "error"); ``start_timeout``: seconds for
    the child's imports; ``stderr_tail``: characters of stderr in a report.
    """

    def __init__(self, module, *, memory=None, python_options=(), start_timeout=120.0, stderr_tail=6000):
        self.module, self.memory, self.python_options = module, memory, tuple(python_options)
        self.start_timeout, self.stderr_tail = start_timeout, stderr_tail
        self.proc, self.log, self.scratch = None, None, None

    def call(self, handler, payload, timeout, what=None):
        """``HANDLERS[handler](payload)`` in the child, within ``timeout`` seconds.

        Raises ChildFailed (naming ``what``, by default "the <handler>
        request") if the child dies or hangs, ChildError if the handler raised.
        """
        if self.proc is None:
            self._start()
        log_start = self.log.seek(0, os.SEEK_END)
        try:
            self.proc.stdin.write((json_codec.dumps({"handler": handler, "payload": payload}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child is dead: _read reports it
        reply = self._read(timeout, what or f"the {handler} request", log_start)
        if "harness error" in reply:
            raise ChildError(f"{handler} raised in the child:\n{reply['harness error']}")
        return reply["ok"]

    def _start(self):
        self.log = tempfile.TemporaryFile()
        self.scratch = tempfile.mkdtemp(prefix="child-runner-")
        tests = str(Path(__file__).parent)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *self.python_options,
                "-c",
                _BOOT,
                tests,
                self.module,
                self.scratch,
                str(self.memory or ""),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self._read(self.start_timeout, "the child's start", 0)

    def _read(self, timeout, what, log_start):
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], left)[0] if left > 0 else []
            chunk = os.read(fd, 1 << 20) if ready else None
            if not chunk:
                self._fail(what, "hang" if chunk is None else "died", timeout, log_start)
            buf += chunk
        return json_codec.loads(buf)

    def _fail(self, what, how, timeout, log_start):
        if how == "hang":
            self.proc.kill()
        code = self.proc.wait()
        self.log.seek(log_start)
        stderr = self.log.read().decode(errors="replace")[-self.stderr_tail :]
        self.close()
        if how == "hang":
            message = f"HANG: {what} was still running after {timeout} s."
        else:
            status = signal.Signals(-code).name if code < 0 else f"exit status {code}"
            message = f"CRASH: the child died ({status}) running {what}."
        raise ChildFailed(how, message, stderr)

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.proc.stdout.close()
            self.log.close()
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.proc, self.log, self.scratch = None, None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve(handlers):
    """The child's loop: one JSON request per line on stdin, one JSON reply per line on the saved stdout."""
    faulthandler.enable()
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else written to stdout (C code too) goes to the stderr log
    sys.stdout = sys.stderr
    _send(replies, {"ready": True})
    for line in sys.stdin:
        try:
            request = json_codec.loads(line)
            handler, payload = request["handler"], request["payload"]
            print(f"[child] {handler} {payload!r}"[:2000], file=sys.stderr, flush=True)
            reply = {"ok": handlers[handler](payload)}
            _send(replies, reply)
        except BaseException:
            _send(replies, {"harness error": traceback.format_exc()})


def _send(stream, reply):
    stream.write(json_codec.dumps(reply) + "\n")
    stream.flush()
