import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from scratchnet import cli
from scratchnet._atomic import atomic_open
from scratchnet.datasets import load_mnist

PARAMS = ("W1", "b1", "W2", "b2")
EPOCH_LINE = "train acc, test acc | "


def write_idx(path, array):
    """An uncompressed IDX file: magic 0x0000 08 ndim, big-endian dims, uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.tobytes())


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
        capture_output=True, text=True, env=env, timeout=timeout,
    )


def load_params(directory):
    with np.load(directory / "params.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def png_size(path):
    """(width, height) from a PNG's signature and IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name}: not a PNG"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# -- end to end in a subprocess ------------------------------------------------
def test_train_writes_a_complete_run_directory(data_dirs, env, tmp_path):
    out = tmp_path / "run"
    r = run_cli(["train", "--gradient", "backprop", "--data-dir", data_dirs["small"], "--iters", 30,
                 "--batch-size", 50, "--lr", 0.5, "--hidden", 8, "--seed", 3, "--out", out, "--no-progress"], env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    # 300 samples in batches of 50: an epoch every 6 iterations, 0, 6, ..., 24
    assert sum(line.startswith(EPOCH_LINE) for line in lines) == 5
    assert any(line.startswith("final train acc, test acc | ") for line in lines)
    assert any(line.startswith("wall time") for line in lines)

    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy.png", "config.json", "history.csv", "history.json", "loss.png", "params.npz",
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
    assert config["settings"] == {"gradient": "backprop", "backend": "numba", "iters": 30, "batch_size": 50,
                                  "lr": 0.5, "hidden": 8, "seed": 3,
                                  "data_dir": str(data_dirs["small"].resolve())}
    assert config["status"] == "completed" and config["iterations_done"] == 30
    assert set(config["versions"]) >= {"python", "numpy", "numba", "scratchnet"}
    assert config["threads"] >= 1 and config["train_size"] == 300 and config["test_size"] == 100

    for name in ("accuracy.png", "loss.png"):
        w, h = png_size(out / name)
        assert w >= 200 and h >= 150
    import matplotlib.image as mpimg  # a test dependency: the plots must parse

    assert mpimg.imread(out / "accuracy.png").shape[:2] == png_size(out / "accuracy.png")[::-1]


def test_numerical_gradient_run_with_default_backend(data_dirs, env, tmp_path):
    r = run_cli(["train", "--data-dir", data_dirs["small"], "--iters", 3, "--batch-size", 20, "--hidden", 4,
                 "--threads", 1, "--no-progress"], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(EPOCH_LINE)
    assert "wall time" in r.stdout


@pytest.mark.slow
def test_sigint_then_resume_equals_an_uninterrupted_run(data_dirs, env, tmp_path):
    # 40 samples in batches of 40: an accuracy line (37 bytes) on stdout every
    # iteration. The child blocks once the pipe (64 KiB: ~1,770 lines, plus
    # the 8 KiB that readline buffers) is full, so it is still short of 2,500
    # iterations when SIGINT arrives, however slow this process is to send it.
    common = ["train", "--gradient", "backprop", "--data-dir", data_dirs["tiny"], "--batch-size", 40,
              "--hidden", 6, "--lr", 0.5, "--iters", 2500, "--no-progress"]
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scratchnet", *map(str, common), "--out", str(cut)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith(EPOCH_LINE), first + proc.stderr.read()
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
    status, _, err = run_main(["--gradient", "backprop", "--data-dir", data_dirs["small"], "--iters", 12,
                               "--batch-size", 50, "--hidden", 5, "--out", out, "--no-progress"], capsys)
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
    run_main(["--gradient", "backprop", "--data-dir", data_dirs["small"], "--iters", 2, "--batch-size", 50,
              "--hidden", 5, "--out", other, "--no-progress"], capsys)
    (out / "params.npz").write_bytes((other / "params.npz").read_bytes())
    status, _, err = run_main(["--resume", out, "--iters", 20], capsys)
    assert status == 2 and "params.npz does not belong to history.json" in err

    config = json.loads((other / "config.json").read_text())
    config["settings"]["batch_size"] = "50"
    (other / "config.json").write_text(json.dumps(config))
    status, _, err = run_main(["--resume", other, "--iters", 20], capsys)
    assert status == 2 and "invalid batch_size '50'" in err


def test_without_matplotlib_training_runs_and_says_how_to_plot(data_dirs, env, tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib... now raises ImportError
    out = tmp_path / "run"
    status, stdout, err = run_main(["--gradient", "backprop", "--data-dir", data_dirs["small"], "--iters", 3,
                                    "--batch-size", 100, "--hidden", 5, "--out", out, "--no-progress"], capsys)
    assert status == 0, err
    assert 'pip install "scratchnet[plot]"' in err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.csv", "history.json", "params.npz"]


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

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    before = blas_threads()
    with cli.single_threaded_blas():
        assert blas_threads() == {1}
    assert blas_threads() == before
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    with cli.single_threaded_blas():
        assert blas_threads() == before  # the user's setting wins: nothing changed
