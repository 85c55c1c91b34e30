"""The training engine (kernels train_stretch, count_correct_pair) against the per-iteration path.

``train(..., stretch=1)`` runs one iteration per step from Python, through
the same kernels as before the engine existed: it is the oracle here. Every
run through stretches must give the same bits: each iteration's loss, each
epoch's accuracies, the final parameters and the generator's state, on
every backend that has the engine, at every thread count.
"""

import functools

import numpy as np
import pytest

import scratchnet as sn
from conftest import selected_backends
from scratchnet import TwoLayerNet, train
from scratchnet.backends import load
from scratchnet.datasets import load_mnist
from scratchnet.training import DataSet

ENGINES = [name for name in selected_backends() if hasattr(load(name), "train_stretch")]
METHODS = [("numerical", "series"), ("numerical", "perturbed"), ("backprop", "series")]


@pytest.fixture(params=ENGINES)
def engine_backend(request):
    return request.param


@pytest.fixture(scope="module")
def toy():
    """240 + 60 samples of 30 sparse features in [0, 1], 4 classes: 15 iterations of 16 per epoch."""
    rng = np.random.default_rng(7)
    centers = rng.random((4, 30))
    t = rng.integers(0, 4, 300)
    x = np.clip(centers[t] + 0.3 * rng.standard_normal((300, 30)), 0, 1)
    x[rng.random(x.shape) < 0.6] = 0.0  # mostly zeros, like a digit
    return x[:240], t[:240], x[240:], t[240:]


@pytest.fixture(scope="module")
def mnist_small():
    (x, t), (xt, tt) = load_mnist(normalize=True)
    return x[:3000], t[:3000], xt[:500], tt[:500]


def run(data, iters, *, stretch, threads=1, net_seed=0, history=None, net=None, **kwargs):
    x, t, xt, tt = data
    previous = sn.get_num_threads()
    sn.set_num_threads(threads)
    try:
        net = net or TwoLayerNet(x.shape[1], 6, 4, weight_init_std=0.3, seed=net_seed)
        kwargs.setdefault("batch_size", 16)
        kwargs.setdefault("learning_rate", 0.5)
        hist = train(net, x, t, xt, tt, iters_num=iters, seed=3, history=history, stretch=stretch, **kwargs)
    finally:
        sn.set_num_threads(previous)
    return net, hist


def assert_same_run(a, b):
    (net_a, hist_a), (net_b, hist_b) = a, b
    assert hist_a.iterations == hist_b.iterations
    assert np.array(hist_a.train_loss).tobytes() == np.array(hist_b.train_loss).tobytes()
    assert hist_a.epochs == hist_b.epochs
    assert hist_a.rng_state == hist_b.rng_state
    for key in ("W1", "b1", "W2", "b2"):
        assert net_a.params[key].tobytes() == net_b.params[key].tobytes(), key


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("gradient", "method"), METHODS)
def test_stretches_give_the_per_iteration_bits(toy, engine_backend, gradient, method, threads):
    common = dict(backend=engine_backend, gradient=gradient, numgrad_method=method)
    oracle = run(toy, 47, stretch=1, **common)
    assert_same_run(run(toy, 47, stretch=None, threads=threads, **common), oracle)
    assert_same_run(run(toy, 47, stretch=5, threads=threads, **common), oracle)


def test_series_fallback_inside_a_stretch(toy, engine_backend):
    # Pixels of 0-255 send hidden units to the perturbed-loss method (the series' bound): the
    # engine's fallback must give the per-iteration bits too.
    x, t, xt, tt = toy
    raw = (255 * x, t, 255 * xt, tt)
    common = dict(backend=engine_backend, learning_rate=1e-4)
    assert_same_run(run(raw, 20, stretch=None, **common), run(raw, 20, stretch=1, **common))


@pytest.mark.parametrize("gradient", ["numerical", "backprop"])
def test_stretches_on_mnist(mnist_small, engine_backend, gradient):
    common = dict(backend=engine_backend, gradient=gradient, batch_size=100, learning_rate=0.1)
    x = mnist_small[0]
    a = run(mnist_small, 35, stretch=None, threads=2, net=TwoLayerNet(784, 50, 10, seed=0), **common)
    b = run(mnist_small, 35, stretch=1, net=TwoLayerNet(784, 50, 10, seed=0), **common)
    assert x.dtype == np.float32  # the kernels' float32 path, as the CLI trains
    assert_same_run(a, b)


def test_resume_across_stretches(toy, engine_backend):
    first = run(toy, 23, stretch=None, backend=engine_backend)
    resumed = run(toy, 50, stretch=None, backend=engine_backend, net=first[0], history=first[1])
    assert_same_run(resumed, run(toy, 50, stretch=1, backend=engine_backend))


def fresh_net(w1_row0=None, b2=None):
    net = TwoLayerNet(30, 6, 4, weight_init_std=0.3, seed=0)
    if w1_row0 is not None:
        net.params["W1"][0] = w1_row0
    if b2 is not None:
        net.params["b2"][:] = b2
    return net


def note(seen, i, loss):
    seen.append((i, loss))


def failures(data, engine_backend, make_net, **kwargs):
    """(message, iterations seen by on_iteration, final parameters) of a failing run, per-iteration then
    in stretches."""
    outcomes = []
    for stretch in (1, None):
        net, seen = make_net(), []
        with pytest.raises(FloatingPointError) as info:
            run(data, 200, stretch=stretch, net=net, backend=engine_backend, on_iteration=functools.partial(note, seen),
                **kwargs)  # fmt: skip
        outcomes.append((str(info.value), seen, {k: v.tobytes() for k, v in net.params.items()}))
    return outcomes


