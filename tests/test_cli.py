import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from idx_helpers import write_idx
from png_helpers import png_size
from scratchnet import cli
from scratchnet._atomic import atomic_open
from scratchnet.datasets import load_mnist

PARAMS = ("W1", "b1", "W2", "b2")
EPOCH_LINE = "train acc, test acc | "
RUN_LINE = "training TwoLayerNet("  # the line that opens a run, before the first accuracy line


def first_epoch_line(proc):
    """Read the child's run line and first accuracy line; on anything else kill it and fail with its stderr."""
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    if not (lines[0].startswith(RUN_LINE) and lines[1].startswith(EPOCH_LINE)):
        proc.kill()  # before reading stderr: a child blocked on a full stdout would never close it
        pytest.fail("".join(lines) + proc.stderr.read())


def make_mnist_dir(directory, n_train, n_test):
    """The first images of the shipped MNIST as an MNIST-layout IDX folder."""
    (x, t), (xt, tt) = load_mnist(normalize=False)
    x, xt = x.reshape(-1, 28, 28), xt.reshape(-1, 28, 28)
    directory.mkdir()
    write_idx(directory / "train-images-idx3-ubyte", x[:n_train])
    write_idx(directory / "train-labels-idx1-ubyte", t[:n_train])
    write_idx(directory / "t10k-images-idx3-ubyte", xt[:n_test])
    write_idx(directory / "t10k-labels-idx1-ubyte", tt[:n_test])
    return directory


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    return {"small": make_mnist_dir(root / "small", 300, 100), "tiny": make_mnist_dir(root / "tiny", 40, 40)}


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Environment of the subprocesses (which run the installed scratchnet,
    like the tests) and of in-process runs: a private dataset cache."""
    monkeypatch.setenv("SCRATCHNET_CACHE_DIR", str(tmp_path / "cache"))
    return dict(os.environ)


def run_cli(args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "scratchnet", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


TINY_NET = ["--batch-size", 40, "--hidden", 6, "--lr", 0.5]  # a net that trains in milliseconds
TINY = ["--gradient", "backprop", *TINY_NET, "--no-progress"]


def train_args(data_dir, *, gradient="backprop", **settings):
    """Options of ``scratchnet train`` on ``data_dir``: backprop unless said, ``settings``, no progress bar."""
    options = [a for key, value in settings.items() for a in (f"--{key.replace('_', '-')}", value)]
    return ["--data-dir", data_dir, "--gradient", gradient, *options, "--no-progress"]


def load_params(directory):
    with np.load(directory / "params.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


# -- end to end in a subprocess ------------------------------------------------
def test_train_writes_a_complete_run_directory(data_dirs, env, tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        ["train", *train_args(data_dirs["small"], iters=30, batch_size=50, lr=0.5, hidden=8, seed=3, out=out)],
        env,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(RUN_LINE) and ": backprop, 30 iterations" in lines[0], lines[0]
    # 300 samples in batches of 50: an epoch every 6 iterations, 0, 6, ..., 24
    assert sum(line.startswith(EPOCH_LINE) for line in lines) == 5
    assert any(line.startswith("final train acc, test acc | ") for line in lines)
    assert any(line.startswith("wall time") for line in lines)

    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy.png",
        "checkpoint.npz",
        "config.json",
        "history.csv",
        "history.json",
        "loss.png",
        "params.npz",
    ]
    hist = json.loads((out / "history.json").read_text())
    assert hist["iterations"] == list(range(30)) and len(hist["train_loss"]) == 30
    assert [e["iteration"] for e in hist["epochs"]] == [0, 6, 12, 18, 24]
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["train_loss"]) for r in rows] == hist["train_loss"]
    assert [float(r["test_acc"]) for r in rows if r["test_acc"]] == [e["test_acc"] for e in hist["epochs"]]
    assert [int(r["epoch"]) for r in rows if r["test_acc"]] == [0, 1, 2, 3, 4]

    params = load_params(out)
    assert {k: v.shape for k, v in params.items()} == {"W1": (784, 8), "b1": (8,), "W2": (8, 10), "b2": (10,)}
    config = json.loads((out / "config.json").read_text())
    assert config["settings"] == {
        "gradient": "backprop",
        "numgrad_method": "series",
        "backend": "numba",
        "iters": 30,
        "batch_size": 50,
        "lr": 0.5,
        "hidden": 8,
        "seed": 3,
        "data_dir": str(data_dirs["small"].resolve()),
    }
    assert config["status"] == "completed" and config["iterations_done"] == 30
    assert set(config["versions"]) >= {"python", "numpy", "numba", "scratchnet"}
    assert config["threads"] >= 1 and config["train_size"] == 300 and config["test_size"] == 100

    for name in ("accuracy.png", "loss.png"):
        w, h = png_size(out / name)
        assert w >= 200 and h >= 150
    import matplotlib.image as mpimg  # a test dependency: the plots must parse

    assert mpimg.imread(out / "accuracy.png").shape[:2] == png_size(out / "accuracy.png")[::-1]


def test_numerical_gradient_run_with_default_backend(data_dirs, env, tmp_path):
    r = run_cli(
        ["train", *train_args(data_dirs["small"], gradient="numerical", iters=3, batch_size=20, hidden=4, threads=1)],
        env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(RUN_LINE) and r.stdout.splitlines()[1].startswith(EPOCH_LINE)
    assert "wall time" in r.stdout


@pytest.mark.slow
def test_sigint_then_resume_equals_an_uninterrupted_run(data_dirs, env, tmp_path):
    # 40 samples in batches of 40: an accuracy line (37 bytes) on stdout every
    # iteration. The child blocks once the pipe (64 KiB: ~1,770 lines, plus
    # the 8 KiB that readline buffers) is full, so it is still short of 2,500
    # iterations when SIGINT arrives, however slow this process is to send it.
    common = ["train", *TINY, "--data-dir", data_dirs["tiny"], "--iters", 2500]
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scratchnet", *map(str, common), "--out", str(cut)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first_epoch_line(proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "interrupted after iteration" in err and "--resume" in err
    done = json.loads((cut / "history.json").read_text())["iterations_done"]
    assert 0 < done < 2500
    assert json.loads((cut / "config.json").read_text())["status"] == "interrupted"

    r = run_cli(["train", "--resume", cut, "--no-progress"], env)
    assert r.returncode == 0, r.stderr
    full = tmp_path / "full"
    r = run_cli([*common, "--out", full], env)
    assert r.returncode == 0, r.stderr

    a, b = load_params(cut), load_params(full)
    for k in PARAMS:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (cut, full))
    for key in ("iterations", "train_loss", "epochs", "iterations_done", "rng_state"):
        assert ha[key] == hb[key], key


def test_missing_data_dir_is_one_clear_line(env, tmp_path):
    r = run_cli(["train", "--data-dir", tmp_path / "nowhere", "--iters", 1], env)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("scratchnet: error: --data-dir ") and "not found" in r.stderr


# -- options, in process (fast) ------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--iters", "-1"], "--iters: must be >= 0"),
        (["--iters", "ten"], "--iters: expected an integer"),
        (["--batch-size", "0"], "--batch-size: must be >= 1"),
        (["--lr", "nan"], "--lr: must be a finite positive number"),
        (["--lr", "-0.1"], "--lr: must be a finite positive number"),
        (["--backend", "cuda"], "--backend: invalid choice: 'cuda'"),
        (["--gradient", "exact"], "--gradient: invalid choice"),
        (["--numgrad-method", "exact"], "--numgrad-method: invalid choice: 'exact'"),
        (["--hidden", "0"], "--hidden: must be >= 1"),
    ],
)
def test_bad_option_values_are_argparse_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def run_main(args, capsys):
    status = cli.main(["train", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_numgrad_method_is_a_setting(data_dirs, tmp_path, capsys):
    # Both methods compute the loop's central difference: the same run to
    # rounding (the perturbed method ~1e-12 absolute per entry; 20 steps of
    # lr 0.5 keep the parameters within 1e-9), recorded, printed, and fixed
    # on resume.
    params = {}
    for method in ("series", "perturbed"):
        out = tmp_path / method
        args = ["--data-dir", data_dirs["tiny"], "--gradient", "numerical", "--numgrad-method", method, *TINY_NET]
        args += ["--iters", 20, "--no-progress", "--out", out]
        status, stdout, err = run_main(args, capsys)
        assert status == 0, err
        assert stdout.startswith(RUN_LINE) and f"numerical gradients ({method} method, h=0.0001)" in stdout
        assert json.loads((out / "config.json").read_text())["settings"]["numgrad_method"] == method
        params[method] = load_params(out)
    for k in params["series"]:
        np.testing.assert_allclose(params["perturbed"][k], params["series"][k], rtol=0, atol=1e-9)
    status, _, err = run_main(["--resume", tmp_path / "series", "--numgrad-method", "perturbed", "--iters", 30], capsys)
    one_line_error(status, err, "--resume")
    assert "conflicting settings: --numgrad-method perturbed (the run used series)" in err


def test_bad_options_found_after_parsing(data_dirs, env, tmp_path, capsys):
    status, _, err = run_main(["--data-dir", data_dirs["small"], "--batch-size", 301, "--iters", 1], capsys)
    assert status == 2
    assert err == "scratchnet: error: --batch-size 301: larger than the training set (300 samples)\n"

    status, _, err = run_main(["--data-dir", data_dirs["small"], "--threads", 10_000], capsys)
    assert status == 2 and err.startswith("scratchnet: error: --threads 10000: number of threads must be between 1")

    (tmp_path / "file").write_text("x")
    status, _, err = run_main(["--data-dir", data_dirs["small"], "--out", tmp_path / "file"], capsys)
    assert status == 2 and "is not a directory" in err

    status, _, err = run_main(["--resume", tmp_path / "empty"], capsys)
    assert status == 2 and "not a scratchnet run directory" in err


def test_resume_rejects_conflicts_and_damaged_runs(data_dirs, env, tmp_path, capsys):
    out = tmp_path / "run"
    status, _, err = run_main(
        train_args(data_dirs["small"], iters=12, batch_size=50, hidden=5, out=out),
        capsys,
    )
    assert status == 0, err

    status, _, err = run_main(["--resume", out, "--lr", 0.5, "--hidden", 5, "--gradient", "numerical"], capsys)
    assert status == 2
    assert err.startswith(f"scratchnet: error: --resume {out}: conflicting settings: ")
    assert "--lr 0.5 (the run used 0.1)" in err and "--gradient numerical (the run used backprop)" in err
    assert "--hidden" not in err  # same value as the run: no conflict

    status, _, err = run_main(["--resume", out, "--iters", 11], capsys)
    assert status == 2 and "already done 12 iterations" in err

    # extending a finished run: allowed, continues from iteration 12
    status, out_text, err = run_main(["--resume", out, "--iters", 13, "--no-progress"], capsys)
    assert status == 0, err
    assert json.loads((out / "history.json").read_text())["iterations_done"] == 13

    # params.npz replaced by another run's: detected, not silently resumed
    other = tmp_path / "other"
    run_main(
        train_args(data_dirs["small"], iters=2, batch_size=50, hidden=5, out=other),
        capsys,
    )
    (out / "params.npz").write_bytes((other / "params.npz").read_bytes())
    status, _, err = run_main(["--resume", out, "--iters", 20], capsys)
    one_line_error(status, err, f"--resume {out}: params.npz was replaced after the save; ")

    config = json.loads((other / "config.json").read_text())
    config["settings"]["batch_size"] = "50"
    (other / "config.json").write_text(json.dumps(config))
    status, _, err = run_main(["--resume", other, "--iters", 20], capsys)
    one_line_error(
        status, err, f"--resume {other}: config.json was edited (--batch-size '50', saved 50) after the save"
    )
    assert f"scratchnet train --init-from {other} --out NEW_DIR [options]" in err


def test_a_run_saved_before_checkpoints_is_checked_and_resumed(data_dirs, env, tmp_path, capsys):
    out = saved_before_checkpoints(data_dirs, tmp_path, capsys)
    params = load_params(out)
    other = tmp_path / "other"
    assert run_main(["--data-dir", data_dirs["tiny"], *TINY, "--iters", 1, "--out", other], capsys)[0] == 0
    (out / "params.npz").write_bytes((other / "params.npz").read_bytes())
    status, _, err = run_main(["--resume", out, "--iters", 3], capsys)
    one_line_error(status, err, f"--resume {out}: cannot resume the saved run: ")
    assert "params.npz does not belong to history.json (different SHA-256)" in err

    rewrite_params(out, params)
    assert run_main(["--resume", out, "--iters", 3, "--no-progress"], capsys)[0] == 0
    assert (out / "checkpoint.npz").is_file()  # saved in today's layout


def test_without_matplotlib_training_runs_and_says_how_to_plot(data_dirs, env, tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib... now raises ImportError
    out = tmp_path / "run"
    status, stdout, err = run_main(
        train_args(data_dirs["small"], iters=3, batch_size=100, hidden=5, out=out),
        capsys,
    )
    assert status == 0, err
    assert 'pip install "scratchnet[plot]"' in err
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.npz",
        "config.json",
        "history.csv",
        "history.json",
        "params.npz",
    ]


def test_atomic_open_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary file left
    with atomic_open(target, "w") as f:
        f.write("new")
    assert target.read_text() == "new"
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_training_runs_with_one_blas_thread_unless_the_user_says_otherwise(monkeypatch):
    from threadpoolctl import threadpool_info

    from scratchnet._blas import single_threaded_blas_unless_configured

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    before = blas_threads()
    with single_threaded_blas_unless_configured():
        assert blas_threads() == {1}
    assert blas_threads() == before
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    with single_threaded_blas_unless_configured():
        assert blas_threads() == before  # the user's setting wins: nothing changed


# -- a run is never lost to where it is written ---------------------------------


def one_line_error(status, err, option):
    """The CLI's contract for a problem the user can fix: status 2, one line naming the option."""
    assert status == 2, err
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"scratchnet: error: {option}"), err


