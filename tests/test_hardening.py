"""Bad inputs that once crashed, hung, lost work or misled: one test per case,
named for what holds now; every backend runs each one. (The data files and
cache: test_datasets.py; gradient.py: test_gradient.py; the C glue:
test_c_extension.py; the command line: test_cli.py.)
"""

import warnings

import numpy as np
import pytest

import scratchnet as sn
from scratchnet import SimpleNet, TwoLayerNet, train


@pytest.fixture
def toy(rng):
    x = rng.random((40, 6))
    t = rng.integers(0, 3, 40)
    return x, t, x[:10], t[:10]


# -- parameters replaced by arrays of the wrong shape ------------------------------
@pytest.mark.parametrize(
    "name, bad",
    [
        ("W2", np.zeros((1, 3))),
        ("W2", np.zeros((4, 2))),
        ("b1", np.zeros(3)),
        ("b2", np.zeros(4)),
        ("b1", np.zeros((4, 1))),
        ("W1", np.zeros((6, 5))),
    ],
)
def test_wrong_parameter_shapes_are_refused_before_any_kernel(backend, rng, name, bad):
    net = TwoLayerNet(6, 4, 3, seed=0)
    net.params[name] = bad
    x, t = rng.random((5, 6)), np.array([0, 1, 2, 1, 0])
    for call in (
        net.predict,
        lambda x: net.loss(x, t),
        lambda x: net.numerical_gradient(x, t),
        lambda x: net.gradient(x, t),
        lambda x: net.accuracy(x, t),
    ):
        with pytest.raises(ValueError, match=rf"params\['{name}'\]: expected shape"):
            call(x) if call is net.predict else call(x)
        with pytest.raises(ValueError, match=rf"params\['{name}'\]"):
            net.predict(x, backend=backend)


# -- extreme weights and steps ----------------------------------------------
@pytest.mark.parametrize("method", ["series", "perturbed"])
@pytest.mark.parametrize("case", ["W2 * 1e98", "h = 800", "h = 1e4"])
def test_extreme_weights_and_steps_give_the_references_finite_gradient(rng, backend, method, case):
    x = rng.random((8, 6))
    t = rng.integers(0, 3, 8)
    net = TwoLayerNet(6, 4, 3, seed=1)
    h = 1e-4
    if case == "W2 * 1e98":
        net.params["W2"] *= 1e98
    else:
        h = float(case.split("=")[1])
    got = net.numerical_gradient(x, t, h=h, method=method, backend=backend)
    ref = net.numerical_gradient(x, t, h=h, method=method, backend="numpy")
    for name in got:
        assert np.isfinite(got[name]).all(), name
        # both compute the same losses of order 1..|W2| by stable softmaxes: rounding of those, over 2h
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-9, atol=1e-9 * max(1.0, 1e-4 / h)), name


def test_a_huge_learning_rate_behaves_alike_on_every_backend(toy, backend):
    # lr 1e100: the weights become ~1e98 and the loss saturates; every backend
    # gives finite gradients and the run either completes or stops saying why.
    net = TwoLayerNet(6, 4, 3, seed=2)
    reference = TwoLayerNet(6, 4, 3, seed=2)
    outcome = {}
    for name, which in (("numpy", reference), (backend, net)):
        try:
            train(which, *toy, iters_num=6, batch_size=10, learning_rate=1e100, backend=name)
            outcome[name] = "completed"
        except FloatingPointError as exc:
            outcome[name] = str(exc).split(":")[0]
    assert outcome[backend] == outcome["numpy"], outcome


# -- inputs that overflow; a callback that raises -----------------------------------
def test_inputs_that_overflow_are_named_not_the_learning_rate(toy, backend):
    x_train, t_train, x_test, t_test = toy
    x_train = x_train.copy()
    x_train[:, :3] = 1e308
    net = TwoLayerNet(6, 4, 3, weight_init_std=1.0, seed=3)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(
        FloatingPointError, match="x_train: at iteration 0, the hidden pre-activations x W1 \\+ b1 overflow"
    ):
        train(net, x_train, t_train, x_test, t_test, iters_num=3, batch_size=10, backend=backend)
    assert all(np.array_equal(net.params[k], before[k]) for k in before)


