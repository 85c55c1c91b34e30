"""``load_mnist`` from a warm cache: what every training run pays first."""


class LoadMNIST:
    """The default call: normalised float32 (N, 784) images, integer labels."""

    def setup(self):
        from scratchnet.datasets import load_mnist

        self.load_mnist = load_mnist
        # The first load parses and verifies the shipped IDX files and
        # writes the .npy cache; the benchmark times the cached path.
        load_mnist()

    def time_load_mnist(self):
        self.load_mnist()

    def peakmem_load_mnist(self):
        self.load_mnist()