@contextlib.contextmanager
def unwritable_dir(tmp_path):
    """A directory that even root cannot write into (immutable attribute), or skip."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        try:
            yield d
        finally:
            d.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", d], capture_output=True).returncode:
        pytest.skip("running as root and cannot make a directory immutable (chattr +i)")
    try:
        yield d
    finally:
        subprocess.run(["chattr", "-i", d], check=True)


@pytest.mark.parametrize("where", ["read-only dir", "under a file", "/proc/self/x"])
def test_unwritable_out_fails_before_training(where, data_dirs, env, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with contextlib.ExitStack() as stack:
        out = {
            "read-only dir": lambda: stack.enter_context(unwritable_dir(tmp_path)) / "run",
            "under a file": lambda: tmp_path / "file" / "run",
            "/proc/self/x": lambda: "/proc/self/x",
        }[where]()
        status, stdout, err = run_main(["--data-dir", data_dirs["tiny"], *TINY, "--iters", 50, "--out", out], capsys)
    one_line_error(status, err, f"--out {out}: cannot write there")
    assert stdout == ""  # refused before training, not after


def test_out_refuses_an_existing_run_unless_overwrite(data_dirs, env, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--data-dir", data_dirs["tiny"], *TINY, "--out", out]
    assert run_main([*common, "--iters", 2], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    status, stdout, err = run_main([*common, "--iters", 3, "--seed", 1], capsys)
    one_line_error(status, err, f"--out {out}: holds a run already")
    assert "--overwrite" in err and "--resume" in err and stdout == ""
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    status, _, err = run_main([*common, "--iters", 3, "--seed", 1, "--overwrite"], capsys)
    assert status == 0, err
    assert json.loads((out / "config.json").read_text())["settings"]["seed"] == 1

    status, stdout, err = run_main(["--data-dir", data_dirs["tiny"], *TINY, "--iters", 1, "--out", ""], capsys)
    one_line_error(status, err, "--out '': ")
    assert stdout == "" and not (tmp_path / "config.json").exists()


def test_resume_refuses_changed_data(data_dirs, env, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(data_dirs["tiny"], data)
    out = tmp_path / "run"
    assert run_main(["--data-dir", data, *TINY, "--iters", 2, "--out", out], capsys)[0] == 0
    config = json.loads((out / "config.json").read_text())
    assert len(config["data_sha256"]) == 64
    labels = data / "train-labels-idx1-ubyte"
    blob = bytearray(labels.read_bytes())
    blob[-1] = (blob[-1] + 1) % 10  # one label changed
    labels.write_bytes(bytes(blob))
    status, stdout, err = run_main(["--resume", out, "--iters", 4], capsys)
    one_line_error(status, err, f"--resume {out}: the data changed since the run started")
    assert "train-labels-idx1-ubyte" in err and stdout == ""
    assert json.loads((out / "history.json").read_text())["iterations_done"] == 2


def test_shipped_data_digest_is_recorded(env, tmp_path, capsys):
    from scratchnet.datasets.mnist import SHIPPED_SHA256

    out = tmp_path / "run"
    assert run_main([*TINY, "--batch-size", 100, "--iters", 1, "--out", out], capsys)[0] == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data_files_sha256"] == SHIPPED_SHA256


def signal_run(args, env, sig, code=None):
    """Start ``scratchnet train`` (or ``code``), send ``sig`` after the first
    accuracy line, return (returncode, stderr)."""
    cmd = (
        [sys.executable, "-c", code, *map(str, args)] if code else [sys.executable, "-m", "scratchnet", *map(str, args)]
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first_epoch_line(proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    return proc.returncode, err


def long_tiny_run(data_dirs, out):
    # 40 samples in batches of 40: an accuracy line every iteration; the pipe
    # fills long before 2,500 iterations (see the SIGINT test above).
    return ["train", "--data-dir", data_dirs["tiny"], *TINY, "--iters", 2500, "--out", out]


def assert_saved_and_resumable(out, env, iters=2500):
    config = json.loads((out / "config.json").read_text())
    done = json.loads((out / "history.json").read_text())["iterations_done"]
    assert config["status"] == "interrupted" and 0 < done < iters
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    r = run_cli(["train", "--resume", out, "--iters", done + 1, "--no-progress"], env)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_save_like_ctrl_c(sig, status, data_dirs, env, tmp_path):
    out = tmp_path / "run"
    code, err = signal_run(long_tiny_run(data_dirs, out), env, sig)
    assert code == status, err
    assert len(err.strip().splitlines()) == 1 and "interrupted after iteration" in err, err
    assert f"{signal.Signals(sig).name}" in err
    assert_saved_and_resumable(out, env)


# The child sends itself a second signal in the middle of saving: after
# params.npz, while history.json is written.
SIGNAL_WHILE_SAVING = """
import os, signal, sys
import scratchnet.runs.directory as directory
real = directory.atomic_write_text
def second_signal(path, text):
    if path.name == "history.json":
        os.kill(os.getpid(), signal.{second})
    return real(path, text)
