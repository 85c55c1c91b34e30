"""TwoLayerNet: forward pass, the numerical gradient by both methods, backprop.

Every backend's and method's numerical gradient is compared with the
chapter's own loop (naive.net_numerical_gradient, which really perturbs each
parameter) on the inputs of the exactness matrix below, with an
extended-precision oracle of the same central difference (mpmath), and the
compiled backends directly with the NumPy reference.
"""

import functools
import math
import re
import warnings
import zlib

import numpy as np
import pytest

import naive
import scratchnet
from conftest import selected_backends
from scratchnet import gradient_check

H_STEP = 1e-4
METHODS = scratchnet.network.NUMGRAD_METHODS


@pytest.fixture(params=METHODS)
def method(request):
    return request.param


# -- data ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_pool():
    """The first 3000 training digits: float32 x (3000, 784) in [0, 1], uint8 labels."""
    (x, t), _ = scratchnet.load_mnist(normalize=True, flatten=True, one_hot_label=False)
    return x[:3000], t[:3000]


@pytest.fixture(scope="module")
def mnist_batch(mnist_pool):
    """mnist_batch(n, start): n consecutive digits of the pool (x float32, t uint8)."""

    def batch(n, start=0):
        x, t = mnist_pool
        return x[start : start + n], t[start : start + n]

    return batch


def _train(net, pool, steps=200, lr=0.1, batch=100, seed=7):
    """Backprop SGD on random mini-batches of the pool, as the chapter trains."""
    x, t = pool
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.choice(len(x), batch, replace=False)
        grads = net.gradient(x[idx], t[idx])
        for name in net.params:
            net.params[name] -= lr * grads[name]
    return net


@pytest.fixture(scope="module")
def trained_small(mnist_pool):
    return _train(scratchnet.TwoLayerNet(784, 8, 10, seed=3), mnist_pool)


@pytest.fixture(scope="module")
def trained_full(mnist_pool):
    return _train(scratchnet.TwoLayerNet(784, 50, 10, seed=4), mnist_pool)


def _copy(params):
    return {name: p.copy() for name, p in params.items()}


# -- construction and forward pass ---------------------------------------------------
def test_params_shapes_dtypes_and_seed():
    net = scratchnet.TwoLayerNet(784, 50, 10, seed=0)
    shapes = {"W1": (784, 50), "b1": (50,), "W2": (50, 10), "b2": (10,)}
    for name, shape in shapes.items():
        p = net.params[name]
        assert p.shape == shape and p.dtype == np.float64 and p.flags.c_contiguous
    assert not net.params["b1"].any() and not net.params["b2"].any()
    assert 0.009 < net.params["W1"].std() < 0.011  # weight_init_std = 0.01, 39,200 draws
    same = scratchnet.TwoLayerNet(784, 50, 10, seed=0)
    other = scratchnet.TwoLayerNet(784, 50, 10, seed=1)
    for name in shapes:
        assert np.array_equal(net.params[name], same.params[name])
    assert not np.array_equal(net.params["W1"], other.params["W1"])
    wide = scratchnet.TwoLayerNet(784, 50, 10, weight_init_std=1.0, seed=0)
    np.testing.assert_allclose(wide.params["W1"], 100.0 * net.params["W1"], rtol=1e-15)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match="hidden_size"):
        scratchnet.TwoLayerNet(4, bad, 2)


def _naive_predict(params, x):
    return naive.net_forward(params, x)[3]


