"""scratchnet sweep: the grid, ids, and real Dask clusters.

The cluster tests start a real scheduler and two real workers as separate
processes on 127.0.0.1 (``python -m distributed.cli.dask_scheduler`` /
``dask_worker``), each in its own process group, and stop them at the end;
every wait has a timeout. The runs are tiny (backprop, a 300-sample MNIST
subset, hidden 6) so the whole module takes well under a minute and a half.
"""

import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from idx_helpers import write_idx
from scratchnet import cli
from scratchnet.datasets import load_mnist
from scratchnet.runs import run_training
from scratchnet.sweep import SweepError, expand, grid_point, normalize_grid, parse_values, run_id

pytest.importorskip("distributed", reason='the sweep tests need Dask: pip install "scratchnet[sweep]"')

TIMEOUT = 120  # seconds for any one sweep command


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """300 training and 100 test images of the shipped MNIST as an IDX folder."""
    (x, t), (xt, tt) = load_mnist(normalize=False)
    d = tmp_path_factory.mktemp("mnist300")
    write_idx(d / "train-images-idx3-ubyte", x[:300].reshape(-1, 28, 28))
    write_idx(d / "train-labels-idx1-ubyte", t[:300])
    write_idx(d / "t10k-images-idx3-ubyte", xt[:100].reshape(-1, 28, 28))
    write_idx(d / "t10k-labels-idx1-ubyte", tt[:100])
    return d


def tiny(data_dir, iters=40):
    return [
        "--gradient",
        "backprop",
        "--data-dir",
        str(data_dir),
        "--batch-size",
        "20",
        "--iters",
        str(iters),
        "--hidden",
        "6",
        "--no-progress",
    ]


