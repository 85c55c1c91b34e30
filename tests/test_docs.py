"""The documentation: its kernel map agrees with the code, and the site builds without a warning.

The map check (docs/_ext/kernel_map.py) needs no Sphinx and always runs;
the build needs the ``docs`` extra (``pip install ".[docs]"``) and is
skipped without it.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import scratchnet

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _kernel_map():
    spec = importlib.util.spec_from_file_location("kernel_map", DOCS / "_ext" / "kernel_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kernel_map_matches_the_code():
    km = _kernel_map()
    assert km.check(scratchnet.backends.KERNELS) == []
    assert set(km.kernel_signatures()) == set(scratchnet.backends.KERNELS)  # a comment beside every kernel


def test_kernel_map_fails_on_a_new_kernel_or_a_wrong_name():
    # The check earns its place: a kernel without an entry, and each kind of
    # wrong name, is reported (the build then fails).
    km = _kernel_map()
    assert any("without an entry" in p for p in km.check(scratchnet.backends.KERNELS + ("new_kernel",)))
    entry = km.KERNEL_MAP["numgrad_series"]
    wrong = {
        "public": ("scratchnet.TwoLayerNet.numerical_gradient_typo",),
        "module": "numgrad_serie",
        "c": ("sn_numgrad_serie",),
        "glue": ("numgrad_series",),  # c.numgrad_series also calls numgrad_perturbed: unlisted
        "naive": ("net_numerical_gradient_typo",),
        "tests": ("test_network.py::test_no_such_test",),
    }
    for field, value in wrong.items():
        kernel_map = dict(km.KERNEL_MAP, numgrad_series=km.Kernel(**{**entry.__dict__, field: value}))
        problems = km.check(scratchnet.backends.KERNELS, kernel_map)
        assert problems, field


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    for module in ("sphinx", "numpydoc", "matplotlib"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f'{module} is not installed: the docs build needs the docs extra (pip install ".[docs]")')
    out = tmp_path / "html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for page in ("index", "installation", "chapter", "numerical_gradient", "kernels", "api"):
        assert (out / f"{page}.html").is_file(), page
    assert (out / "_images" / "step_size.png").is_file()  # drawn at build time
    assert "numgrad_perturbed" in (out / "kernels.html").read_text()