def test_the_public_methods_say_the_forward_pass_overflows(backend):
    net = TwoLayerNet(3, 2, 2, weight_init_std=1.0, seed=9)
    x = np.full((2, 3), 1e308)
    for call in (
        net.predict,
        lambda x: net.loss(x, [0, 1]),
        lambda x: net.gradient(x, [0, 1]),
        lambda x: net.numerical_gradient(x, [0, 1]),
    ):
        with pytest.raises(FloatingPointError, match="x: the hidden pre-activations x W1 \\+ b1 overflow"):
            call(x) if call is net.predict else call(x)


@pytest.mark.parametrize("stretch", [1, None])
def test_a_raising_callback_leaves_the_parameters_of_a_completed_iteration(toy, backend, stretch):
    # With stretch=1 the callback of iteration 3 runs right after it; in longer stretches, after
    # the stretch's last iteration (train's docstring): either way, a completed iteration's state.
    def stop_at_3(i, loss):
        if i == 3:
            raise RuntimeError("callback")

    net = TwoLayerNet(6, 4, 3, seed=4)
    with pytest.raises(RuntimeError, match="callback"):
        train(net, *toy, iters_num=10, batch_size=10, backend=backend, on_iteration=stop_at_3, stretch=stretch)
    completed = []
    for iters in range(4, 11):
        ref = TwoLayerNet(6, 4, 3, seed=4)
        train(ref, *toy, iters_num=iters, batch_size=10, backend=backend)
        if all(net.params[k].tobytes() == ref.params[k].tobytes() for k in ref.params):
            completed.append(iters)
    assert len(completed) == 1  # the state of exactly one completed iteration
    if stretch == 1 or backend == "numpy":  # the numpy backend always runs iteration by iteration
        assert completed == [4]


# -- a hand-made Fortran-ordered W1 --------------------------------------------------
def test_fortran_ordered_parameters_work_on_every_backend(rng, backend):
    x, t = rng.random((5, 6)), np.array([0, 1, 2, 1, 0])
    net = TwoLayerNet(6, 4, 3, seed=5)
    expected = net.numerical_gradient(x, t, backend="numpy")
    net.params["W1"] = np.asfortranarray(net.params["W1"])
    got = net.numerical_gradient(x, t, backend=backend)
    for name in got:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-16)
    assert net.loss(x, t, backend=backend) == pytest.approx(net.loss(x, t, backend="numpy"), rel=1e-14)


# -- NaN where numbers were expected -------------------------------------------------------
def test_nan_initial_scale_is_refused():
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="weight_init_std: expected a finite number"):
            TwoLayerNet(6, 4, 3, weight_init_std=bad)
    with pytest.raises(TypeError, match="weight_init_std"):
        TwoLayerNet(6, 4, 3, weight_init_std="0.01")


def test_nan_parameters_are_refused_by_every_method(rng, backend):
    x, t = rng.random((5, 6)), np.array([0, 1, 2, 1, 0])
    net = TwoLayerNet(6, 4, 3, seed=6)
    net.params["b1"][2] = np.nan
    for call in (
        lambda: net.predict(x, backend=backend),
        lambda: net.loss(x, t, backend=backend),
        lambda: net.accuracy(x, t, backend=backend),
        lambda: net.gradient(x, t, backend=backend),
        lambda: net.numerical_gradient(x, t, backend=backend),
    ):
        with pytest.raises(ValueError, match=r"params\['b1'\]: contains NaN or inf"):
            call()


# -- sizes that cannot fit -----------------------------------------------------------------
def test_a_net_too_large_for_memory_is_refused_before_allocating():
    with pytest.raises(MemoryError, match="hidden_size: 100000000000 hidden units need .* GiB"):
        TwoLayerNet(784, 100_000_000_000, 10)


# -- misleading messages -----------------------------------------------------------------------
def test_a_negative_seed_is_named():
    with pytest.raises(ValueError, match="seed: expected an integer >= 0"):
        TwoLayerNet(6, 4, 3, seed=-1)


