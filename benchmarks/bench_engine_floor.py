"""The engine's series iteration over its floor: how far the training step is from its multiply-adds alone.

The engine is the numba backend's ``train_stretch`` (the whole SGD step in
one compiled call), on the chapter's 784-50-10 net with batches of 100 drawn
from the first 10,000 MNIST images; the floor is benchmarks/floor_kernels.py
on one such batch. Both at the default thread count (the floor serial at 1
thread), measured in the same call. tools/floor.py prints the whole table.
"""

import time

import numpy as np

import scratchnet
from scratchnet.backends import resolve
from scratchnet.training import DataSet

from . import floor_kernels as fk
from .common import HIDDEN_SIZE, OUTPUT_SIZE, SEED, chapter_net, mnist, require_backend

BACKEND = "numba"
N_TRAIN = 10_000
BATCH_SIZE = 100


class EngineOverFloor:
    unit = "x"
    timeout = 120.0
    stretch = 50  # iterations per train_stretch call
    calls = 3
    floor_runs = 100

    def setup(self):
        require_backend(BACKEND)
        self.stretch_kernel = getattr(resolve(BACKEND), "train_stretch", None)
        if self.stretch_kernel is None:
            raise NotImplementedError(f"backend {BACKEND!r} has no train_stretch")
        x, t, _, _ = mnist(n_train=N_TRAIN, n_test=0)
        net = chapter_net()
        self.params = net.kernel_params()
        self.data = DataSet.from_arrays(net, x, t, resolve(BACKEND))
        rng = np.random.default_rng(SEED)
        self.take = rng.choice(N_TRAIN, (self.stretch, BATCH_SIZE))
        self.batch = resolve(BACKEND).batch_take(self.data.rows, self.take[0])
        self.floor = fk.floor_inputs(self.batch, HIDDEN_SIZE, OUTPUT_SIZE, seed=SEED)
        self.threads = scratchnet.get_num_threads()
        # Numba compilation
        fk.floor_call(self.batch, self.floor, self.threads)()
        fk.engine_seconds_per_iteration(self.stretch_kernel, self.params, self.data, self.take[:2], "series", 1)

    def track_engine_over_floor(self):
        call = fk.floor_call(self.batch, self.floor, self.threads)
        floor = []
        for _ in range(self.floor_runs):
            t0 = time.perf_counter()
            call()
            floor.append(time.perf_counter() - t0)
        engine = fk.engine_seconds_per_iteration(
            self.stretch_kernel, self.params, self.data, self.take, "series", self.calls
        )
        return engine / float(np.median(floor))
