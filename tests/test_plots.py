"""scratchnet.plots and ``scratchnet figures``: the PNG files, and the numbers
drawn in each figure, read back from the figure's own artists."""

import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.quiver import Quiver

import scratchnet as sn
from png_helpers import png_size
from scratchnet import cli, plots
from test_simple_net import BOOK_T, BOOK_W, BOOK_X, exact_dW

EPS = np.finfo(np.float64).eps
H = 1e-4


@pytest.fixture(scope="module")
def figures():
    """Every figure, drawn once for the module."""
    return {name: make() for name, make in plots.FIGURES.items()}


def _line(ax, prefix):
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith(prefix)]
    assert len(lines) == 1, f"no single line labelled {prefix!r} in {[ln.get_label() for ln in ax.get_lines()]}"
    return lines[0]


def _check_png(path):
    w, h = png_size(path)
    pixels = mpimg.imread(path)  # the whole file decodes
    assert pixels.shape[:2] == (h, w) and w >= 400 and h >= 300
    assert pixels[..., :3].std() > 0.05, f"{path.name}: (nearly) blank"


# -- every figure -------------------------------------------------------------
def test_titles_and_axis_labels(figures):
    for name, fig in figures.items():
        axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert axes, name
        for ax in axes:
            assert ax.get_title(), f"{name}: an axes without a title"
            assert ax.get_xlabel() and ax.get_ylabel(), f"{name}: an axes without axis labels"


# -- tangent.png ----------------------------------------------------------------
@pytest.mark.parametrize("p", [5.0, 10.0])
def test_tangent_slope_is_the_derivative(figures, p):
    ax = figures["tangent"].axes[0]
    x, y = _line(ax, f"tangent at x = {p:g},").get_data()
    slope, intercept = np.polyfit(x, y, 1)
    # exact f'(p) = 0.02 p + 0.1. Truncation of the central difference,
    # h^2 |f'''| / 6, is 0 for a quadratic; rounding: f(p +- h) carry eps
    # |f(p)| each and p +- h carries eps p, i.e. (2 eps |f| + f' eps p) / 2h
    # <= 1.2e-11 at p = 10; the fit of 200 points adds ~1e-15.
    assert abs(slope - (0.02 * p + 0.1)) <= H**2 * 0 / 6 + 2e-11
    assert slope * p + intercept == pytest.approx(plots.function_1(p), abs=1e-12)  # touches f at p
    fx, fy = _line(ax, "f(x)").get_data()
    np.testing.assert_allclose(fy, 0.01 * fx**2 + 0.1 * fx, rtol=0, atol=1e-15)


# -- gradient_field.png ---------------------------------------------------------
def test_gradient_field_is_minus_2x(figures):
    (quiver,) = [c for c in figures["gradient_field"].axes[0].collections if isinstance(c, Quiver)]
    X, Y, U, V = (np.asarray(a, dtype=float).ravel() for a in (quiver.X, quiver.Y, quiver.U, quiver.V))
    assert X.size == 18 * 18
    # a quadratic again: rounding only, eps |f| / h <= 2e-16 * 8 / 1e-4 ~ 2e-11
    np.testing.assert_allclose(U, -2 * X, rtol=0, atol=1e-10)
    np.testing.assert_allclose(V, -2 * Y, rtol=0, atol=1e-10)
    assert np.all(U * X + V * Y <= 0)  # every arrow points towards the minimum
    # the batch form gives each point what a call on that point alone gives
    for i in (0, 100, 323):
        point = np.array([X[i], Y[i]])
        np.testing.assert_array_equal(-sn.numerical_gradient(plots.function_2, point), [U[i], V[i]])


