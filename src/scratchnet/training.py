"""Mini-batch SGD: the chapter's training loop (``train_neuralnet.py``).

One iteration, exactly as the book does it::

    batch_mask = rng.choice(train_size, batch_size)       # with replacement
    grads = network.numerical_gradient(x_batch, t_batch)  # or .gradient
    params[k] -= learning_rate * grads[k]
    loss = network.loss(x_batch, t_batch)                 # after the update

and, once per epoch, the accuracy on the whole training and test sets.
Randomness comes only from a seeded :class:`numpy.random.Generator`, whose
state is kept in the returned :class:`History`, so a run can be stopped and
resumed with bitwise identical results.

The data are checked once and listed once as their non-zeros
(:class:`~scratchnet.backends.structs.SparseRows`); each iteration takes
its mini-batch from that list (``batch_take``, the batch's non-zeros by
rows and by columns, shared by every kernel of the iteration) and calls
the network's unchecked ``*_batch`` methods.
"""

import copy
import dataclasses
import math
import numbers
import time

import numpy as np

from . import backends
from ._config import DEFAULT_H
from ._validation import (
    FAULT_PARAMS,
    FAULT_WEIGHTS,
    FAULT_X,
    as_array,
    as_real,
    check_step,
    kernel_array,
    labels_from_targets,
    refuse_complex,
    short_repr,
)
from .network import NUMGRAD_METHODS, PARAM_NAMES

GRADIENTS = ("numerical", "backprop")