directory.atomic_write_text = second_signal
from scratchnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "first, second, status",
    [
        (signal.SIGINT, "SIGINT", 130),
        (signal.SIGTERM, "SIGINT", 143),
        (signal.SIGINT, "SIGTERM", 130),
    ],
)
def test_a_second_signal_does_not_abort_the_save(first, second, status, data_dirs, env, tmp_path):
    out = tmp_path / "run"
    code, err = signal_run(long_tiny_run(data_dirs, out), env, first, SIGNAL_WHILE_SAVING.format(second=second))
    assert code == status, err
    assert "aborted" not in err and "Traceback" not in err
    assert "interrupted after iteration" in err and "--resume" in err
    assert_saved_and_resumable(out, env)


# The child sends itself another signal as the interpreter exits, once the
# command has returned its status (a second Ctrl-C right after the save).
SIGNAL_AT_EXIT = """
import atexit, os, signal, sys
atexit.register(lambda: os.kill(os.getpid(), signal.{second}))
from scratchnet.cli import entry_point
entry_point()
"""


@pytest.mark.parametrize("second", ["SIGINT", "SIGTERM"])
def test_a_signal_after_the_save_does_not_change_the_exit_status(second, data_dirs, env, tmp_path):
    out = tmp_path / "run"
    code, err = signal_run(long_tiny_run(data_dirs, out), env, signal.SIGINT, SIGNAL_AT_EXIT.format(second=second))
    assert code == 130, err
    assert "Traceback" not in err
    assert_saved_and_resumable(out, env)