@pytest.mark.parametrize("gradient", ["numerical", "backprop"])
def test_an_overflowing_update_raises_the_per_iteration_error(toy, engine_backend, gradient):
    # b2 near the largest double and lr 1e308: the first update overflows. The engine stops, keeps
    # the parameters as they were, and the per-iteration path raises its own message.
    per_iteration, stretches = failures(
        toy, engine_backend, lambda: fresh_net(b2=-1.7e308), gradient=gradient, learning_rate=1e308
    )
    assert stretches == per_iteration
    assert per_iteration[0].startswith("learning_rate:") and "at iteration 0" in per_iteration[0]
    assert per_iteration[2] == {k: v.tobytes() for k, v in fresh_net(b2=-1.7e308).params.items()}


@pytest.mark.parametrize("gradient", ["numerical", "backprop"])
def test_an_overflow_mid_stretch_keeps_the_iteration_before(toy, engine_backend, gradient):
    # Sample 0 has a pixel of 1e308 and W1's first row is 2: the first batch that draws it overflows
    # x W1 + b1, some iterations into the run.
    x, t, xt, tt = toy
    x = x.copy()
    x[0, 0] = 1e308
    per_iteration, stretches = failures(
        (x, t, xt, tt), engine_backend, lambda: fresh_net(w1_row0=2.0), gradient=gradient
    )
    assert stretches == per_iteration
    assert per_iteration[0].startswith(f"x_train: at iteration {len(per_iteration[1])}, the hidden pre-activations")
    assert len(per_iteration[1]) >= 2, "the run should fail some iterations into the first stretch"


def test_callbacks_see_every_iteration_in_order(toy, engine_backend):
    seen, epochs = [], []
    net, hist = run(toy, 40, stretch=None, backend=engine_backend,
                    on_iteration=lambda i, loss: seen.append((i, loss)),
                    on_epoch=lambda i, a, b: epochs.append((i, a, b)))  # fmt: skip
    assert seen == list(zip(range(40), hist.train_loss))
    assert epochs == hist.epochs == [e for e in hist.epochs if e[0] in (0, 15, 30)]


@pytest.mark.parametrize(("stretch", "stopped_at"), [(1, 7), (4, 9), (None, 16)])
def test_should_stop_is_asked_after_each_stretch(toy, engine_backend, stretch, stopped_at):
    # Asked after every compiled call: stretch=1 stops at the very iteration; longer stretches at
    # the end of the stretch: stretches end after each epoch's iteration (0, 15 here), so stretch=4
    # runs [0], [1-4], [5-8]; the default grows its stretches, never past the next evaluation.
    seen = []
    _, hist = run(toy, 40, stretch=stretch, backend=engine_backend,
                  on_iteration=lambda i, loss: seen.append(i), should_stop=lambda: len(seen) >= 7)  # fmt: skip
    assert hist.iterations_done == stopped_at
    if stretch is None:
        assert hist.iterations_done <= 16


def test_parameters_changed_by_a_callback_are_used(toy, engine_backend):
    # A callback that halves W2 after every iteration: with stretch=1 it acts between iterations,
    # as in the per-iteration path.
    def halve(i, loss, nets):
        nets[-1].params["W2"] *= 0.5

    results = []
    for stretch, backend in ((1, "numpy"), (1, engine_backend)):
        net = TwoLayerNet(30, 6, 4, weight_init_std=0.3, seed=0)
        results.append(run(toy, 10, stretch=stretch, net=net, backend=backend, gradient="backprop",
                           on_iteration=lambda i, loss, n=[net]: halve(i, loss, n)))  # fmt: skip
    np.testing.assert_allclose(results[0][1].train_loss, results[1][1].train_loss, rtol=1e-12)


def test_non_contiguous_parameters_are_updated_in_place(toy, engine_backend):
    net = TwoLayerNet(30, 6, 4, weight_init_std=0.3, seed=0)
    w1 = np.asfortranarray(net.params["W1"])
    net.params["W1"] = w1
    trained, _ = run(toy, 20, stretch=None, net=net, backend=engine_backend)
    reference, _ = run(toy, 20, stretch=1, backend=engine_backend)
    assert trained.params["W1"] is w1
    assert w1.tobytes(order="C") == reference.params["W1"].tobytes()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_bad_stretch_is_named(toy, bad):
    with pytest.raises(ValueError, match="stretch"):
        run(toy, 3, stretch=bad)


def test_count_correct_pair_is_the_two_counts(mnist_small, engine_backend):
    x, t, xt, tt = mnist_small
    kernels = load(engine_backend)
    net = TwoLayerNet(784, 50, 10, seed=1)
    sn.train(net, x, t, xt, tt, iters_num=30, gradient="backprop", backend=engine_backend)
    train_data = DataSet.from_arrays(net, x, t, kernels)
    test_data = DataSet.from_arrays(net, xt, tt, kernels)
    params = net.kernel_params()
    pair = kernels.count_correct_pair(train_data.rows, train_data.labels, test_data.rows, test_data.labels, params)
    assert pair == (
        kernels.count_correct(train_data.rows, train_data.labels, params),
        kernels.count_correct(test_data.rows, test_data.labels, params),
    )
    assert 0 < pair[0] < len(x) and 0 < pair[1] < len(xt)
