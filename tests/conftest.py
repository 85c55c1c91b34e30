import os

import numpy as np
import pytest

import scratchnet


def selected_backends():
    """The installed backends, or those named in ``SCRATCHNET_TEST_BACKENDS``
    (comma-separated, e.g. ``c,numpy`` for the sanitizer run, which keeps
    Numba out of an ASan process): only these are loaded."""
    wanted = os.environ.get("SCRATCHNET_TEST_BACKENDS")
    if not wanted:
        return scratchnet.available_backends()
    names = [name.strip() for name in wanted.split(",")]
    unknown = sorted(set(names) - set(scratchnet.backends.BACKEND_NAMES))
    if unknown:
        raise ValueError(f"SCRATCHNET_TEST_BACKENDS: unknown backends {unknown}")
    return tuple(name for name in scratchnet.backends.BACKEND_NAMES if name in names and _loads(name))


def _loads(name):
    try:
        scratchnet.backends.load(name)
    except ImportError:
        return False
    return True


@pytest.fixture(params=selected_backends())
def backend(request):
    """Every test that takes ``backend`` runs once per installed (or selected) backend."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20261127)


@pytest.fixture
def threads():
    """Run a test body at a given thread count; restores the count afterwards.

    The tests that take it compare 1 with 2 threads, so it skips them where
    Numba was started with a single thread.
    """
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba was started with 1 thread; thread-count independence needs 2")
    before = scratchnet.get_num_threads()
    yield scratchnet.set_num_threads
    scratchnet.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Keep the MNIST cache of the whole session (subprocesses included) out of ~/.cache."""
    os.environ["SCRATCHNET_CACHE_DIR"] = str(tmp_path_factory.mktemp("scratchnet-cache"))
