"""TwoLayerNet: forward pass, the fast numerical gradient, backprop.

Every backend's numerical gradient is compared with the chapter's own loop
(naive.net_numerical_gradient), on real MNIST digits and on random data,
for fresh and for trained or saturating parameters.
"""

import math

import numpy as np
import pytest

import naive
import scratchnet
from scratchnet import gradient_check

H_STEP = 1e-4


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


# -- tolerance against the chapter's loop -------------------------------------------
# The loop subtracts two batch losses L(+h), L(-h) of about 2.3, each carrying
# rounding of some tens of ulps(2.3) ~ 1e-14 (matmuls, exp, log, mean); divided
# by 2h = 2e-4 that is ~1e-11 of noise in every entry of its gradient (seen:
# up to 1e-11). The backends sum per-sample differences and are 10-100x
# closer to exact (see test_closer_to_exact_than_the_loop). So: absolute 1e-9 everywhere (~100x
# the loop's noise), and relative 1e-5 where |g| >= 1e-6 (1e-11 absolute
# there, the size of the loop's noise: the tightest check it passes).
LOOP_ATOL = 1e-9
LOOP_RTOL = 1e-5
LOOP_RTOL_FLOOR = 1e-6


def assert_matches_loop(got, ref):
    for name in ("W1", "b1", "W2", "b2"):
        checked = ~np.isnan(ref[name])  # the loop leaves unsampled entries NaN
        assert checked.any()
        g, r = got[name][checked], ref[name][checked]
        diff = np.abs(g - r)
        assert diff.max() <= LOOP_ATOL, (name, diff.max())
        big = np.abs(r) >= LOOP_RTOL_FLOOR
        if big.any():
            rel = (diff[big] / np.abs(r[big])).max()
            assert rel <= LOOP_RTOL, (name, rel)


def _sample(params, rng, counts):
    """Random flat indices per parameter: counts name -> how many (None = all)."""
    return {
        name: (np.arange(p.size) if counts[name] is None else rng.choice(p.size, counts[name], replace=False))
        for name, p in params.items()
    }


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
    a1 = x @ params["W1"] + params["b1"]
    z1 = naive.sigmoid(a1)
    return naive.softmax(z1 @ params["W2"] + params["b2"])


