"""The documentation: the kernel map agrees with the code, README links resolve, the site builds without warnings.

The map check (docs/_ext/kernel_map.py) needs no Sphinx and always runs;
the build needs the ``docs`` extra (``pip install ".[docs]"``) and is
skipped without it.
"""

import importlib.util
import re
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


def _readme_links(text):
    """The relative targets of the README's Markdown links and images, without #anchors."""
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_readme_links_to_files_that_exist():
    # The README is a tour that points into docs/: every relative link must
    # name a file or folder of the repository, as GitHub resolves it.
    readme = DOCS.parent / "README.md"
    if not readme.is_file():
        pytest.skip("needs the README")
    links = _readme_links(readme.read_text(encoding="utf-8"))
    assert any(link.startswith("docs/") and link.endswith(".rst") for link in links)
    assert [link for link in links if not (DOCS.parent / link).exists()] == []


def test_readme_links_check_fails_on_a_missing_page():
    links = _readme_links("[cli](docs/cli.rst), [gone](docs/no_such_page.rst#x), [asv](https://asv.readthedocs.io)")
    assert links == ["docs/cli.rst", "docs/no_such_page.rst"]
    assert not (DOCS.parent / links[1]).exists()


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
    pages = ("index", "installation", "chapter", "cli", "sweeps", "numerical_gradient", "kernels", "performance")
    for page in pages + ("benchmarks", "api"):
        assert (out / f"{page}.html").is_file(), page
    assert (out / "_images" / "step_size.png").is_file()  # drawn at build time
    assert "numgrad_perturbed" in (out / "kernels.html").read_text()
