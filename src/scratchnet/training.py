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
"""

import copy
import dataclasses
import numbers

import numpy as np

from . import backends
from ._validation import labels_from_targets
from .network import PARAM_NAMES

GRADIENTS = ("numerical", "backprop")

# Samples per forward pass when measuring accuracy. The float64 copy of a
# chunk (2048 x 784 x 8 bytes = 13 MB) stays in cache for the matrix product;
# measured on the full training set, 2048 was as fast as 10,000 and 3-4x
# faster than one pass over all 60,000 (which also allocates 376 MB).
EVAL_CHUNK = 2048


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
    """

    iterations: list = dataclasses.field(default_factory=list)
    train_loss: list = dataclasses.field(default_factory=list)
    epochs: list = dataclasses.field(default_factory=list)
    iterations_done: int = 0
    rng_state: dict = None

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


def _check_settings(iters_num, batch_size, learning_rate, gradient, seed, train_size):
    if not _is_int(iters_num) or iters_num < 0:
        raise ValueError(f"iters_num: expected a non-negative integer, got {iters_num!r}")
    if not _is_int(batch_size) or not 1 <= batch_size <= train_size:
        raise ValueError(
            f"batch_size: expected an integer between 1 and the training set size {train_size}, got {batch_size!r}"
        )
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, numbers.Real)
        or not np.isfinite(learning_rate)
        or learning_rate <= 0
    ):
        raise ValueError(f"learning_rate: expected a finite positive number, got {learning_rate!r}")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient: expected one of {list(GRADIENTS)}, got {gradient!r}")
    if not (_is_int(seed) and seed >= 0) and not isinstance(seed, np.random.SeedSequence):
        raise ValueError(f"seed: expected a non-negative integer or a numpy.random.SeedSequence, got {seed!r}")


def _check_data(network, x, t, xname, tname):
    """``x`` as given (2-D, D columns) and ``t`` as intp labels (N,)."""
    d = network.params["W1"].shape[0]
    k = network.params["W2"].shape[1]
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != d or x.shape[0] == 0:
        raise ValueError(f"{xname}: expected a non-empty array of shape (N, {d}), got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{xname}: expected a real numeric array, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"{xname}: contains NaN or inf")
    return x, labels_from_targets(t, x.shape[0], k, tname)


def _kernel_input(x):
    """Rows of a checked x as the network's unchecked methods take them:
    C-contiguous float32 (MNIST's pixels, promoted exactly by the kernels)
    or float64."""
    return np.ascontiguousarray(x) if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def _accuracy(network, x, labels, backend=None):
    """Fraction of rows of ``x`` classified as ``labels``, in chunks of EVAL_CHUNK.

    Counts are exact integers, so chunking changes nothing but memory.
    """
    correct = 0
    for start in range(0, len(labels), EVAL_CHUNK):
        y = network._forward(_kernel_input(x[start : start + EVAL_CHUNK]), backend)[3]  # x checked by the caller
        correct += int(np.count_nonzero(np.argmax(y, axis=1) == labels[start : start + EVAL_CHUNK]))
    return correct / len(labels)


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
    seed=0,
    backend=None,
    h=1e-4,
    history=None,
    on_iteration=None,
    on_epoch=None,
    should_stop=None,
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
        ``on_iteration(i, loss)`` after each iteration.
    on_epoch : callable, optional
        ``on_epoch(i, train_acc, test_acc)`` after each accuracy measurement.
    should_stop : callable, optional
        ``should_stop()`` is called after each completed iteration; when it
        returns true, training stops there (e.g. on Ctrl-C) and the returned
        history can resume it.

    Returns
    -------
    History
        ``iterations_done < iters_num`` means ``should_stop`` ended it early.

    Notes
    -----
    Results do not depend on :func:`scratchnet.set_num_threads`: the kernels
    are bitwise identical for any thread count.
    """
    x_train, labels_train = _check_data(network, x_train, t_train, "x_train", "t_train")
    x_test, labels_test = _check_data(network, x_test, t_test, "x_test", "t_test")
    train_size = len(labels_train)
    _check_settings(iters_num, batch_size, learning_rate, gradient, seed, train_size)
    for name, f in (("on_iteration", on_iteration), ("on_epoch", on_epoch), ("should_stop", should_stop)):
        if f is not None and not callable(f):
            raise TypeError(f"{name}: expected a callable or None, got {type(f).__name__}")

    if history is None:
        history = History()
        rng = np.random.default_rng(seed)
    else:
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

    backends.resolve(backend)  # an unknown or unbuilt backend fails here, not mid-run
    network._check_params(for_numerical=gradient == "numerical")
    if gradient == "numerical":
        if isinstance(h, bool) or not isinstance(h, numbers.Real) or not np.isfinite(h) or h <= 0:
            raise ValueError(f"h: expected a positive finite step, got {h!r}")

        def grad_fn(x, t):
            return network._numerical_gradient(x, t, float(h), backend)

    else:

        def grad_fn(x, t):
            return network._gradient(x, t, backend)

    # Data and parameters are checked once, above; each iteration calls the
    # network's unchecked methods. A non-finite loss means the parameters
    # diverged, and stops the run with a clear error.
    params = network.params
    for i in range(history.iterations_done, iters_num):
        batch_mask = rng.choice(train_size, batch_size)
        x_batch = _kernel_input(x_train[batch_mask])
        t_batch = labels_train[batch_mask]

        grads = grad_fn(x_batch, t_batch)
        for key in PARAM_NAMES:
            params[key] -= learning_rate * grads[key]

        loss = float(network._loss(x_batch, t_batch, backend))
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"learning_rate: training diverged at iteration {i} (loss {loss}); try a smaller learning rate"
            )
        history.iterations.append(i)
        history.train_loss.append(loss)

        if is_epoch_iteration(i, batch_size, train_size):
            train_acc = _accuracy(network, x_train, labels_train, backend)
            test_acc = _accuracy(network, x_test, labels_test, backend)
            history.epochs.append((i, train_acc, test_acc))
            if on_epoch is not None:
                on_epoch(i, train_acc, test_acc)

        history.iterations_done = i + 1
        if on_iteration is not None:
            on_iteration(i, loss)
        if should_stop is not None and should_stop():
            break

    history.rng_state = rng.bit_generator.state
    return history
