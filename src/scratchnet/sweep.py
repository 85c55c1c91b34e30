"""Sweeps: many ``scratchnet train`` runs over a grid of settings, on Dask.

>>> import scratchnet as sn
>>> sn.sweep("sweep", {"lr": [0.01, 0.1, 1], "hidden": [10, 50], "seed": range(3),
...                    "gradient": "backprop", "iters": 2000})  # doctest: +SKIP

Every run is an ordinary run directory ``DIR/runs/<id>/``, written by the
same :func:`scratchnet.runs.run_training` as ``scratchnet train --out``
(the same files, the same bits of ``params.npz``). ``<id>`` is a readable
prefix of the swept settings and a hash of all the settings, so a sweep
started again skips the runs that exist and does the rest.

Runs execute on ``dask.distributed``: by default a ``LocalCluster`` on this
machine (worker processes, started by spawn, one kernel thread per run);
or an existing cluster (``scheduler="tcp://host:port"`` or
``scheduler_file=``). A worker runs in a temporary directory of its own and
sends the run's files back; the client writes them into ``DIR/runs/<id>``
as a whole (a temporary directory renamed into place), so workers need no
shared filesystem, only scratchnet and the data.

The settings are those of ``scratchnet train`` (:mod:`scratchnet.runs.settings`:
``DEFAULTS``, parsed by ``OPTION_TYPES`` / ``OPTION_CHOICES``): a setting
added there is sweepable here.
"""

import bisect
import contextlib
import csv
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

from ._atomic import atomic_open, atomic_write_text
from .runs import RunError, directory, lock, run_training
from .runs import settings as run_settings
from .runs.settings import CHECKPOINT_EVERY

INSTALL_HINT = 'scratchnet sweep needs Dask: pip install "scratchnet[sweep]"'
RESULT_FIELDS = ("status", "train_acc", "test_acc", "best_test_acc", "wall_time_s", "error")


class SweepError(ValueError):
    """A sweep specification or directory that cannot be used; the message names the setting."""


# -- the grid ----------------------------------------------------------------
# A grid is never listed: a range of integers stays a range, a point of the
# product is computed from its number, and --random draws point numbers. The
# work before the runs start grows with the number of settings and of runs,
# not with the size of the grid.
MAX_RUNS = 100_000  # the most runs a sweep does: a full grid, or --random N


def parse_values(key, text):
    """Values of one setting from the command line: ``0.01,0.1,1``, or for integers also ``0-9``.

    Each value is parsed by the ``scratchnet train`` option of ``key``; a
    range by its two ends (the integer options check bounds). Returns
    :class:`Values`: a range is never listed.
    """
    option = run_settings.option_name(key)
    items = []
    for item in str(text).split(","):
        item = item.strip()
        span = re.fullmatch(r"(\d+)-(\d+)", item)
        if span and run_settings.is_integer(key):
            lo, hi = int(span[1]), int(span[2])
            if hi < lo:
                raise SweepError(f"{option} {item}: an empty range (write LOW-HIGH with LOW <= HIGH)")
            items.append(_checked_range(key, range(lo, hi + 1)))
        elif item == "":
            raise SweepError(f"{option} {text!r}: an empty value in the list")
        else:
            items.append(_parse_one(key, item))
    return Values.distinct(items)


def _parse_one(key, value):
    option = run_settings.option_name(key)
    if key in run_settings.OPTION_TYPES:
        try:
            return run_settings.OPTION_TYPES[key](str(value))
        except ValueError as exc:
            raise SweepError(f"{option} {value}: {exc}") from None
    if key in run_settings.OPTION_CHOICES and value not in run_settings.OPTION_CHOICES[key]:
        choices = ", ".join(run_settings.OPTION_CHOICES[key])
        raise SweepError(f"{option} {value}: invalid choice (choose from {choices})")
    return value


def _checked_range(key, values):
    """A range of an integer setting, checked at its ends (its options take an interval)."""
    if values:
        _parse_one(key, values[0])
        _parse_one(key, values[-1])
    return values


