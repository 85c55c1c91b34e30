"""sigmoid, softmax, sum_squares_error, cross_entropy_error on every backend,
compared with the slow loops of tests/naive.py.

Tolerances are derived in comments from the rounding of each formula; eps is
the float64 machine epsilon, 2**-52.
"""

import functools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import naive
import scratchnet as sn
from scratchnet._config import SUM_BLOCK

EPS = np.finfo(np.float64).eps
TINY = np.finfo(np.float64).tiny  # below it values are subnormal: absolute, not relative, precision
COMPILED = [b for b in sn.available_backends() if b != "numpy"]
HYPOTHESIS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _at_1_and_2_threads(threads, func):
    threads(1)
    one = func()
    threads(2)
    two = func()
    return one, two


# -- sigmoid -----------------------------------------------------------------
def test_sigmoid_matches_naive(backend, rng):
    x = np.concatenate([rng.normal(scale=20.0, size=10_000), [-1e308, -745.2, -720.0, -40.0, -0.0, 0.0, 40.0, 800.0]])
    # exp differs by <= 1 ulp between libm, NumPy's SIMD exp and LLVM; then
    # 1 + e, the division and the mirror's e * (1 / (1 + e)) round once each:
    # <= 4 ulp. Outputs below TINY are subnormal, where one ulp is 2**-1074.
    np.testing.assert_allclose(sn.sigmoid(x, backend=backend), naive.sigmoid(x), rtol=4 * EPS, atol=4 * 2.0**-1074)


def test_sigmoid_extremes_are_exact_and_silent(backend):
    # filterwarnings=error: an overflow in exp(-x) would fail this test.
    x = np.array([-np.inf, -1e308, -1000.0, 1000.0, 1e308, np.inf, 0.0, np.nan])
    got = sn.sigmoid(x, backend=backend)
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.5, np.nan])


def test_sigmoid_keeps_the_shape(backend, rng):
    x3 = rng.normal(size=(2, 3, 4))
    assert sn.sigmoid(x3, backend=backend).shape == (2, 3, 4)
    view = x3[:, ::2, ::-1]  # non-contiguous input
    np.testing.assert_array_equal(sn.sigmoid(view, backend=backend), sn.sigmoid(view.copy(), backend=backend))
    scalar = sn.sigmoid(0.0, backend=backend)
    assert np.ndim(scalar) == 0 and scalar == 0.5
    np.testing.assert_array_equal(sn.sigmoid([0, 0], backend=backend), [0.5, 0.5])  # lists and ints
    assert sn.sigmoid(np.zeros((0, 3)), backend=backend).shape == (0, 3)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.array([True]), "x: expected a real numeric array"),
        (np.array(["1.0"]), "x: expected a real numeric array"),
        (np.array([1j]), r"x: complex values are not supported \(got dtype complex128\); pass real numbers"),
    ],
)
def test_sigmoid_refuses_non_real(bad, match):
    with pytest.raises(TypeError, match=match):
        sn.sigmoid(bad)


# -- softmax -----------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5000, 10), (40, 1000), (3, 1)])
def test_softmax_matches_naive(backend, rng, shape):
    x = rng.normal(scale=5.0, size=shape)
    k = shape[1]
    # x - max rounds identically everywhere; exp differs by <= 1 ulp; the
    # row sum of k positive terms in any order is within (k - 1) eps of the
    # exact sum (naive uses fsum); the division adds 1/2 ulp: (k + 2) eps,
    # rounded up to (k + 4) eps.
    np.testing.assert_allclose(sn.softmax(x, backend=backend), naive.softmax(x), rtol=(k + 4) * EPS, atol=0)


def test_softmax_vector_is_a_row(backend, rng):
    x = rng.normal(size=7)
    got = sn.softmax(x, backend=backend)
    assert got.shape == (7,)
    np.testing.assert_array_equal(got, sn.softmax(x[None, :], backend=backend)[0])
    assert sn.softmax(np.zeros((0, 4)), backend=backend).shape == (0, 4)  # an empty batch


def test_softmax_huge_logits(backend):
    # Without subtracting the max, exp(1000) overflows (the book's example).
    got = sn.softmax(np.array([1010.0, 1000.0, 990.0]), backend=backend)
    np.testing.assert_allclose(got, naive.softmax([20.0, 10.0, 0.0]), rtol=(3 + 4) * EPS, atol=0)  # as above
    # -1e308 - 1e308 overflows to -inf, whose exp is the right 0.
    np.testing.assert_array_equal(sn.softmax(np.array([1e308, -1e308]), backend=backend), [1.0, 0.0])


