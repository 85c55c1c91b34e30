"""Packaging: the version is written once, and the build's fallbacks (kernels/CMakeLists.txt).

The full builds (no compiler, manylinux wheel, one per instruction set) are
CI jobs in .ci/; here, CMake's configure step alone, a second or two each.
"""

import importlib.metadata
import pathlib
import re
import shutil
import subprocess

import pytest

import scratchnet

ROOT = pathlib.Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
NO_C_BACKEND = "C compiler not found: building without the c backend; numpy and numba backends are available"


def test_version_is_the_installed_distributions():
    # pyproject.toml reads it from __init__.py (scikit-build-core's regex provider).
    assert scratchnet.__version__ == importlib.metadata.version("scratchnet")
    assert re.fullmatch(r"\d+\.\d+\.\d+", scratchnet.__version__)


def _configure(tmp_path, monkeypatch, *args, cc=None):
    """Run CMake's configure step on kernels/ in tmp_path; (exit status, output with lines joined)."""
    cmake = shutil.which("cmake")
    if cmake is None or not KERNELS.is_dir():
        pytest.skip("needs cmake and the kernels/ sources")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    if cc is not None:
        monkeypatch.setenv("CC", cc)
    proc = subprocess.run(
        [
            cmake,
            "-S",
            str(KERNELS),
            "-B",
            str(tmp_path / "build"),
            *generator,
            "-DSKBUILD_PROJECT_NAME=scratchnet",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


@pytest.mark.parametrize("cc", ["/bin/false", "/nonexistent/cc"])
def test_without_a_compiler_the_build_goes_on_without_the_c_backend(tmp_path, monkeypatch, cc):
    status, output = _configure(tmp_path, monkeypatch, cc=cc)
    assert status == 0, output
    assert NO_C_BACKEND in output


def test_without_a_compiler_require_c_fails(tmp_path, monkeypatch):
    status, output = _configure(tmp_path, monkeypatch, "-DSCRATCHNET_REQUIRE_C=ON", cc="/bin/false")
    assert status != 0
    assert "C compiler not found, and SCRATCHNET_REQUIRE_C is ON" in output


def test_unknown_instruction_set_is_refused(tmp_path, monkeypatch):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("needs a C compiler")
    status, output = _configure(tmp_path, monkeypatch, "-DSCRATCHNET_ISA=sse9")
    assert status != 0
    assert "SCRATCHNET_ISA=sse9: expected clones, x86-64, avx2 or avx512f" in output


def test_installation_page_quotes_the_builds_message():
    # The page users read when the c backend is missing quotes the message as the build prints it.
    page = ROOT / "docs" / "installation.rst"
    if not page.is_file():
        pytest.skip("needs docs/installation.rst")
    assert NO_C_BACKEND in " ".join(page.read_text(encoding="utf-8").split())
