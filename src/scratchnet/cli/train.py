"""Command line: ``scratchnet train`` runs the chapter's experiment.

Defaults are the book's ``train_neuralnet.py``: TwoLayerNet(784, 50, 10) on
the shipped MNIST, 10,000 iterations of numerical-gradient SGD in batches
of 100 at learning rate 0.1, accuracy printed once per epoch.

Exit status: 0 done, 1 training or output failed, 2 bad options or data,
130 interrupted by Ctrl-C (after saving a resumable state with ``--out``).
"""


import argparse
import hashlib
import io
import json
import platform
import signal
import sys
import time
from pathlib import Path

import numpy as np

from .._config import BACKEND_NAMES, DEFAULT_BACKEND
from ..network import PARAM_NAMES
from ..results import write_run
from ..training import GRADIENTS, History
from . import CLIError, int_at_least, positive_float

# The chapter's experiment; None in argparse means "not given", so --resume
# can tell an explicit option from a default.
DEFAULTS = {
    "gradient": "numerical",
    "backend": DEFAULT_BACKEND,
    "iters": 10000,
    "batch_size": 100,
    "lr": 0.1,
    "hidden": 50,
    "seed": 0,
    "data_dir": None,
}
# Settings that change the computed numbers; a resumed run must keep them.
# (``iters`` may grow; ``threads`` never changes results.)
FIXED_ON_RESUME = ("gradient", "backend", "batch_size", "lr", "hidden", "seed", "data_dir")
WEIGHT_INIT_STD = 0.01
NUMERICAL_H = 1e-4  # the chapter's step
OUTPUT_SIZE = 10
PLOT_HINT = 'plots skipped: matplotlib is not installed; get them with: pip install "scratchnet[plot]"'


OPTION_TYPES = {
    "iters": int_at_least(0),
    "batch_size": int_at_least(1),
    "lr": positive_float,
    "hidden": int_at_least(1),
    "seed": int_at_least(0),
}
OPTION_CHOICES = {"gradient": GRADIENTS, "backend": BACKEND_NAMES}


def _check_saved_settings(settings):
    """Raise ValueError unless ``settings`` (from a config.json) are valid option values."""
    for k in DEFAULTS:
        if k not in settings:
            raise ValueError(f"config.json lacks the setting {k!r}")
    for k, parse in OPTION_TYPES.items():
        v = settings[k]
        try:
            ok = not isinstance(v, bool) and parse(str(v)) == v
        except argparse.ArgumentTypeError:
            ok = False
        if not ok:
            raise ValueError(f"config.json: invalid {k} {v!r}")
    for k, choices in OPTION_CHOICES.items():
        if settings[k] not in choices:
            raise ValueError(f"config.json: invalid {k} {settings[k]!r}")
    if settings["data_dir"] is not None and not isinstance(settings["data_dir"], str):
        raise ValueError(f"config.json: invalid data_dir {settings['data_dir']!r}")


def add_parser(sub):
    """Register ``scratchnet train`` on the ``sub`` subparsers."""
    p = sub.add_parser(
        "train",
        help="train TwoLayerNet on MNIST by mini-batch SGD (the chapter's experiment)",
        description=(
            "Train TwoLayerNet(784, HIDDEN, 10) by mini-batch SGD. The defaults are the chapter's "
            "experiment: numerical gradients, 10,000 iterations, batch 100, learning rate 0.1, "
            "on the MNIST shipped with scratchnet. Ctrl-C stops after the current iteration "
            "and (with --out) saves a state that --resume continues."
        ),
    )
    d = DEFAULTS
    p.add_argument("--gradient", choices=GRADIENTS, help=f"how gradients are computed (default: {d['gradient']})")
    p.add_argument(
        "--backend", choices=BACKEND_NAMES, help=f"backend of the kernels (default: {d['backend']})"
    )
    p.add_argument("--iters", type=OPTION_TYPES["iters"], metavar="N", help=f"total iterations (default: {d['iters']})")
    p.add_argument(
        "--batch-size", type=OPTION_TYPES["batch_size"], metavar="B", help=f"mini-batch size (default: {d['batch_size']})"
    )
    p.add_argument("--lr", type=OPTION_TYPES["lr"], metavar="LR", help=f"learning rate (default: {d['lr']})")
    p.add_argument("--hidden", type=OPTION_TYPES["hidden"], metavar="H", help=f"hidden units (default: {d['hidden']})")
    p.add_argument(
        "--seed",
        type=OPTION_TYPES["seed"],
        metavar="S",
        help=f"seed of the initial weights and the mini-batches (default: {d['seed']})",
    )
    p.add_argument(
        "--threads", type=int_at_least(1), metavar="T", help="threads of the Numba/C kernels (default: all cores)"
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder with the four MNIST-layout IDX files (default: the MNIST shipped with scratchnet)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write history.csv/json, params.npz, config.json, accuracy.png, loss.png there",
    )
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run saved in DIR (its config supplies the settings; --iters may raise the total)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs and CI)")
    return p


