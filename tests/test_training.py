import json
import re

import numpy as np
import pytest

from scratchnet import History, TwoLayerNet, train
from scratchnet.datasets import load_mnist
from scratchnet.training import is_epoch_iteration

PARAM_NAMES = ("W1", "b1", "W2", "b2")


@pytest.fixture(scope="module")
def mnist_small():
    """5,000 training and 1,000 test images of the shipped MNIST."""
    (x, t), (xt, tt) = load_mnist()
    return x[:5000], t[:5000], xt[:1000], tt[:1000]


@pytest.fixture
def toy(rng):
    """A tiny learnable problem: 120 samples, 6 features, 3 classes."""
    centers = rng.standard_normal((3, 6)) * 3
    t = rng.integers(0, 3, 120)
    x = centers[t] + rng.standard_normal((120, 6))
    return x[:100], t[:100], x[100:], t[100:]


def chapter_loop(network, x_train, t_train, x_test, t_test, iters_num, batch_size, learning_rate, seed):
    """The book's train_neuralnet.py, with a seeded Generator instead of np.random."""
    rng = np.random.default_rng(seed)
    train_size = x_train.shape[0]
    iter_per_epoch = max(train_size / batch_size, 1)
    losses, accs = [], []
    for i in range(iters_num):
        batch_mask = rng.choice(train_size, batch_size)
        x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
        grad = network.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= learning_rate * grad[key]
        losses.append(network.loss(x_batch, t_batch))
        if i % iter_per_epoch == 0:
            accs.append((i, network.accuracy(x_train, t_train), network.accuracy(x_test, t_test)))
    return losses, accs


def params_copy(net):
    return {k: v.copy() for k, v in net.params.items()}


