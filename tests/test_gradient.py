"""numerical_diff, numerical_gradient and gradient_descent (sections 4.3-4.4)."""

import naive
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import scratchnet as sn
from scratchnet.backends import numba_gradient

EPS = np.finfo(np.float64).eps


def function_1(x):
    return 0.01 * x**2 + 0.1 * x


def function_2(x):
    return x[0] ** 2 + x[1] ** 2


# -- numerical_diff ----------------------------------------------------------------
def test_numerical_diff_book_values():
    # The same arithmetic as the book's numerical_diff, so its printed digits
    # come out exactly; the exact derivatives are 0.2 and 0.3.
    assert sn.numerical_diff(function_1, 5) == 0.1999999999990898
    assert sn.numerical_diff(function_1, 10) == 0.2999999999986347


def test_numerical_diff_is_the_central_difference():
    # For a cubic the central difference is f'(x) + h**2 exactly (one-sided
    # would be off by 3 x h). Rounding: eps |f| / h = 2e-16 * 8 / 1e-2 ~ 2e-13.
    h = 1e-2
    assert sn.numerical_diff(lambda x: x**3, 2.0, h=h) == pytest.approx(12.0 + h**2, abs=1e-12)


@pytest.mark.parametrize("h", [0, -1e-4, np.nan, np.inf, "1e-4", True, None])
def test_bad_step_is_rejected(h):
    with pytest.raises(ValueError, match="h: expected a positive finite step"):
        sn.numerical_diff(function_1, 1.0, h=h)
    with pytest.raises(ValueError, match="h: expected a positive finite step"):
        sn.numerical_gradient(lambda x: 0.0, np.zeros(2), h=h)


# -- numerical_gradient with a Python f -----------------------------------------------
@pytest.mark.parametrize(
    ("point", "expected"),
    [([3.0, 4.0], [6.0, 8.0]), ([0.0, 2.0], [0.0, 4.0]), ([3.0, 0.0], [6.0, 0.0])],
)
def test_book_gradients(point, expected):
    # A quadratic's central difference has no truncation error; rounding is
    # ~ eps |f| / h = 2e-16 * 25 / 1e-4 ~ 6e-11.
    np.testing.assert_allclose(sn.numerical_gradient(function_2, np.array(point)), expected, rtol=0, atol=1e-9)


def _quartic(x):
    return float(np.sum(x**4 - x))


def _make(layout):
    """A fresh array of the given shape or layout, the same on every call."""
    rng = np.random.default_rng(7)
    base = rng.normal(size=(4, 6, 5))
    return {
        "0-d": lambda: np.array(0.7),
        "1-D": lambda: base[0, 0].copy(),
        "2-D": lambda: base[0].copy(),
        "3-D": lambda: base,
        "strided": lambda: base[::2, 1::2, ::-1],
        "transposed": lambda: base[0].T,
        "column": lambda: base[:, 2, 3],
    }[layout]()


@pytest.mark.parametrize("layout", ["0-d", "1-D", "2-D", "3-D", "strided", "transposed", "column"])
def test_any_shape_and_layout(layout):
    x, twin = _make(layout), _make(layout)
    grad = sn.numerical_gradient(_quartic, x)
    assert grad.shape == x.shape and grad.dtype == np.float64
    # The chapter's loop on an identical array (same layout, same calls of f):
    # identical arithmetic, so identical bits.
    np.testing.assert_array_equal(grad, naive.numerical_gradient(_quartic, twin))
    # d/dx (x^4 - x) = 4x^3 - 1, and the central difference adds h^2 4x.
    # Rounding: f(x +- h) err ~ eps |f| each, divided by 2h; 10x margin for
    # the summation inside f.
    atol = 10 * EPS * np.sum(np.abs(x**4) + np.abs(x)) / 1e-4
    np.testing.assert_allclose(grad, 4 * x**3 - 1 + 4 * x * 1e-8, rtol=0, atol=atol)


def test_perturbation_writes_through_a_view(rng):
    # The chapter's f = lambda W: net.loss(x, t) ignores its argument and
    # reads the parameters it closes over: the perturbation must reach them.
    base = rng.normal(size=(6, 8))
    w = rng.normal(size=(6, 8))
    view = base[1::2, ::3]

    def f(_):
        return float(np.sum(w * base**2))

    grad = sn.numerical_gradient(f, view)
    # grad = 2 w x exactly for a quadratic, up to rounding eps |f| / h ~ 1e-10
    np.testing.assert_allclose(grad, 2 * w[1::2, ::3] * view, rtol=0, atol=1e-9)


