"""The settings of a run: their defaults (the chapter's experiment), parsers and checks.

Every key of :data:`DEFAULTS` is a setting of ``scratchnet train`` (as the
option ``--key-with-dashes``) and of a sweep. A parser in
:data:`OPTION_TYPES` or a list in :data:`OPTION_CHOICES` checks each value;
a setting added here is an option and sweepable with no other code.
"""

import math
from pathlib import Path

from .._config import BACKEND_NAMES, DEFAULT_BACKEND, DEFAULT_H
from ..network import NUMGRAD_METHODS
from ..training import GRADIENTS
from .errors import RunError

# The book's train_neuralnet.py: TwoLayerNet(784, 50, 10), 10,000 iterations
# of numerical-gradient SGD in batches of 100 at learning rate 0.1.
DEFAULTS = {
    "gradient": "numerical",
    "numgrad_method": "series",
    "backend": DEFAULT_BACKEND,
    "iters": 10000,
    "batch_size": 100,
    "lr": 0.1,
    "hidden": 50,
    "seed": 0,
    "data_dir": None,
}
# Settings that change the computed numbers; a resumed run must keep them.
# (``iters`` may grow; the thread count never changes results.)
FIXED_ON_RESUME = ("gradient", "numgrad_method", "backend", "batch_size", "lr", "hidden", "seed", "data_dir")
MAX_ITERS = 100_000_000  # the history keeps every iteration's loss: about 6 GB of Python objects at this bound
CHECKPOINT_EVERY = 10.0  # seconds of work between two checkpoints of a run with a directory
WEIGHT_INIT_STD = 0.01  # the book's initial weights: WEIGHT_INIT_STD * N(0, 1)
NUMERICAL_H = DEFAULT_H
OUTPUT_SIZE = 10


def int_at_least(lo, at_most=None):
    """Parser of an integer setting ``>= lo`` (and ``<= at_most``); raises ValueError saying what was wrong."""

    def parse(s):
        try:
            v = int(s)
        except ValueError:
            raise ValueError(f"expected an integer, got {s!r}") from None
        if v < lo:
            raise ValueError(f"must be >= {lo}, got {v}")
        if at_most is not None and v > at_most:
            raise ValueError(f"must be <= {at_most}, got {v}")
        return v

    parse.__name__ = "integer"
    return parse


def seconds(s):
    """Parser of a duration in seconds, >= 0; raises ValueError saying what was wrong."""
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {s!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"must be a finite number of seconds >= 0, got {s}")
    return v


def positive_float(s):
    """Parser of a finite positive number; raises ValueError saying what was wrong."""
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"expected a number, got {s!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"must be a finite positive number, got {s}")
    return v


OPTION_TYPES = {
    "iters": int_at_least(0, at_most=MAX_ITERS),
    "batch_size": int_at_least(1),
    "lr": positive_float,
    "hidden": int_at_least(1),
    "seed": int_at_least(0),
}
OPTION_CHOICES = {"gradient": GRADIENTS, "numgrad_method": NUMGRAD_METHODS, "backend": BACKEND_NAMES}


def option_name(key):
    """``batch_size`` -> ``--batch-size``: how messages name a setting."""
    return "--" + key.replace("_", "-")


def is_integer(key):
    """True for a setting whose values are integers (a sweep takes ranges of them)."""
    return getattr(OPTION_TYPES.get(key), "__name__", None) == "integer"


def invalid_setting(settings):
    """``(key, value, reason)`` of the first invalid value of ``settings`` (all keys of DEFAULTS), or None."""
    for k in DEFAULTS:
        if k not in settings:
            return k, None, "missing"
    for k, parse in OPTION_TYPES.items():
        v = settings[k]
        try:
            if isinstance(v, bool) or parse(str(v)) != v:
                return k, v, f"expected {'a number' if parse is positive_float else 'an integer'}"
        except ValueError as exc:
            return k, v, str(exc)
    for k, choices in OPTION_CHOICES.items():
        if settings[k] not in choices:
            return k, settings[k], f"expected one of {', '.join(choices)}"
    if settings["data_dir"] is not None and not isinstance(settings["data_dir"], str):
        return "data_dir", settings["data_dir"], "expected a path"
    return None


def complete_settings(settings):
    """``settings`` over DEFAULTS, checked, values normalised as the options parse them.

    Raises RunError naming the option of an unknown or invalid setting.
    """
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise RunError(f"unknown setting {unknown[0]!r}; the settings are: {', '.join(DEFAULTS)}")
    full = {**DEFAULTS, **settings}
    for k, parse in OPTION_TYPES.items():
        if not isinstance(full[k], bool):
            try:
                full[k] = parse(str(full[k]))  # 5.0 -> 5, numpy scalars -> Python's
            except ValueError:
                pass  # invalid_setting says why
    invalid = invalid_setting(full)
    if invalid:
        k, v, reason = invalid
        raise RunError(f"{option_name(k)} {v!r}: {reason}")
    if full["data_dir"] is not None:
        full["data_dir"] = resolve_data_dir(full["data_dir"])
    return full


def resolve_data_dir(value):
    """A data directory as the absolute path recorded in config.json."""
    try:
        path = Path(value).expanduser()
    except RuntimeError as exc:  # ~nosuchuser
        raise RunError(f"--data-dir {value}: {exc}; write the path without '~' or with an existing user") from None
    try:
        return str(path.resolve())
    except (RuntimeError, OSError):  # a loop of symbolic links (RuntimeError before Python 3.13)
        raise RunError(
            f"--data-dir {value}: a loop of symbolic links (following them never reaches a folder); "
            "fix the links, or name the folder that holds the four MNIST files"
        ) from None


def resumed_settings(saved, given):
    """The saved run's settings, ``given["iters"]`` if any; other ``given`` values must agree."""
    settings = dict(saved.config["settings"])
    conflicts = [
        f"{option_name(k)} {given[k]} (the run used {settings[k]})"
        for k in FIXED_ON_RESUME
        if k in given and given[k] != settings[k]
    ]
    if conflicts:
        raise RunError(f"--resume {saved.directory}: conflicting settings: " + "; ".join(conflicts))
    settings["iters"] = given.get("iters", settings["iters"])
    done = saved.history.iterations_done
    if settings["iters"] < done:
        raise RunError(f"--iters {settings['iters']}: the run in {saved.directory} has already done {done} iterations")
    return settings


def equivalent_argv(settings, out=None):
    """The ``scratchnet train`` arguments that run ``settings`` (recorded in config.json)."""
    argv = ["train"]
    for k, v in settings.items():
        if v is not None:
            argv += [option_name(k), str(v)]
    return argv + (["--out", str(out)] if out is not None else [])
