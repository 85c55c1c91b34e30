"""SimpleNet, the chapter's simpleNet (section 4.4.2)."""

import numpy as np
import pytest

import scratchnet as sn

# What the chapter prints for its example.
BOOK_W = np.array([[0.47355232, 0.9977393, 0.84668094], [0.85557411, 0.03563661, 0.69422093]])
BOOK_X = np.array([0.6, 0.9])
BOOK_T = np.array([0, 0, 1])
BOOK_P = np.array([1.05414809, 0.63071653, 1.1328074])
BOOK_LOSS = 0.92806853663411326
BOOK_DW = np.array([[0.21924763, 0.14356247, -0.36281009], [0.32887144, 0.2153437, -0.54421514]])


def _book_net():
    net = sn.SimpleNet(seed=0)
    net.W = BOOK_W.copy()
    return net


def exact_dW(W, x, k):
    """dL/dW of L = -log(softmax(x W)[k] + 1e-7): dL/dz_j = y_k / (y_k + 1e-7) (y_j - [j == k])."""
    z = x @ W
    y = np.exp(z - z.max()) / np.sum(np.exp(z - z.max()))
    dz = y[k] / (y[k] + 1e-7) * (y - np.eye(len(y))[k])
    return np.outer(x, dz)


def test_weights_come_from_the_seed_not_the_global_state():
    state = np.random.get_state()[1].copy()  # noqa: NPY002 (the legacy global state is what is checked)
    a, b = sn.SimpleNet(seed=3), sn.SimpleNet(seed=np.random.default_rng(3))
    np.testing.assert_array_equal(a.W, np.random.default_rng(3).standard_normal((2, 3)))
    np.testing.assert_array_equal(a.W, b.W)
    assert not np.array_equal(a.W, sn.SimpleNet(seed=4).W)
    assert a.W.shape == (2, 3) and a.W.dtype == np.float64
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002  # the global np.random is untouched


def test_the_textbook_name():
    assert sn.simpleNet is sn.SimpleNet


def test_predict_one_input_or_a_batch():
    net = _book_net()
    assert net.predict(BOOK_X).shape == (3,)
    batch = np.stack([BOOK_X, 2 * BOOK_X, -BOOK_X])
    np.testing.assert_allclose(net.predict(batch), batch @ BOOK_W, rtol=0, atol=0)
    # one-hot and label targets give the same loss
    assert net.loss(BOOK_X, BOOK_T) == net.loss(BOOK_X, 2)


def test_the_chapters_printed_example():
    net = _book_net()
    np.testing.assert_allclose(net.predict(BOOK_X), BOOK_P, rtol=0, atol=1e-8)  # 8 printed digits
    assert np.argmax(net.predict(BOOK_X)) == 2
    y2 = sn.softmax(net.predict(BOOK_X))[2]
    # The book's printed loss is -log(y_2), without the chapter's 1e-7 (it
    # matches to the 8 digits of the printed W); ours includes it, lower by
    # log((y_2 + 1e-7) / y_2) ~ 2.5e-7.
    assert net.loss(BOOK_X, BOOK_T) == pytest.approx(BOOK_LOSS - np.log1p(1e-7 / y2), abs=1e-8)
    dW = sn.numerical_gradient(lambda w: net.loss(BOOK_X, BOOK_T), net.W)
    np.testing.assert_array_equal(net.W, BOOK_W)  # restored
    # ... and so is its printed dW, by the factor y_2 / (y_2 + 1e-7)
    np.testing.assert_allclose(dW, BOOK_DW * y2 / (y2 + 1e-7), rtol=0, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numerical_gradient_is_the_exact_gradient(seed):
    net = sn.SimpleNet(seed=seed)
    dW = sn.numerical_gradient(lambda w: net.loss(BOOK_X, BOOK_T), net.W)
    # Truncation h^2 / 6 |L'''| with |L'''| <= max|x|^3 * 2 ~ 1.5: 4e-9;
    # rounding eps |L| / h ~ 2e-16 * 5 / 1e-4 = 1e-11.
    np.testing.assert_allclose(dW, exact_dW(net.W, BOOK_X, 2), rtol=0, atol=4e-9)
    # softmax is shift-invariant, so each row of dW sums to 0
    np.testing.assert_allclose(dW.sum(axis=1), 0, atol=1e-8)
