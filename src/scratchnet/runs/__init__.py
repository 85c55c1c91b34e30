"""Runs of the chapter's experiment: settings, one complete run, and the run directory.

>>> from scratchnet import runs
>>> result = runs.run_training({"gradient": "backprop", "iters": 600}, "results")  # doctest: +SKIP
>>> result.final  # doctest: +SKIP
{'train_acc': 0.79..., 'test_acc': 0.80...}

This is what ``scratchnet train`` and each run of :func:`scratchnet.sweep`
do; the command line only parses options and prints.

- :mod:`.settings`: the settings, their defaults (the book's experiment) and checks;
- :mod:`.run`: :func:`run_training`, which sets up, trains, evaluates and saves;
- :mod:`.directory`: the run directory, written and read back (:func:`load_run`);
- :mod:`.data`: MNIST as the chapter loads it, and the digests a resumed run checks.

Every problem a user can fix is a :class:`RunError` with a one-line message.
"""

from .directory import RUN_FILES, SavedRun, load_run
from .errors import RunError
from .run import NeverStop, Reporter, RunResult, run_training
from .settings import DEFAULTS, complete_settings

__all__ = [
    "DEFAULTS",
    "NeverStop",
    "Reporter",
    "RUN_FILES",
    "RunError",
    "RunResult",
    "SavedRun",
    "complete_settings",
    "load_run",
    "run_training",
]