class Values(Sequence):
    """The values of one setting, in order, each once: runs of single values and ranges of integers.

    ``size`` is the number of values (``len()`` too, up to ``sys.maxsize``);
    ``values[i]`` finds its part by bisection. Nothing is listed.
    """

    def __init__(self, parts):
        self.parts = parts  # lists, and ranges of step 1: not empty, no value twice
        self._starts = list(itertools.accumulate((_count(p) for p in parts), initial=0))
        self.size = self._starts[-1]

    @classmethod
    def distinct(cls, items):
        """Values of ``items`` (single values and ranges of step 1), a value seen before dropped."""
        parts, covered, seen = [], [], set()
        for item in items:
            if isinstance(item, range) or type(item) is int:
                item = item if isinstance(item, range) else range(item, item + 1)
                pieces = _claim(covered, item.start, item.stop) if item else []
            elif item in seen:
                continue
            else:
                seen.add(item)
                pieces = [[item]]
            for piece in pieces:
                last = parts[-1] if parts else None
                if isinstance(piece, list) and isinstance(last, list):
                    last.extend(piece)
                elif isinstance(piece, range) and isinstance(last, range) and last.stop == piece.start:
                    parts[-1] = range(last.start, piece.stop)
                else:
                    parts.append(piece)
        return cls(parts)

    def items(self):
        """The parts again, a list's values one by one and a range as itself."""
        for part in self.parts:
            yield from [part] if isinstance(part, range) else part

    def spec(self):
        """The values for JSON: a range of several integers as the string ``"LOW-HIGH"``."""
        return [
            (f"{v.start}-{v.stop - 1}" if _count(v) > 1 else v.start) if isinstance(v, range) else v
            for v in self.items()
        ]

    def text(self):
        """The values as the command line writes them: ``0-9,20``."""
        return ",".join(map(str, self.spec()))

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        if not -self.size <= i < self.size:
            raise IndexError(f"value {i} of {self.size}")
        i %= self.size
        j = bisect.bisect_right(self._starts, i) - 1
        return self.parts[j][i - self._starts[j]]

    def __iter__(self):
        return itertools.chain.from_iterable(self.parts)

    def __eq__(self, other):
        if isinstance(other, Values):
            return self.parts == other.parts  # as distinct() builds them: adjacent parts joined
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return self.size == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None

    def __repr__(self):
        return f"Values({self.text()})"


def _count(part):
    return part.stop - part.start if isinstance(part, range) else len(part)


def _claim(covered, lo, hi):
    """The pieces of ``range(lo, hi)`` outside ``covered``, which then covers them too.

    ``covered`` holds the start and stop of disjoint intervals, sorted: an
    integer ``x`` is covered when ``bisect_right(covered, x)`` is odd.
    """
    i, j = bisect.bisect_right(covered, lo), bisect.bisect_left(covered, hi)
    cuts = [lo, *covered[i:j], hi]  # alternately outside and inside, from lo's side
    pieces = [range(a, b) for a, b in zip(cuts[i % 2 :: 2], cuts[i % 2 + 1 :: 2]) if a < b]
    covered[i:j] = [lo] * (i % 2 == 0) + [hi] * (j % 2 == 0)
    return pieces


def normalize_grid(grid):
    """``{setting: Values}`` from ``{setting: value or iterable}``, every value parsed.

    Keys are the ``scratchnet train`` settings; ``seeds`` is accepted for
    ``seed``. A ``range`` of step 1 of an integer setting stays a range
    (checked at its ends); other iterables are read value by value.
    """
    out = {}
    for key, values in grid.items():
        key = "seed" if key == "seeds" else key
        if key not in run_settings.DEFAULTS:
            raise SweepError(f"unknown setting {key!r}; sweepable: {', '.join(run_settings.DEFAULTS)}")
        if isinstance(values, Values):
            values = values.items()
        elif isinstance(values, range) and values.step == 1 and run_settings.is_integer(key):
            values = [values]
        elif isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            values = [values]
        values = Values.distinct(_normalized(key, v) for v in values)  # duplicates would be the same run
        if not values.size:
            raise SweepError(f"{run_settings.option_name(key)}: no values")
        out[key] = values
    return out