def test_x_is_restored_bitwise():
    x = np.array([0.1, -0.0, 1e-300, 1e300, -7.3, 2.0**-1074])
    before = x.tobytes()
    sn.numerical_gradient(lambda v: float(np.sum(np.sin(v))), x)
    assert x.tobytes() == before


@pytest.mark.parametrize("fail_at", [1, 2, 5, 6])
def test_x_is_restored_when_f_raises(fail_at):
    # Calls 2k+1 and 2k+2 see element k at +h and -h: fail at either one.
    base = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    view = base[:, 1:]
    before = base.tobytes()
    calls = []

    def f(x):
        calls.append(1)
        if len(calls) == fail_at:
            raise RuntimeError("f failed")
        return float(np.sum(x**2))

    with pytest.raises(RuntimeError, match="f failed"):
        sn.numerical_gradient(f, view)
    assert len(calls) == fail_at
    assert base.tobytes() == before


@pytest.mark.parametrize("value", [np.zeros(2), [1.0, 2.0], "1.0", None, np.array([1j])])
def test_f_must_return_a_scalar(value):
    x = np.array([1.0, 2.0])
    with pytest.raises(TypeError, match="f: must return a real scalar"):
        sn.numerical_gradient(lambda _: value, x)
    np.testing.assert_array_equal(x, [1.0, 2.0])


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.array([1, 2]), "x: expected a float64 array, got dtype int64"),
        (np.array([1.0, 2.0], dtype=np.float32), "x: dtype float32 is too coarse"),
        ([1.0, 2.0], "x: expected a float64 numpy array .*got list"),
        (3.0, "x: expected a float64 numpy array .*got float"),
    ],
)
def test_x_must_be_a_float64_array(x, match):
    with pytest.raises(TypeError, match=match):
        sn.numerical_gradient(function_2, x)


def test_x_must_be_finite_and_writable():
    with pytest.raises(ValueError, match="x: contains NaN or inf"):
        sn.numerical_gradient(function_2, np.array([1.0, np.nan]))
    x = np.array([1.0, 2.0])
    x.flags.writeable = False
    with pytest.raises(ValueError, match="x: read-only array"):
        sn.numerical_gradient(function_2, x)


@given(
    n=st.integers(1, 6),
    data=st.data(),
)
@settings(max_examples=50, deadline=None)
def test_gradient_of_a_quadratic_is_exact(n, data):
    values = st.floats(-10.0, 10.0, allow_nan=False)
    a = data.draw(hnp.arrays(np.float64, (n, n), elements=values))
    b = data.draw(hnp.arrays(np.float64, n, elements=values))
    x = data.draw(hnp.arrays(np.float64, n, elements=values))
    # f = x.A.x / 2 + b.x: the central difference is exact for a quadratic in
    # exact arithmetic; rounding of f (|f| <= 36 * 10 * 100 / 2 + 600 ~ 2e4)
    # gives <= ~ eps |f| / h = 2e-16 * 2e4 / 1e-4 ~ 5e-8 < 1e-6.
    grad = sn.numerical_gradient(lambda v: 0.5 * v @ a @ v + b @ v, x)
    np.testing.assert_allclose(grad, 0.5 * (a + a.T) @ x + b, rtol=0, atol=1e-6)