# -- run directory ---------------------------------------------------------
def _settings(args):
    """Settings of this run: from --resume's config, else the options and defaults."""
    given = {k: getattr(args, k) for k in DEFAULTS}
    if given["data_dir"] is not None:
        given["data_dir"] = str(Path(given["data_dir"]).expanduser().resolve())
    if args.resume is None:
        return {k: (DEFAULTS[k] if v is None else v) for k, v in given.items()}, None
    run = _load_run(Path(args.resume))
    settings = dict(run["config"]["settings"])
    conflicts = [
        f"--{k.replace('_', '-')} {given[k]} (the run used {settings[k]})"
        for k in FIXED_ON_RESUME
        if given[k] is not None and given[k] != settings[k]
    ]
    if conflicts:
        raise CLIError(f"--resume {args.resume}: conflicting settings: " + "; ".join(conflicts))
    if args.iters is not None:
        settings["iters"] = args.iters
    done = run["history"].iterations_done
    if settings["iters"] < done:
        raise CLIError(f"--iters {settings['iters']}: the run in {args.resume} has already done {done} iterations")
    return settings, run


def _load_run(directory):
    """config, history and params of a run directory written by --out."""
    names = ("config.json", "history.json", "params.npz")
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise CLIError(f"--resume {directory}: not a scratchnet run directory (missing {', '.join(missing)})")
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        hist = json.loads((directory / "history.json").read_text(encoding="utf-8"))
        history = History.from_dict(hist)
        blob = (directory / "params.npz").read_bytes()
        if hashlib.sha256(blob).hexdigest() != hist.get("params_sha256"):
            raise ValueError("params.npz does not belong to history.json (different SHA-256)")
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            params = {k: np.array(npz[k], dtype=np.float64) for k in PARAM_NAMES}
        _check_saved_settings(config["settings"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CLIError(f"--resume {directory}: cannot read the saved run: {exc}") from None
    if history.rng_state is None:
        raise CLIError(f"--resume {directory}: history.json has no generator state")
    return {"config": config, "history": history, "params": params}


def _versions():
    import numba

    from .. import __version__

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "scratchnet": __version__,
    }
    try:
        import tqdm

        versions["tqdm"] = tqdm.__version__
    except ImportError:
        pass
    return versions


# -- the command -----------------------------------------------------------
class _Progress:
    """tqdm bar on stderr (optional) and the chapter's per-epoch line on stdout."""

    def __init__(self, total, initial, enabled):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="train", unit="it", file=sys.stderr, dynamic_ncols=True)
        self._next_postfix = 0.0

    def iteration(self, i, loss):
        if self.bar is None:
            return
        now = time.monotonic()
        if now >= self._next_postfix:  # formatting the postfix every iteration costs more than it shows
            self.bar.set_postfix_str(f"loss={loss:.4f}", refresh=False)
            self._next_postfix = now + 0.2
        self.bar.update(1)

    def line(self, text):
        if self.bar is None:
            print(text, flush=True)
        else:
            self.bar.write(text, file=sys.stdout)
            sys.stdout.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _load_data(settings):
    from ..datasets import load_mnist

    try:
        return load_mnist(normalize=True, flatten=True, one_hot_label=False, data_dir=settings["data_dir"])
    except (ValueError, OSError) as exc:  # MNISTError, MissingFileError, unreadable folder
        where = "--data-dir " + settings["data_dir"] if settings["data_dir"] else "shipped MNIST"
        raise CLIError(f"{where}: {exc}") from None


