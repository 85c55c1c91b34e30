"""scratchnet.runs: a run directory that is always resumable, checkpoints, the lock, and resume's checks.

The kill test (tests/test_kill.py) SIGKILLs real processes at random
instants; these tests check each piece in-process.
"""

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from scratchnet import runs
from scratchnet.runs import RunError, directory, lock
from test_cli import make_mnist_dir

SETTINGS = {"gradient": "backprop", "batch_size": 40, "hidden": 6, "lr": 0.5, "iters": 60}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(make_mnist_dir(tmp_path_factory.mktemp("mnist") / "tiny", 40, 40))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHNET_CACHE_DIR", str(tmp_path / "cache"))


def settings(data_dir, **changes):
    return {**SETTINGS, "data_dir": data_dir, **changes}


def params_of(out):
    return runs.load_run(out).params


class Killed(BaseException):
    """Stands for SIGKILL in-process: nothing catches it, nothing is saved on the way out."""


class KillAfter(runs.Reporter):
    def __init__(self, n):
        self.n = n

    def iteration(self, i, loss):
        if i + 1 >= self.n:
            raise Killed


def test_a_run_killed_mid_run_resumes_from_its_checkpoint_bitwise(data_dir, tmp_path):
    whole = runs.run_training(settings(data_dir), tmp_path / "whole", threads=1)
    out = tmp_path / "killed"
    with pytest.raises(Killed):
        # a checkpoint at every point training can resume from (stretch ends, here every iteration or few)
        runs.run_training(settings(data_dir), out, threads=1, reporter=KillAfter(45), checkpoint_every=1e-9)
    saved = runs.load_run(out)
    assert 0 < saved.history.iterations_done <= 45 and saved.config["status"] == "interrupted"
    assert not (out / "config.json").exists()  # a checkpoint holds the state only; the exports come at the end
    resumed = runs.run_training({"iters": 60}, out, resume_from=out, threads=1)
    assert resumed.config["sessions"] == [0, saved.history.iterations_done]
    for k, a in params_of(tmp_path / "whole").items():
        assert a.tobytes() == params_of(out)[k].tobytes(), k
    assert resumed.final == whole.final


def test_without_checkpoints_a_killed_new_run_leaves_no_run(data_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Killed):
        runs.run_training(settings(data_dir), out, threads=1, reporter=KillAfter(45), checkpoint_every=0)
    assert not directory.holds_run(out)
    assert runs.run_training(settings(data_dir), out, threads=1).status == "completed"  # accepted as a new run


def test_resume_refuses_an_edited_generator_state(data_dir, tmp_path):
    out = tmp_path / "run"
    runs.run_training(settings(data_dir), out, threads=1)
    hist = json.loads((out / "history.json").read_text())
    hist["rng_state"]["state"]["state"] += 1
    (out / "history.json").write_text(json.dumps(hist))
    with pytest.raises(RunError, match=r"history.json was edited \(rng_state\) after the save; .* --init-from"):
        runs.load_run(out)