@pytest.mark.parametrize(
    ("seed", "error", "message"),
    [
        (
            "a",
            TypeError,
            "seed: expected an int >= 0 (or a sequence of them), a numpy SeedSequence, BitGenerator or Generator, "
            "or None; got 'a'",
        ),
        (
            1.5,
            TypeError,
            "seed: expected an int >= 0 (or a sequence of them), a numpy SeedSequence, BitGenerator or Generator, "
            "or None; got 1.5",
        ),
        ([1, -2], ValueError, "seed: expected integers >= 0, got [1, -2]"),
    ],
)
@pytest.mark.parametrize("cls", [TwoLayerNet, SimpleNet])
def test_a_seed_numpy_cannot_take_is_named(cls, seed, error, message):
    with pytest.raises(error) as info:
        cls(6, 4, 3, seed=seed) if cls is TwoLayerNet else cls(seed=seed)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "seed",
    [None, 0, 2**70, np.int64(3), True, [1, 2], np.array([1, 2]), range(3), np.random.SeedSequence(1),
     np.random.PCG64(1), np.random.default_rng(1), np.random.RandomState(1)],
)  # fmt: skip
def test_every_seed_numpy_takes_is_still_taken(seed):
    net = TwoLayerNet(6, 4, 3, seed=seed)
    assert net.params["W1"].shape == (6, 4)
    assert SimpleNet(seed=seed).W.shape == (2, 3)


# -- complex values: refused by name, never cast to real with a ComplexWarning ---------------
COMPLEX = "complex values are not supported (got dtype complex128); "


