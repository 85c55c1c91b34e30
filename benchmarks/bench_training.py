"""Training: throughput of the chapter's SGD loop, and where it gets to.

Both run ``scratchnet.train`` on the chapter's 784-50-10 net with batches
of 100 drawn from the first 10,000 MNIST training images, numba backend,
2 threads. Throughput excludes the once-per-epoch accuracy passes; the
accuracy benchmark tracks correctness beside speed: with fixed seeds and
thread-count-independent kernels it is one exact number per commit, and a
change means the arithmetic changed.
"""

import scratchnet

from .common import THREADS, chapter_net, mnist, require_backend, set_threads

N_TRAIN = 10_000  # a subset keeps the once-per-epoch accuracy passes cheap
BATCH_SIZE = 100
LEARNING_RATE = 0.1
BACKEND = "numba"


class TrainingThroughput:
    """SGD iterations per second: the numerical gradient by each method, and backpropagation."""

    params = ["numerical-series", "numerical-perturbed", "backprop"]
    param_names = ["gradient"]
    unit = "iterations/s"
    timeout = 300.0
    iters_num = 200

    def setup(self, gradient):
        require_backend(BACKEND)
        set_threads(THREADS)
        self.x_train, self.t_train, self.x_test, self.t_test = mnist(n_train=N_TRAIN, n_test=1000)
        # Numba compilation
        self._train(chapter_net(), gradient, iters_num=1)

    def _train(self, net, gradient, iters_num):
        gradient, _, method = gradient.partition("-")
        return scratchnet.train(
            net,
            self.x_train,
            self.t_train,
            self.x_test,
            self.t_test,
            iters_num=iters_num,
            batch_size=BATCH_SIZE,
            learning_rate=LEARNING_RATE,
            gradient=gradient,
            numgrad_method=method or "series",
            seed=0,
            backend=BACKEND,
        )

    def track_iterations_per_second(self, gradient):
        # The run's time less its epoch accuracy passes (History.timings): only the SGD steps count.
        history = self._train(chapter_net(), gradient, self.iters_num)
        t = history.timings
        return self.iters_num / (t["total"] - t["evaluation"])


class TrainingAccuracy:
    """Test accuracy after 1,000 numerical-gradient iterations (seeded)."""

    unit = "accuracy"
    timeout = 600.0
    iters_num = 1000

    def setup(self):
        require_backend(BACKEND)
        set_threads(THREADS)
        self.x_train, self.t_train, self.x_test, self.t_test = mnist(n_train=N_TRAIN)

    def track_test_accuracy(self):
        net = chapter_net()
        scratchnet.train(
            net,
            self.x_train,
            self.t_train,
            self.x_test,
            self.t_test,
            iters_num=self.iters_num,
            batch_size=BATCH_SIZE,
            learning_rate=LEARNING_RATE,
            gradient="numerical",
            seed=0,
            backend=BACKEND,
        )
        return net.accuracy(self.x_test, self.t_test)