def test_predict_loss_accuracy_match_textbook(mnist_batch, trained_small):
    x, t = mnist_batch(50, start=1000)
    x64 = x.astype(np.float64)
    for net in (scratchnet.TwoLayerNet(784, 8, 10, seed=5), trained_small):
        y = net.predict(x)
        # Same products, then sigmoid/softmax each within a few ulps of the loop's.
        np.testing.assert_allclose(y, _naive_predict(net.params, x64), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(net.loss(x, t), naive.net_loss(net.params, x64, t), rtol=1e-14)
        assert net.accuracy(x, t) == np.mean(np.argmax(y, axis=1) == t)
    # 200 SGD steps at lr 0.1 only start the sigmoid net's learning (the
    # chapter needs about an epoch for 80%), but the loss does go down.
    assert trained_small.loss(x, t) < scratchnet.TwoLayerNet(784, 8, 10, seed=3).loss(x, t) - 0.02


def test_one_hot_and_labels_agree(mnist_batch, backend):
    x, t = mnist_batch(10)
    onehot = np.eye(10)[t]
    net = scratchnet.TwoLayerNet(784, 6, 10, seed=2)
    assert net.loss(x, t) == net.loss(x, onehot)
    assert net.accuracy(x, t) == net.accuracy(x, onehot)
    for a, b in (
        (net.gradient(x, t), net.gradient(x, onehot)),
        (net.numerical_gradient(x, t, backend=backend), net.numerical_gradient(x, onehot, backend=backend)),
    ):
        for name in a:
            assert np.array_equal(a[name], b[name])


# -- numerical gradient against the chapter's loop -------------------------------------
@pytest.fixture(scope="module")
def loop_reference(mnist_batch, trained_small, trained_full):
    """reference(case) -> (net, x, t, loop gradient), the loop run once per case for all backends.

    "small-*": 784-8-10 on 8 digits, every parameter; "full-*": 784-50-10
    on 100 digits, a random sample of 330 parameters (the rest NaN).
    """
    cache = {}

    def reference(case):
        if case not in cache:
            size, state = case.split("-")
            rng = np.random.default_rng(20261127)
            if size == "small":
                x, t = mnist_batch(8, start=200)
                net = trained_small if state == "trained" else scratchnet.TwoLayerNet(784, 8, 10, seed=6)
                sample = None
            else:
                x, t = mnist_batch(100, start=2000)
                net = trained_full if state == "trained" else scratchnet.TwoLayerNet(784, 50, 10, seed=8)
                sample = _sample(net.params, rng, {"W1": 240, "b1": 20, "W2": 60, "b2": None})
            ref = naive.net_numerical_gradient(_copy(net.params), x.astype(np.float64), t, h=H_STEP, sample=sample)
            cache[case] = net, x, t, ref
        return cache[case]

    return reference


@pytest.mark.parametrize("case", ["small-fresh", "small-trained", "full-fresh", "full-trained"])
def test_numerical_gradient_mnist_against_loop(loop_reference, case, backend):
    net, x, t, ref = loop_reference(case)
    assert_matches_loop(net.numerical_gradient(x, t, backend=backend), ref)


@pytest.mark.parametrize(
    "scale, x_scale, h",
    [(1.0, 1.0, H_STEP), (30.0, 1.0, H_STEP), (1.0, 255.0, H_STEP), (30.0, 255.0, H_STEP), (30.0, 255.0, 0.5)],
    ids=["fresh", "saturating", "x0-255", "x0-255-saturating", "huge-step"],
)
def test_numerical_gradient_random_data(backend, rng, scale, x_scale, h):
    # Non-negative inputs with repeated values (as MNIST), and signed ones; x up
    # to 255 makes eps = h x up to 0.0255, beyond the short series in the kernels;
    # with h = 0.5, eps up to 100 on saturated units.
    d, hdim, k, n = 13, 7, 5, 9
    x = np.where(rng.random((n, d)) < 0.5, 0.0, rng.integers(1, 4, (n, d)) / 4.0) * x_scale
    x[:, :3] = rng.standard_normal((n, 3))
    t = rng.integers(0, k, n)
    net = scratchnet.TwoLayerNet(d, hdim, k, weight_init_std=0.3 * scale, seed=int(rng.integers(1 << 30)))
    net.params["b1"][:] = rng.standard_normal(hdim) * scale
    net.params["b2"][:] = rng.standard_normal(k) * scale
    ref = naive.net_numerical_gradient(_copy(net.params), x, t, h=h)
    assert_matches_loop(net.numerical_gradient(x, t, h=h, backend=backend), ref)


def test_numerical_gradient_unnormalised_mnist(mnist_batch, backend):
    # Pixels 0..255 with W2 scaled up: |dz W2| > 1e-3, the direct-sum path.
    x, t = mnist_batch(6, start=300)
    x = np.round(x * 255.0)
    net = scratchnet.TwoLayerNet(784, 5, 10, weight_init_std=1e-3, seed=9)
    net.params["W2"] *= 3000.0
    ref = naive.net_numerical_gradient(_copy(net.params), x, t, h=H_STEP)
    assert_matches_loop(net.numerical_gradient(x, t, backend=backend), ref)


# -- exactness: an extended-precision oracle ---------------------------------------------
def _longdouble_numgrad(params, x, t, h, name, flat):
    """Central difference of one parameter with per-sample differences in long double."""
    ld = np.longdouble
    p = {k: v.astype(ld) for k, v in params.items()}
    step = np.zeros(params[name].size, dtype=ld)
    step[flat] = ld(h)
    step = step.reshape(params[name].shape)
    xs = x.astype(ld)
    probs = []
    for sign in (1, -1):
        q = dict(p)
        q[name] = p[name] + sign * step  # nominal step, exact in long double
        z1 = 1 / (1 + np.exp(-(xs @ q["W1"] + q["b1"])))
        a2 = z1 @ q["W2"] + q["b2"]
        e = np.exp(a2 - a2.max(axis=1, keepdims=True))
        probs.append(e[np.arange(len(t)), t] / e.sum(axis=1))
    diff = np.log((probs[1] + ld(1e-7)) / (probs[0] + ld(1e-7)))
    return float(np.sum(diff) / len(t) / (2 * ld(h)))


@pytest.mark.skipif(np.finfo(np.longdouble).eps > 1e-18, reason="needs an extended long double")
def test_closer_to_exact_than_the_loop(mnist_batch, trained_small, backend, rng):
    # Oracle: the same central differences in 64-bit-mantissa arithmetic, whose
    # own error (~1e-19 per sample, / 2h) is ~1e-15. The backends' per-sample
    # difference log(r) carries a few ulps of r ~ 1, ~1e-15; averaged over N
    # samples and divided by 2h that is at most ~5e-12 if all errors line up,
    # ~1e-13 typically; the loop's is ~1e-12 for 20 samples (measured medians
    # 5e-14 to 1e-13 against 1.5e-12 to 2e-12). Asserted: the worst-case bound
    # 5e-12, and (the point of the method) a typical error 5x below the loop's.
    x, t = mnist_batch(20, start=400)
    x = x.astype(np.float64)
    net = trained_small
    got = net.numerical_gradient(x, t, backend=backend)
    errors, loop_errors = [], []
    for name, count in (("W1", 12), ("b1", 4), ("W2", 6), ("b2", 4)):
        for flat in rng.choice(net.params[name].size, count, replace=False):
            if name == "W1" and not x[:, flat // 8].any():
                continue  # an all-zero pixel: exactly 0 everywhere
            exact = _longdouble_numgrad(net.params, x, t, H_STEP, name, flat)
            loop = naive.net_numerical_gradient(_copy(net.params), x, t, h=H_STEP, sample={name: [flat]})
            errors.append(abs(got[name].flat[flat] - exact))
            loop_errors.append(abs(loop[name].flat[flat] - exact))
    assert max(errors) <= 5e-12, max(errors)
    assert np.median(errors) <= np.median(loop_errors) / 5, (np.median(errors), np.median(loop_errors))


# -- kernel properties ------------------------------------------------------------------
@pytest.mark.parametrize("pixels", ["0-1", "0-255"])
@pytest.mark.parametrize("threaded_backend", [b for b in scratchnet.available_backends() if b != "numpy"])
def test_numerical_gradient_threads_bitwise(mnist_batch, trained_full, threaded_backend, threads, pixels):
    # Pixels in [0, 1] take the kernels' series path, raw 0..255 the general
    # one. (The numpy backend has no threads of its own.)
    backend = threaded_backend
    x, t = mnist_batch(100, start=2000)
    if pixels == "0-255":
        x = np.round(x * 255.0)
    results = []
    for n in (1, 2):
        threads(n)
        results.append(trained_full.numerical_gradient(x, t, backend=backend))
    for name in results[0]:
        assert results[0][name].tobytes() == results[1][name].tobytes(), name


def test_numerical_gradient_leaves_params_untouched(mnist_batch, trained_small, backend):
    x, t = mnist_batch(10)
    before = {name: p.tobytes() for name, p in trained_small.params.items()}
    trained_small.numerical_gradient(x, t, backend=backend)
    assert {name: p.tobytes() for name, p in trained_small.params.items()} == before


def test_float32_x_same_as_float64(mnist_batch, backend):
    x, t = mnist_batch(10)
    assert x.dtype == np.float32
    net = scratchnet.TwoLayerNet(784, 6, 10, seed=10)
    a = net.numerical_gradient(x, t, backend=backend)
    b = net.numerical_gradient(x.astype(np.float64), t, backend=backend)
    for name in a:
        assert a[name].tobytes() == b[name].tobytes()
    assert net.loss(x, t) == net.loss(x.astype(np.float64), t)


def test_zero_pixels_have_exactly_zero_gradient(mnist_batch, backend):
    x, t = mnist_batch(10)
    net = scratchnet.TwoLayerNet(784, 6, 10, seed=11)
    g = net.numerical_gradient(x, t, backend=backend)["W1"]
    dead = ~x.any(axis=0)
    assert dead.any() and not g[dead].any()
    assert np.all(g[~dead].any(axis=1))


# -- against backprop ---------------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 100])
@pytest.mark.parametrize("trained", [False, True], ids=["fresh", "trained"])
def test_gradient_check(mnist_batch, trained_full, n, trained):
    # Central difference - derivative = h^2/6 f''' + rounding; with x in [0, 1]
    # and |W2| ~ 1 the third derivatives are O(1), so ~2e-9 at most: 1e-8 bound.
    x, t = mnist_batch(n, start=500)
    net = trained_full if trained else scratchnet.TwoLayerNet(784, 50, 10, seed=12)
    diffs = gradient_check(net, x, t)
    assert set(diffs) == {"W1", "b1", "W2", "b2"}
    assert max(diffs.values()) <= 1e-8, diffs


def test_gradient_check_detects_a_wrong_gradient(mnist_batch, monkeypatch):
    x, t = mnist_batch(3)
    net = scratchnet.TwoLayerNet(784, 5, 10, seed=13)
    right = net.gradient

    def wrong(x, t):
        g = right(x, t)
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
    for h in (0.0, -1e-4, math.inf, math.nan, True):
        with pytest.raises(ValueError, match="h"):
            net.numerical_gradient(x, t, h=h)
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


# -- the Numba kernel's series, branch by branch ------------------------------------------
# Each series claims full double precision inside its range (bounds derived in
# numba_network.py); here each is held to a few ulps (2^-52 = 2.2e-16) of the
# library function, on both sides of its threshold.
ULP = np.finfo(np.float64).eps


def test_series_helpers_match_library():
    from scratchnet.backends import numba_network as nw

    for u in np.concatenate([np.logspace(-14, -3, 40), [0.99e-3, 1.01e-3, 0.02, 0.5]]):
        for v in (u, -u):
            # Horner: <= 1 ulp; library expm1, log: <= 1 ulp.
            assert abs(nw.expm1_small(v) - math.expm1(v)) <= 2 * ULP * abs(math.expm1(v))
            r = 1.0 + v
            assert abs(nw.log_ratio(r) - math.log(r)) <= 2 * ULP * abs(math.log(r))


@pytest.mark.parametrize("c", [1.5e-4, 1.99e-4, 0.99e-3, 1.01e-3, 0.05, 10.0])
def test_hidden_pair_paths_agree(rng, c):
    # c = |eps| / 4 * max|W2[j]|: below FAST_MAX (2e-4) the series path, up to
    # SERIES_MAX (1e-3) the Taylor sum with branches, above it the direct sum;
    # c = 10 (eps = 40) with saturated units is where a naive 1 + s (e^eps - 1)
    # cancels. Oracle: the same loss difference in long double, directly from
    # the definition (dz from the sigmoid tail that is not close to 1). Each
    # path's result log(r) carries a few ulps of r ~ 1: 2e-15, plus relative
    # 1e-14 for the larger differences.
    from scratchnet.backends import numba_network as nw

    ld = np.longdouble

    def sig(v):
        return 1 / (1 + np.exp(-v))

    for _ in range(20):
        k = 10
        w = rng.standard_normal(k)
        w *= 1.0 / np.abs(w).max()  # max |w| = 1, so c = |eps| / 4
        eps = 4.0 * c * rng.choice([-1.0, 1.0])
        a = rng.normal(0.0, 3.0 if c < 1 else 40.0)
        logits = rng.normal(0.0, 2.0, k)
        t = int(rng.integers(k))
        e = np.exp(logits - logits.max())
        s_, q_ = 1.0 / (1.0 + math.exp(-a)), 1.0 / (1.0 + math.exp(a))
        q = [float(np.sum(e * w**p)) / math.factorial(p) for p in (1, 2, 3, 4)]
        args = (s_, q_, e[t], w[t], float(np.sum(e)), *q)
        got = nw.hidden_pair_diff(eps, *args, 1.0, e, w)
        if c <= nw.FAST_MAX:
            m_p, m_m = math.expm1(eps), math.expm1(-eps)
            assert abs(nw.hidden_pair_diff_series(m_p, m_m, *args) - got) <= 2e-15

        def loss(sign):
            al, el = ld(a), sign * ld(eps)
            dz = sig(al + el) - sig(al) if a < 0 else sig(-al) - sig(-(al + el))
            lg = logits.astype(ld) + dz * w.astype(ld)
            y = np.exp(lg - lg.max())
            return -np.log(y[t] / y.sum() + ld(1e-7))

        exact = float(loss(1) - loss(-1))
        assert abs(got - exact) <= 2e-15 + 1e-14 * abs(exact), (got, exact)