def test_softmax_nan_and_inf_rows_are_nan_and_silent(backend):
    x = np.array([[np.inf, 0.0], [np.nan, 1.0], [1.0, np.nan], [-np.inf, -np.inf], [-np.inf, 0.0], [0.0, 0.0]])
    got = sn.softmax(x, backend=backend)
    assert np.isnan(got[:4]).all()
    np.testing.assert_array_equal(got[4:], [[0.0, 1.0], [0.5, 0.5]])  # other rows are not affected


@pytest.mark.parametrize("shape", [(), (2, 2, 2), (0,), (3, 0)])
def test_softmax_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"x: expected a non-empty vector \(K,\) or batch \(N, K\)"):
        sn.softmax(np.zeros(shape))


@given(
    x=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=40),
        elements=st.floats(-1e3, 1e3, allow_nan=False),
    )
)
@HYPOTHESIS
def test_softmax_rows_sum_to_one(backend, x):
    k = x.shape[1]
    got = sn.softmax(x, backend=backend)
    # sum_j fl(e_j / s) = (sum e_j / fl(s)) (1 + <= eps/2): the row sum's
    # (k - 1) eps plus eps/2; fsum adds no error of its own.
    for row in got:
        assert abs(math.fsum(row) - 1.0) <= (k + 1) * EPS


@given(
    x=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=20),
        elements=st.floats(-1e3, 1e3, allow_nan=False),
    ),
    c=st.floats(-1e3, 1e3, allow_nan=False),
)
@HYPOTHESIS
def test_softmax_is_shift_invariant(backend, x, c):
    k = x.shape[1]
    # |x|, |c| <= 1e3. The argument of exp, x_j - max, is computed from
    # fl(x + c) (error <= u 2e3 each, u = eps/2), then subtracted (<= u 4e3):
    # <= 8e3 u = 4e3 eps absolute; unshifted x_j - max errs <= 1e3 eps. An
    # absolute error d in exp's argument is a relative error d in its value:
    # e_j differ by <= 5e3 eps relatively, and the normalised output by twice
    # that, plus the (k + 4) eps of test_softmax_matches_naive for each side.
    # Values below TINY (exp of < -708) lose relative precision: atol TINY.
    rtol = 2 * 5e3 * EPS + 2 * (k + 4) * EPS
    np.testing.assert_allclose(sn.softmax(x + c, backend=backend), sn.softmax(x, backend=backend), rtol=rtol, atol=TINY)


# -- sum_squares_error ---------------------------------------------------------
def test_sum_squares_error_book_examples():
    t = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    y = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
    assert sn.sum_squares_error(np.array(y), np.array(t)) == pytest.approx(0.0975, rel=4 * EPS)
    y[2], y[7] = 0.1, 0.6
    assert sn.sum_squares_error(np.array(y), np.array(t)) == pytest.approx(0.5975, rel=4 * EPS)


def test_sum_squares_error_matches_naive(rng):
    y, t = rng.random((100, 10)), rng.random((100, 10))
    # 1000 non-negative terms, each (y - t)**2 rounded twice: any summation
    # order errs by <= (n - 1) eps relative, plus 2 eps from the terms.
    n = y.size
    assert sn.sum_squares_error(y, t) == pytest.approx(naive.sum_squares_error(y, t), rel=(n + 2) * EPS, abs=0)