# -- numerical_gradient with a Numba-jitted f -----------------------------------------
@numba.njit
def jitted_f(x):
    # any ndim; a few hundred flops per call so the threads have work
    return np.sum(np.sin(x) * x + 0.5 * x * x)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Record the nchunks of every call of the compiled gradient loop."""
    calls = []
    original = numba_gradient._gradient_kernel

    def spy(f, x, h, grad, nchunks):
        calls.append(nchunks)
        return original(f, x, h, grad, nchunks)

    monkeypatch.setattr(numba_gradient, "_gradient_kernel", spy)
    return calls


@pytest.mark.parametrize("shape", [(1000,), (25, 40)])
def test_jitted_f_matches_the_serial_loop_bitwise(rng, shape, kernel_calls):
    x = rng.normal(size=shape)
    before = x.tobytes()
    grad = sn.numerical_gradient(jitted_f, x)
    assert kernel_calls, "the compiled loop was not used"
    assert x.tobytes() == before  # private copies are perturbed, never x
    # The same compiled f called from Python in the chapter's loop: the
    # arithmetic is identical (no fastmath), so the bits are too.
    np.testing.assert_array_equal(grad, naive.numerical_gradient(jitted_f, x.copy()))


def test_jitted_f_one_and_two_threads_are_bitwise_identical(rng, threads, kernel_calls):
    x = rng.normal(size=1000)
    threads(1)
    one = sn.numerical_gradient(jitted_f, x)
    threads(2)
    two = sn.numerical_gradient(jitted_f, x)
    assert kernel_calls == [1, 2]  # one chunk per thread: both threads really worked
    assert np.array_equal(one, two)


def test_jitted_f_on_views_and_0d(rng):
    base = rng.normal(size=(25, 80))
    view = base[:, ::2]  # the compiled loop works on a C-contiguous copy
    before = base.tobytes()
    grad = sn.numerical_gradient(jitted_f, view)
    assert base.tobytes() == before
    np.testing.assert_array_equal(grad, naive.numerical_gradient(jitted_f, np.ascontiguousarray(view)))
    x0 = np.array(0.3)
    g0 = sn.numerical_gradient(jitted_f, x0)
    assert g0.shape == () and x0 == 0.3
    assert g0 == naive.numerical_gradient(jitted_f, np.array(0.3))


def test_jitted_f_returning_an_array_is_a_type_error():
    @numba.njit
    def not_scalar(x):
        return x * 2.0

    with pytest.raises(TypeError, match=r"f: a jitted f must take one float64 array of shape \(3,\)"):
        sn.numerical_gradient(not_scalar, np.zeros(3))


# -- gradient_descent -----------------------------------------------------------------
def test_gradient_descent_book_example():
    init_x = np.array([-3.0, 4.0])
    x = sn.gradient_descent(function_2, init_x, lr=0.1, step_num=100)
    np.testing.assert_array_equal(init_x, [-3.0, 4.0])  # the caller's array is not mutated
    # 0.8^100 * 5 ~ 1e-9: the book prints [-6.1e-10, 8.1e-10]
    np.testing.assert_allclose(x, [0.0, 0.0], rtol=0, atol=1e-8)


def test_gradient_descent_learning_rates_as_in_the_book():
    init_x = np.array([-3.0, 4.0])
    # Too large: diverges until x + h == x stalls the numerical gradient.
    # Same arithmetic as the book, so its printed 9 digits are reproduced.
    big = sn.gradient_descent(function_2, init_x, lr=10.0, step_num=100)
    np.testing.assert_allclose(big, [-2.58983747e13, -1.29524862e12], rtol=5e-9)
    # Too small: barely moves (x shrinks by (1 - 2e-10)^100).
    tiny = sn.gradient_descent(function_2, init_x, lr=1e-10, step_num=100)
    np.testing.assert_allclose(tiny, [-2.99999994, 3.99999992], rtol=5e-9)
    assert 0 < np.max(np.abs(tiny - init_x)) < 1e-6


def test_gradient_descent_history():
    init_x = [-3.0, 4.0]  # a list is fine too
    x, history = sn.gradient_descent(function_2, init_x, lr=0.1, step_num=20, return_history=True)
    assert history.shape == (20, 2)
    np.testing.assert_array_equal(history[0], init_x)
    # history[i] is x before step i: each step is history[i] - lr * gradient
    steps = np.vstack([history[1:], x])
    for before, after in zip(history, steps):
        np.testing.assert_array_equal(after, before - 0.1 * sn.numerical_gradient(function_2, before.copy()))
    x0, empty = sn.gradient_descent(function_2, init_x, step_num=0, return_history=True)
    np.testing.assert_array_equal(x0, init_x)
    assert empty.shape == (0, 2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"step_num": -1}, ValueError, "step_num: expected a non-negative integer"),
        ({"step_num": 2.5}, ValueError, "step_num: expected a non-negative integer"),
        ({"step_num": True}, ValueError, "step_num: expected a non-negative integer"),
        ({"lr": np.nan}, ValueError, "lr: expected a finite learning rate"),
        ({"init_x": np.array([True, False])}, TypeError, "init_x: expected a real numeric array"),
    ],
)
def test_gradient_descent_bad_input(kwargs, error, match):
    kwargs = {"init_x": np.array([1.0, 2.0]), **kwargs}
    with pytest.raises(error, match=match):
        sn.gradient_descent(function_2, **kwargs)