def test_a_signal_at_the_end_of_a_run_without_out_says_nothing_was_saved(data_dirs, env):
    # SIGTERM lands while the completed run is evaluated: a no-op here, with no --out
    code = """
import os, signal, sys
from scratchnet.runs import run
real = run._final_accuracies
def signalled(setup):
    os.kill(os.getpid(), signal.SIGTERM)
    return real(setup)
run._final_accuracies = signalled
from scratchnet.cli import main
sys.exit(main(sys.argv[1:]))
"""
    args = ["train", "--data-dir", data_dirs["tiny"], *TINY, "--iters", 3]
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    assert r.returncode == 143, r.stderr
    assert r.stderr == "scratchnet: SIGTERM received at the end; the run completed (nothing saved: no --out)\n"


def test_stale_temporaries_of_an_interrupted_save_are_removed(data_dirs, env, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--data-dir", data_dirs["tiny"], *TINY]
    assert run_main([*common, "--iters", 2, "--out", out], capsys)[0] == 0
    stale = [out / ".params.npz.k2j3h4.tmp", out / ".history.json.x8y9z0.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")  # what a SIGKILL in the middle of a save leaves
    (out / ".notes.tmp").write_text("not ours")
    assert run_main(["--resume", out, "--iters", 3], capsys)[0] == 0
    assert not any(p.exists() for p in stale)
    assert (out / ".notes.tmp").exists()  # only the run's own temporaries are touched

    for p in stale:
        p.write_bytes(b"half a file")
    assert run_main([*common, "--iters", 2, "--out", out, "--overwrite"], capsys)[0] == 0
    assert not any(p.exists() for p in stale)


def test_huge_hidden_is_refused_before_allocating(data_dirs, env, capsys):
    status, stdout, err = run_main(["--data-dir", data_dirs["tiny"], *TINY, "--hidden", 100_000_000_000], capsys)
    one_line_error(status, err, "--hidden 100000000000: needs about ")
    assert "memory" in err and stdout == ""


def test_data_dir_of_an_unknown_user(env, capsys):
    status, _, err = run_main(["--data-dir", "~nosuchuser/x", "--iters", 1], capsys)
    one_line_error(status, err, "--data-dir ~nosuchuser/x: ")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "SCRATCHNET_CACHE_DIR",
            "~scratchnet-no-such-user/x",
            "SCRATCHNET_CACHE_DIR='~scratchnet-no-such-user/x': cannot expand '~scratchnet-no-such-user': there is "
            "no user 'scratchnet-no-such-user'; set it to a folder path without '~', e.g. an absolute one",
        ),
        ("NUMBA_NUM_THREADS", "0", "NUMBA_NUM_THREADS=0: Numba needs at least 1 thread; set it to a number of "),
        ("NUMBA_THREADING_LAYER", "bogus", "NUMBA_THREADING_LAYER=bogus: not a threading layer of Numba; expected "),
    ],
)
@pytest.mark.parametrize("command", ["train", "figures", "sweep"])
def test_an_environment_variable_that_cannot_be_used_is_one_line(command, name, value, message, tmp_path, monkeypatch):
    # Once: RuntimeError: Could not determine home directory; Numba's ValueError; each with a traceback.
    monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    with contextlib.redirect_stdout(io.StringIO()) as stdout, contextlib.redirect_stderr(io.StringIO()) as stderr:
        status = cli.main([command, "--out", str(out), *(["--iters", "1"] if command == "train" else [])])
    one_line_error(status, stderr.getvalue(), message)
    assert stdout.getvalue() == "" and not out.exists()  # refused before any work