def test_sum_squared_error_is_the_reference_codes_name():
    # the textbook's reference code calls it sum_squared_error: the same function
    assert sn.sum_squared_error is sn.sum_squares_error
    y = [0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]
    t = [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert sn.sum_squared_error(np.array(y), np.array(t)) == pytest.approx(0.0975, rel=4 * EPS)


def test_sum_squares_error_shape_mismatch():
    with pytest.raises(ValueError, match=r"t: shape \(3,\) does not match y's shape \(2,\)"):
        sn.sum_squares_error(np.zeros(2), np.zeros(3))


def test_sum_squares_error_overflows_to_inf_and_refuses_nan_by_name():
    # Found by fuzzing: 0.5 * sum((y - t)**2) gave RuntimeWarning "overflow encountered in
    # subtract/square" and inf; "invalid value" and NaN for inf - inf.
    # Expected: inf where the true value exceeds float64 (its correct
    # rounding), and NaN or inf inputs refused by name, as cross_entropy_error does.
    assert sn.sum_squares_error(np.array([1e308]), np.array([-1e308])) == np.inf
    with pytest.raises(ValueError, match=r"^y: "):
        sn.sum_squares_error(np.array([np.inf]), np.array([np.inf]))
    with pytest.raises(ValueError, match=r"^t: "):
        sn.sum_squares_error(np.array([0.5]), np.array([np.nan]))


# -- cross_entropy_error -------------------------------------------------------
def _probabilities(rng, n, k):
    return naive.softmax(rng.normal(scale=3.0, size=(n, k)))


def test_cross_entropy_book_examples(backend):
    t = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    y = np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
    # one term: log and the division by N = 1 round once each.
    assert sn.cross_entropy_error(y, t, backend=backend) == pytest.approx(-math.log(0.6 + 1e-7), rel=2 * EPS)
    y[2], y[7] = 0.1, 0.6
    assert sn.cross_entropy_error(y, t, backend=backend) == pytest.approx(-math.log(0.1 + 1e-7), rel=2 * EPS)
    # y_true = 0 is finite thanks to the 1e-7
    assert sn.cross_entropy_error(y, 3, backend=backend) == pytest.approx(-math.log(1e-7), rel=2 * EPS)


@functools.cache
def _cross_entropy_case(n, k=10):
    """y (n, k), labels (n,) and the exact loss; computed once for all backends."""
    rng = np.random.default_rng(n)
    y, labels = _probabilities(rng, n, k), rng.integers(0, k, size=n)
    return y, labels, naive.cross_entropy_error(y, labels)


@pytest.mark.parametrize("n", [1, 7, 100_000])
def test_cross_entropy_matches_naive(backend, n):
    y, labels, expected = _cross_entropy_case(n)
    # Each term log(y + 1e-7) is <= 1e-7, so terms are negative except a few
    # tiny ones: the sum is well conditioned. Logs differ by <= 1 ulp; a
    # running sum over a block of B = SUM_BLOCK terms errs <= B eps, the sum
    # of the n / B block sums <= (n / B) eps (NumPy's pairwise sum does
    # better). naive sums exactly (fsum).
    rtol = (SUM_BLOCK + n / SUM_BLOCK + 2) * EPS
    assert sn.cross_entropy_error(y, labels, backend=backend) == pytest.approx(expected, rel=rtol, abs=0)


def test_cross_entropy_one_hot_equals_labels(backend, rng):
    y = _probabilities(rng, 500, 10)
    labels = rng.integers(0, 10, size=500)
    one_hot = np.eye(10)[labels]
    assert sn.cross_entropy_error(y, one_hot, backend=backend) == sn.cross_entropy_error(y, labels, backend=backend)
    assert sn.cross_entropy_error(y, one_hot.astype(np.int8), backend=backend) == sn.cross_entropy_error(
        y, labels.astype(np.uint8), backend=backend
    )


def test_cross_entropy_vector_is_a_batch_of_one(backend, rng):
    y = _probabilities(rng, 1, 5)
    expected = sn.cross_entropy_error(y, [3], backend=backend)
    for t in (3, np.int64(3), [3], np.eye(5)[3], np.eye(5)[3:4]):
        assert sn.cross_entropy_error(y[0], t, backend=backend) == expected


@given(
    y=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=30), elements=st.floats(0.0, 1.0)),
    data=st.data(),
)
@HYPOTHESIS
def test_cross_entropy_is_nearly_non_negative(backend, y, data):
    # Not ">= 0": for y in [0, 1] each term -log(y + 1e-7) is >= the term at
    # y = 1, -log(fl(1 + 1e-7)) ~ -1e-7 (fl(1 + 1e-7) keeps the 1e-7 only to
    # ~1e-9 relative, so log1p(1e-7) is not the bound). Summing n such terms
    # and dividing by n errs <= (n + 1) eps relative; log's own ulp: + 1 eps.
    n = y.shape[0]
    labels = data.draw(hnp.arrays(np.intp, n, elements=st.integers(0, y.shape[1] - 1)))
    floor = -math.log(1.0 + 1e-7) * (1 + (n + 2) * EPS)
    assert sn.cross_entropy_error(y, labels, backend=backend) >= floor


