"""Fuzzing the command line (lightly: its own tests are in test_cli.py),
each example in a child interpreter: ``scratchnet`` argument lists, mostly
``train`` with a few options, some unknown, end in exit status 0, 1, 2 or
130, with no traceback, no warning, no crash and no hang.
"""

import contextlib
import io
import os
import shutil
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import scratchnet as sn
from fuzz_harness import BACKENDS, SHRINK, worker_fixture
from fuzzing import FUZZ_EXAMPLES, fuzz_settings

pytestmark = pytest.mark.fuzz

CLI_OPTIONS = {
    "--gradient": ["numerical", "backprop", "Backprop"],
    "--backend": list(BACKENDS) + ["cuda"],
    "--batch-size": ["1", "2", "5", "6", "0", "x"],
    "--lr": ["0.1", "1e-3", "1e300", "nan", "inf", "-1", "0", "x"],
    "--hidden": ["1", "3", "0", "-2", "x"],
    "--seed": ["0", "7", "-1", "x", "99999999999999999999999"],
    "--threads": ["1", "2", "0", "300", "x"],
    "--data-dir": ["{data}", "{data}", "{tmp}/missing", "{file}", ""],
    "--out": ["{tmp}/out", "{file}", "{tmp}", "{run}"],
    "--resume": ["{run}", "{tmp}/missing", "{file}", "{tmp}"],
}
TINY_ITERS = ["0", "1", "2", "-1", "x", "1.5", ""]


@st.composite
def cli_argvs(draw):
    """``scratchnet`` argument lists: mostly ``train`` with a few options
    (``--iters`` at most 2, ``--data-dir`` a 5-sample folder unless junk,
    outputs in a temporary folder), some unknown options and values,
    ``figures`` only where it fails before drawing, other commands."""
    command = draw(st.sampled_from(["train"] * 8 + ["figures", "trian", "", "--help"]))
    if command == "":
        return []
    if command == "figures":
        return ["figures"] + draw(st.sampled_from([[], ["--out", "{file}"], ["--out"], ["--bogus", "1"]]))
    argv = [
        command,
        "--iters",
        draw(st.sampled_from(TINY_ITERS)),
        "--batch-size",
        "2",
        "--hidden",
        "3",
        "--backend",
        BACKENDS[-1],
    ]
    argv += ["--data-dir", "{data}"] if draw(st.integers(0, 3)) else []
    for option in draw(st.lists(st.sampled_from(sorted(CLI_OPTIONS)), max_size=4, unique=True)):
        argv += [option, draw(st.sampled_from(CLI_OPTIONS[option]))]
    if draw(st.booleans()):
        argv.append("--no-progress")
    if draw(st.integers(0, 4)) == 0:  # anything: an unknown option, a stray value
        argv.insert(draw(st.integers(1, len(argv))), draw(st.one_of(st.text(max_size=6), st.just("--frobnicate"))))
    if "--resume" in argv and "{run}" in argv and draw(st.booleans()):  # a resume that runs: raise the total
        argv[argv.index("--iters") + 1] = "3"
    return argv


# -- in the child ------------------------------------------------------------------
_CLI_STATE = {}


def _cli_fixtures():
    """A tiny MNIST-layout folder, a regular file and a finished run, made once per child."""
    if not _CLI_STATE:
        from idx_helpers import write_small_mnist
        from scratchnet import cli

        root = Path(tempfile.mkdtemp(prefix="fuzz-cli-"))
        write_small_mnist(root / "data")
        (root / "file").write_text("not a folder")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = cli.main(
                [
                    "train",
                    "--data-dir",
                    str(root / "data"),
                    "--iters",
                    "2",
                    "--batch-size",
                    "2",
                    "--hidden",
                    "3",
                    "--backend",
                    BACKENDS[-1],
                    "--no-progress",
                    "--out",
                    str(root / "run"),
                ]
            )
        assert status == 0
        _CLI_STATE.update(root=root, data=root / "data", file=root / "file", run=root / "run")
    return _CLI_STATE


def run_cli(argv):
    from scratchnet import cli

    fixtures = _cli_fixtures()
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-cli-run-"))
    if any("{run}" in a for a in argv):
        shutil.copytree(fixtures["run"], tmp / "run")
    values = {"tmp": str(tmp), "data": str(fixtures["data"]), "file": str(fixtures["file"]), "run": str(tmp / "run")}
    for key, value in values.items():  # not str.format: a random word may hold braces
        argv = [a.replace("{" + key + "}", value) for a in argv]
    threads, cwd = sn.get_num_threads(), os.getcwd()
    stdout, stderr = io.StringIO(), io.StringIO()
    result = {"argv": argv, "status": None, "traceback": None}
    print(f"[child] cli {argv}", file=sys.stderr, flush=True)
    os.chdir(tmp)  # a random word may become a relative --out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                result["status"] = cli.main(argv)
        except SystemExit as exc:  # argparse: 2 for bad options, 0 for --help
            result["status"] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            result["traceback"] = traceback.format_exc()
        finally:
            sn.set_num_threads(threads)
            os.chdir(cwd)
    result["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    result["stderr"] = stderr.getvalue()
    shutil.rmtree(tmp, ignore_errors=True)
    return result


HANDLERS = {"cli": run_cli}


# -- in the test -------------------------------------------------------------------
worker = worker_fixture(__file__)


@fuzz_settings(max_examples=max(1, FUZZ_EXAMPLES // 2), **SHRINK)
@given(argv=cli_argvs())
def test_cli_exit_status(worker, argv):
    out = worker.run("cli", argv)
    event(f"exit status {out['status']}")
    assert out["traceback"] is None, f"scratchnet {out['argv']} raised:\n{out['traceback']}"
    assert out["status"] in (0, 1, 2, 130), f"scratchnet {out['argv']}: exit status {out['status']}"
    assert "Traceback" not in out["stderr"], out["stderr"]
    assert not out["warnings"], out["warnings"]
