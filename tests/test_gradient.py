"""numerical_diff, numerical_gradient and gradient_descent (sections 4.3-4.4)."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import naive
import scratchnet as sn
from scratchnet import _jitted_gradient as numba_gradient

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

    def spy(f, x, h, grad, ok, nchunks):
        calls.append(nchunks)
        return original(f, x, h, grad, ok, nchunks)

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

    # found by the one call from Python before the compiled loop
    with pytest.raises(TypeError, match=r"f: must return a real scalar, got ndarray of shape \(3,\)"):
        sn.numerical_gradient(not_scalar, np.zeros(3))


def test_jitted_f_of_the_wrong_signature_is_a_type_error():
    @numba.njit
    def two_args(x, y):
        return x[0] + y

    with pytest.raises(TypeError, match="takes 2 positional arguments|not enough arguments"):
        sn.numerical_gradient(two_args, np.zeros(3))


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
        ({"lr": np.nan}, ValueError, "lr: expected a positive finite real number, got nan"),
        ({"init_x": np.array([True, False])}, TypeError, "init_x: expected a real numeric array"),
    ],
)
def test_gradient_descent_bad_input(kwargs, error, match):
    kwargs = {"init_x": np.array([1.0, 2.0]), **kwargs}
    with pytest.raises(error, match=match):
        sn.gradient_descent(function_2, **kwargs)


# -- jitted f that raises or ignores x, history memory, bad steps and x -------------
@numba.njit
def raises_past_two(x):
    # raises only where the loop perturbs x[1] = 2 upwards: one element of many
    if x[1] > 2.00005:
        raise ValueError("x[1] is past 2")
    return np.sum(x * x)


@numba.njit
def always_raises(x):
    raise ValueError("f always fails")


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def thread_count(request):
    """Run at 1 thread and (where Numba has them) 2 threads: the kernel
    used to lose the exception one way with one thread and another with two."""
    if request.param > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("Numba was started with 1 thread")
    before = sn.get_num_threads()
    sn.set_num_threads(request.param)
    yield request.param
    sn.set_num_threads(before)


@pytest.mark.parametrize("n", [3, 1000])
def test_jitted_f_that_raises_raises_its_own_error(thread_count, n):
    # Before: SystemError "returned a result with an exception set" with one
    # thread; with two, the exception vanished and grad held uninitialised memory.
    x = np.linspace(1.0, 3.0, n)
    x[1] = 2.0
    before = x.tobytes()
    with pytest.raises(ValueError, match=r"x\[1\] is past 2"):
        sn.numerical_gradient(raises_past_two, x)
    assert x.tobytes() == before


def test_jitted_f_that_always_raises_raises_its_own_error():
    x = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="f always fails"):
        sn.numerical_gradient(always_raises, x)
    np.testing.assert_array_equal(x, [1.0, 2.0])


FROZEN_W = np.array([1.0, -2.0, 3.0])


@numba.njit
def reads_global(_):
    # Numba compiles FROZEN_W in as a constant: perturbing it cannot reach f.
    return np.sum(FROZEN_W * FROZEN_W)


def _closure_over(w):
    @numba.njit
    def f(_):
        return np.sum(w * w)

    return f


@pytest.mark.parametrize("how", ["global", "closure"])
def test_jitted_f_that_ignores_its_argument_is_refused(how):
    # The chapter's f = lambda W: net.loss(x, t) jitted: the Python loop gives
    # 2W, the compiled loop silently gave zeros.
    w = FROZEN_W if how == "global" else np.array([1.0, -2.0, 3.0])
    f = reads_global if how == "global" else _closure_over(w)
    np.testing.assert_allclose(sn.numerical_gradient(f.py_func, w), 2 * w, rtol=0, atol=1e-9)  # the Python path
    with pytest.raises(ValueError, match=r"f: the jitted f does not depend on its argument.*py_func"):
        sn.numerical_gradient(f, w)
    np.testing.assert_array_equal(w, [1.0, -2.0, 3.0])


def test_a_zero_gradient_is_still_a_zero_gradient():
    @numba.njit
    def constant(x):
        return 1.5

    @numba.njit
    def bowl(x):
        return np.sum(x * x)

    # Constant in its argument and in its Python version alike: the gradient is 0.
    np.testing.assert_array_equal(sn.numerical_gradient(constant, np.array([1.0, 2.0])), [0.0, 0.0])
    # The bottom of a bowl: f depends on x, its gradient there is 0.
    np.testing.assert_array_equal(sn.numerical_gradient(bowl, np.zeros(4)), np.zeros(4))


class _Stop(Exception):
    pass


def test_no_history_is_allocated_without_return_history():
    # Before: MemoryError "Unable to allocate 14.6 TiB" before the first step.
    calls = []

    def f(x):
        calls.append(1)
        if len(calls) > 10:
            raise _Stop
        return float(np.sum(x**2))

    init_x = np.array([-3.0, 4.0])
    with pytest.raises(_Stop):
        sn.gradient_descent(f, init_x, lr=0.1, step_num=10**12)
    np.testing.assert_array_equal(init_x, [-3.0, 4.0])


@numba.njit
def _cheap(x):
    return x[0] * x[0] + x[x.size - 1]


def test_memory_does_not_grow_with_step_num():
    import tracemalloc

    x0 = np.ones(2000)
    sn.gradient_descent(_cheap, x0, step_num=2)  # compile outside the measurement
    tracemalloc.start()
    try:
        sn.gradient_descent(_cheap, x0, lr=0.01, step_num=200)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A history would be 200 x 2000 x 8 B = 3.2 MB; the run itself needs a
    # few arrays of x's 16 kB.
    assert peak < 500_000, f"peak {peak} B"


def test_a_history_too_large_says_so():
    with pytest.raises(MemoryError, match=r"step_num: a history of 1000000000000 steps .*return_history=False"):
        sn.gradient_descent(function_2, np.array([-3.0, 4.0]), step_num=10**12, return_history=True)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.inf, r"x: inf is not finite"),
        (-np.inf, r"x: -inf is not finite"),
        (np.nan, r"x: nan is not finite"),
        (np.array([1.0, np.nan]), r"x: x\[1\] is nan"),
    ],
)
def test_numerical_diff_at_a_non_finite_x(x, match):
    with pytest.raises(ValueError, match=match):
        sn.numerical_diff(function_1, x)


@pytest.mark.parametrize("h", [1e-320, 5e-324, np.finfo(np.float64).tiny / 2])
def test_a_subnormal_step_is_refused(h):
    # 1 / (2h) overflows and h itself has lost precision bits.
    with pytest.raises(ValueError, match=r"h: .* is subnormal"):
        sn.numerical_diff(function_1, 1.0, h=h)
    with pytest.raises(ValueError, match=r"h: .* is subnormal"):
        sn.numerical_gradient(function_2, np.array([1.0, 2.0]), h=h)


def test_numerical_diff_of_a_scalar_x_needs_a_scalar_f():
    with pytest.raises(TypeError, match=r"f: returned an array of shape \(2,\) at the scalar x=1.0"):
        sn.numerical_diff(lambda v: np.array([v, v]), 1.0)


def test_numerical_diff_of_an_array_needs_an_elementwise_f():
    with pytest.raises(TypeError, match=r"f: returned shape \(\) for x of shape \(3,\).*elementwise"):
        sn.numerical_diff(lambda v: np.sum(v**2), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match=r"f: returned shape \(2,\) for x of shape \(3,\)"):
        sn.numerical_diff(lambda v: v[:2], np.array([1.0, 2.0, 3.0]))


def test_step_lost_in_rounding():
    with pytest.raises(ValueError, match=r"h: the step 0.0001 is lost in rounding at x=1e\+20"):
        sn.numerical_diff(function_1, 1e20)


@pytest.mark.parametrize(
    ("x", "match"), [("5", "got str"), (True, "got bool"), (None, "got NoneType")]
)  # complex: test_hardening.py, test_numerical_diff_refuses_a_complex_x_by_name
def test_numerical_diff_x_must_be_real(x, match):
    with pytest.raises(TypeError, match=f"x: expected a real number or an array of real numbers.*{match}"):
        sn.numerical_diff(function_1, x)


@pytest.mark.parametrize(
    ("lr", "match"),
    [
        ("0.1", r"lr: expected a positive finite real number, got '0.1' \(str\); pass lr=0.1"),
        (True, r"lr: expected a positive finite real number, got True \(bool\)"),
        (None, r"lr: expected a positive finite real number, got None"),
        (np.array([0.1]), r"lr: expected a positive finite real number"),
        (-0.1, r"lr: expected a positive finite real number, got -0.1.*minimise -f"),
        (0.0, r"lr: expected a positive finite real number, got 0.0"),
        (np.inf, r"lr: expected a positive finite real number, got inf"),
    ],
)
def test_gradient_descent_lr_must_be_a_positive_number(lr, match):
    init_x = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match=match):
        sn.gradient_descent(function_2, init_x, lr=lr)
    np.testing.assert_array_equal(init_x, [1.0, 2.0])


# -- the textbook's figure-script forms --------------------------------------------
def test_numerical_diff_elementwise_is_the_books_gradient_1d():
    # gradient_1d.py differentiates function_1 on np.arange(0.0, 20.0, 0.1) at once.
    x = np.arange(0.0, 20.0, 0.1)
    before = x.tobytes()
    d = sn.numerical_diff(function_1, x)
    assert x.tobytes() == before
    assert d.shape == x.shape and d.dtype == np.float64
    h = 1e-4
    np.testing.assert_array_equal(d, (function_1(x + h) - function_1(x - h)) / (2 * h))  # the same arithmetic
    # a quadratic: no truncation error; rounding eps |f| / h <= 2e-16 * 6 / 1e-4 ~ 1.2e-11
    np.testing.assert_allclose(d, 0.02 * x + 0.1, rtol=0, atol=2e-11)
    # element-for-element the scalar form
    assert d[50] == sn.numerical_diff(function_1, x[50])


def test_numerical_diff_elementwise_inputs():
    def square_in_place(v):  # an f that mutates its argument cannot reach the caller's x
        v *= v
        return v

    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(sn.numerical_diff(square_in_place, x), 2 * x, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(x, [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(sn.numerical_diff(lambda v: v**2, [1, 2, 3]), [2.0, 4.0, 6.0], atol=1e-9)  # ints, list
    assert sn.numerical_diff(lambda v: v**2, np.empty(0)).shape == (0,)
    zero_d = sn.numerical_diff(function_1, np.array(5.0))  # 0-d: the scalar form
    assert isinstance(zero_d, float) and zero_d == 0.1999999999990898


def _book_function_2(x):
    # gradient_2d.py's function_2: one point, or one value per row of a batch
    return np.sum(x**2) if x.ndim == 1 else np.sum(x**2, axis=1)


def _book_row_loop(f, X, h=1e-4):
    return np.array([naive.numerical_gradient(f, row.copy(), h) for row in X])


def test_batch_form_gradient_of_each_row():
    grid = np.arange(-2, 2.5, 0.25)
    X = np.array([[a, b] for b in grid for a in grid])  # (324, 2): one point per row
    before = X.tobytes()
    grad = sn.numerical_gradient(_book_function_2, X)
    assert X.tobytes() == before
    np.testing.assert_array_equal(grad, _book_row_loop(_book_function_2, X))  # the book's loop, bit for bit
    np.testing.assert_allclose(grad, 2 * X, rtol=0, atol=1e-10)  # rounding eps |f| / h ~ 2e-16 * 8 / 1e-4


def test_batch_form_the_books_own_call():
    # gradient_2d.py passes np.array([X, Y]), shape (2, 324): row 0 all the
    # x0 coordinates, row 1 all the x1. f = sum of squares is separable, so
    # each row's gradient is 2 * row, as the book's quiver plot needs.
    grid = np.arange(-2, 2.5, 0.25)
    X, Y = (a.flatten() for a in np.meshgrid(grid, grid))
    grad = sn.numerical_gradient(_book_function_2, np.array([X, Y]))
    np.testing.assert_allclose(grad, 2 * np.array([X, Y]), rtol=0, atol=1e-9)


def test_batch_form_with_a_jitted_f(rng):
    @numba.njit
    def per_row(x):
        if x.ndim == 1:
            return np.sum(x**4)
        return np.sum(x**4, axis=1)

    X = rng.normal(size=(5, 3))
    before = X.tobytes()
    grad = sn.numerical_gradient(per_row, X)
    assert X.tobytes() == before
    np.testing.assert_array_equal(grad, _book_row_loop(per_row, X))


def test_batch_form_is_chosen_only_by_one_value_per_row():
    X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    # a scalar function of the whole 2-D array: the usual gradient, all elements
    np.testing.assert_allclose(sn.numerical_gradient(lambda v: np.sum(v**3), X), 3 * X**2, rtol=1e-7)
    # one row: (1,) is a size-1 value, the scalar reading, the same numbers
    one = np.array([[1.0, 2.0]])
    np.testing.assert_allclose(sn.numerical_gradient(_book_function_2, one), 2 * one, atol=1e-9)
    # neither a scalar nor one value per row
    with pytest.raises(TypeError, match=r"f: must return a real scalar, or one value per row \(shape \(3,\)"):
        sn.numerical_gradient(lambda v: v[:2, 0], X)
    # one value per row, but not a scalar at each row
    with pytest.raises(TypeError, match=r"f: must return a real scalar at each row .*batch form"):
        sn.numerical_gradient(lambda v: v[:, 0] if v.ndim == 2 else v, X)
    np.testing.assert_array_equal(X, [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])


def test_batch_form_restores_x_when_f_raises():
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    before = X.tobytes()
    calls = []

    def f(v):
        calls.append(1)
        if len(calls) == 4:  # inside the row loop, row 0 perturbed
            raise RuntimeError("f failed")
        return _book_function_2(v)

    with pytest.raises(RuntimeError, match="f failed"):
        sn.numerical_gradient(f, X)
    assert X.tobytes() == before


def test_gradient_descent_divergence_is_an_error():
    init_x = np.array([1.0, 2.0])
    steep = lambda v: -1e300 * np.sum(v)  # noqa: E731 - gradient -1e300 everywhere
    with pytest.raises(FloatingPointError, match=r"lr: gradient descent diverged at step 0 .*below 1e\+10"):
        sn.gradient_descent(steep, init_x, lr=1e10)
    with pytest.raises(FloatingPointError, match=r"f: the gradient at step 0 is not finite"):
        sn.gradient_descent(lambda v: np.nan, init_x)
    np.testing.assert_array_equal(init_x, [1.0, 2.0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"init_x": [1.0, np.inf]}, ValueError, "init_x: contains NaN or inf"),
        ({"return_history": "yes"}, TypeError, "return_history: expected True or False"),
        ({"step_num": np.int64(3)}, None, None),
        ({"lr": np.float32(0.5)}, None, None),
    ],
)
def test_gradient_descent_argument_types(kwargs, error, match):
    kwargs = {"init_x": np.array([1.0, 2.0]), **kwargs}
    if error is None:
        assert sn.gradient_descent(function_2, **kwargs).shape == (2,)
    else:
        with pytest.raises(error, match=match):
            sn.gradient_descent(function_2, **kwargs)


def test_gradient_descent_of_an_empty_x_returns_at_once():
    # Found by the fuzz tests: no step calls f, so 10**12 steps of nothing
    # used to run for hours. An empty x cannot change: it returns at once.
    x = sn.gradient_descent(lambda v: 0.0, np.empty((0, 2)), step_num=10**12)
    assert x.shape == (0, 2)
    x, history = sn.gradient_descent(lambda v: 0.0, np.empty(0), step_num=10**12, return_history=True)
    assert x.shape == (0,) and history.shape == (10**12, 0)