def test_resume_refuses_a_damaged_or_edited_checkpoint(data_dir, tmp_path):
    out = tmp_path / "run"
    runs.run_training(settings(data_dir), out, threads=1)
    ok = (out / "checkpoint.npz").read_bytes()
    flipped = ok.replace(b'"lr": 0.5', b'"lr": 0.6')  # the zip's CRC no longer matches
    for blob in (flipped, ok[: len(ok) // 2]):
        (out / "checkpoint.npz").write_bytes(blob)
        with pytest.raises(RunError, match=f"--resume {out}: cannot resume the saved run: "):
            runs.load_run(out)
    with np.load(io.BytesIO(ok), allow_pickle=False) as npz:  # a valid zip, content edited
        arrays = {k: npz[k] for k in npz.files}
    arrays["state"] = np.frombuffer(arrays["state"].tobytes().replace(b'"lr": 0.5', b'"lr": 0.6'), np.uint8)
    np.savez(out / "checkpoint.npz", **arrays)
    with pytest.raises(RunError, match="checkpoint.npz was damaged or edited \\(its SHA-256 differs"):
        runs.load_run(out)


def test_resume_refuses_a_checkpoint_with_nan(data_dir, tmp_path):
    out = tmp_path / "run"
    runs.run_training(settings(data_dir), out, threads=1)
    saved = runs.load_run(out)
    saved.params["W2"][1, 2] = np.nan
    directory.commit(out, saved.params, saved.history, saved.config)
    with pytest.raises(RunError, match=r"checkpoint.npz\['W2'\] contains NaN or inf"):
        runs.load_run(out)


def test_init_from_starts_a_new_run_from_saved_parameters(data_dir, tmp_path):
    old = tmp_path / "old"
    runs.run_training(settings(data_dir), old, threads=1)
    new = tmp_path / "new"
    result = runs.run_training(settings(data_dir, lr=0.1, iters=0), new, init_from=old, threads=1)
    assert result.iterations_done == 0 and result.config["settings"]["lr"] == 0.1
    assert result.config["initial_params"] == {
        "from": str(old),
        "checkpoint_sha256": runs.load_run(old).digest,
    }
    for k, a in params_of(old).items():
        assert a.tobytes() == params_of(new)[k].tobytes(), k
    with pytest.raises(RunError, match=r"--init-from .*: params\['W1'\] has shape \(784, 6\), expected \(784, 7\)"):
        runs.run_training(settings(data_dir, hidden=7), tmp_path / "other", init_from=old, threads=1)


def test_leftovers_of_an_interrupted_save_are_removed_and_reported(data_dir, tmp_path):
    out = tmp_path / "run"
    runs.run_training(settings(data_dir), out, threads=1)
    (out / ".checkpoint.npz.abc123.tmp").write_bytes(b"half a checkpoint")
    notes = []

    class Notes(runs.Reporter):
        def note(self, text):
            notes.append(text)

    runs.run_training({"iters": 61}, out, resume_from=out, threads=1, reporter=Notes())
    assert notes == [f"{out}: removed 1 temporary file(s) of an interrupted save: .checkpoint.npz.abc123.tmp"]
    assert not list(out.glob(".*.tmp"))


# -- the lock ------------------------------------------------------------------
HOLD = """
import sys, time
from scratchnet.runs import lock
with lock.locked(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


@contextlib.contextmanager
def lock_holder(directory):
    """Another process holding ``directory``'s lock until the block ends (SIGKILL); yields it."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()


def test_a_directory_in_use_is_refused_at_once_naming_the_holder(data_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with lock_holder(out) as holder:
        with pytest.raises(RunError, match=rf"--out {out}: in use by another scratchnet \(pid {holder.pid}: "):
            runs.run_training(settings(data_dir), out, threads=1)
    # the holder was killed: the lock file stays, the lock went with the process
    assert (out / lock.LOCK_FILE).exists()
    assert runs.run_training(settings(data_dir), out, threads=1).status == "completed"
    assert not (out / lock.LOCK_FILE).exists()


def test_the_lock_excludes_within_one_process_too(tmp_path):
    with lock.locked(tmp_path):
        with pytest.raises(RunError, match=f"in use by another scratchnet \\(pid {os.getpid()}: "):
            with lock.locked(tmp_path):
                pass
    with lock.locked(tmp_path):  # released
        pass


# -- settings --------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"iters": 10**22}, "--iters 10000000000000000000000: must be <= 100000000"),
        ({"iters": -1}, "--iters -1: must be >= 0"),
    ],
)
def test_settings_out_of_bounds_are_refused_by_name(changes, message, data_dir):
    with pytest.raises(RunError, match=message):
        runs.complete_settings(settings(data_dir, **changes))


def test_checkpoint_every_is_checked(data_dir, tmp_path):
    with pytest.raises(RunError, match=r"--checkpoint-every -1: must be a finite number of seconds >= 0, got -1"):
        runs.run_training(settings(data_dir), tmp_path / "run", checkpoint_every=-1)


def test_a_data_dir_that_is_a_loop_of_symbolic_links_is_named(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(RunError, match="a loop of symbolic links") as error:
        runs.run_training({"data_dir": str(tmp_path / "a"), "iters": 1})
    assert str(error.value).startswith("--data-dir ") and "\n" not in str(error.value)