@pytest.mark.parametrize(
    ("y", "t", "error", "match"),
    [
        (np.zeros((2, 3, 4)), [0, 1], ValueError, r"y: expected probabilities of shape \(N, K\) or \(K,\)"),
        (np.zeros((0, 3)), [], ValueError, "y: expected probabilities"),
        (np.zeros(0), 0, ValueError, "y: expected probabilities"),
        (np.zeros((2, 3)), [0, 1, 2], ValueError, r"t: expected integer labels of shape \(2,\) or one-hot targets "),
        (np.zeros((2, 3)), np.zeros((2, 4)), ValueError, r"t: .*got shape \(2, 4\)"),
        (np.zeros((2, 3)), [0, 3], ValueError, r"t: label 3 out of range \[0, 3\)"),
        (np.zeros((2, 3)), [-1, 0], ValueError, r"t: label -1 out of range \[0, 3\)"),
        (np.zeros((2, 3)), [0.0, 1.0], TypeError, "t: labels must be integers, got dtype float64"),
        (np.zeros((2, 3)), [True, False], TypeError, "t: labels must be integers, got dtype bool"),
        (np.zeros((2, 3)), [[0, 1, 1], [1, 0, 0]], ValueError, "t: one-hot targets must have exactly one 1 per row"),
        (np.zeros((2, 3)), [[0, 0, 0], [1, 0, 0]], ValueError, "t: one-hot targets must have exactly one 1"),
        (np.zeros((2, 3)), [[0.5, 0.5, 0], [1, 0, 0]], ValueError, "t: one-hot targets must have exactly one 1"),
        (np.zeros((2, 3)), [["a", "b", "c"]] * 2, TypeError, "t: one-hot targets must be numeric"),
        (np.zeros(3), [0, 1], ValueError, r"t: for y of shape \(3,\) expected one label or a one-hot vector"),
        (np.zeros(3), np.zeros((1, 1)), ValueError, r"t: for y of shape \(3,\) .*got shape \(1, 1\)"),
        (np.array(["a"]), 0, TypeError, "y: expected a real numeric array"),
    ],
)
def test_cross_entropy_rejects_bad_input(y, t, error, match):
    with pytest.raises(error, match=match):
        sn.cross_entropy_error(y, t)


@pytest.mark.parametrize(
    ("value", "what"),
    [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite"), (-1.0, "so negative"), (-1e-7, "so negative")],
)
def test_cross_entropy_names_a_meaningless_probability(backend, value, what):
    y = np.full((3, 2), 0.5)
    y[1, 0] = value
    with pytest.raises(ValueError, match=rf"y: y\[1, 0\] \(the true class's probability\) is {what}"):
        sn.cross_entropy_error(y, [1, 0, 1], backend=backend)
    # The loss reads only y[n, t_n]: a bad value elsewhere does not matter.
    assert sn.cross_entropy_error(y, [1, 1, 1], backend=backend) == pytest.approx(-math.log(0.5 + 1e-7), rel=4 * EPS)


# -- malformed input ---------------------------------------------------------------
@pytest.mark.parametrize("call", ["sigmoid", "softmax", "cross_entropy_error", "sum_squares_error"])
def test_ragged_lists_are_refused_by_name(call):
    # Found by fuzzing: np.asarray's ValueError ("setting an array element
    # with a sequence ...") came through unchanged, naming no argument.
    ragged = [[0.5, 0.5], [1.0]]
    with pytest.raises(ValueError, match=r"^(x|y): "):
        if call in ("sigmoid", "softmax"):
            getattr(sn, call)(ragged)
        else:
            getattr(sn, call)(ragged, [[0.0, 1.0], [1.0, 0.0]])


# -- every backend agrees, and threads do not change a bit ------------------------
def _big_inputs(rng):
    x = rng.normal(scale=5.0, size=100_000)  # 10^5 elements / 5000 rows: both threads get work
    rows = rng.normal(scale=5.0, size=(5000, 10))
    y = _probabilities(rng, 100_000, 10)
    labels = rng.integers(0, 10, size=100_000)
    return x, rows, y, labels


def test_backends_agree(rng):
    x, rows, y, labels = _big_inputs(rng)

    def compute(b):
        return sn.sigmoid(x, backend=b), sn.softmax(rows, backend=b), sn.cross_entropy_error(y, labels, backend=b)

    ref = compute("numpy")
    for b in COMPILED:
        for g, r in zip(compute(b), ref):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=0, err_msg=b)


@pytest.mark.parametrize("b", COMPILED)
def test_one_and_two_threads_are_bitwise_identical(b, rng, threads):
    x, rows, y, labels = _big_inputs(rng)

    def compute():
        return sn.sigmoid(x, backend=b), sn.softmax(rows, backend=b), sn.cross_entropy_error(y, labels, backend=b)

    one, two = _at_1_and_2_threads(threads, compute)
    assert np.array_equal(one[0], two[0])
    assert np.array_equal(one[1], two[1])
    assert one[2] == two[2]