# -- gradient_descent.png -------------------------------------------------------
def test_descent_path_converges_geometrically(figures):
    path = np.column_stack(_line(figures["gradient_descent"].axes[0], "path").get_data())
    assert path.shape == (21, 2)
    np.testing.assert_array_equal(path[0], [-3.0, 4.0])
    # x_{k+1} = x_k - 0.1 * 2 x_k = 0.8 x_k; numerical gradient exact to
    # ~1e-11 relative per step, compounded over 20 steps
    k = np.arange(21)[:, None]
    np.testing.assert_allclose(path, 0.8**k * np.array([-3.0, 4.0]), rtol=1e-9, atol=1e-12)
    norms = np.linalg.norm(path, axis=1)
    assert np.all(np.diff(norms) < 0) and norms[-1] < 0.06


# -- learning_rate.png ----------------------------------------------------------
def test_learning_rates_converge_diverge_and_stall(figures):
    ax = figures["learning_rate"].axes[0]
    good = _line(ax, "lr = 0.1:").get_ydata()
    big = _line(ax, "lr = 10:").get_ydata()
    tiny = _line(ax, "lr = 1e-10:").get_ydata()
    assert len(good) == len(big) == len(tiny) == 101
    assert good[0] == big[0] == tiny[0] == 5.0
    # 0.1: |x| shrinks by 0.8 per step, 5 * 0.8^100 ~ 1e-9
    assert np.all(np.diff(good) < 0) and good[-1] == pytest.approx(5 * 0.8**100, rel=1e-6)
    # 10: |x| grows by |1 - 20| = 19 per step until x + h == x stalls the
    # numerical gradient; the book prints the final point
    assert big[1] == pytest.approx(19 * 5, rel=1e-9)
    assert big[-1] == pytest.approx(np.hypot(-2.58983747e13, -1.29524862e12), rel=1e-8) and big[-1] > 1e12
    # 1e-10: moves, by a factor (1 - 2e-10)^100 only
    assert 0 < tiny[0] - tiny[-1] < 1e-6
    assert tiny[-1] == pytest.approx(5 * (1 - 2e-10) ** 100, rel=1e-12)


# -- simple_net.png -------------------------------------------------------------
def test_simple_net_figure_shows_the_gradient(figures):
    w_ax, dw_ax = [ax for ax in figures["simple_net"].axes if ax.get_label() != "<colorbar>"]
    W = np.asarray(w_ax.get_images()[0].get_array())
    dW = np.asarray(dw_ax.get_images()[0].get_array())
    np.testing.assert_array_equal(W, BOOK_W)  # the chapter's printed W
    np.testing.assert_allclose(dW, exact_dW(BOOK_W, BOOK_X, int(np.argmax(BOOK_T))), rtol=0, atol=4e-9)
    shown = [float(t.get_text()) for t in dw_ax.texts]
    np.testing.assert_allclose(shown, dW.ravel(), rtol=0, atol=5e-5)  # the values written in, 4 decimals
    assert dW[:, 2].max() < 0 < dW[:, :2].min()  # raising the true class's weights lowers the loss


# -- step_size.png --------------------------------------------------------------
def _slope(h, err):
    return np.polyfit(np.log10(h), np.log10(err), 1)[0]


def test_step_size_study_has_both_regimes(figures):
    ax = figures["step_size"].axes[0]
    hs = np.asarray(plots.STEP_SIZES)
    for name in ("W1", "b1", "W2", "b2"):
        h, err = _line(ax, name).get_data()
        np.testing.assert_array_equal(h, hs)
        big, small = h >= 1e-3, h <= 1e-8
        # truncation h^2 f''' / 6: slope 2 on log-log axes
        assert 1.9 < _slope(h[big], err[big]) < 2.1, name
        # rounding eps |L| / h: slope -1 (noisy: only its sign and size)
        assert -1.5 < _slope(h[small], err[small]) < -0.5, name
        # the V's bottom lies between, and the chapter's 1e-4 is near it
        assert 1e-6 <= h[np.argmin(err)] <= 1e-3 and err.min() < 1e-10, name
        assert err[np.argmin(np.abs(h - 1e-4))] < 1e-9, name
    ref_h, ref = _line(ax, "$h^2$").get_data()
    np.testing.assert_allclose(ref / ref_h**2, ref[0] / ref_h[0] ** 2, rtol=1e-12)
    # The series method (right panel): the same truncation, and no
    # cancellation: for tiny h only the rounding of the step itself,
    # fl(p + h) - p, remains: ulp(p) / 2h relative, far below the perturbed
    # losses' eps |L| / h, and nothing at all for the fresh net's biases (p = 0).
    left, right = figures["step_size"].axes[:2]
    for name in ("W1", "b1", "W2", "b2"):
        h, err = _line(right, name).get_data()
        big, small = h >= 1e-3, h <= 1e-8
        assert 1.9 < _slope(h[big], err[big]) < 2.1, name
        assert np.all(err[small] < _line(left, name).get_data()[1][small] / 100), name
        if name in ("b1", "b2"):
            assert err[small].max() < 1e-15, name