def test_a_threading_layer_numba_cannot_load_is_one_line(data_dirs, env):
    # Found only when Numba starts its threads, at the first kernel: "safe" is TBB.
    env = {k: v for k, v in env.items() if not k.startswith("NUMBA_")} | {"NUMBA_THREADING_LAYER": "safe"}
    proc = run_cli(["train", "--data-dir", data_dirs["tiny"], *TINY, "--iters", 1], env)
    if proc.returncode == 0:
        pytest.skip("Numba loads TBB here")
    err = proc.stderr.splitlines()[-1] + "\n"  # after the line that opens the run
    one_line_error(proc.returncode, err, "NUMBA_THREADING_LAYER=safe: Numba could not load this threading layer (")
    assert "Traceback" not in proc.stderr


def saved_run(data_dirs, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(["--data-dir", data_dirs["tiny"], *TINY, "--iters", 2, "--out", out], capsys)[0] == 0
    return out


def saved_before_checkpoints(data_dirs, tmp_path, capsys):
    """A run directory as version 0.1 wrote it: no checkpoint.npz; the state in params.npz, history.json and
    config.json."""
    out = saved_run(data_dirs, tmp_path, capsys)
    (out / "checkpoint.npz").unlink()
    config = json.loads((out / "config.json").read_text())
    del config["checkpoint_sha256"]
    (out / "config.json").write_text(json.dumps(config))
    return out


def rewrite_params(out, params):
    """Replace params.npz and record its digest in history.json, as a save would."""
    buf = io.BytesIO()
    np.savez(buf, **params)
    (out / "params.npz").write_bytes(buf.getvalue())
    hist = json.loads((out / "history.json").read_text())
    hist["params_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (out / "history.json").write_text(json.dumps(hist))


def test_resume_of_a_run_saved_before_checkpoints_refuses_nan_params(data_dirs, env, tmp_path, capsys):
    out = saved_before_checkpoints(data_dirs, tmp_path, capsys)
    params = load_params(out)
    params["W2"][3, 4] = np.nan
    rewrite_params(out, params)
    status, _, err = run_main(["--resume", out, "--iters", 4], capsys)
    one_line_error(status, err, f"--resume {out}: ")
    assert "params.npz['W2']" in err and "NaN" in err


def test_resume_of_a_run_saved_before_checkpoints_refuses_a_non_pcg64_state(data_dirs, env, tmp_path, capsys):
    out = saved_before_checkpoints(data_dirs, tmp_path, capsys)
    hist = json.loads((out / "history.json").read_text())
    hist["rng_state"] = np.random.MT19937(0).state
    hist["rng_state"]["state"]["key"] = hist["rng_state"]["state"]["key"].tolist()
    (out / "history.json").write_text(json.dumps(hist))
    status, _, err = run_main(["--resume", out, "--iters", 4], capsys)
    one_line_error(status, err, f"--resume {out}: ")
    assert "rng_state" in err and "PCG64" in err


@pytest.mark.parametrize("name", ["history.json", "config.json"])
def test_resume_of_a_run_saved_before_checkpoints_refuses_deep_json(name, data_dirs, env, tmp_path, capsys):
    out = saved_before_checkpoints(data_dirs, tmp_path, capsys)
    (out / name).write_text("[" * 100_000 + "]" * 100_000)
    status, _, err = run_main(["--resume", out, "--iters", 4], capsys)
    one_line_error(status, err, f"--resume {out}: ")
    assert name in err


def test_sighup_from_a_closed_terminal_still_saves(data_dirs, env, tmp_path):
    """The real case of SIGHUP: the terminal is gone, so every write fails (EIO)."""
    import pty
    import select

    out = tmp_path / "run"
    args = [a for a in long_tiny_run(data_dirs, out) if a != "--no-progress"]  # the bar writes to the tty too
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scratchnet", *map(str, args)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        seen = b""
        while EPOCH_LINE.encode() not in seen:
            assert select.select([master], [], [], 60)[0], "no output from the child within 60 s"
            seen += os.read(master, 4096)
        os.close(master)  # the terminal closes; the child's writes now fail
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=120) == 129
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert_saved_and_resumable(out, env)


def test_a_run_that_cannot_be_saved_in_out_is_saved_elsewhere(data_dirs, env, tmp_path, capsys, monkeypatch):
    import errno
    import re
    import tempfile

    from scratchnet.runs import directory

    target = tmp_path / "run"
    real = directory.write_run

    def full_disk(out, *args):
        if out == target and (out / "config.json").exists() is False:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(out, *args)

    monkeypatch.setattr(directory, "write_run", full_disk)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    status, _, err = run_main(["--data-dir", data_dirs["tiny"], *TINY, "--iters", 3, "--out", target], capsys)
    assert status == 1 and err.count("\n") == 1, err
    assert f"--out {target}: cannot write results (No space left on device); saved the run to " in err
    rescued = re.search(r"saved the run to (\S+) instead", err).group(1)
    assert json.loads((tmp_path / rescued / "config.json").read_text())["status"] == "completed"
    assert run_main(["--resume", rescued, "--iters", 4], capsys)[0] == 0


def test_a_run_that_cannot_be_saved_anywhere_leaves_no_empty_rescue_directory(
    data_dirs, env, tmp_path, capsys, monkeypatch
):
    import errno
    import tempfile

    from scratchnet.runs import directory

    def file_too_large(out, *args):  # as under a too small ulimit -f
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(directory, "write_run", file_too_large)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    target = tmp_path / "run"
    status, _, err = run_main(["--data-dir", data_dirs["tiny"], *TINY, "--iters", 3, "--out", target], capsys)
    assert status == 1 and err.count("\n") == 1, err
    assert err.startswith(f"scratchnet: error: --out {target}: cannot write results (File too large), nor in a ")
    assert err.endswith(": the run is lost\n")
    assert not list(tmp_path.glob("scratchnet-rescued-run-*"))


def test_run_training_writes_what_the_command_writes(data_dirs, env, tmp_path, capsys):
    from scratchnet.runs import run_training

    settings = {
        "gradient": "backprop",
        "data_dir": str(data_dirs["small"]),
        "iters": 7,
        "batch_size": 50,
        "lr": 0.5,
        "hidden": 5,
        "seed": 2,
    }
    result = run_training(settings, tmp_path / "api", threads=1)
    assert capsys.readouterr().out == ""  # a library call prints nothing
    cli_args = [a for k, v in settings.items() for a in (f"--{k.replace('_', '-')}", v)]
    assert run_main([*cli_args, "--out", tmp_path / "cli", "--no-progress"], capsys)[0] == 0

    api, cmd = tmp_path / "api", tmp_path / "cli"
    assert sorted(p.name for p in api.iterdir()) == sorted(p.name for p in cmd.iterdir())
    for name in ("params.npz", "history.json", "history.csv"):
        assert (api / name).read_bytes() == (cmd / name).read_bytes(), name
    config = json.loads((api / "config.json").read_text())
    assert config["settings"] == json.loads((cmd / "config.json").read_text())["settings"]
    assert config["argv"][:3] == ["train", "--gradient", "backprop"]
    assert result.status == "completed" and result.iterations_done == result.ran == 7
    assert result.final == config["final"] and result.best_test_acc == max(
        e["test_acc"] for e in json.loads((api / "history.json").read_text())["epochs"]
    )