def _normalized(key, value):
    if value is None:
        return None
    if isinstance(value, range) and value.step == 1 and run_settings.is_integer(key):
        return _checked_range(key, value)
    value = _parse_one(key, value)
    return _resolved_data_dir(value) if key == "data_dir" else value


def grid_size(grid):
    """The number of points of a grid (as :func:`normalize_grid` returns it): a Python int, any size."""
    return math.prod(values.size for values in grid.values())


def grid_point(grid, number):
    """The settings of point ``number`` of the grid, counted as itertools.product counts (the last key fastest)."""
    point = {}
    for key in reversed(grid):
        number, i = divmod(number, grid[key].size)
        point[key] = grid[key][i]
    return {key: point[key] for key in grid}


class Points(Sequence):
    """Points of a grid by their numbers (a range, or a sorted list): each computed when asked for."""

    def __init__(self, grid, numbers):
        self.grid, self.numbers = grid, numbers

    def __len__(self):
        return len(self.numbers)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Points(self.grid, self.numbers[i])
        return grid_point(self.grid, self.numbers[i])

    def __iter__(self):
        return (grid_point(self.grid, n) for n in self.numbers)

    def __eq__(self, other):
        if not isinstance(other, (Points, list, tuple)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None

    def __repr__(self):
        return f"Points({len(self)} of {grid_size(self.grid):,})"


def expand(grid, random=None, random_seed=0):
    """Settings of every run: the full grid (in order), or ``random`` points of it drawn without replacement.

    ``grid`` is as :func:`normalize_grid` returns it. Returns :class:`Points`
    (a sequence of settings dicts, in grid order) of at most :data:`MAX_RUNS`
    points; a larger full grid, or ``random > MAX_RUNS``, is a SweepError.
    The points of ``random`` are :func:`sample_numbers` (``random_seed``).
    """
    size = grid_size(grid)
    if random is not None:
        if random < 1:
            raise SweepError(f"--random {random}: must be >= 1")
        if random > MAX_RUNS:
            raise SweepError(f"--random {random}: more runs than a sweep does ({MAX_RUNS:,})")
        if random < size:
            return Points(grid, sample_numbers(size, random, random_seed))
    if size > MAX_RUNS:
        options = " ".join(f"{run_settings.option_name(k)} {_short(v.text())}" for k, v in grid.items() if v.size > 1)
        raise SweepError(
            f"{options}: the grid has {size:,} runs, more than a sweep runs in full ({MAX_RUNS:,}); "
            "sample it with --random N"
        )
    return Points(grid, range(size))


def _short(text, width=40):
    return text if len(text) <= width else text[: width - 3] + "..."


def sample_numbers(size, n, seed):
    """``n`` distinct point numbers of ``range(size)``, sorted; ``n < size``. Reproducible from ``seed``.

    Up to 2**63 - 1 points: ``numpy.random.default_rng(seed).choice(size,
    n, replace=False)``, as scratchnet always drew them (numpy draws a few
    points of a large grid by Floyd's algorithm, in O(n) memory). Beyond:
    Floyd's algorithm over Python integers, each drawn from whole 64-bit
    words of the same generator (:func:`_below`), in O(n) memory.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    if size <= np.iinfo(np.int64).max:
        return sorted(int(k) for k in rng.choice(size, size=n, replace=False))
    chosen = set()
    for j in range(size - n, size):  # Floyd: n draws, each a new number
        k = _below(rng, j + 1)
        chosen.add(j if k in chosen else k)
    return sorted(chosen)


def _below(rng, n):
    """A uniform integer of ``range(n)``, any ``n >= 1``: the top bits of whole 64-bit words, again if ``>= n``."""
    bits = (n - 1).bit_length()
    words = -(-bits // 64)
    while True:
        k = 0
        for word in rng.bit_generator.random_raw(words).tolist():
            k = k << 64 | word
        k >>= words * 64 - bits
        if k < n:
            return k


def canonical(settings):
    """Complete settings of a run (defaults filled in, values normalised), as train checks them."""
    try:
        return run_settings.complete_settings(settings)
    except RunError as exc:
        raise SweepError(str(exc)) from None


def _resolved_data_dir(value):
    try:
        return run_settings.resolve_data_dir(value)
    except RunError as exc:
        raise SweepError(str(exc)) from None


def run_id(settings, swept=()):
    """``<readable prefix>-<hash>``: the swept settings' values, then a hash of the settings.

    The hash covers the settings that differ from the defaults, so an option
    added later (with its default) does not change the ids of existing runs.
    """
    full = canonical(settings)
    key = {k: v for k, v in full.items() if v != run_settings.DEFAULTS[k]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    parts = [re.sub(r"[^A-Za-z0-9.+-]+", "", f"{k.replace('_', '')}{full[k]}") for k in swept if k != "data_dir"]
    prefix = "-".join(parts)[:60]
    return f"{prefix}-{digest}" if prefix else digest


# -- one run, on a worker ----------------------------------------------------
def run_on_worker(settings, run_name, threads, final_dir, checkpoint_every=CHECKPOINT_EVERY):
    """Do one run; its files as bytes, and its row.

    Executes inside a Dask task: the kernel threads are set here, in the
    thread that runs them. Every error is returned as the row's ``error``
    (a failed run never stops the sweep). ``final_dir`` (where the client
    will store the run) is what config.json records as ``--out``.

    Where the sweep directory is reachable (always on a LocalCluster), the
    run goes to ``runs/.<id>.partial`` and commits checkpoints there: a run
    whose worker died, or whose sweep was stopped, resumes from its last
    checkpoint. Elsewhere it runs in a private temporary directory.
    """
    row = {"status": "failed", "error": None, "files": None}
    argv = run_settings.equivalent_argv(settings, final_dir)
    partial = Path(final_dir).parent / f".{run_name}.partial"
    with tempfile.TemporaryDirectory(prefix="scratchnet-sweep-") as tmp:
        out = partial if partial.parent.is_dir() else Path(tmp) / run_name
        try:
            resume = _resumable(out)
            result = run_training(
                {} if resume else settings, out, resume_from=resume, overwrite=True, threads=threads, argv=argv,
                checkpoint_every=checkpoint_every,
            )  # fmt: skip
        except RunError as exc:
            row["error"] = str(exc)
            return row
        except Exception as exc:  # noqa: BLE001 (recorded with the run; the sweep goes on)
            row["error"] = f"{type(exc).__name__}: {exc}"
            return row
        row["files"] = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
    row.update(_row_of(result.config, result.best_test_acc), status="completed")
    return row


def _resumable(out):
    """The run a partial directory holds, or None (none, or one that cannot be resumed: it starts again)."""
    if not directory.holds_run(out):
        return None
    try:
        return directory.load_run(out)
    except RunError:
        return None


def _row_of(config, best_epoch_test_acc):
    """The row fields of a completed run; the best test accuracy counts the final one too."""
    final = config.get("final") or {}
    measured = [a for a in (best_epoch_test_acc, final.get("test_acc")) if a is not None]
    return {
        "train_acc": final.get("train_acc"),
        "test_acc": final.get("test_acc"),
        "best_test_acc": max(measured, default=None),
        "wall_time_s": config.get("wall_time_s"),
    }


# -- the sweep directory -----------------------------------------------------
def prepare_sweep_dir(out):
    """DIR/runs, writable; stale temporaries of an interrupted sweep removed (DIR exists, its lock held)."""
    out = Path(out)
    runs = out / "runs"
    try:
        runs.mkdir(parents=True, exist_ok=True)
        with atomic_open(runs / ".probe", "w") as f:
            f.write("scratchnet checks that it can save runs here\n")
        (runs / ".probe").unlink()
    except OSError as exc:
        raise SweepError(
            f"--out {out}: cannot write there ({exc.strerror or exc}); choose a writable directory"
        ) from None
    for stale in runs.glob(".*.tmp"):  # a run being stored when the sweep was stopped
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    return out


def completed_row(run_dir):
    """The row of a run directory already in DIR/runs, or None if it cannot be read."""
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))
        if config.get("status") != "completed":
            return None
        best = max((e["test_acc"] for e in history["epochs"]), default=None)
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return {"status": "completed", "error": None, **_row_of(config, best)}


def store_run(runs, name, files):
    """Write a run's files as ``runs/name`` all at once: a temporary directory, then a rename."""
    final = runs / name
    tmp = runs / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        for filename, blob in files.items():
            with open(tmp / filename, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not "another worker stored it first"
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_results(out, points, rows):
    """DIR/results.csv: one row per run, in grid order."""
    fields = ["id", *run_settings.DEFAULTS, *RESULT_FIELDS]
    with atomic_open(out / "results.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        for point in points:
            row = rows.get(point["id"], {"status": "not run"})
            w.writerow({**point["settings"], "id": point["id"], **{k: _cell(row.get(k)) for k in RESULT_FIELDS}})


def _cell(v):
    return "" if v is None else repr(v) if isinstance(v, float) else v


@dataclasses.dataclass
class SweepResult:
    """What :func:`sweep` did: ``rows`` by run id (settings and outcome), in grid order."""

    out: Path
    swept: list
    rows: list
    interrupted: bool = False
    plotted: bool = False

    @property
    def failed(self):
        return [r for r in self.rows if r["status"] == "failed"]


# -- running it --------------------------------------------------------------
def connect(scheduler=None, scheduler_file=None, workers=None):
    """A Dask client: an existing cluster, or a LocalCluster of processes, one thread each."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise SweepError(INSTALL_HINT) from None
    if scheduler is not None or scheduler_file is not None:
        try:
            return Client(address=scheduler, scheduler_file=scheduler_file, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            where = f"--scheduler {scheduler}" if scheduler else f"--scheduler-file {scheduler_file}"
            raise SweepError(f"{where}: cannot connect to the Dask scheduler ({exc})") from None
    n = workers or os.cpu_count() or 1
    # Processes, not threads (the kernels hold the GIL between calls); Dask
    # starts them with spawn, never fork (in a child forked after Numba's
    # OpenMP threads ran, Numba's kernels cannot run: scratchnet._threads).
    # Started with SIGINT ignored, which they inherit: Ctrl-C in a terminal
    # signals the whole process group, and only this process should act on
    # it (stop the sweep, close the cluster).
    # Their logs are silenced: a run's failure is reported with the run.
    with _sigint_ignored(), dask.config.set(WORKER_CONFIG):
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
        )
    return Client(cluster)


# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also
# turns off glibc's dynamic mmap threshold: every array of more than 128 kB
# is then mmap'ed and unmapped again, and the training loop, which makes
# such arrays every iteration, runs 1.6x slower (measured: 2,000 backprop
# iterations, 1.9 s vs 3.0 s). None unsets it (Dask's documented way).
WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


@contextlib.contextmanager
def _sigint_ignored():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def sweep(
    out, grid, *, random=None, random_seed=0, scheduler=None, scheduler_file=None, client=None, workers=None,
    threads=1, progress=False, on_start=None, on_result=None, checkpoint_every=CHECKPOINT_EVERY,
):  # fmt: skip
    """Run every point of ``grid`` as an ordinary run directory ``out/runs/<id>``.

    Parameters
    ----------
    out : str or Path
        The sweep directory: ``runs/<id>/`` per run, ``results.csv``,
        ``summary.png`` (with matplotlib), ``sweep.json`` (the specification).
    grid : dict
        ``{setting: value or list of values}`` over the settings of a run
        (the keys of :data:`scratchnet.runs.DEFAULTS`: ``gradient``,
        ``numgrad_method``, ``backend``, ``iters``, ``batch_size``, ``lr``,
        ``hidden``, ``seed``, ``data_dir``). A ``range`` of an integer
        setting is never listed, whatever its size. The full product is
        run, up to :data:`MAX_RUNS` (100,000) runs; a larger grid is a
        :class:`SweepError` that says to sample it with ``random``.
    random : int, optional
        Run only this many points of the grid (at most ``MAX_RUNS``), drawn
        without replacement with ``random_seed`` (:func:`sample_numbers`:
        the same seed, the same points) and run in grid order. Drawing them
        takes time and memory in ``random``, not in the size of the grid:
        a grid of 10**21 points is sampled at once.
    scheduler, scheduler_file : str, optional
        An existing Dask cluster. Default: a LocalCluster on this machine,
        ``workers`` processes (default: the number of cores).
    client : dask.distributed.Client, optional
        Use this client (and leave it open).
    threads : int
        Kernel threads of each run (default 1: workers do not fight over cores).
    progress : bool
        A progress bar of finished runs, with an ETA, on stderr.
    on_start, on_result : callable, optional
        ``on_start(n_runs, n_done_already)`` once the plan is known;
        ``on_result(point, row)`` as each run finishes.
    checkpoint_every : float
        Seconds of work between two checkpoints of each run (0: none); a
        run whose worker dies resumes from its last one.

    Returns
    -------
    SweepResult
        Runs that exist already are not run again. A KeyboardInterrupt
        stops the sweep: completed runs are kept, ``interrupted`` is True.
    """
    grid = normalize_grid(grid)
    swept = [k for k, v in grid.items() if v.size > 1]
    points = [{"id": run_id(s, swept), "settings": canonical(s)} for s in expand(grid, random, random_seed)]
    with _locked(out):  # one process at a time in a sweep directory
        out = prepare_sweep_dir(out)
        _write_spec(out, grid, random, random_seed, points)
        rows = {}
        for p in points:
            row = completed_row(out / "runs" / p["id"])
            if row is not None:
                rows[p["id"]] = row
        todo = [p for p in points if p["id"] not in rows]
        if on_start is not None:
            on_start(len(points), len(points) - len(todo))
        interrupted = False
        if todo:
            interrupted = _execute(
                out, todo, rows, (threads, checkpoint_every), progress, on_result, client,
                (scheduler, scheduler_file, workers),
            )  # fmt: skip
        for p in todo:  # stored, but interrupted before its row was recorded
            if p["id"] not in rows and (row := completed_row(out / "runs" / p["id"])) is not None:
                rows[p["id"]] = row
        write_results(out, points, rows)
        plotted = write_summary(out, points, rows, swept)
    table = [{"id": p["id"], **p["settings"], **rows.get(p["id"], {"status": "not run"})} for p in points]
    for r in table:
        r.pop("files", None)
    return SweepResult(out, swept, table, interrupted, plotted)


@contextlib.contextmanager
def _locked(out):
    """Hold the sweep directory's lock (see :mod:`scratchnet.runs.lock`); SweepError if another process has it."""
    if str(out) == "":
        raise SweepError("--out '': an empty path; name a directory, e.g. --out sweep")
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise SweepError(f"--out {out}: cannot write there ({reason}); choose a writable directory") from None
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(lock.locked(out))
        except RunError as exc:
            raise SweepError(str(exc)) from None
        yield


def _write_spec(out, grid, random, random_seed, points):
    grid = {k: v.spec() for k, v in grid.items()}
    spec = {"grid": grid, "random": random, "random_seed": random_seed, "runs": [p["id"] for p in points]}
    atomic_write_text(out / "sweep.json", json.dumps(spec, indent=2) + "\n")


def _execute(out, todo, rows, run_options, progress, on_result, client, where):
    """Submit ``todo`` and store each run as it finishes; True if interrupted."""
    threads, checkpoint_every = run_options
    own = client is None
    bar = None
    futures = {}
    try:
        if own:
            client = connect(*where)
        bar = _bar(len(todo), progress)
        for p in todo:
            key = f"scratchnet-run-{p['id']}-{uuid.uuid4().hex[:6]}"
            final_dir = str((out / "runs" / p["id"]).resolve())
            args = (p["settings"], p["id"], threads, final_dir, checkpoint_every)
            futures[client.submit(run_on_worker, *args, key=key, pure=False)] = p
        from dask.distributed import as_completed

        for future in as_completed(futures):
            p = futures[future]
            rows[p["id"]] = row = _collect(out, p, future)
            if on_result is not None:
                on_result(p, row)
            if bar is not None:
                bar.update(1)
        return False
    except KeyboardInterrupt:
        return True
    finally:
        if bar is not None:
            bar.close()
        if client is not None:
            with contextlib.suppress(Exception):
                client.cancel(list(futures))
            if own:
                _close(client)


def _collect(out, point, future):
    """The row of a finished future; its files stored in out/runs/<id>."""
    try:
        row = future.result()
    except Exception as exc:  # noqa: BLE001 (e.g. KilledWorker: the run's workers kept dying)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    files = row.pop("files")
    if files is not None:
        store_run(out / "runs", point["id"], files)
        shutil.rmtree(out / "runs" / f".{point['id']}.partial", ignore_errors=True)
    return row


def _close(client):
    cluster = client.cluster
    with contextlib.suppress(Exception):
        client.close(timeout=10)
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close(timeout=10)


def _bar(total, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="sweep", unit="run", file=sys.stderr, dynamic_ncols=True)


# -- the figure --------------------------------------------------------------
def write_summary(out, points, rows, swept):
    """DIR/summary.png: final test accuracy against the first swept setting, one line per
    combination of the other swept settings, mean and spread (min to max) over seeds.
    False if matplotlib is missing or nothing completed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    done = [
        (p["settings"], rows[p["id"]]["test_acc"]) for p in points if rows.get(p["id"], {}).get("status") == "completed"
    ]
    if not done:
        return False
    xs = [k for k in swept if k != "seed"]
    x_key = xs[0] if xs else "seed"
    others = [k for k in xs if k != x_key]
    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, curve in _curves(done, x_key, others).items():
        x = sorted(curve, key=_sort_key)
        accs = [curve[v] for v in x]
        mean = [sum(a) / len(a) for a in accs]
        line = ax.plot([str(v) for v in x] if _categorical(x) else x, mean, marker="o", label=label or None)[0]
        if any(len(a) > 1 for a in accs):
            pos = [str(v) for v in x] if _categorical(x) else x
            ax.fill_between(pos, [min(a) for a in accs], [max(a) for a in accs], alpha=0.2, color=line.get_color())
    if not _categorical(sorted({s[x_key] for s, _ in done}, key=_sort_key)) and _log_scale(done, x_key):
        ax.set_xscale("log")
    ax.set_xlabel(x_key)
    ax.set_ylabel("final test accuracy")
    n_seeds = len({s["seed"] for s, _ in done})
    ax.set_title(
        f"mean over {n_seeds} seed{'s' * (n_seeds > 1)}; band: min to max" if "seed" in swept else "final test accuracy"
    )
    if others:
        ax.legend(loc="best", fontsize="small")
    with atomic_open(out / "summary.png", "wb") as f:
        fig.savefig(f, format="png")
    return True


def _curves(done, x_key, others):
    curves = {}
    for settings, acc in done:
        label = ", ".join(f"{k}={settings[k]}" for k in others)
        curves.setdefault(label, {}).setdefault(settings[x_key], []).append(acc)
    return curves


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


def _categorical(values):
    return not all(isinstance(v, (int, float)) for v in values)


def _log_scale(done, x_key):
    values = [s[x_key] for s, _ in done]
    return min(values) > 0 and max(values) / min(values) >= 20


# -- the table ---------------------------------------------------------------
def format_table(rows, swept):
    """Rows sorted by final test accuracy (best first; failed runs last) as aligned text."""
    keys = [k for k in swept] or ["seed"]
    ranked = sorted(rows, key=lambda r: -(r.get("test_acc") or -1))
    head = ["id", *keys, "status", "train_acc", "test_acc", "best_test", "wall_s"]
    body = [
        [r["id"], *(str(r.get(k)) for k in keys), r["status"], _fmt(r.get("train_acc")), _fmt(r.get("test_acc")),
         _fmt(r.get("best_test_acc")), _fmt(r.get("wall_time_s"), 1)]
        for r in ranked
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *body]]
    return "\n".join(lines)


def _fmt(v, digits=4):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"