def test_predict_loss_accuracy_match_textbook(mnist_batch, trained_small, backend):
    x, t = mnist_batch(50, start=1000)
    x64 = x.astype(np.float64)
    for net in (scratchnet.TwoLayerNet(784, 8, 10, seed=5), trained_small):
        y = net.predict(x, backend=backend)
        # Same products summed in another order, then sigmoid/softmax each within a few ulps.
        np.testing.assert_allclose(y, _naive_predict(net.params, x64), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(net.loss(x, t, backend=backend), naive.net_loss(net.params, x64, t), rtol=1e-14)
        assert net.accuracy(x, t, backend=backend) == np.mean(np.argmax(y, axis=1) == t)
    # 200 SGD steps at lr 0.1 only start the sigmoid net's learning (the
    # chapter needs about an epoch for 80%), but the loss does go down.
    assert trained_small.loss(x, t) < scratchnet.TwoLayerNet(784, 8, 10, seed=3).loss(x, t) - 0.02


def test_one_hot_and_labels_agree(mnist_batch, backend, method):
    x, t = mnist_batch(10)
    onehot = np.eye(10)[t]
    net = scratchnet.TwoLayerNet(784, 6, 10, seed=2)
    assert net.loss(x, t, backend=backend) == net.loss(x, onehot, backend=backend)
    assert net.accuracy(x, t, backend=backend) == net.accuracy(x, onehot, backend=backend)
    for a, b in (
        (net.gradient(x, t, backend=backend), net.gradient(x, onehot, backend=backend)),
        (
            net.numerical_gradient(x, t, method=method, backend=backend),
            net.numerical_gradient(x, onehot, method=method, backend=backend),
        ),
    ):
        for name in a:
            assert np.array_equal(a[name], b[name])


def test_batch_methods_equal_the_checked_ones(mnist_batch, backend):
    # The unchecked API (what train() calls) gives the same bits as the public methods.
    x, t = mnist_batch(20, start=40)
    net = scratchnet.TwoLayerNet(784, 9, 10, seed=21)
    batch = net.make_batch(x, backend=backend)
    labels = t.astype(np.intp)
    assert net.loss_batch(batch, labels, backend=backend) == net.loss(x, t, backend=backend)
    for a, b in (
        (net.gradient_batch(batch, labels, backend=backend), net.gradient(x, t, backend=backend)),
        (net.numerical_gradient_batch(batch, labels, backend=backend), net.numerical_gradient(x, t, backend=backend)),
    ):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    data = scratchnet.backends.resolve(backend).sparse_rows(x)
    assert net.count_correct(data, labels, backend=backend) == round(net.accuracy(x, t, backend=backend) * 20)


# -- the exactness matrix: every backend and method against the chapter's loop ------------------
# The loop subtracts two batch losses L(+h), L(-h) of about 2.3, each carrying
# rounding of some tens of ulps(2.3) ~ 1e-14 (matmuls, exp, log, mean); divided
# by 2h = 2e-4 that is ~1e-11 of noise in every entry of its gradient (seen:
# up to 1e-11), and it grows as 1/h: ~1e-9 at h = 1e-6, and as the loss: with
# weight std 3 the loss is 7.8 and the noise 2e-11. Both methods are far
# closer to exact (see the oracle tests below). So: absolute 1e-9 everywhere
# (the bar), and relative 1e-5 where |g| >= 1e-6 (1e-4 / h) (L / 2.3):
# 1e-11 (1e-4 / h) (L / 2.3) absolute there, the size of the loop's noise.
LOOP_ATOL = 1e-9
LOOP_RTOL = 1e-5
LOOP_RTOL_FLOOR = 1e-6
CHAPTER_LOSS = 2.3  # -log(1/10): the loss of a fresh net, where the noise above was measured


def assert_matches_loop(got, ref, h=H_STEP, loss=CHAPTER_LOSS):
    for name in ("W1", "b1", "W2", "b2"):
        checked = ~np.isnan(ref[name])  # the loop leaves unsampled entries NaN
        assert checked.any()
        g, r = got[name][checked], ref[name][checked]
        diff = np.abs(g - r)
        assert diff.max() <= LOOP_ATOL, (name, diff.max())
        big = np.abs(r) >= LOOP_RTOL_FLOOR * max(1.0, H_STEP / h) * max(1.0, loss / CHAPTER_LOSS)
        if big.any():
            rel = (diff[big] / np.abs(r[big])).max()
            assert rel <= LOOP_RTOL, (name, rel)


def _sample(params, rng, counts):
    """Random flat indices per parameter: counts name -> how many (None = all)."""
    return {
        name: (
            np.arange(p.size) if counts[name] is None else rng.choice(p.size, min(counts[name], p.size), replace=False)
        )
        for name, p in params.items()
    }


SAMPLED = {"W1": 60, "b1": 10, "W2": 30, "b2": None}


def _case(name, mnist_pool, trained_full):
    """(net, x, t, h, sample) of one input of the exactness matrix."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # not hash(): str hashes change per process
    x_all, t_all = mnist_pool
    mnist = lambda n, start=0: (x_all[start : start + n], t_all[start : start + n].astype(np.intp))  # noqa: E731
    h = H_STEP
    if name == "mnist-fresh":
        (x, t), net = mnist(100, 2000), scratchnet.TwoLayerNet(784, 50, 10, seed=8)
    elif name == "mnist-trained":
        (x, t), net = mnist(100, 2000), trained_full
    elif name == "gaussian":
        x, t = rng.standard_normal((30, 20)), rng.integers(0, 3, 30)
        net = scratchnet.TwoLayerNet(20, 7, 3, weight_init_std=0.5, seed=1)
    elif name == "pixels-0-255":
        (x, t), net = mnist(20, 300), scratchnet.TwoLayerNet(784, 7, 10, seed=2)
        x = np.round(x * 255.0)
    elif name.startswith("batch-"):
        n = int(name.split("-")[1])
        (x, t), net = mnist(n, 100), scratchnet.TwoLayerNet(784, 7, 10, seed=3)
    elif name.startswith("hidden-"):
        (x, t), net = mnist(40, 500), scratchnet.TwoLayerNet(784, int(name.split("-")[1]), 10, seed=4)
    elif name.startswith("outputs-"):
        k = int(name.split("-")[1])
        (x, t), net = mnist(40, 600), scratchnet.TwoLayerNet(784, 7, k, seed=5)
        t = t % k
    elif name == "weight-std-3":
        (x, t), net = mnist(30, 700), scratchnet.TwoLayerNet(784, 7, 10, weight_init_std=3.0, seed=6)
    elif name.startswith("h-"):
        h = float(name.split("-", 1)[1])
        (x, t), net = mnist(30, 800), scratchnet.TwoLayerNet(784, 7, 10, seed=7)
    else:
        raise KeyError(name)
    return net, x, t, h, _sample(net.params, rng, SAMPLED)


MATRIX = [
    "mnist-fresh",
    "mnist-trained",
    "gaussian",
    "pixels-0-255",
    "batch-1",
    "batch-1000",
    "hidden-1",
    "hidden-7",
    "hidden-200",
    "outputs-2",
    "outputs-3",
    "weight-std-3",
    "h-1e-2",
    "h-1e-3",
    "h-1e-5",
    "h-1e-6",
]


@pytest.fixture(scope="module")
def loop_reference(mnist_pool, trained_full):
    """reference(case) -> (net, x, t, h, the loop's gradient), the loop run once per case."""
    cache = {}

    def reference(name):
        if name not in cache:
            net, x, t, h, sample = _case(name, mnist_pool, trained_full)
            ref = naive.net_numerical_gradient(_copy(net.params), x.astype(np.float64), t, h=h, sample=sample)
            cache[name] = net, x, t, h, ref
        return cache[name]

    return reference


@pytest.mark.slow
@pytest.mark.parametrize("case", MATRIX)
def test_matches_the_loop(loop_reference, case, backend, method):
    net, x, t, h, ref = loop_reference(case)
    got = net.numerical_gradient(x, t, h=h, method=method, backend=backend)
    assert_matches_loop(got, ref, h, loss=net.loss(x, t, backend="numpy"))


# -- exactness: an extended-precision oracle of the same central difference --------------------
# naive.central_difference_oracle: the loop's quantity (its real steps, fl(p + h) - p)
# with the loss computed in mpmath at 40 digits. The series method's own error
# is a few ulps of each entry (~1e-18 here), the perturbed method's the rounding
# of its per-sample log ratios (~1e-16 each, / 2h: a few 1e-13). Both within
# the 1e-12; the loop itself misses it (~1e-12 to 1e-11).
ORACLE_ATOL = 1e-12


def _oracle_sample(params, x, rng, per_param=4):
    picks = []
    for name, p in params.items():
        for flat in rng.choice(p.size, per_param, replace=False):
            index = np.unravel_index(flat, p.shape)
            if name == "W1" and not x[:, index[0]].any():
                continue  # an all-zero pixel: exactly 0 by every method
            picks.append((name, index))
    return picks


@pytest.fixture(scope="module")
def chapter_oracle(mnist_pool, trained_full):
    """oracle(state) -> (net, x, t, [(name, index, exact)]): computed once per net, for every backend and method."""
    cache = {}

    def oracle(state):
        if state not in cache:
            x, t = mnist_pool[0][:10].astype(np.float64), mnist_pool[1][:10].astype(np.intp)
            net = trained_full if state == "trained" else scratchnet.TwoLayerNet(784, 50, 10, seed=31)
            picks = _oracle_sample(net.params, x, np.random.default_rng(41))
            cache[state] = (
                net,
                x,
                t,
                [(n, i, naive.central_difference_oracle(net.params, x, t, n, i)) for n, i in picks],
            )
        return cache[state]

    return oracle


@pytest.mark.slow
@pytest.mark.parametrize("state", ["fresh", "trained"])
def test_oracle_on_the_chapters_net(chapter_oracle, backend, method, state):
    net, x, t, exact = chapter_oracle(state)
    got = net.numerical_gradient(x, t, method=method, backend=backend)
    for name, index, value in exact:
        assert abs(got[name][index] - value) <= ORACLE_ATOL, (name, index, got[name][index], value)


@pytest.mark.slow
@pytest.mark.parametrize("offset", [("b2", 1e6), ("W2", 1e4)], ids=["b2+1e6", "W2+1e4"])
def test_oracle_large_parameters_take_the_loops_real_steps(mnist_pool, backend, method, offset, rng):
    # With b2 ~ 1e6 the loop's steps fl(p + h) - p differ from h by up to half
    # an ulp of 1e6, 6e-11 (relative 6e-7): a result with the nominal h is off
    # by ~1e-8. Both methods take the real steps. Their remaining error is the
    # forward pass's: logits of ~1e6 carry half an ulp each, which moves the
    # loss by up to that much per sample, ~1e-10 in a gradient entry of ~0.1
    # (the loop's own noise is that / 2h: ~1e-7, so the loop is no reference here).
    x, t = mnist_pool[0][:10].astype(np.float64), mnist_pool[1][:10].astype(np.intp)
    net = scratchnet.TwoLayerNet(784, 6, 10, seed=32)
    name, add = offset
    net.params[name] += add
    a2_max = np.abs(naive.net_forward(net.params, x)[2]).max()
    tolerance = ORACLE_ATOL + 4 * np.spacing(a2_max)
    got = net.numerical_gradient(x, t, method=method, backend=backend)
    for pname, index in _oracle_sample(net.params, x, rng, per_param=3):
        exact = naive.central_difference_oracle(net.params, x, t, pname, index)
        assert abs(got[pname][index] - exact) <= tolerance, (pname, index, got[pname][index], exact, tolerance)


@pytest.mark.parametrize("compiled", [b for b in scratchnet.available_backends() if b != "numpy"])
@pytest.mark.parametrize("case", ["mnist-fresh", "mnist-trained", "gaussian", "hidden-200", "h-2e-3"])
def test_compiled_series_equals_numpy(mnist_pool, trained_full, compiled, case):
    # Runs on every platform (no long double needed): numba and c against the
    # NumPy reference where the series is taken everywhere: within 1e-12, and
    # within 16 ulps of each parameter group's largest entry (the same sums in
    # other orders, each to a few ulps). At h = 2e-3 the 5th power alone is
    # (h max|x|)^4 ~ 1e-11 of an entry: a series cut short in both compiled
    # twins fails here.
    net, x, t, h, _ = _case(case, mnist_pool, trained_full)
    ref = net.numerical_gradient(x, t, h=h, method="series", backend="numpy")
    got = net.numerical_gradient(x, t, h=h, method="series", backend=compiled)
    for name in ref:
        diff = np.abs(got[name] - ref[name]).max()
        assert diff <= 1e-12, name
        assert diff <= 16 * np.finfo(np.float64).eps * np.abs(ref[name]).max(), (name, diff)


@pytest.mark.parametrize("compiled", [b for b in scratchnet.available_backends() if b != "numpy"])
@pytest.mark.parametrize("case", ["mnist-trained", "pixels-0-255", "weight-std-3", "h-1e-2"])
def test_compiled_perturbed_equals_numpy(mnist_pool, trained_full, compiled, method, case):
    # Where the perturbed-loss method runs (all of it, or the units the bound
    # sent there): each per-sample loss difference is a log of a ratio of two
    # perturbed probabilities, computed in a different way by each backend,
    # each to a few ulps of the sample's loss; over 2h and averaged, that is
    # 8 eps max(1, loss) / 2h at worst (5e-12 for a loss of 2.3).
    net, x, t, h, _ = _case(case, mnist_pool, trained_full)
    losses = -np.log(naive.net_forward(net.params, x.astype(np.float64))[3][np.arange(len(t)), t] + 1e-7)
    tolerance = 8 * np.finfo(np.float64).eps * max(1.0, losses.max()) / (2 * h)
    ref = net.numerical_gradient(x, t, h=h, method=method, backend="numpy")
    got = net.numerical_gradient(x, t, h=h, method=method, backend=compiled)
    for name in ref:
        assert np.abs(got[name] - ref[name]).max() <= tolerance, (name, tolerance)


def test_numba_and_c_are_bitwise_twins(mnist_pool, trained_full, method):
    if not {"numba", "c"} <= set(scratchnet.available_backends()):
        pytest.skip("needs both compiled backends")
    for case in ("mnist-trained", "pixels-0-255", "weight-std-3", "h-1e-2"):
        net, x, t, h, _ = _case(case, mnist_pool, trained_full)
        a = net.numerical_gradient(x, t, h=h, method=method, backend="numba")
        b = net.numerical_gradient(x, t, h=h, method=method, backend="c")
        for name in a:
            assert a[name].tobytes() == b[name].tobytes(), (case, name)


def test_both_methods_give_the_same_central_differences(mnist_pool, trained_full, backend):
    net, x, t, h, _ = _case("mnist-trained", mnist_pool, trained_full)
    a = net.numerical_gradient(x, t, method="series", backend=backend)
    b = net.numerical_gradient(x, t, method="perturbed", backend=backend)
    for name in a:
        assert np.abs(a[name] - b[name]).max() <= 1e-12, name  # the perturbed method's rounding


# -- the series method: its coefficients, its bound, its paths ------------------------------------
def _coefficients(backend, net, x, t):
    """(C, L) (5, N, H) and (5, N, K) as ``backend`` computes them for the network at x."""
    import importlib

    params = net.kernel_params()
    batch = net.make_batch(x, backend=backend)
    fwd = net.forward_batch(batch, backend=backend)
    labels = np.asarray(t, dtype=np.intp)
    if backend == "numpy":
        mod = importlib.import_module("scratchnet.backends.numpy.numgrad_series")
        return np.array(mod.hidden_coefficients(fwd, labels, params.W2)[1:]), np.array(
            mod.logit_coefficients(fwd, labels)[1:]
        )
    n, (h, k) = batch.n, params.W2.shape
    C, L = np.empty((5, n, h)), np.empty((5, n, k))
    if backend == "numba":
        mod = importlib.import_module("scratchnet.backends.numba.numgrad_series")
        mod.coefficients(C, L, fwd, batch, labels, params, np.ascontiguousarray(params.W2.T))
        return C, L
    from scratchnet import _ckernels
    from scratchnet.backends.structs import Grads, SeriesWork

    work = SeriesWork(
        C,
        L,
        np.empty((k, h)),
        np.empty((8, 2, h)),
        np.empty((2, h, k)),
        np.empty((2, h)),
        np.empty((2, k)),
        np.empty(h, np.uint8),
        np.empty(k, np.uint8),
    )
    grads = Grads(*(np.empty_like(p) for p in params))
    _ckernels.numgrad_series(grads, work, batch, labels, params, fwd, 1e-4)
    return C, L


@pytest.mark.slow
def test_series_coefficients_equal_the_taylor_coefficients(mnist_pool, trained_full, backend, rng):
    # naive.loss_taylor differentiates the loss in mpmath at 50 digits, from its
    # definition. The kernels' recurrences are exact series arithmetic in
    # double: each coefficient carries a few ulps of the largest term that
    # enters it, terms of size up to (max|W2 row| / 4)^m (sigmoid' <= 1/4): so
    # 1e-14 * (1 + max|w|)^m. A coefficient left out, cut short or miscomputed
    # is off by its own size, far above that (order 5 included).
    x, t = mnist_pool[0][:8].astype(np.float64), mnist_pool[1][:8].astype(np.intp)
    for net in (trained_full, scratchnet.TwoLayerNet(784, 6, 10, weight_init_std=1.0, seed=33)):
        C, L = _coefficients(backend, net, x, t)
        a1, _, a2, _ = naive.net_forward(net.params, x)
        for n in range(len(t)):
            j = int(rng.integers(C.shape[2]))
            w = net.params["W2"][j]
            ref = naive.loss_taylor(a1[n, j], w, a2[n], t[n])
            for m in range(5):
                tol = 1e-14 * (1 + np.abs(w).max()) ** (m + 1)
                assert abs(C[m, n, j] - ref[m]) <= tol, ("C", n, j, m + 1, C[m, n, j], ref[m])
            c = int(rng.integers(L.shape[2]))
            ref = naive.loss_taylor(0.0, w, a2[n], t[n], kind=("logit", c))
            for m in range(5):
                assert abs(L[m, n, c] - ref[m]) <= 1e-14, ("L", n, c, m + 1, L[m, n, c], ref[m])


def _true_remainder(a, w, logits, t, x, h):
    """One gradient entry's terms beyond d^5, exactly: one sample, pixel value x, nominal step h (mpmath)."""
    import mpmath

    with mpmath.workdps(60):
        c = naive.loss_taylor(a, w, logits, t, order=5, exact=True)
        d = mpmath.mpf(x) * mpmath.mpf(h)
        A, wm, lg = mpmath.mpf(a), [mpmath.mpf(v) for v in w], [mpmath.mpf(v) for v in logits]

        def loss(dd):
            dz = 1 / (1 + mpmath.exp(-(A + dd))) - 1 / (1 + mpmath.exp(-A))
            s = [lg[i] + dz * wm[i] for i in range(len(lg))]
            e = [mpmath.exp(v - max(s)) for v in s]
            return -mpmath.log(e[t] / mpmath.fsum(e) + mpmath.mpf("1e-7"))

        series = sum(c[m] * (d ** (m + 1) - (-d) ** (m + 1)) for m in range(5))
        return abs(float((loss(d) - loss(-d) - series) / (2 * mpmath.mpf(h))))


def _near_extremal_cases():
    """Two classes at even odds (a zero of the softmax normaliser at distance pi / span) and a steep sigmoid."""
    for span in (0.5, 2.0, 8.0, 20.0, 40.0):
        for h in (1e-3, 1e-2):
            yield 0.5, np.array([span / 2, -span / 2]), np.zeros(2), 0, 1.0, h


@pytest.mark.slow
def test_remainder_bound_is_sound_and_within_a_thousand_of_the_truth(rng):
    # The bound on the terms beyond the 5th power against the true remainder of
    # one gradient entry (one sample: the loss at +x h and -x h less its series
    # through d^5, over 2h), by mpmath: random units whose W2 rows span 0.1 to
    # 40 with steps up to where the bound gives up, and near-extremal ones. It
    # must hold everywhere; and it is not needlessly loose: within 1000x of the
    # truth somewhere (measured: 230x), or the series would be refused where it
    # is exact.
    import importlib

    ns = importlib.import_module("scratchnet.backends.numpy.numgrad_series")
    cases = list(_near_extremal_cases())
    for _ in range(30):
        w = rng.standard_normal(10) * 10 ** rng.uniform(-1, 1.3)
        cases.append(
            (
                rng.normal(0, 2),
                w,
                rng.normal(0, 2, 10),
                int(rng.integers(10)),
                rng.uniform(0.2, 1.0),
                10 ** rng.uniform(-4, -1.5),
            )
        )
    worst = 0.0
    for a, w, logits, t, x, h in cases:
        width = w.max() - w.min()
        bound = ns.tail_bound(functools.partial(ns.hidden_growth, width=width), h, 0.0, x, h)
        if not np.isfinite(bound):
            continue
        remainder = _true_remainder(a, w, logits, t, x, h)
        assert remainder <= bound, (remainder, bound, width, h)
        worst = max(worst, remainder / bound)
    assert worst >= 1e-3, worst


def test_the_documented_paths(mnist_pool, backend):
    # numerical_gradient's docstring: the chapter's data take the series
    # everywhere; a unit falls back when max|x| h exceeds about 3e-3 or its W2
    # row spans more than about 150, the logits when h exceeds about 5e-3.
    # The bound grows as the 7th power of max|x| h and of the span, so a bound
    # 100x looser (or tighter) moves each threshold by 100^(1/7) = 1.93: the
    # cases below sit within that factor on both sides, and would flip.
    kernels = scratchnet.backends.resolve(backend)
    x, t = mnist_pool[0][:50], mnist_pool[1][:50].astype(np.intp)

    def paths(net, x, h=H_STEP):
        params = net.kernel_params()
        batch = net.make_batch(x, backend=backend)
        fwd = net.forward_batch(batch, backend=backend)
        grads = scratchnet.backends.structs.Grads(*(np.empty_like(p) for p in params))
        units, logits = kernels.numgrad_series(grads, batch, t, params, fwd, h)
        return np.asarray(units, bool), np.asarray(logits, bool)

    net = scratchnet.TwoLayerNet(784, 20, 10, seed=34)
    for h, units_back, logits_back in (
        (H_STEP, False, False),
        (2e-3, False, False),
        (5e-3, True, False),
        (1e-2, True, True),
    ):
        units, logits = paths(net, x, h=h)
        assert units.all() == units_back and units.any() == units_back, h
        assert logits.all() == logits_back and logits.any() == logits_back, h
    units, _ = paths(net, np.round(x * 255.0))  # max|x| h = 0.0255
    assert units.all()
    units, _ = paths(net, x * 20.0)  # max|x| h = 2e-3
    assert not units.any()
    for span, falls_back in ((90.0, False), (300.0, True)):
        wide = scratchnet.TwoLayerNet(784, 20, 10, seed=34)
        wide.params["W2"][3] *= span / np.ptp(wide.params["W2"][3])  # one row spanning `span`
        units, _ = paths(wide, x)
        assert units[3] == falls_back and units.sum() == falls_back, span


def test_fallback_units_equal_the_perturbed_method(mnist_pool, backend):
    # Where the bound sends a unit to the perturbed method, its entries are
    # exactly that method's; the others stay the series'.
    x, t = mnist_pool[0][:30], mnist_pool[1][:30].astype(np.intp)
    net = scratchnet.TwoLayerNet(784, 8, 10, seed=35)
    net.params["W2"][2] *= 300.0 / np.ptp(net.params["W2"][2])
    series = net.numerical_gradient(x, t, method="series", backend=backend)
    perturbed = net.numerical_gradient(x, t, method="perturbed", backend=backend)
    assert np.array_equal(series["W1"][:, 2], perturbed["W1"][:, 2]) and series["b1"][2] == perturbed["b1"][2]
    assert not np.array_equal(series["W1"][:, 0], perturbed["W1"][:, 0])


# -- the perturbed method's helpers, branch by branch ---------------------------------------------
# Each series claims full double precision inside its range (bounds derived in
# numba/numgrad_perturbed.py); here each is held to a few ulps (2^-52 = 2.2e-16)
# of the library function, on both sides of its threshold.
ULP = np.finfo(np.float64).eps


def _exact_hidden_pair_diff(a, d, logits, w, t):
    """loss(+d) - loss(-d) for a shift d of the hidden pre-activation a, in 60-digit mpmath."""
    import mpmath

    with mpmath.workdps(60):
        A = mpmath.mpf(a)

        def loss(dd):
            dz = 1 / (1 + mpmath.exp(-(A + dd))) - 1 / (1 + mpmath.exp(-A))
            s = [mpmath.mpf(logit) + dz * mpmath.mpf(wi) for logit, wi in zip(logits, w)]
            ex = [mpmath.exp(v - max(s)) for v in s]
            return -mpmath.log(ex[t] / mpmath.fsum(ex) + mpmath.mpf("1e-7"))

        return float(loss(mpmath.mpf(d)) - loss(-mpmath.mpf(d)))


def _perturbed_module():
    import importlib

    return importlib.import_module("scratchnet.backends.numba.numgrad_perturbed")


def test_perturbed_series_helpers_match_library():
    nw = _perturbed_module()
    for u in np.concatenate([np.logspace(-14, -3, 40), [0.99e-3, 1.01e-3, 0.02, 0.5]]):
        for v in (u, -u):
            assert abs(nw.expm1_small(v) - math.expm1(v)) <= 2 * ULP * abs(math.expm1(v))
            r = 1.0 + v
            assert abs(nw.log_ratio(r) - math.log(r)) <= 2 * ULP * abs(math.log(r))


@pytest.mark.parametrize(
    "c, wscale, saturated",
    [
        (1.5e-4, 1.0, False),
        (1.99e-4, 1.0, False),
        (0.99e-3, 1.0, False),
        (1.01e-3, 1.0, False),
        (0.05, 1.0, False),
        (10.0, 1.0, False),
        # logit shifts |dz w| beyond DIRECT_SHIFT (1): up to ~1e3 (the ratio
        # forms' 1 + expm1(u) loses all precision below u ~ -37)
        (10.0, 100.0, False),
        (0.05, 1e3, False),
        # |a| beyond SATURATED (700): z zq underflows; steps of up to 2e3 back across 0
        (500.0, 1.0, True),
        (1e-4, 1.0, True),
    ],
)
def test_perturbed_hidden_pair_paths_agree(rng, c, wscale, saturated):
    # c = |d| / 4 * max|W2[j]| / wscale: below FAST_MAX (2e-4) the series
    # path, up to SERIES_MAX (1e-3) the Taylor sum with branches, above it
    # the direct sum; c = 10 (d = 40) with saturated units is where a naive
    # 1 + z (e^d - 1) cancels. Oracle: the same loss difference in mpmath
    # (naive.loss_taylor's definition, evaluated directly). Each path's
    # result carries a few ulps of r ~ 1 (log r) or of the two losses
    # (direct, each below -log(1e-7) ~ 16): 2e-15 + 1e-14 relative, and
    # 1e-14 absolute where the losses are computed directly.
    nw = _perturbed_module()
    for _ in range(20):
        k = 10
        w = rng.standard_normal(k)
        w *= wscale / np.abs(w).max()  # max |w| = wscale
        d = 4.0 * c * rng.choice([-1.0, 1.0])
        if saturated:
            a = float(rng.choice([-1.0, 1.0]) * rng.uniform(701.0, 1500.0))
        else:
            a = rng.normal(0.0, 3.0 if c < 1 else 40.0)
        logits = rng.normal(0.0, 2.0, k)
        t = int(rng.integers(k))
        e = np.exp(logits - logits.max())
        z, zq = scratchnet.sigmoid(a), scratchnet.sigmoid(-a)
        q = [float(np.sum(e * w**p)) / math.factorial(p) for p in (1, 2, 3, 4)]
        args = (z, zq, e[t], w[t], float(np.sum(e)), *q)
        got = nw.hidden_pair_diff(d, d, a, *args, wscale, e, w, logits, t)
        if c <= nw.FAST_MAX and wscale == 1.0 and not saturated:
            m_p, m_m = math.expm1(d), math.expm1(-d)
            assert abs(nw.hidden_pair_diff_series(m_p, m_m, *args) - got) <= 2e-15

        exact = _exact_hidden_pair_diff(a, d, logits, w, t)
        tol = 2e-15 + 1e-14 * abs(exact) + (1e-14 if c * wscale > nw.DIRECT_SHIFT else 0.0)
        assert math.isfinite(got) and abs(got - exact) <= tol, (got, exact, a, d)


# -- kernel properties ------------------------------------------------------------------
@pytest.mark.parametrize("pixels", ["0-1", "0-255"])
@pytest.mark.parametrize("threaded_backend", [b for b in scratchnet.available_backends() if b != "numpy"])
def test_numerical_gradient_threads_bitwise(mnist_batch, trained_full, threaded_backend, threads, pixels, method):
    # Pixels in [0, 1] take the series, raw 0..255 the perturbed method
    # (and in it the general path). The numpy backend has no threads.
    x, t = mnist_batch(100, start=2000)
    if pixels == "0-255":
        x = np.round(x * 255.0)
    results = []
    for n in (1, 2):
        threads(n)
        results.append(trained_full.numerical_gradient(x, t, method=method, backend=threaded_backend))
    for name in results[0]:
        assert results[0][name].tobytes() == results[1][name].tobytes(), name


def test_numerical_gradient_leaves_params_untouched(mnist_batch, trained_small, backend, method):
    x, t = mnist_batch(10)
    before = {name: p.tobytes() for name, p in trained_small.params.items()}
    trained_small.numerical_gradient(x, t, method=method, backend=backend)
    assert {name: p.tobytes() for name, p in trained_small.params.items()} == before


def test_float32_x_same_as_float64(mnist_batch, backend, method):
    x, t = mnist_batch(10)
    assert x.dtype == np.float32
    net = scratchnet.TwoLayerNet(784, 6, 10, seed=10)
    a = net.numerical_gradient(x, t, method=method, backend=backend)
    b = net.numerical_gradient(x.astype(np.float64), t, method=method, backend=backend)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes()
    assert net.loss(x, t, backend=backend) == net.loss(x.astype(np.float64), t, backend=backend)


def test_zero_pixels_have_exactly_zero_gradient(mnist_batch, backend, method):
    x, t = mnist_batch(10)
    net = scratchnet.TwoLayerNet(784, 6, 10, seed=11)
    g = net.numerical_gradient(x, t, method=method, backend=backend)["W1"]
    dead = ~x.any(axis=0)
    assert dead.any() and not g[dead].any()
    assert np.all(g[~dead].any(axis=1))


# -- against backprop ---------------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 100])
@pytest.mark.parametrize("trained", [False, True], ids=["fresh", "trained"])
def test_gradient_check(mnist_batch, trained_full, n, trained, backend):
    # Central difference - derivative = h^2/6 f''' + rounding; with x in [0, 1]
    # and |W2| ~ 1 the third derivatives are O(1), so ~2e-9 at most: 1e-8 bound.
    x, t = mnist_batch(n, start=500)
    net = trained_full if trained else scratchnet.TwoLayerNet(784, 50, 10, seed=12)
    diffs = gradient_check(net, x, t, backend=backend)
    assert set(diffs) == {"W1", "b1", "W2", "b2"}
    assert max(diffs.values()) <= 1e-8, diffs


def test_backprop_matches_the_textbooks(mnist_batch, trained_full, backend):
    # The same products summed in other orders (x's non-zeros only): a few ulps.
    x, t = mnist_batch(40, start=900)
    got = trained_full.gradient(x, t, backend=backend)
    ref = naive.net_backprop(trained_full.params, x.astype(np.float64), t.astype(np.intp))
    for name in got:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-12, atol=1e-17)


def test_gradient_check_detects_a_wrong_gradient(mnist_batch, monkeypatch):
    x, t = mnist_batch(3)
    net = scratchnet.TwoLayerNet(784, 5, 10, seed=13)
    right = net.gradient

    def wrong(x, t, **kwargs):
        g = right(x, t, **kwargs)
        g["W2"][1, 2] += 1e-6
        return g

    monkeypatch.setattr(net, "gradient", wrong)
    diffs = gradient_check(net, x, t)
    assert diffs["W2"] > 9e-7 and diffs["W1"] < 1e-8


# -- bad input -------------------------------------------------------------------------------
def test_bad_input():
    rng = np.random.default_rng(0)
    net = scratchnet.TwoLayerNet(6, 4, 3, seed=0)
    x = rng.random((5, 6))
    t = np.array([0, 1, 2, 1, 0])
    with pytest.raises(ValueError, match="x"):
        net.numerical_gradient(rng.random((5, 7)), t)
    with pytest.raises(ValueError, match="x"):
        net.loss(rng.random(6), t[:1])
    with pytest.raises(ValueError, match="t"):
        net.numerical_gradient(x, t[:4])
    with pytest.raises(ValueError, match="out of range"):
        net.numerical_gradient(x, np.array([0, 1, 3, 1, 0]))
    with pytest.raises(ValueError, match="out of range"):
        net.gradient(x, np.array([0, -1, 2, 1, 0]))
    with pytest.raises(TypeError, match="t"):
        net.loss(x, t.astype(np.float64))
    with pytest.raises(ValueError, match="one-hot"):
        net.loss(x, np.full((5, 3), 0.5))
    bad_x = x.copy()
    bad_x[2, 3] = np.nan
    for f in (net.numerical_gradient, net.gradient, net.loss):
        with pytest.raises(ValueError, match="x: contains NaN"):
            f(bad_x, t)
    for h in (0.0, -1e-4, math.inf, math.nan, 1e-320, True, "1e-4", None, 1e308):
        with pytest.raises(ValueError, match="h: "):
            net.numerical_gradient(x, t, h=h)
    with pytest.raises(ValueError, match="method"):
        net.numerical_gradient(x, t, method="taylor")
    with pytest.raises(ValueError, match="backend"):
        net.numerical_gradient(x, t, backend="fortran")

    single = scratchnet.TwoLayerNet(6, 4, 3, seed=0)
    single.params["W1"] = single.params["W1"].astype(np.float32)
    with pytest.raises(TypeError, match=r"params\['W1'\].*float32"):
        single.numerical_gradient(x, t)
    wrong_shape = scratchnet.TwoLayerNet(6, 4, 3, seed=0)
    wrong_shape.params["b2"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"params\['b2'\]"):
        wrong_shape.numerical_gradient(x, t)
    nan_param = scratchnet.TwoLayerNet(6, 4, 3, seed=0)
    nan_param.params["W2"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"params\['W2'\]"):
        nan_param.gradient(x, t)


# -- what fuzzing found: NaN, overflow and malformed parameters ----------------------------
# Each test below is the smallest example of something the fuzz tests
# (test_fuzz_net_methods.py) once found; its comment says what went wrong,
# its name what holds now.
def _net_with(W1, b1, W2, b2):
    params = {k: np.array(v, dtype=np.float64) for k, v in dict(W1=W1, b1=b1, W2=W2, b2=b2).items()}
    (d, h), k = params["W1"].shape, params["W2"].shape[1]
    net = scratchnet.TwoLayerNet(d, max(h, 1), max(k, 1))  # the sizes the parameters have (zero ones tested below)
    net.params = params
    return net


def _finite_and_equal_on_every_backend(get):
    """get(backend) on each selected backend: finite dicts of arrays, numba and c bitwise equal."""
    results = {b: get(b) for b in selected_backends()}
    for b, g in results.items():
        for name, v in g.items():
            assert np.isfinite(v).all(), f"{b}: {name} = {v}"
    if "numba" in results and "c" in results:
        for name, v in results["numba"].items():
            assert v.tobytes() == results["c"][name].tobytes(), f"numba and c differ in {name}"
    return results


def test_a_saturated_unit_pushed_back_has_finite_gradients():
    # sigmoid_step(a, d) (numgrad_perturbed, every backend) divides 0 by 0
    # when sigmoid(a) or sigmoid(-a) underflows (|a| > ~745) and a step of
    # the opposite sign exp-underflows too (|d| > ~745): here a1 = 1.26e4
    # and x h = 1e3. The chapter's loop gives 0 (the unit stays saturated).
    net = scratchnet.TwoLayerNet(1, 1, 2, seed=0)  # W1 = 0.0012573
    for method in ("series", "perturbed"):
        got = _finite_and_equal_on_every_backend(
            lambda b, method=method: net.numerical_gradient([[1e7]], [0], method=method, backend=b)
        )
        assert all(g["W1"][0, 0] == 0.0 for g in got.values()), got
    # the same through b1: a1 = -800, h = 1000
    net = _net_with([[0.0]], [-800.0], [[1.0, 0.0]], [0.0, 0.0])
    _finite_and_equal_on_every_backend(lambda b: net.numerical_gradient([[0.0]], [0], h=1000.0, backend=b))


def test_b2_gradient_is_finite_for_steps_beyond_709():
    # numba and c: the numerical gradient of b2 is NaN once h > ~709.78
    # (exp(h) overflows); numpy gives -/+0.008059047875479...
    net = _net_with([[0.0]], [0.0], [[0.0, 0.0]], [0.0, 0.0])
    for method in ("series", "perturbed"):
        got = _finite_and_equal_on_every_backend(
            lambda b, method=method: net.numerical_gradient([[0.0]], [0], h=1000.0, method=method, backend=b)
        )
        for g in got.values():
            np.testing.assert_allclose(g["b2"], [-0.00805904787547916, 0.00805904787547916], rtol=1e-12)


def test_hidden_gradient_is_finite_when_a_logit_moves_by_more_than_37():
    # numba and c: the perturbed loss of a hidden unit is NaN when its step
    # moves a logit by more than ~37.43 = log(2**54): here b1 +- 3 moves z by
    # 0.45 and the logit by 45. numpy: 0 (one class: the loss is constant).
    net = _net_with([[1.0]], [0.0], [[100.0]], [0.0])
    got = _finite_and_equal_on_every_backend(
        lambda b: net.numerical_gradient([[0.0]], [0], h=3.0, method="perturbed", backend=b)
    )
    assert all(g["b1"][0] == 0.0 for g in got.values()), got
    net = _net_with([[1.0]], [0.0], [[100.0, 0.0]], [0.0, 0.0])  # two classes: numpy -0.0014463832114449...
    _finite_and_equal_on_every_backend(lambda b: net.numerical_gradient([[0.0]], [0], h=3.0, backend=b))


@pytest.mark.parametrize(
    "params, method",
    [
        # numba and c: the moments q_p = sum_k e_k W2[j, k]^p / p! of a hidden
        # unit overflow once |W2| > ~1e77 (p = 4), and a step that moves z by
        # exactly 0 (b1 = -1000: z = 0 either side) times q = inf is NaN, by
        # both methods. numpy: 0 (the unit is saturated: the loop's 0).
        (([[0.0]], [-1000.0], [[1e100, -1e100]], [0.0, 0.0]), "series"),
        (([[0.0]], [-1000.0], [[1e100, -1e100]], [0.0, 0.0]), "perturbed"),
        # numpy's series: hidden_coefficients' v**m overflows (RuntimeWarning)
        # and the NaN coefficients pass the remainder bound (NaN compares
        # false): W1 and b1 NaN, where numpy's perturbed method gives 0.
        (([[0.0]], [-1e297], [[2.5e299, -2.5e299]], [5e299, -5e299]), "series"),
    ],
    ids=["moments-series", "moments-perturbed", "numpy-coefficients"],
)
def test_huge_output_weights_give_finite_hidden_gradients(backend, params, method):
    net = _net_with(*params)
    g = net.numerical_gradient([[0.0]], [0], h=0.5, method=method, backend=backend)
    assert np.isfinite(g["W1"]).all() and np.isfinite(g["b1"]).all(), g


@pytest.mark.parametrize(
    "params, x",
    [
        # a2 = 1.7e308 z + 1.7e308 overflows: NaN probabilities, NaN loss, on every backend
        (([[1.0]], [0.0], [[1.7e308, 0.0]], [1.7e308, 0.0]), [[1.0]]),
        # a1 = 2e308 - 2e308: numba and c NaN; numpy's BLAS (FMA) inf, so z = 1, y = [0.731, 0.269];
        # the true a1 is 0 (y = [0.622, 0.378])
        (([[2.0], [-2.0]], [0.0], [[1.0, 0.0]], [0.0, 0.0]), [[1e308, 1e308]]),
    ],
    ids=["logit-overflow", "hidden-overflow"],
)
def test_an_overflowing_forward_pass_is_finite_or_named(backend, params, x):
    # finite x and params pass every check, then the forward pass overflows:
    # predict returns NaN "probabilities" and loss NaN, without a word (and
    # cross_entropy_error raises ValueError for the same NaN). Expected:
    # probabilities (computed without the overflow), or a documented
    # exception naming x or params.
    net = _net_with(*params)
    try:
        y, loss = net.predict(x, backend=backend), net.loss(x, [0], backend=backend)
    except (ValueError, FloatingPointError) as exc:
        assert re.match(r"(x|params)\b", str(exc)), exc
    else:
        assert np.isfinite(y).all() and math.isfinite(loss), (y, loss)


def test_numpy_backend_is_silent_and_agrees_where_the_compiled_ones_are():
    # The reference backend once raised RuntimeWarning (an error under pytest's settings, and for users
    # who follow them) on inputs the others take silently and the docstrings accept: x = 1e100 overflows
    # numgrad_series.py's powers of x. Warnings are errors here whatever pytest's settings, and the
    # gradient must agree with the compiled backends' to the rounding of a central difference of a
    # loss near log 2 at h = 1e-4 (eps * 0.69 / 1e-4 = 1.5e-12; 1e-11 leaves a margin).
    net = _net_with([[1e-100]], [0.0], [[1.0, 0.0]], [0.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = net.numerical_gradient([[1e100]], [0], backend="numpy")
    for backend in set(selected_backends()) - {"numpy"}:
        expected = net.numerical_gradient([[1e100]], [0], backend=backend)
        for name in got:
            np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-11, err_msg=f"{backend} {name}")
    net = _net_with([[1.7976931348623157e308]], [0.0], [[1.0, 0.0]], [0.0, 0.0])  # forward.py: overflow in matmul
    with pytest.raises(FloatingPointError, match=r"^x: the hidden pre-activations"):  # the compiled backends' error
        net.predict([[2.0]], backend="numpy")


def test_predict_refuses_a_ragged_list_by_name():
    # np.asarray's ValueError ("setting an array element with a sequence
    # ...") came through unchanged: it named no argument.
    with pytest.raises(ValueError, match=r"^x: "):
        scratchnet.TwoLayerNet(2, 1, 2).predict([[0.5, 0.5], [1.0]])


@pytest.mark.parametrize("empty", ["hidden", "classes"])
def test_parameters_with_no_hidden_unit_or_no_class_are_refused_by_name(backend, empty):
    # W1 (D, 0) / W2 (H, 0) pass kernel_params. No hidden unit: numba and c
    # return gradients, numpy's series raises "zero-size array to reduction
    # operation maximum which has no identity". No class: numba's predict
    # returns an (N, 0) array, c raises "forward: k (classes ...) must be >= 1",
    # numpy the zero-size message. Expected: the same on every backend, and
    # an error (TwoLayerNet itself refuses sizes < 1) naming params.
    if empty == "hidden":
        net = _net_with(np.zeros((1, 0)), np.zeros(0), np.zeros((0, 2)), [0.0, 0.0])
        call = lambda: net.numerical_gradient([[1.0]], [0], backend=backend)  # noqa: E731
    else:
        net = _net_with([[1.0]], [0.0], np.zeros((1, 0)), np.zeros(0))
        call = lambda: net.predict([[1.0]], backend=backend)  # noqa: E731
    with pytest.raises(ValueError, match=r"^params\['W[12]'\]: "):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda net, x: net.numerical_gradient(x, [0, 1], h=10**400),  # OverflowError: int too large to convert
        lambda net, x: gradient_check(net, x, [0, 1], h=10**400),  # the same
    ],
    ids=["numerical_gradient-h", "gradient_check-h"],
)
def test_an_integer_step_beyond_float64_is_refused_by_name(call):
    # check_step's float(h) raised OverflowError (numerical_diff says
    # "h: expected a positive finite step" for the same h). Expected:
    # ValueError naming h.
    net = scratchnet.TwoLayerNet(2, 2, 2, seed=0)
    with pytest.raises(ValueError, match=r"^h: "):
        call(net, np.array([[0.5, 1.0], [1.0, 0.0]]))