@pytest.mark.parametrize("name", ["W1", "b1", "W2", "b2"])
def test_a_complex_parameter_is_refused_by_name(backend, rng, toy, name):
    net = TwoLayerNet(6, 4, 3, seed=0)
    net.params[name] = net.params[name].astype(complex)  # the imaginary parts are 0: once cast away silently
    x, t = rng.random((5, 6)), np.array([0, 1, 2, 1, 0])
    message = f"params['{name}']: {COMPLEX}keep parameters real float64"
    for call in (
        lambda: net.predict(x, backend=backend),
        lambda: net.loss(x, t, backend=backend),
        lambda: net.accuracy(x, t, backend=backend),
        lambda: net.gradient(x, t, backend=backend),
        lambda: net.numerical_gradient(x, t, backend=backend),
        lambda: sn.gradient_check(net, x, t, backend=backend),
        lambda: train(net, *toy, iters_num=2, batch_size=10, backend=backend),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no ComplexWarning on the way
            with pytest.raises(TypeError) as info:
                call()
        assert str(info.value) == message


class _Complex:
    """The arguments of the cases below: real ones, and their complex twins (imaginary parts 0 unless said)."""

    def __init__(self, backend, rng, toy):
        self.b, self.net, self.simple = backend, TwoLayerNet(6, 4, 3, seed=0), SimpleNet(seed=0)
        self.x, self.t = rng.random((5, 6)), np.array([0, 1, 2, 1, 0])
        self.xc, self.tc, self.y = self.x.astype(complex), self.t.astype(complex), np.full((5, 3), 1 / 3)
        self.yc, self.toy = self.y.astype(complex), toy

    def train(self, which):
        data = [a.astype(complex) if i == which else a for i, a in enumerate(self.toy)]
        return train(self.net, *data, backend=self.b)


# (argument at fault, call) for every function of the chapter that takes arrays
COMPLEX_INPUTS = {
    "sigmoid": ("x", lambda c: sn.sigmoid(c.xc, backend=c.b)),
    "sigmoid of a list": ("x", lambda c: sn.sigmoid([1 + 2j, 3], backend=c.b)),
    "softmax": ("x", lambda c: sn.softmax(c.xc, backend=c.b)),
    "cross_entropy_error y": ("y", lambda c: sn.cross_entropy_error(c.yc, c.t, backend=c.b)),
    "cross_entropy_error labels": ("t", lambda c: sn.cross_entropy_error(c.y, c.tc, backend=c.b)),
    "cross_entropy_error one-hot": ("t", lambda c: sn.cross_entropy_error(c.y, np.eye(3)[c.tc.real.astype(int)] + 0j)),
    "sum_squares_error y": ("y", lambda c: sn.sum_squares_error(c.yc, c.y)),
    "sum_squares_error t": ("t", lambda c: sn.sum_squares_error(c.y, c.yc)),
    "predict": ("x", lambda c: c.net.predict(c.xc, backend=c.b)),
    "loss x": ("x", lambda c: c.net.loss(c.xc, c.t, backend=c.b)),
    "loss t": ("t", lambda c: c.net.loss(c.x, c.tc, backend=c.b)),
    "accuracy": ("x", lambda c: c.net.accuracy(c.xc, c.t, backend=c.b)),
    "gradient": ("x", lambda c: c.net.gradient(c.xc, c.t, backend=c.b)),
    "numerical_gradient": ("x", lambda c: c.net.numerical_gradient(c.xc, c.t, backend=c.b)),
    "make_batch": ("x", lambda c: c.net.make_batch(c.xc, backend=c.b)),
    "gradient_check": ("x", lambda c: sn.gradient_check(c.net, c.xc, c.t, backend=c.b)),
    "train x_train": ("x_train", lambda c: c.train(0)),
    "train t_train": ("t_train", lambda c: c.train(1)),
    "train x_test": ("x_test", lambda c: c.train(2)),
    "train t_test": ("t_test", lambda c: c.train(3)),
    "SimpleNet.predict": ("x", lambda c: c.simple.predict(np.array([0.6 + 1j, 0.9]))),
    "SimpleNet.loss": ("x", lambda c: c.simple.loss(np.array([0.6, 0.9]) + 0j, np.array([0, 0, 1]))),
    "gradient_descent": ("init_x", lambda c: sn.gradient_descent(lambda v: np.sum(v**2), np.array([1 + 1j, 2.0]))),
}


@pytest.mark.parametrize("case", COMPLEX_INPUTS)
def test_a_complex_input_is_refused_by_name(backend, rng, toy, case):
    name, call = COMPLEX_INPUTS[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError) as info:
            call(_Complex(backend, rng, toy))
    assert str(info.value) == f"{name}: {COMPLEX}pass real numbers"


def test_complex_weights_of_simple_net_are_refused_by_name():
    net = SimpleNet(seed=0)
    net.W = net.W.astype(complex)
    with pytest.raises(TypeError) as info:
        net.loss(np.array([0.6, 0.9]), np.array([0, 0, 1]))
    assert str(info.value) == f"W: {COMPLEX}pass real numbers"  # not "x", the argument of the softmax inside


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.array([1.0 + 0j, 2.0]), f"x: {COMPLEX}pass a real float64 array"),
        (np.ones((2, 2), dtype=np.complex64), "x: complex values are not supported (got dtype complex64); "
         "pass a real float64 array"),
    ],
)  # fmt: skip
def test_numerical_gradient_refuses_a_complex_x_by_name(x, message):
    with pytest.raises(TypeError) as info:
        sn.numerical_gradient(lambda v: np.sum(v**2), x)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("x", "got"), [(1j, "complex"), (np.complex128(1), "dtype complex128"), ([1.0, 2j], "dtype complex128")]
)
def test_numerical_diff_refuses_a_complex_x_by_name(x, got):
    with pytest.raises(TypeError) as info:
        sn.numerical_diff(lambda v: v**2, x)
    assert str(info.value) == (
        f"x: complex values are not supported (got {got}); pass a real number or an array of real numbers"
    )


def test_read_only_parameters_are_refused_before_training(toy):
    net = TwoLayerNet(6, 4, 3, seed=7)
    net.params["W2"].setflags(write=False)
    with pytest.raises(ValueError, match=r"params\['W2'\]: read-only array"):
        train(net, *toy, iters_num=2, batch_size=10)


def test_parameters_given_as_lists_are_named(rng, backend):
    x, t = rng.random((5, 6)), np.array([0, 1, 2, 1, 0])
    net = TwoLayerNet(6, 4, 3, seed=8)
    net.params["W1"] = net.params["W1"].tolist()
    with pytest.raises(TypeError, match=r"params\['W1'\]: expected a numpy array, got list"):
        net.loss(x, t, backend=backend)