def test_step_size_errors_is_what_gradient_check_measures():
    (x_train, t_train), _ = sn.load_mnist(normalize=True)
    net = sn.TwoLayerNet(784, 50, 10, seed=0)
    x, t = x_train[:20], t_train[:20]
    errors = plots.step_size_errors(net, x, t, hs=[1e-4])
    assert {k: v[0] for k, v in errors.items()} == sn.gradient_check(net, x, t, h=1e-4)


# -- the files ------------------------------------------------------------------
def test_cli_writes_every_figure_as_png(tmp_path, capsys):
    out = tmp_path / "figs"
    assert cli.main(["figures", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{n}.png" for n in plots.FIGURES)  # and no temporary files left
    for name in names:
        _check_png(out / name)
    assert capsys.readouterr().out.split() == [str(out / f"{n}.png") for n in plots.FIGURES]


def test_cli_out_must_be_a_directory(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("x")
    assert cli.main(["figures", "--out", str(file)]) == 2
    assert "--out" in capsys.readouterr().err and file.read_text() == "x"


def test_cli_refuses_an_empty_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where an empty --out would have put the figures
    assert cli.main(["figures", "--out", ""]) == 2
    captured = capsys.readouterr()
    assert captured.err == "scratchnet: error: --out '': an empty path; name a directory, e.g. --out figures\n"
    assert captured.out == "" and list(tmp_path.iterdir()) == []


def test_without_matplotlib_it_says_how_to_install(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib... now raises ImportError
    monkeypatch.delitem(sys.modules, "scratchnet.plots", raising=False)
    monkeypatch.delattr(sn, "plots", raising=False)  # as if it had never been imported
    out = tmp_path / "figs"
    assert cli.main(["figures", "--out", str(out)]) == 1
    assert 'pip install "scratchnet[plot]"' in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "draw"),
    [
        ("points", lambda: plots.tangent_figure(points=(5.0 + 1j, 10.0))),
        ("W", lambda: plots.simple_net_figure(W=np.array(BOOK_W) + 0j)),
        ("x", lambda: plots.simple_net_figure(x=(0.6 + 0j, 0.9))),
        ("hs", lambda: plots.step_size_figure(hs=(1e-4 + 0j,))),
    ],
)
def test_complex_arguments_of_the_figures_are_refused_by_name(name, draw):
    with pytest.raises(TypeError) as info:
        draw()  # once cast to float64 with a ComplexWarning, the imaginary parts dropped
    assert str(info.value) == f"{name}: complex values are not supported (got dtype complex128); pass real numbers"


def test_write_figures_refuses_unknown_names(tmp_path):
    with pytest.raises(ValueError, match=r"names: unknown figure\(s\) \['bogus'\]"):
        plots.write_figures(tmp_path, ["tangent", "bogus"])
    assert list(tmp_path.iterdir()) == []


def test_no_pyplot():
    # Agg canvases only: drawing must not import pyplot (global state, GUI backends)
    code = (
        "import io, sys, scratchnet.plots as p; p.tangent_figure().savefig(io.BytesIO());"
        " print('matplotlib.pyplot' in sys.modules)"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