def sweep_cli(args, timeout=TIMEOUT, **kw):
    return subprocess.run(
        [sys.executable, "-m", "scratchnet", "sweep", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def read_results(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def params_bytes(run_dir):
    return (run_dir / "params.npz").read_bytes()


def single_run(row, tmp_path):
    """The run of a results.csv row done alone, in this process, as `scratchnet train --out` does it."""
    settings = {
        "gradient": row["gradient"],
        "backend": row["backend"],
        "iters": int(row["iters"]),
        "batch_size": int(row["batch_size"]),
        "lr": float(row["lr"]),
        "hidden": int(row["hidden"]),
        "seed": int(row["seed"]),
        "data_dir": row["data_dir"] or None,
    }
    out = tmp_path / f"alone-{row['id']}"
    # One kernel thread: on a busy machine, 2-thread kernels of these tiny
    # runs spend their time waiting for each other (results do not depend on it).
    run_training(settings, out, threads=1)
    return out


# -- the grid, in process ------------------------------------------------------
def test_values_lists_and_ranges():
    assert parse_values("lr", "0.01,0.1,1") == [0.01, 0.1, 1.0]
    assert parse_values("seed", "0-3,7") == [0, 1, 2, 3, 7]
    assert parse_values("gradient", "backprop,numerical") == ["backprop", "numerical"]
    # each value once, where it first appears; overlapping ranges are cut, never listed
    seeds = parse_values("seed", "5,0-9,3-12,2")
    assert seeds == [5, 0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    assert seeds.parts == [range(5, 6), range(0, 5), range(6, 13)]
    assert parse_values("lr", "0.1,1,0.1") == [0.1, 1.0]
    for key, text, message in [
        ("lr", "0.1,-1", "--lr -1: must be a finite positive"),
        ("hidden", "5-2", "--hidden 5-2: an empty range"),
        ("batch_size", "0-100", "--batch-size 0: must be >= 1"),  # a range is checked at its ends
        ("backend", "numba,cuda", "--backend cuda: invalid choice"),
        ("iters", "10,,20", "--iters '10,,20': an empty value"),
    ]:
        with pytest.raises(SweepError, match=message):
            parse_values(key, text)


def test_full_grid_random_points_and_ids():
    grid = normalize_grid({"lr": [0.1, 1], "hidden": [5, 10, 20], "seeds": range(2), "iters": 100})
    points = expand(grid)
    assert len(points) == 12 and points[0] == {"lr": 0.1, "hidden": 5, "seed": 0, "iters": 100}
    sample = expand(grid, random=5, random_seed=1)
    assert len(sample) == 5 and all(p in points for p in sample) and sample == expand(grid, random=5, random_seed=1)

    ids = [run_id(p, ["lr", "hidden", "seed"]) for p in points]
    assert len(set(ids)) == 12
    assert ids[0].startswith("lr0.1-hidden5-seed0-")
    # derived from the settings alone: a default given explicitly is the same run
    assert run_id({"lr": 0.1}, ["lr"]) == run_id({"lr": 0.1, "iters": 10000, "backend": "numba"}, ["lr"])
    assert run_id({"lr": 0.1}, ["lr"]) != run_id({"lr": 0.1, "seed": 1}, ["lr"])


def test_points_in_product_order_and_the_same_draws_as_before():
    grid = normalize_grid({"lr": [0.1, 1], "hidden": "5", "seed": parse_values("seed", "3,0-2"), "iters": [100, 200]})
    product = itertools.product([0.1, 1.0], [5], [3, 0, 1, 2], [100, 200])
    assert list(expand(grid)) == [dict(zip(grid, combo)) for combo in product]
    # Grids of fewer than 2**63 points: numpy's default_rng(seed).choice(size, N, replace=False),
    # the points scratchnet always drew (these are what the list-building code drew).
    assert expand(grid, random=5, random_seed=1).numbers == [0, 5, 6, 10, 14]
    assert expand(grid, random=5, random_seed=2).numbers == [1, 3, 4, 6, 10]
    assert expand(grid, random=16) == expand(grid)  # N >= the grid: all of it


# A grid listed by mistake (10**21 seeds, value by value) must fail fast
# rather than fill the machine: these run in a process with 1 GB of
# address space (they use 160 MB; 320 MB with a Dask client), under a
# timeout. One BLAS thread: on many cores, OpenBLAS's thread stacks alone
# would take a good part of the 1 GB.
LIMITED = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"


def run_limited(code, *args, timeout=60):
    """``python -c code args`` in a process limited to 1 GB of address space."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", LIMITED + code, *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def test_a_grid_of_10_to_the_21_points_is_sampled_without_listing_it():
    r = run_limited("""
import json
from scratchnet.sweep import SweepError, expand, normalize_grid, parse_values
grid = normalize_grid({"seed": parse_values("seed", "0-999999999999999999999"), "lr": [0.1, 1],
                       "hidden": range(1, 10**12 + 1)})
sample = expand(grid, random=2, random_seed=7)
try:
    expand(grid)
except SweepError as exc:
    refused = str(exc)
print(json.dumps({"sizes": [v.size for v in grid.values()], "parts": [len(v.parts) for v in grid.values()],
                  "len": len(sample), "numbers": sample.numbers, "points": list(sample),
                  "again": list(expand(grid, random=2, random_seed=7)),
                  "other": list(expand(grid, random=2, random_seed=8)), "refused": refused}))
""")
    assert r.returncode == 0, r.stderr[-3000:]
    r = json.loads(r.stdout)
    assert r["sizes"] == [10**21, 2, 10**12] and r["parts"] == [1, 1, 1]  # ranges, not lists
    assert r["len"] == 2 and r["numbers"] == sorted(set(r["numbers"]))  # distinct, in grid order
    grid = normalize_grid({"seed": range(10**21), "lr": [0.1, 1], "hidden": range(1, 10**12 + 1)})
    assert r["points"] == [grid_point(grid, k) for k in r["numbers"]]
    # Beyond 2**63 points, Floyd's algorithm over Python ints from default_rng(seed)'s 64-bit words:
    # the same seed, the same points, on every machine.
    assert r["numbers"] == [779276229091312971640051373679741, 1622840613767887377281453446289299]
    assert r["again"] == r["points"] and r["other"] != r["points"]
    assert r["refused"] == (
        "--seed 0-999999999999999999999 --lr 0.1,1.0 --hidden 1-1000000000000: the grid has "
        "2,000,000,000,000,000,000,000,000,000,000,000 runs, more than a sweep runs in full (100,000); "
        "sample it with --random N"
    )


def test_a_full_grid_beyond_the_bound_says_how_to_sample_it(tmp_path, capsys):
    out = tmp_path / "s"
    assert cli.main(["sweep", "--out", str(out), "--seeds", "0-1000000"]) == 2
    assert capsys.readouterr().err == (
        "scratchnet: error: --seed 0-1000000: the grid has 1,000,001 runs, more than a sweep runs in full "
        "(100,000); sample it with --random N\n"
    )
    assert cli.main(["sweep", "--out", str(out), "--seeds", "0-1000000", "--random", "100001"]) == 2
    assert capsys.readouterr().err == "scratchnet: error: --random 100001: more runs than a sweep does (100,000)\n"
    assert not out.exists()  # refused before anything is written


def test_every_train_setting_is_sweepable(monkeypatch, capsys):
    """The sweep takes its settings from the train command's table: a new option needs no sweep code."""
    from scratchnet.runs import settings

    monkeypatch.setitem(settings.DEFAULTS, "momentum", 0.0)
    monkeypatch.setitem(settings.OPTION_TYPES, "momentum", float)
    assert normalize_grid({"momentum": "0.5"}) == {"momentum": [0.5]}
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    assert "--momentum LIST" in capsys.readouterr().out
    with pytest.raises(SweepError, match="unknown setting 'nesterov'"):
        normalize_grid({"nesterov": [True]})


def test_without_dask_it_says_how_to_install(monkeypatch, tmp_path, capsys):
    for name in ("dask", "dask.distributed", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)
    status = cli.main(["sweep", "--out", str(tmp_path / "s"), "--lr", "0.1,1"])
    err = capsys.readouterr().err
    assert status == 1 and err == 'scratchnet: error: scratchnet sweep needs Dask: pip install "scratchnet[sweep]"\n'


# -- a real cluster: a scheduler and two workers, separate processes -------------
def _start(args, env, log):
    return subprocess.Popen(
        [sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )  # own process group: stopped as a whole


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` (1 process, 1 thread each) on 127.0.0.1.

    Each worker has its own TMPDIR, so a test can see which worker is in the
    middle of a run (the run's temporary directory exists there).
    """
    root = tmp_path_factory.mktemp("dask")
    scheduler_file = root / "scheduler.json"
    log = open(root / "cluster.log", "w")  # noqa: SIM115 (closed at teardown)
    procs, tmpdirs = [], []
    try:
        procs.append(
            _start(
                [
                    "distributed.cli.dask_scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(scheduler_file),
                ],
                dict(os.environ),
                log,
            )
        )
        for i in range(2):
            tmpdirs.append(root / f"worker{i}-tmp")
            tmpdirs[-1].mkdir()
            env = {**os.environ, "TMPDIR": str(tmpdirs[-1])}
            procs.append(
                _start(
                    [
                        "distributed.cli.dask_worker",
                        "--scheduler-file",
                        str(scheduler_file),
                        "--nworkers",
                        "1",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--death-timeout",
                        "60",
                        "--local-directory",
                        str(root / f"worker{i}"),
                    ],
                    env,
                    log,
                )
            )
        _wait_for_workers(scheduler_file, 2, root / "cluster.log")
        address = json.loads(scheduler_file.read_text())["address"]
        yield {"file": scheduler_file, "address": address, "workers": procs[1:], "tmpdirs": tmpdirs}
    finally:
        for p in reversed(procs):
            _stop(p)
        log.close()


def _wait_for_workers(scheduler_file, n, log, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scheduler_file.exists():
            try:
                if (
                    len(json.loads(scheduler_file.read_text()).get("address", ""))
                    and log.read_text().count("Registered to:") >= n
                ):
                    return
            except ValueError:
                pass  # the file is being written
        time.sleep(0.2)
    raise TimeoutError(f"{n} Dask workers did not register within {timeout} s:\n{log.read_text()[-3000:]}")


def test_cluster_sweep_equals_single_runs_and_resumes(cluster, data_dir, tmp_path):
    out = tmp_path / "sweep"
    args = ["--out", out, "--scheduler", cluster["address"], *tiny(data_dir), "--lr", "0.5,1", "--seeds", "0-1"]
    r = sweep_cli(args)
    assert r.returncode == 0, r.stderr
    assert "sweep: 4 runs, 0 done already, 4 to run on tcp://127.0.0.1:" in r.stdout
    rows = read_results(out)
    assert [row["status"] for row in rows] == ["completed"] * 4
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(row["id"] for row in rows)
    for row in rows:  # every run of the sweep is an ordinary run directory, the same bits as alone
        run = out / "runs" / row["id"]
        alone = single_run(row, tmp_path)
        assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in alone.iterdir())
        assert params_bytes(run) == params_bytes(alone), row["id"]
        assert float(row["test_acc"]) == json.loads((alone / "config.json").read_text())["final"]["test_acc"]
    table = [line.split() for line in r.stdout.splitlines() if line.startswith("lr")]
    accs = [float(cols[5]) for cols in table]
    assert len(table) == 4 and accs == sorted(accs, reverse=True)  # sorted by test accuracy
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Started again: nothing to do, nothing touched.
    stamp = {p.name: (p / "params.npz").stat().st_mtime_ns for p in (out / "runs").iterdir()}
    r = sweep_cli([*args[:2], "--scheduler-file", cluster["file"], *args[4:]])
    assert r.returncode == 0, r.stderr
    assert "4 runs, 4 done already, 0 to run" in r.stdout
    assert stamp == {p.name: (p / "params.npz").stat().st_mtime_ns for p in (out / "runs").iterdir()}

    # One run lost, one stored half when the sweep was stopped: redone, cleaned.
    gone = rows[2]["id"]
    before = params_bytes(out / "runs" / gone)
    os.rename(out / "runs" / gone, out / "runs" / f".{gone}.abcd1234.tmp")
    (out / "runs" / f".{gone}.abcd1234.tmp" / "params.npz").unlink()
    r = sweep_cli(args)
    assert r.returncode == 0, r.stderr
    assert "4 runs, 3 done already, 1 to run" in r.stdout
    assert params_bytes(out / "runs" / gone) == before
    assert not [p for p in (out / "runs").iterdir() if p.name.startswith(".")]


def test_cluster_sweep_of_two_points_of_a_huge_grid(cluster, data_dir, tmp_path):
    """Run ids, sweep.json and results.csv are made for the points run, never for the whole grid."""
    out = tmp_path / "sweep"
    huge = ["--seeds", "0-999999999999999999999", "--random", 2]
    args = ["--out", out, "--scheduler", cluster["address"], *tiny(data_dir, iters=2), *huge]
    r = run_limited("import sys; from scratchnet import cli; sys.exit(cli.main(sys.argv[1:]))", "sweep", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "sweep: 2 runs, 0 done already, 2 to run" in r.stdout
    rows = read_results(out)
    assert [row["status"] for row in rows] == ["completed"] * 2
    seeds = [int(row["seed"]) for row in rows]
    assert seeds == sorted(set(seeds)) and all(0 <= s < 10**21 for s in seeds)
    spec = json.loads((out / "sweep.json").read_text())
    assert spec["grid"]["seed"] == ["0-999999999999999999999"] and spec["runs"] == [row["id"] for row in rows]


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(cluster, data_dir, tmp_path):
    out = tmp_path / "sweep"
    r = sweep_cli(["--out", out, "--scheduler", cluster["address"], *tiny(data_dir), "--batch-size", "20,500"])
    assert r.returncode == 1, r.stderr
    assert "1 of 2 runs failed; the error column of results.csv says why" in r.stderr
    rows = {row["batch_size"]: row for row in read_results(out)}
    assert rows["20"]["status"] == "completed" and rows["20"]["error"] == ""
    assert rows["500"]["status"] == "failed"
    assert rows["500"]["error"] == "--batch-size 500: larger than the training set (300 samples)"
    assert [p.name for p in (out / "runs").iterdir()] == [rows["20"]["id"]]  # a failed run leaves no directory


def test_a_killed_worker_does_not_lose_the_sweep(cluster, data_dir, tmp_path):
    """SIGKILL the worker process in the middle of a run: the run resumes from its last checkpoint elsewhere."""
    import psutil

    out = tmp_path / "sweep"
    args = ["--out", out, "--scheduler", cluster["address"], *tiny(data_dir, iters=10000), "--seeds", "0-2"]
    args += ["--checkpoint-every", 0.05]
    proc = subprocess.Popen(
        [sys.executable, "-m", "scratchnet", "sweep", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        victim = _worker_in_a_run(cluster, timeout=60)
        _wait_for_checkpoints(out / "runs", timeout=60)
        for child in psutil.Process(victim.pid).children(recursive=True):  # the nanny's worker process
            child.kill()
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == 0, stderr
    rows = read_results(out)
    assert [row["status"] for row in rows] == ["completed"] * 3
    for row in rows:  # nothing half-written: each run equals the same run done alone
        assert params_bytes(out / "runs" / row["id"]) == params_bytes(single_run(row, tmp_path))
    assert not [p for p in (out / "runs").iterdir() if p.name.startswith(".")]
    sessions = [json.loads((out / "runs" / row["id"] / "config.json").read_text())["sessions"] for row in rows]
    assert any(len(s) == 2 and s[1] > 0 for s in sessions), sessions  # resumed, not started again
    _wait_for_workers(cluster["file"], 3, cluster["file"].parent / "cluster.log")  # the nanny restarted it


def _wait_for_checkpoints(runs, timeout):
    """Until every run in progress (runs/.<id>.partial) has committed a checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        partial = [p for p in runs.glob(".*.partial")]
        if partial and all((p / "checkpoint.npz").exists() for p in partial):
            return
        time.sleep(0.01)
    raise TimeoutError("no run in progress committed a checkpoint")


def _worker_in_a_run(cluster, timeout):
    """The `dask worker` process whose TMPDIR holds a run's temporary directory."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, tmp in zip(cluster["workers"], cluster["tmpdirs"]):
            if any(p.name.startswith("scratchnet-sweep-") for p in tmp.iterdir()):
                time.sleep(0.2)  # well inside the run (about 1.5 s)
                return proc
        time.sleep(0.05)
    raise TimeoutError("no worker started a run")


# -- the default: a LocalCluster on this machine -------------------------------------
def test_local_cluster_ctrl_c_keeps_completed_runs_and_a_restart_finishes(data_dir, tmp_path):
    out = tmp_path / "sweep"
    args = ["--out", out, "--workers", 2, *tiny(data_dir, iters=6000), "--seeds", "0-3"]
    # Ctrl-C in a terminal signals the whole foreground process group: the
    # sweep and its LocalCluster's worker processes.
    proc = subprocess.Popen(
        [sys.executable, "-m", "scratchnet", "sweep", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not [p for p in (out / "runs").glob("seed*") if not p.name.startswith(".")]:
            assert time.monotonic() < deadline and proc.poll() is None, "no run completed within 60 s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == 130, stderr
    assert "sweep interrupted (SIGINT)" in stderr and "run the same command again" in stderr
    kept = {p.name: params_bytes(p) for p in (out / "runs").iterdir() if not p.name.startswith(".")}
    assert 1 <= len(kept) < 4
    statuses = [row["status"] for row in read_results(out)]
    assert statuses.count("completed") == len(kept) and statuses.count("not run") == 4 - len(kept)

    r = sweep_cli(args)
    assert r.returncode == 0, r.stderr
    assert f"4 runs, {len(kept)} done already, {4 - len(kept)} to run on a LocalCluster" in r.stdout
    rows = read_results(out)
    assert [row["status"] for row in rows] == ["completed"] * 4
    assert all(params_bytes(out / "runs" / name) == blob for name, blob in kept.items())
    assert params_bytes(out / "runs" / rows[-1]["id"]) == params_bytes(single_run(rows[-1], tmp_path))


def test_a_sweep_directory_in_use_is_refused_at_once(tmp_path, capsys):
    """A second sweep (or train) in a sweep directory fails at once, naming the process that uses it."""
    from test_runs import lock_holder

    out = tmp_path / "sweep"
    out.mkdir()
    with lock_holder(out) as holder:
        status = cli.main(["sweep", "--out", str(out), "--iters", "1", "--no-progress"])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1, err
        assert err.startswith(f"scratchnet: error: --out {out}: in use by another scratchnet (pid {holder.pid}: ")
        assert not (out / "runs").exists()  # nothing touched