@dataclasses.dataclass
class History:
    """What :func:`train` recorded, and where to resume it.

    Attributes
    ----------
    iterations : list of int
        Index of each completed iteration (0, 1, 2, ...).
    train_loss : list of float
        For each iteration, the loss on its mini-batch, measured after that
        iteration's update (as the chapter does).
    epochs : list of (int, float, float)
        ``(iteration, train_acc, test_acc)``, once per epoch, measured on the
        full sets after that iteration's update.
    iterations_done : int
        Number of completed iterations; a resumed run starts there.
    rng_state : dict or None
        ``bit_generator.state`` of the mini-batch generator after
        ``iterations_done`` iterations (a JSON-serialisable dict).
    timings : dict
        Seconds spent by the last :func:`train` call: ``"total"``,
        ``"compiled"`` (the engine's calls; 0 on the per-iteration path),
        ``"evaluation"`` (the epochs' accuracies) and ``"python"`` (the
        rest). Not saved by :meth:`to_dict`, not compared.
    """

    iterations: list = dataclasses.field(default_factory=list)
    train_loss: list = dataclasses.field(default_factory=list)
    epochs: list = dataclasses.field(default_factory=list)
    iterations_done: int = 0
    rng_state: dict = None
    timings: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def train_acc(self):
        """Training-set accuracy of each epoch."""
        return [e[1] for e in self.epochs]

    @property
    def test_acc(self):
        """Test-set accuracy of each epoch."""
        return [e[2] for e in self.epochs]

    def to_dict(self):
        """A JSON-serialisable dict; :meth:`from_dict` restores it exactly
        (JSON keeps floats' shortest round-trip repr)."""
        return {
            "iterations": list(self.iterations),
            "train_loss": list(self.train_loss),
            "epochs": [{"iteration": i, "train_acc": a, "test_acc": b} for i, a, b in self.epochs],
            "iterations_done": self.iterations_done,
            "rng_state": self.rng_state,
        }

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`; raises ValueError on inconsistent data."""
        try:
            h = cls(
                iterations=[int(i) for i in d["iterations"]],
                train_loss=[float(v) for v in d["train_loss"]],
                epochs=[(int(e["iteration"]), float(e["train_acc"]), float(e["test_acc"])) for e in d["epochs"]],
                iterations_done=int(d["iterations_done"]),
                rng_state=d["rng_state"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"history: malformed history data ({type(exc).__name__}: {exc})") from None
        if h.iterations != list(range(h.iterations_done)) or len(h.train_loss) != h.iterations_done:
            raise ValueError(
                f"history: expected one loss per iteration 0..{h.iterations_done - 1}, got "
                f"{len(h.iterations)} iterations and {len(h.train_loss)} losses"
            )
        return h


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_settings(iters_num, batch_size, learning_rate, gradient, seed, train_size, numgrad_method):
    if not _is_int(iters_num) or iters_num < 0:
        raise ValueError(f"iters_num: expected a non-negative integer, got {iters_num!r}")
    if not _is_int(batch_size) or not 1 <= batch_size <= train_size:
        raise ValueError(
            f"batch_size: expected an integer between 1 and the training set size {train_size}, got {batch_size!r}"
        )
    rate = as_real(learning_rate)
    if rate is None or not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"learning_rate: expected a finite positive number, got {short_repr(learning_rate)}")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient: expected one of {list(GRADIENTS)}, got {gradient!r}")
    if numgrad_method not in NUMGRAD_METHODS:
        raise ValueError(f"numgrad_method: expected one of {list(NUMGRAD_METHODS)}, got {numgrad_method!r}")
    if not (_is_int(seed) and seed >= 0) and not isinstance(seed, np.random.SeedSequence):
        raise ValueError(f"seed: expected a non-negative integer or a numpy.random.SeedSequence, got {seed!r}")


def check_data(network, x, t, xname, tname):
    """``x`` (N, D) as given and ``t`` as intp labels (N,), checked against the network's sizes."""
    d, _, k = network.sizes
    x = refuse_complex(as_array(x, xname), xname)
    if x.ndim != 2 or x.shape[1] != d or x.shape[0] == 0:
        raise ValueError(f"{xname}: expected a non-empty array of shape (N, {d}), got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{xname}: expected a real numeric array, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"{xname}: contains NaN or inf")
    return x, labels_from_targets(t, x.shape[0], k, tname)


@dataclasses.dataclass(frozen=True)
class DataSet:
    """A checked data set in the kernels' form: its rows' non-zeros and intp labels."""

    rows: object  # backends.structs.SparseRows
    labels: np.ndarray

    @classmethod
    def from_arrays(cls, network, x, t, kernels, xname="x", tname="t"):
        x, labels = check_data(network, x, t, xname, tname)
        x = x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)
        return cls(kernels.sparse_rows(kernel_array(x)), labels)

    def __len__(self):
        return len(self.labels)


def accuracy(network, data, *, backend=None):
    """Fraction of ``data`` (a :class:`DataSet`) that ``network`` classifies right."""
    return network.count_correct(data.rows, data.labels, backend=backend) / len(data)


def is_epoch_iteration(i, batch_size, train_size):
    """True when iteration ``i`` (0-based) is where the chapter measures accuracy.

    The chapter tests ``i % iter_per_epoch == 0`` with ``iter_per_epoch =
    train_size / batch_size`` (600 for MNIST: i = 0, 600, 1200, ...). That
    float test misses most epochs when the sizes do not divide; this is the
    same rule in integers: the first iteration whose samples reach a new
    multiple of ``train_size``, i.e. ``(i * batch_size) % train_size <
    batch_size``. It equals the chapter's test whenever batch_size divides
    train_size.
    """
    return (i * batch_size) % train_size < batch_size


def _start(history, seed, iters_num):
    """(History to extend, its generator): fresh from ``seed``, or a copy of ``history`` resumed."""
    if history is None:
        return History(), np.random.default_rng(seed)
    if not isinstance(history, History):
        raise TypeError(f"history: expected a History, got {type(history).__name__}")
    if history.iterations_done > iters_num:
        raise ValueError(
            f"iters_num: {iters_num} is fewer than the {history.iterations_done} iterations already in history"
        )
    history = copy.deepcopy(history)
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = history.rng_state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"history: rng_state is not a PCG64 generator state ({exc})") from None
    return history, rng


def _step(network, grads, learning_rate, i, loss_of):
    """params[k] -= learning_rate * grads[k], all or none; returns loss_of() of the updated net.

    The update is applied only if it is finite and the loss of the updated
    net is finite: otherwise FloatingPointError, params as they were.
    """
    params = network.params
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below, and explained
        updated = {key: params[key] - learning_rate * grads[key] for key in PARAM_NAMES}
    bad = [key for key in PARAM_NAMES if not np.isfinite(updated[key]).all()]
    if bad:
        raise FloatingPointError(_why_not_finite(params, grads, bad, learning_rate, i))
    network.params = updated  # the loss of the update, before it is written into the caller's arrays
    try:
        loss = loss_of()
    finally:
        network.params = params
    if not np.isfinite(loss):
        raise FloatingPointError(
            f"learning_rate: training diverged at iteration {i} (loss {loss}); the update was not applied; "
            "try a smaller learning rate"
        )
    for key in PARAM_NAMES:
        params[key][...] = updated[key]
    return loss


def _why_not_finite(params, grads, bad, learning_rate, i):
    """What made the update of ``bad`` non-finite: the parameters, the gradient, or the step."""
    kept = "the parameters are left as they were at the end of the previous iteration"
    for key in PARAM_NAMES:
        if not np.isfinite(params[key]).all():
            return (
                f"params['{key}']: contains NaN or inf at iteration {i}, before its update (changed outside "
                f"train, e.g. by a callback?); the update was not applied"
            )
    for key in bad:
        if not np.isfinite(grads[key]).all():
            return (
                f"gradient: the gradient of {key} is not finite at iteration {i}: the loss overflows for these "
                f"parameters and data (inputs or weights of extreme size?); {kept}"
            )
    return (
        f"learning_rate: the update of {', '.join(bad)} is not finite at iteration {i} (gradient times "
        f"learning rate {learning_rate!r} overflowed); {kept}; try a smaller learning rate"
    )


def train(
    network,
    x_train,
    t_train,
    x_test,
    t_test,
    *,
    iters_num=10000,
    batch_size=100,
    learning_rate=0.1,
    gradient="numerical",
    numgrad_method="series",
    seed=0,
    backend=None,
    h=DEFAULT_H,
    history=None,
    on_iteration=None,
    on_epoch=None,
    should_stop=None,
    checkpoint=None,
    stretch=None,
):
    """Train ``network`` in place by mini-batch SGD, the chapter's way.

    Each iteration draws ``batch_size`` training samples with replacement
    (``rng.choice(train_size, batch_size)``), computes the gradient on them,
    updates ``params[k] -= learning_rate * grads[k]`` and records the loss of
    that batch *after* the update (the chapter calls ``network.loss`` after
    updating, so the curve is a step ahead of the gradient it used). Once per
    epoch (iterations 0, 600, 1200, ... for 60,000 samples in batches of 100,
    see :func:`is_epoch_iteration`) it records the accuracy on the full
    training and test sets.

    Parameters
    ----------
    network : TwoLayerNet
        Trained in place: its ``params`` arrays are updated.
    x_train : array_like, shape (N, D)
    t_train : array_like, shape (N,) labels or (N, K) one-hot
    x_test : array_like, shape (M, D)
    t_test : array_like, shape (M,) labels or (M, K) one-hot
    iters_num : int, optional
        Total number of iterations (including those already in ``history``).
    batch_size : int, optional
        1 <= batch_size <= N.
    learning_rate : float, optional
    gradient : {"numerical", "backprop"}, optional
        ``network.numerical_gradient`` (the chapter) or ``network.gradient``.
    numgrad_method : {"series", "perturbed"}, optional
        The method of the numerical gradient (see
        :meth:`TwoLayerNet.numerical_gradient`); both give the same
        central differences to a few ulps, ``"series"`` is the faster.
    seed : int or numpy.random.SeedSequence, optional
        Seed of the mini-batch generator ``np.random.default_rng(seed)``.
        Ignored when resuming (the generator state comes from ``history``).
    backend : {"numpy", "numba", "c"}, optional
        Backend of every kernel of the run (gradients, loss, accuracy); None
        uses the global backend.
    h : float, optional
        Step of the numerical gradient.
    history : History, optional
        Resume a run: continue from ``history.iterations_done`` with the
        generator state ``history.rng_state``. ``network`` must hold the
        parameters reached at that point. Given the same data and settings,
        the result is bitwise identical to an uninterrupted run. ``history``
        itself is not modified; the returned History extends a copy.
    on_iteration : callable, optional
        ``on_iteration(i, loss)`` for each iteration, in order.
    on_epoch : callable, optional
        ``on_epoch(i, train_acc, test_acc)`` after each accuracy measurement.
    should_stop : callable, optional
        ``should_stop()`` is called after each stretch (below); when it
        returns true, training stops there (e.g. on Ctrl-C) and the returned
        history can resume it.
    checkpoint : callable, optional
        ``checkpoint(history)`` at every point the run can be resumed from:
        after each stretch (below), or each iteration on the per-iteration
        path. ``history`` is the run so far, its ``rng_state`` current, and
        ``network.params`` are the parameters it reached: together, what
        resuming needs. Save them before returning, and change neither
        (``scratchnet.runs`` saves them every few seconds of work).
    stretch : int, optional
        The most iterations one compiled call runs. On the numba and c
        backends, iterations run in stretches, each one call of the
        training engine (``train_stretch``), with no Python between them:
        a stretch ends at the next epoch evaluation, at ``iters_num``, or
        after about 0.05 s of work (None, the default), or after
        ``stretch`` iterations. The callbacks run after the stretch:
        ``on_iteration`` for each of its iterations, with the parameters
        as the stretch left them; ``on_epoch`` sees the epoch's own
        parameters (a stretch ends at each evaluation). A callback that
        must act between iterations (one that changes the parameters, or a
        ``should_stop`` that must stop at the very iteration) needs
        ``stretch=1``: every iteration from Python, as on the numpy
        backend, about 1.5x slower for the chapter's run
        (docs/performance.rst). The results are bitwise the same for any
        ``stretch``.

    Returns
    -------
    History
        ``iterations_done < iters_num`` means ``should_stop`` ended it early.

    Raises
    ------
    FloatingPointError
        If an update or the loss stops being finite (the learning rate is
        too large for the data): the parameters keep their last finite values.

    Notes
    -----
    Results do not depend on :func:`scratchnet.set_num_threads`: the kernels
    are bitwise identical for any thread count.
    """
    kernels = backends.resolve(backend)  # an unknown or unbuilt backend fails here, not mid-run
    train_data = DataSet.from_arrays(network, x_train, t_train, kernels, "x_train", "t_train")
    test_data = DataSet.from_arrays(network, x_test, t_test, kernels, "x_test", "t_test")
    _check_settings(iters_num, batch_size, learning_rate, gradient, seed, len(train_data), numgrad_method)
    if stretch is not None and not (_is_int(stretch) and stretch >= 1):
        raise ValueError(f"stretch: expected None or a positive integer, got {stretch!r}")
    named = (
        ("on_iteration", on_iteration),
        ("on_epoch", on_epoch),
        ("should_stop", should_stop),
        ("checkpoint", checkpoint),
    )
    for name, f in named:
        if f is not None and not callable(f):
            raise TypeError(f"{name}: expected a callable or None, got {type(f).__name__}")
    if gradient == "numerical":
        h = check_step(h)
    history, rng = _start(history, seed, iters_num)
    network.check_params(for_numerical=gradient == "numerical")
    for key in PARAM_NAMES:  # updated in place
        if not network.params[key].flags.writeable:
            raise ValueError(f"params['{key}']: read-only array; train updates the parameters in place: pass a copy")
    started = time.perf_counter()
    history.timings = {"total": 0.0, "compiled": 0.0, "evaluation": 0.0, "python": 0.0}
    run = _Run(network, train_data, test_data, kernels, backend, batch_size, learning_rate, gradient, h, numgrad_method)
    callbacks = (on_iteration, on_epoch, should_stop, _resumable(history, rng, checkpoint))
    engine = getattr(kernels, "train_stretch", None)
    if engine is None or stretch == 1:
        _train_per_iteration(run, history, rng, iters_num, callbacks)
    else:
        _train_by_stretches(run, history, rng, iters_num, callbacks, engine, stretch)
    history.rng_state = rng.bit_generator.state
    t = history.timings
    t["total"] = time.perf_counter() - started
    t["python"] = max(0.0, t["total"] - t["compiled"] - t["evaluation"])
    return history


@dataclasses.dataclass
class _Run:
    """What every iteration of one call of :func:`train` uses."""

    network: object
    train_data: DataSet
    test_data: DataSet
    kernels: object
    backend: object
    batch_size: int
    learning_rate: float
    gradient: str
    h: float
    numgrad_method: str

    def evaluate(self, history, i, on_epoch):
        """The epoch's accuracies after iteration i, recorded and reported."""
        start = time.perf_counter()
        params = self.network.kernel_params()
        pair = getattr(self.kernels, "count_correct_pair", None)
        if pair is None:
            train_acc = accuracy(self.network, self.train_data, backend=self.backend)
            test_acc = accuracy(self.network, self.test_data, backend=self.backend)
        else:
            a, b = pair(
                self.train_data.rows, self.train_data.labels, self.test_data.rows, self.test_data.labels, params
            )
            train_acc, test_acc = a / len(self.train_data), b / len(self.test_data)
        history.epochs.append((i, train_acc, test_acc))
        history.timings["evaluation"] += time.perf_counter() - start
        if on_epoch is not None:
            on_epoch(i, train_acc, test_acc)


def _resumable(history, rng, checkpoint):
    """Called where the run can resume from: hands ``checkpoint`` the history with its generator state."""
    if checkpoint is None:
        return lambda: None

    def resumable():
        history.rng_state = rng.bit_generator.state
        checkpoint(history)

    return resumable


def _train_per_iteration(run, history, rng, iters_num, callbacks):
    """The readable path: one iteration at a time from Python (the numpy backend, and ``stretch=1``)."""
    on_iteration, on_epoch, should_stop, resumable = callbacks
    for i in range(history.iterations_done, iters_num):
        loss = _iteration(run, rng.choice(len(run.train_data), run.batch_size), i)
        _record(run, history, i, loss, on_epoch)
        if on_iteration is not None:
            on_iteration(i, loss)
        resumable()
        if should_stop is not None and should_stop():
            break


def _record(run, history, i, loss, on_epoch):
    history.iterations.append(i)
    history.train_loss.append(loss)
    if is_epoch_iteration(i, run.batch_size, len(run.train_data)):
        run.evaluate(history, i, on_epoch)
    history.iterations_done = i + 1


STRETCH_SECONDS = 0.05  # work per compiled call: Ctrl-C, should_stop and the progress bar wait at most this long


def _train_by_stretches(run, history, rng, iters_num, callbacks, engine, max_stretch):
    """Iterations in stretches, up to the next epoch evaluation, the end, or about STRETCH_SECONDS of
    work; then the stretch's callbacks and should_stop."""
    on_iteration, on_epoch, should_stop, resumable = callbacks
    n, batch_size = len(run.train_data), run.batch_size
    length, i = 4, history.iterations_done
    while i < iters_num:
        end = min(iters_num, i + (length if max_stretch is None else max_stretch))
        end = next((j + 1 for j in range(i, end) if is_epoch_iteration(j, batch_size, n)), end)
        take = np.empty((end - i, batch_size), dtype=np.int64)
        for s in range(end - i):
            take[s] = rng.choice(n, batch_size)

        def completed(j, loss):
            _record(run, history, j, loss, on_epoch)
            if on_iteration is not None:
                on_iteration(j, loss)

        start = time.perf_counter()
        _stretch(run, engine, take, i, history.timings, completed)
        length = max(1, min(4 * length, int(STRETCH_SECONDS * (end - i) / max(time.perf_counter() - start, 1e-9))))
        i = end
        resumable()
        if should_stop is not None and should_stop():
            break


def _stretch(run, engine, take, first, timings, completed):
    """The iterations ``first``, ... on the batches ``take`` (S, B), each reported in order by
    ``completed(i, loss)``. The engine runs them; an iteration it leaves (a check that failed, or a series
    bound that needs the perturbed method) runs through the per-iteration path, which raises the error or
    computes it, and the engine goes on."""
    method = "backprop" if run.gradient == "backprop" else run.numgrad_method
    losses = np.empty(len(take))
    pos = 0
    while pos < len(take):
        params = run.network.kernel_params()  # again each call: a callback may have replaced the arrays
        start = time.perf_counter()
        done = engine(params, run.train_data.rows, run.train_data.labels, take[pos:], losses[pos:],
                      run.learning_rate, method, run.h)  # fmt: skip
        timings["compiled"] += time.perf_counter() - start
        for key, a in zip(PARAM_NAMES, params):
            if a is not run.network.params[key]:  # a contiguous copy of the caller's array
                run.network.params[key][...] = a
        for s in range(pos, pos + done):
            completed(first + s, float(losses[s]))
        pos += done
        if pos < len(take):
            completed(first + pos, _iteration(run, take[pos], first + pos))
            pos += 1


def _iteration(run, rows, i):
    """One SGD step on the mini-batch ``rows``; returns the batch's loss after the update."""
    network, backend = run.network, run.backend
    batch = run.kernels.batch_take(run.train_data.rows, rows)
    labels = run.train_data.labels[rows]
    loss_of = lambda: network.loss_batch(batch, labels, backend=backend)  # noqa: E731
    try:
        if run.gradient == "numerical":
            grads = network.numerical_gradient_batch(batch, labels, h=run.h, method=run.numgrad_method, backend=backend)
        else:
            grads = network.gradient_batch(batch, labels, backend=backend)
        return _step(network, grads, run.learning_rate, i, loss_of)
    except FloatingPointError as exc:
        # A forward pass that overflowed says what it blames (network._overflow); here that is worded
        # for train's arguments. Other errors (the update's, _step) already are.
        fault, message = getattr(exc, "fault", None), str(exc)
        if fault == FAULT_X:  # the data, not the settings
            message = f"x_train: at iteration {i}, {exc.detail}"
        elif fault == FAULT_PARAMS:
            message = f"{message} at iteration {i}, before its update (changed outside train, e.g. by a callback?)"
        elif fault == FAULT_WEIGHTS:
            message = f"learning_rate: at iteration {i}, {message}; try a smaller learning rate"
        raise FloatingPointError(message) from None
