import os

import numpy as np
import pytest

import scratchnet


@pytest.fixture(params=scratchnet.available_backends())
def backend(request):
    """Every test that takes ``backend`` runs once per installed backend."""
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