def assert_params_identical(a, b):
    for k in ("W1", "b1", "W2", "b2"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# -- the chapter's loop --------------------------------------------------------
def test_train_is_the_chapter_loop(toy):
    # Same Generator draws, same NumPy operations in the same order: the
    # losses, accuracies and parameters must be bitwise equal to the book's loop.
    x, t, xt, tt = toy
    ref_net = TwoLayerNet(6, 5, 3, seed=1)
    ref_losses, ref_accs = chapter_loop(ref_net, x, t, xt, tt, 45, 20, 0.5, seed=3)

    net = TwoLayerNet(6, 5, 3, seed=1)
    h = train(net, x, t, xt, tt, iters_num=45, batch_size=20, learning_rate=0.5, gradient="backprop", seed=3)

    assert h.iterations == list(range(45))
    assert h.train_loss == ref_losses
    assert h.epochs == ref_accs
    assert [e[0] for e in h.epochs] == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert h.iterations_done == 45
    assert_params_identical(net.params, ref_net.params)


def test_one_hot_targets_give_the_same_run(toy):
    x, t, xt, tt = toy
    a = TwoLayerNet(6, 5, 3, seed=1)
    ha = train(a, x, t, xt, tt, iters_num=12, batch_size=10, gradient="backprop")
    b = TwoLayerNet(6, 5, 3, seed=1)
    hb = train(b, x, np.eye(3)[t], xt, np.eye(3)[tt], iters_num=12, batch_size=10, gradient="backprop")
    assert ha == hb
    assert_params_identical(a.params, b.params)


@pytest.mark.parametrize("train_size, batch_size", [(60000, 100), (1000, 100), (500, 1), (7, 7), (100, 30), (250, 100)])
def test_epoch_iterations(train_size, batch_size):
    iters = range(3 * train_size // batch_size + 5)
    got = [i for i in iters if is_epoch_iteration(i, batch_size, train_size)]
    if train_size % batch_size == 0:
        # the chapter's own test
        ipe = max(train_size / batch_size, 1)
        assert got == [i for i in iters if i % ipe == 0]
    # the first iteration of every epoch: i * batch_size reaches e * train_size
    expected = sorted({-(-e * train_size // batch_size) for e in range(len(iters) * batch_size // train_size + 1)})
    assert got == [i for i in expected if i < len(iters)]


def test_hooks_see_every_iteration_and_epoch(toy):
    x, t, xt, tt = toy
    seen, epochs = [], []
    h = train(
        TwoLayerNet(6, 5, 3, seed=0),
        x,
        t,
        xt,
        tt,
        iters_num=23,
        batch_size=10,
        gradient="backprop",
        on_iteration=lambda i, loss: seen.append((i, loss)),
        on_epoch=lambda i, a, b: epochs.append((i, a, b)),
    )
    assert seen == list(zip(h.iterations, h.train_loss))
    assert epochs == h.epochs
    assert h.train_acc == [e[1] for e in epochs] and h.test_acc == [e[2] for e in epochs]


def test_zero_iterations_change_nothing(toy):
    x, t, xt, tt = toy
    net = TwoLayerNet(6, 5, 3, seed=0)
    before = params_copy(net)
    h = train(net, x, t, xt, tt, iters_num=0, batch_size=10, gradient="backprop")
    assert (h.iterations, h.train_loss, h.epochs, h.iterations_done) == ([], [], [], 0)
    assert h.rng_state is not None
    assert_params_identical(net.params, before)


# -- learning with numerical gradients -----------------------------------------
def test_numerical_training_learns_and_tracks_backprop(mnist_small):
    x, t, xt, tt = mnist_small
    # 100 iterations at learning rate 1.0 on 5,000 training images, accuracy on
    # 1,000 test images (chance: 0.1). Measured 0.805-0.823 over seeds 0-4
    # (and 0.52 with the chapter's lr=0.1, still on its initial plateau at 100
    # iterations), so 0.75 leaves a margin of more than 0.05.
    net = TwoLayerNet(784, 50, 10, seed=0)
    h = train(net, x, t, xt, tt, iters_num=100, learning_rate=1.0, gradient="numerical", seed=0)
    assert net.accuracy(xt, tt) >= 0.75
    assert h.train_loss[-1] < 0.6 * h.train_loss[0]

    # Same run with backprop. The numerical gradient differs from the exact one
    # by its truncation h^2/6 |d3L| (<= 1e-8 * O(1): the third derivative of the
    # loss in one weight is bounded by the pixel's cube, <= 1) plus rounding
    # ~eps * |L| / h ~ 1e-11, so each step moves a parameter by at most
    # lr * 1e-8 differently; over 100 steps that is <= 1e-6 (measured: 1e-8).
    ref = TwoLayerNet(784, 50, 10, seed=0)
    hb = train(ref, x, t, xt, tt, iters_num=100, learning_rate=1.0, gradient="backprop", seed=0)
    for k in ref.params:
        np.testing.assert_allclose(net.params[k], ref.params[k], rtol=0, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(h.train_loss, hb.train_loss, rtol=0, atol=1e-6)


# -- determinism and resume ----------------------------------------------------
def test_deterministic_across_runs_and_thread_counts(mnist_small, threads):
    import numba

    x, t, xt, tt = (a[:1000] for a in mnist_small)
    most = numba.config.NUMBA_NUM_THREADS
    runs = []
    for n in (1, most, most):
        threads(n)
        net = TwoLayerNet(784, 20, 10, seed=5)
        h = train(net, x, t, xt, tt, iters_num=15, gradient="numerical", seed=7)
        runs.append((h, params_copy(net)))
    h0, p0 = runs[0]
    assert len(h0.epochs) == 2  # iterations 0 and 10
    for h, p in runs[1:]:
        assert h == h0  # every loss, accuracy and the generator state, bitwise (dataclass ==)
        assert_params_identical(p, p0)


def test_other_seed_other_batches(toy):
    x, t, xt, tt = toy
    a = train(TwoLayerNet(6, 5, 3, seed=0), x, t, xt, tt, iters_num=5, batch_size=10, gradient="backprop", seed=0)
    b = train(TwoLayerNet(6, 5, 3, seed=0), x, t, xt, tt, iters_num=5, batch_size=10, gradient="backprop", seed=1)
    assert a.train_loss != b.train_loss


@pytest.mark.parametrize(
    "gradient, stop_after", [("backprop", 1), ("backprop", 17), ("backprop", 30), ("numerical", 7)]
)
def test_stop_and_resume_is_bitwise_identical(toy, gradient, stop_after):
    x, t, xt, tt = toy
    settings = dict(iters_num=30, batch_size=15, learning_rate=0.3, gradient=gradient, seed=11)
    full_net = TwoLayerNet(6, 5, 3, seed=2)
    full = train(full_net, x, t, xt, tt, **settings)

    net = TwoLayerNet(6, 5, 3, seed=2)
    calls = []
    # stretch=1: should_stop asked after every iteration (tests/test_engine.py covers longer stretches)
    part = train(
        net, x, t, xt, tt, should_stop=lambda: calls.append(1) or len(calls) >= stop_after, stretch=1, **settings
    )
    assert part.iterations_done == stop_after == len(calls)

    # what the CLI does: history through JSON, params through a copy
    saved = json.loads(json.dumps(part.to_dict()))
    resumed_net = TwoLayerNet(6, 5, 3, seed=99)
    resumed_net.params = params_copy(net)
    before = History.from_dict(saved)
    resumed = train(resumed_net, x, t, xt, tt, history=before, **settings)

    assert resumed == full
    assert before == History.from_dict(saved)  # the given history is not modified
    assert_params_identical(resumed_net.params, full_net.params)


def test_resume_can_extend_a_finished_run(toy):
    x, t, xt, tt = toy
    full_net = TwoLayerNet(6, 5, 3, seed=2)
    full = train(full_net, x, t, xt, tt, iters_num=20, batch_size=10, gradient="backprop")
    net = TwoLayerNet(6, 5, 3, seed=2)
    h = train(net, x, t, xt, tt, iters_num=8, batch_size=10, gradient="backprop")
    h = train(net, x, t, xt, tt, iters_num=20, batch_size=10, gradient="backprop", history=h)
    assert h == full
    assert_params_identical(net.params, full_net.params)


def test_history_from_dict_rejects_inconsistent_data(toy):
    x, t, xt, tt = toy
    d = train(TwoLayerNet(6, 5, 3), x, t, xt, tt, iters_num=3, batch_size=10, gradient="backprop").to_dict()
    with pytest.raises(ValueError, match="history"):
        History.from_dict(dict(d, iterations_done=4))
    with pytest.raises(ValueError, match="history"):
        History.from_dict({k: v for k, v in d.items() if k != "train_loss"})


# -- argument checks -----------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"iters_num": -1}, "iters_num"),
        ({"iters_num": 2.0}, "iters_num"),
        ({"iters_num": True}, "iters_num"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 101}, "batch_size.*100"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"learning_rate": float("inf")}, "learning_rate"),
        ({"learning_rate": "0.1"}, "learning_rate"),
        ({"gradient": "analytic"}, "gradient"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"backend": "cuda"}, "backend"),
    ],
)
def test_bad_settings_name_the_argument(toy, kwargs, match):
    x, t, xt, tt = toy
    net = TwoLayerNet(6, 5, 3, seed=0)
    before = params_copy(net)
    with pytest.raises(ValueError, match=match):
        train(net, x, t, xt, tt, **{"iters_num": 3, "batch_size": 10, **kwargs})
    assert_params_identical(net.params, before)


def test_bad_data_and_hooks_name_the_argument(toy):
    x, t, xt, tt = toy
    net = TwoLayerNet(6, 5, 3, seed=0)
    with pytest.raises(ValueError, match="x_train"):
        train(net, x[:, :5], t, xt, tt)
    with pytest.raises(ValueError, match="t_train"):
        train(net, x, t[:-1], xt, tt)
    with pytest.raises(ValueError, match="t_test"):
        train(net, x, t, xt, tt + 3)
    with pytest.raises(ValueError, match="x_test"):
        train(net, x, t, xt[:0], tt[:0])
    with pytest.raises(TypeError, match="should_stop"):
        train(net, x, t, xt, tt, should_stop=True)
    h = train(net, x, t, xt, tt, iters_num=5, batch_size=10, gradient="backprop")
    with pytest.raises(ValueError, match="iters_num.*5"):
        train(net, x, t, xt, tt, iters_num=4, batch_size=10, gradient="backprop", history=h)
    with pytest.raises(ValueError, match="rng_state"):
        train(net, x, t, xt, tt, iters_num=6, batch_size=10, history=History(iterations_done=0, rng_state={"x": 1}))


def test_parameters_corrupted_mid_run_are_named(toy):
    # Parameters checked at the start cannot go bad by themselves in this
    # loss (it saturates at -log(1e-7)); corrupt one mid-run, and the next
    # update must stop the run saying so (not blaming the learning rate),
    # leaving the other parameters as they were.
    net = TwoLayerNet(6, 4, 3, seed=0)
    seen = {}

    def corrupt(i, loss):
        if i == 4:
            seen["W1"] = net.params["W1"].copy()
            net.params["W2"][0, 0] = np.nan

    with pytest.raises(FloatingPointError, match=r"params\['W2'\]: contains NaN or inf at iteration 5"):
        # stretch=1: a callback that changes the parameters acts between iterations (see train's docstring)
        train(net, *toy, iters_num=20, batch_size=10, gradient="backprop", on_iteration=corrupt, stretch=1)
    assert np.array_equal(net.params["W1"], seen["W1"])


@pytest.mark.parametrize("gradient", ["numerical", "backprop"])
@pytest.mark.parametrize("stretch", [1, None])
def test_logits_that_overflow_blame_the_learning_rate(toy, gradient, stretch):
    # Finite weights whose logits overflow (each of the 4 hidden units adds about 0.5e308 to every
    # logit): the forward pass blames the weights (network._overflow), and train words that for its
    # own settings, on the per-iteration path and after the engine leaves the iteration alike.
    net = TwoLayerNet(6, 4, 3, seed=0)
    net.params["W2"][:] = 1e308
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(FloatingPointError) as info:
        train(net, *toy, iters_num=3, batch_size=10, gradient=gradient, stretch=stretch)
    message = str(info.value)
    assert message.startswith("learning_rate: at iteration 0, params['W2']: the logits z W2 + b2 overflow"), message
    assert message.endswith("the weights diverged; try a smaller learning rate"), message
    assert all(np.array_equal(net.params[k], before[k]) for k in before)


def test_an_update_that_overflows_blames_the_learning_rate_and_changes_nothing(toy):
    # b2 near the largest double: a learning rate of 1e308 times a gradient of
    # about 0.3 takes some entries past it (to -inf).
    net = TwoLayerNet(6, 4, 3, seed=0)
    net.params["b2"][:] = -1.7e308
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(FloatingPointError, match=r"learning_rate: the update of b2 is not finite at iteration 0"):
        train(net, *toy, iters_num=5, batch_size=10, gradient="backprop", learning_rate=1e308)
    assert all(np.array_equal(net.params[k], before[k]) for k in before)


def test_bad_parameters_are_refused_before_training(toy):
    net = TwoLayerNet(6, 4, 3, seed=0)
    net.params["b1"][1] = np.inf
    with pytest.raises(ValueError, match=r"params\['b1'\]: contains NaN or inf"):
        train(net, *toy, iters_num=5, batch_size=10, gradient="backprop")
    net.params["b1"][1] = 0.0
    x_train = toy[0].copy()
    x_train[3, 2] = np.nan
    with pytest.raises(ValueError, match="x_train: contains NaN or inf"):
        train(net, x_train, *toy[1:], iters_num=5, batch_size=10)


# -- what fuzzing found: read-only, malformed and overflowing parameters ---------------
# Each test below is the smallest example of something the fuzz tests
# (test_fuzz_train.py) once found; its comment says what went wrong, its
# name what holds now.
def test_train_with_a_read_only_parameter_updates_nothing(backend):
    # _step writes params[key][...] = updated[key] key by key: b2 read-only
    # fails after W1, b1 and W2 were updated, with NumPy's "assignment
    # destination is read-only". Expected: nothing updated (checked before
    # the first write), an error naming params['b2'].
    net = TwoLayerNet(2, 2, 2, seed=0)
    net.params["b2"].flags.writeable = False
    before = {k: v.copy() for k, v in net.params.items()}
    x = np.array([[0.5, 1.0], [1.0, 0.0]])
    with pytest.raises((TypeError, ValueError)) as info:
        train(net, x, [0, 1], x, [0, 1], iters_num=1, batch_size=2, gradient="backprop", backend=backend)
    assert [k for k in PARAM_NAMES if not np.array_equal(net.params[k], before[k])] == []
    assert re.match(r"params\b", str(info.value)), info.value


@pytest.mark.parametrize(
    "params",
    [
        lambda p: list(p.values()),  # TypeError: list indices must be integers or slices, not str
        lambda p: None,  # TypeError: 'NoneType' object is not subscriptable
        lambda p: {k: v for k, v in p.items() if k != "W2"},  # KeyError: 'W2'
        lambda p: dict(p, W1=p["W1"].tolist()),  # AttributeError: 'list' object has no attribute 'shape'
        lambda p: dict(p, W1=np.float64(0.0)),  # IndexError: tuple index out of range
    ],
    ids=["list", "None", "no-W2", "W1-list", "W1-0-d"],
)
def test_malformed_params_are_refused_by_name(params):
    # train's check_data reads network.params["W1"].shape[0] and
    # ["W2"].shape[1] before check_params: the net's own methods raise
    # TypeError/KeyError naming params for the same dicts.
    net = TwoLayerNet(2, 2, 2, seed=0)
    net.params = params(net.params)
    x = np.array([[0.5, 1.0], [1.0, 0.0]])
    with pytest.raises((TypeError, ValueError, KeyError)) as info:
        train(net, x, [0, 1], x, [0, 1], iters_num=1, batch_size=1)
    message = info.value.args[0] if info.value.args else ""
    assert re.match(r"params\b", str(message)), info.value


@pytest.mark.parametrize("name", ["h", "learning_rate"])
def test_integer_settings_beyond_float64_are_refused_by_name(name):
    # check_step's float(h) raised OverflowError ("int too large to
    # convert"); np.isfinite(learning_rate) raised TypeError "ufunc 'isfinite'
    # not supported for the input types ...". Expected: ValueError naming the argument.
    net = TwoLayerNet(2, 2, 2, seed=0)
    x = np.array([[0.5, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=rf"^{name}: "):
        train(net, x, [0, 1], x, [0, 1], iters_num=1, batch_size=1, **{name: 10**400})


def test_a_diverged_loss_leaves_the_parameters_as_they_were(backend):
    # _iteration applies the update (_step: finite, so accepted), then the
    # loss of the updated net is NaN (its logits overflow: b2 ~ 1.2e308) and
    # train raises FloatingPointError "training diverged at iteration 0":
    # net.params keep iteration 0's update although no History has that
    # iteration (the other FloatingPointError leaves the parameters "as they
    # were at the end of the previous iteration"). Expected: the same here.
    net = TwoLayerNet(1, 2, 3, seed=1)
    before = {k: v.copy() for k, v in net.params.items()}
    x = np.array([[0.0]])
    with pytest.raises(FloatingPointError, match="^learning_rate: "):
        train(
            net,
            x,
            [0],
            x,
            [0],
            iters_num=1,
            batch_size=1,
            learning_rate=1.7976931348623157e308,
            gradient="backprop",
            backend=backend,
        )
    assert [k for k in PARAM_NAMES if net.params[k].tobytes() != before[k].tobytes()] == []