def run(args):
    """Run ``scratchnet train``; returns the exit status."""
    from .. import backends, get_num_threads, set_num_threads
    from ..network import TwoLayerNet
    from ..training import train

    settings, run = _settings(args)
    out = Path(args.out) if args.out is not None else (Path(args.resume) if args.resume is not None else None)
    if out is not None and out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: exists and is not a directory")

    try:
        backends.load(settings["backend"])
    except ImportError as exc:
        raise CLIError(f"--backend {settings['backend']}: not available on this installation ({exc})") from None
    if args.threads is not None:
        try:
            set_num_threads(args.threads)
        except ValueError as exc:
            raise CLIError(f"--threads {args.threads}: {str(exc).removeprefix('n: ')}") from None

    (x_train, t_train), (x_test, t_test) = _load_data(settings)
    train_size = len(t_train)
    if settings["batch_size"] > train_size:
        raise CLIError(
            f"--batch-size {settings['batch_size']}: larger than the training set ({train_size} samples)"
        )

    # Weights and mini-batches get independent streams from the one seed.
    init_seq, batch_seq = np.random.SeedSequence(settings["seed"]).spawn(2)
    net = TwoLayerNet(x_train.shape[1], settings["hidden"], OUTPUT_SIZE, WEIGHT_INIT_STD, seed=init_seq)
    history = None
    if run is not None:
        for k in PARAM_NAMES:
            if run["params"][k].shape != net.params[k].shape:
                raise CLIError(
                    f"--resume {args.resume}: params.npz['{k}'] has shape {run['params'][k].shape}, "
                    f"expected {net.params[k].shape}"
                )
        net.params = run["params"]
        history = run["history"]

    iters = settings["iters"]
    done = 0 if history is None else history.iterations_done
    progress = _Progress(iters, done, enabled=not args.no_progress)

    stop = {"requested": False}

    def on_sigint(signum, frame):
        stop["requested"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C aborts at once

    previous = signal.signal(signal.SIGINT, on_sigint)
    start = time.perf_counter()
    try:
        history = train(
            net,
            x_train,
            t_train,
            x_test,
            t_test,
            iters_num=iters,
            batch_size=settings["batch_size"],
            learning_rate=settings["lr"],
            gradient=settings["gradient"],
            seed=batch_seq,
            backend=settings["backend"],
            h=NUMERICAL_H,
            history=history,
            on_iteration=progress.iteration,
            on_epoch=lambda i, a, b: progress.line(f"train acc, test acc | {a:.4f}, {b:.4f}"),
            should_stop=lambda: stop["requested"],
        )
    except FloatingPointError as exc:  # diverged: no use saving NaN parameters
        raise CLIError(f"--lr {settings['lr']}: {str(exc).removeprefix('learning_rate: ')}", status=1) from None
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.close()
    wall = time.perf_counter() - start
    interrupted = history.iterations_done < iters

    final = None
    if not interrupted:
        final = {
            "train_acc": net.accuracy(x_train, t_train, backend=settings["backend"]),
            "test_acc": net.accuracy(x_test, t_test, backend=settings["backend"]),
        }
    config = {
        "command": "train",
        "settings": settings,
        "weight_init_std": WEIGHT_INIT_STD,
        "numerical_gradient_h": NUMERICAL_H,
        "seeding": "np.random.SeedSequence(seed).spawn(2): [0] initial weights, [1] mini-batches",
        "train_size": train_size,
        "test_size": len(t_test),
        "threads": get_num_threads(),
        "iterations_done": history.iterations_done,
        "status": "interrupted" if interrupted else "completed",
        "final": final,
        "wall_time_s": round(wall, 3),
        "argv": sys.argv[1:],
        "versions": _versions(),
    }

    plotted = True
    if out is not None:
        try:
            plotted = write_run(out, history, net.params, config, train_size)
        except OSError as exc:
            raise CLIError(f"--out {out}: cannot write results: {exc}", status=1) from None

    ran = history.iterations_done - done
    if interrupted:
        saved = (
            f"saved to {out}; continue with: scratchnet train --resume {out}"
            if out is not None
            else "nothing saved (no --out)"
        )
        print(f"scratchnet: interrupted after iteration {history.iterations_done} of {iters}; {saved}", file=sys.stderr)
        return 130
    print(f"final train acc, test acc | {final['train_acc']:.4f}, {final['test_acc']:.4f}")
    per_it = f" ({1000 * wall / ran:.2f} ms/iteration)" if ran else ""
    print(f"wall time {wall:.1f} s for {ran} iterations{per_it}")
    if out is not None:
        print(f"results in {out}")
        if not plotted:
            print(PLOT_HINT, file=sys.stderr)
    return 0


