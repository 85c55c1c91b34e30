"""The chapter's figures, computed with scratchnet's own functions (needs matplotlib).

Each ``*_figure`` function computes its numbers with the library
(:func:`~scratchnet.numerical_diff`, :func:`~scratchnet.numerical_gradient`,
:func:`~scratchnet.gradient_descent`, :class:`~scratchnet.SimpleNet`,
:class:`~scratchnet.TwoLayerNet`) and returns a
:class:`matplotlib.figure.Figure` on the Agg canvas, made without pyplot:
no global state, no GUI, safe in threads and servers. :func:`write_figures`
saves them all as PNG files, each written atomically; ``scratchnet figures
--out DIR`` calls it.

=====================  ====================================================
file                   figure
=====================  ====================================================
tangent.png            f(x) = 0.01x^2 + 0.1x and its tangents at 5 and 10
gradient_field.png     the negative gradient of x0^2 + x1^2 on a grid
gradient_descent.png   the descent path from (-3, 4), lr 0.1, 20 steps
learning_rate.png      distance to the minimum for lr 0.1, 10 and 1e-10
simple_net.png         simpleNet's W and the gradient of its loss
step_size.png          central difference vs backprop as h goes 1e-1..1e-10, by both methods
=====================  ====================================================
"""

import numpy as np

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as exc:  # an optional dependency: say how to get it
    raise ImportError('scratchnet.plots needs matplotlib; install it with: pip install "scratchnet[plot]"') from exc

from ._atomic import atomic_open
from ._config import DEFAULT_H, as_written
from ._validation import as_array, refuse_complex
from .gradient import gradient_descent, numerical_diff, numerical_gradient
from .simple_net import SimpleNet

# The chapter's printed example of simpleNet (section 4.4.2): its W, input and target.
CHAPTER_SIMPLE_NET_W = ((0.47355232, 0.9977393, 0.84668094), (0.85557411, 0.03563661, 0.69422093))
CHAPTER_SIMPLE_NET_X = (0.6, 0.9)
CHAPTER_SIMPLE_NET_T = (0, 0, 1)


def function_1(x):
    """The chapter's ``0.01 x^2 + 0.1 x``, elementwise."""
    return 0.01 * x**2 + 0.1 * x


def function_2(x):
    """The chapter's ``x0^2 + x1^2``: of one point (2,), or one value per row of (N, 2)."""
    x = np.asarray(x)
    return np.sum(x**2) if x.ndim == 1 else np.sum(x**2, axis=1)


def _real_array(a, name):
    """``a`` as a float64 array; complex values are refused by name (NumPy would drop their imaginary parts)."""
    return np.asarray(refuse_complex(as_array(a, name), name), dtype=np.float64)


def _figure(**kwargs):
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)  # Agg without pyplot: no global backend, no GUI
    return fig


# -- 4.3.2: numerical_diff ----------------------------------------------------
def tangent_figure(points=(5.0, 10.0), h=DEFAULT_H):
    """``f(x) = 0.01x^2 + 0.1x`` on [0, 20) and its tangents at ``points``.

    The slopes come from :func:`numerical_diff` in its elementwise form, one
    call for all points; each tangent is ``slope * (x - p) + f(p)``.

    Returns
    -------
    matplotlib.figure.Figure
        Lines labelled ``f(x)`` and ``tangent at x = p, ...``.
    """
    points = _real_array(points, "points")
    slopes = numerical_diff(function_1, points, h=h)
    x = np.arange(0.0, 20.0, 0.1)
    fig = _figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    ax.plot(x, function_1(x), color="black", label="f(x)")
    for p, d in zip(points, slopes):
        line = ax.plot(x, d * (x - p) + function_1(p), linestyle="--", label=f"tangent at x = {p:g}, slope {d:.4f}")
        ax.plot([p], [function_1(p)], marker="o", color=line[0].get_color())
    ax.set_title("Tangents of $f(x) = 0.01x^2 + 0.1x$, slopes by numerical_diff")
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.legend(loc="upper left")
    return fig


# -- 4.4: numerical_gradient ---------------------------------------------------
def gradient_field_figure(h=DEFAULT_H):
    """The negative gradient of ``x0^2 + x1^2`` on the chapter's grid.

    The grid is ``np.arange(-2, 2.5, 0.25)`` in each coordinate; the
    gradients come from one :func:`numerical_gradient` call in the batch
    form (one point per row, ``function_2`` returning one value per row).

    Returns
    -------
    matplotlib.figure.Figure
        One quiver (arrows ``-grad``) at the grid points.
    """
    grid = np.arange(-2, 2.5, 0.25)
    X, Y = np.meshgrid(grid, grid)
    points = np.column_stack([X.ravel(), Y.ravel()])  # (324, 2)
    grad = numerical_gradient(function_2, points, h=h)
    fig = _figure(figsize=(6.4, 6.0))
    ax = fig.add_subplot()
    ax.quiver(points[:, 0], points[:, 1], -grad[:, 0], -grad[:, 1], angles="xy", color="#666666")
    ax.plot([0], [0], marker="+", markersize=12, color="tab:red", label="minimum (0, 0)")
    ax.set_xlim(-2.3, 2.3)
    ax.set_ylim(-2.3, 2.3)
    ax.set_aspect("equal")
    ax.grid(True)
    ax.set_title("Negative gradient of $x_0^2 + x_1^2$ by numerical_gradient")
    ax.set_xlabel("$x_0$")
    ax.set_ylabel("$x_1$")
    ax.legend(loc="upper right")
    return fig


# -- 4.4.1: gradient_descent --------------------------------------------------
def gradient_descent_figure(init_x=(-3.0, 4.0), lr=0.1, step_num=20):
    """The path of :func:`gradient_descent` on ``x0^2 + x1^2``, over its contours.

    Returns
    -------
    matplotlib.figure.Figure
        The line labelled ``path`` holds the ``step_num + 1`` points, from
        ``init_x`` to the final one.
    """
    x, history = gradient_descent(function_2, init_x, lr=lr, step_num=step_num, return_history=True)
    path = np.vstack([history, x])
    fig = _figure(figsize=(6.0, 6.4))
    ax = fig.add_subplot()
    grid = np.linspace(-5, 5, 201)
    X, Y = np.meshgrid(grid, grid)
    ax.contour(X, Y, X**2 + Y**2, levels=[1, 4, 9, 16, 25], colors="#bbbbbb", linewidths=0.8)
    ax.axhline(0, linestyle="--", color="tab:blue", linewidth=0.8)
    ax.axvline(0, linestyle="--", color="tab:blue", linewidth=0.8)
    ax.plot(path[:, 0], path[:, 1], marker="o", markersize=4, linewidth=0.8, label="path")
    ax.set_xlim(-3.5, 3.5)
    ax.set_ylim(-4.5, 4.5)
    ax.set_aspect("equal")
    ax.set_title(f"Gradient descent on $x_0^2 + x_1^2$: lr = {lr:g}, {step_num} steps")
    ax.set_xlabel("$x_0$")
    ax.set_ylabel("$x_1$")
    ax.legend(loc="upper right")
    return fig


def learning_rate_figure(init_x=(-3.0, 4.0), lrs=(0.1, 10.0, 1e-10), step_num=100):
    """Distance to the minimum per step of :func:`gradient_descent`, one line per learning rate.

    The chapter's three cases: 0.1 converges, 10 diverges (until ``x`` is
    so large that ``x + h == x`` and the numerical gradient becomes 0),
    1e-10 barely moves.

    Returns
    -------
    matplotlib.figure.Figure
        One line per rate, labelled ``lr = ...``, of ``|x_k|`` for
        ``k = 0 .. step_num`` on a log scale.
    """
    fig = _figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    for lr in lrs:
        x, history = gradient_descent(function_2, init_x, lr=lr, step_num=step_num, return_history=True)
        dist = np.linalg.norm(np.vstack([history, x]), axis=1)
        ax.plot(np.arange(step_num + 1), dist, label=f"lr = {lr:g}: {_verdict(dist)}, |x| = {dist[-1]:.2g}")
    ax.set_yscale("log")
    ax.set_title(f"Learning rate: gradient descent on $x_0^2 + x_1^2$ from {tuple(init_x)}")
    ax.set_xlabel("step")
    ax.set_ylabel("distance to the minimum, $|x|$")
    ax.legend(loc="lower left")
    return fig


def _verdict(dist):
    start, end = dist[0], dist[-1]
    if end < 1e-3 * start:
        return "converges"
    if end > 1e3 * start:
        return "diverges"
    if abs(end - start) < 1e-3 * start:
        return "barely moves"
    return "moves"


# -- 4.4.2: simpleNet ----------------------------------------------------------
def simple_net_figure(W=CHAPTER_SIMPLE_NET_W, x=CHAPTER_SIMPLE_NET_X, t=CHAPTER_SIMPLE_NET_T, h=DEFAULT_H):
    """simpleNet's weights and the gradient of its loss, as the chapter computes it.

    ``dW = numerical_gradient(lambda w: net.loss(x, t), net.W)``: ``W`` is
    perturbed in place and the loss reads it through ``net``. The defaults
    are the values the chapter prints.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels, each an image of a (2, 3) array with its values written
        in: ``W`` and ``dL/dW``.
    """
    net = SimpleNet(seed=0)
    net.W = np.array(_real_array(W, "W"), dtype=np.float64)
    x = _real_array(x, "x")
    loss = net.loss(x, t)
    dW = numerical_gradient(lambda w: net.loss(x, t), net.W, h=h)
    label = int(np.argmax(t)) if np.ndim(t) else int(t)

    fig = _figure(figsize=(9.0, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, values, title, cmap in (
        (axes[0], net.W, "weights $W$", "viridis"),
        (axes[1], dW, r"gradient $\partial L / \partial W$ by numerical_gradient", "RdBu_r"),
    ):
        lim = np.max(np.abs(values))
        vmin, vmax = (-lim, lim) if cmap == "RdBu_r" else (None, None)
        image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
        for (i, j), v in np.ndenumerate(values):
            ax.text(
                j,
                i,
                f"{v:.4f}",
                ha="center",
                va="center",
                color="black",
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none"},
            )
        ax.set_title(title)
        ax.set_xticks(range(values.shape[1]))
        ax.set_yticks(range(values.shape[0]))
        ax.set_xlabel("output class j")
        ax.set_ylabel("input i")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"simpleNet: x = ({x[0]:g}, {x[1]:g}), true class {label}, loss L = {loss:.4f}")
    return fig


# -- beyond the chapter: the step size ------------------------------------------
STEP_SIZES = tuple(np.logspace(-1, -10, 19))


def step_size_errors(net, x, t, hs=STEP_SIZES, method="series"):
    """``max |numerical - backprop|`` per parameter group, for each step ``h``.

    Parameters
    ----------
    net : TwoLayerNet
    x, t : a batch, as :meth:`TwoLayerNet.numerical_gradient` takes it
    hs : sequence of float
    method : {"series", "perturbed"}, optional
        The method of :meth:`TwoLayerNet.numerical_gradient`.

    Returns
    -------
    dict of str to ndarray, shape (len(hs),)
        ``W1``, ``b1``, ``W2``, ``b2``.
    """
    exact = net.gradient(x, t)
    errors = {name: np.empty(len(hs)) for name in exact}
    for i, h in enumerate(hs):
        numerical = net.numerical_gradient(x, t, h=h, method=method)
        for name in exact:
            errors[name][i] = np.max(np.abs(numerical[name] - exact[name]))
    return errors


def _step_size_panel(ax, hs, errors, title, rounding_line):
    for name, err in errors.items():
        ax.loglog(hs, err, marker="o", markersize=3, label=name)
    # h^2 through the largest error at the largest step, where truncation rules
    top = max(errors, key=lambda k: errors[k][np.argmax(hs)])
    c = errors[top][np.argmax(hs)] / np.max(hs) ** 2
    ax.loglog(hs, c * hs**2, linestyle="--", color="gray", label=f"$h^2$: truncation (through {top})")
    if rounding_line:  # 1/h through the largest error at the smallest step, where rounding rules
        low = max(errors, key=lambda k: errors[k][np.argmin(hs)])
        r = errors[low][np.argmin(hs)] * np.min(hs)
        ax.loglog(hs, r / hs, linestyle="-.", color="gray", label=f"$1/h$: rounding (through {low})")
    ax.axvline(
        DEFAULT_H, linestyle=":", color="black", linewidth=0.8, label=f"the chapter's h = {as_written(DEFAULT_H)}"
    )
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("step h")
    ax.legend(loc="upper center", fontsize="x-small")


def step_size_figure(batch_size=100, hs=STEP_SIZES, seed=0):
    """Error of the central difference against backprop as the step ``h`` shrinks, by both methods.

    The chapter's net, ``TwoLayerNet(784, 50, 10)`` with weights from
    ``seed``, on the first ``batch_size`` MNIST training images. Left, the
    perturbed losses (the chapter's way of evaluating the central
    difference): for large ``h`` the error is the truncation
    ``h^2 f''' / 6``, a line of slope 2 on log-log axes; for small ``h`` the
    rounding of the loss, divided by ``2h``, takes over and grows as
    ``1 / h``; the chapter's 1e-4 sits near the bottom of the V. Right, the
    same central differences summed from their series in ``h`` (scratchnet's
    default): no difference of nearly equal losses is formed. What remains
    for tiny ``h`` is the rounding of the step itself: the loop's step
    ``fl(p + h) - p`` differs from ``h`` by up to half an ulp of ``p``, a
    relative error of ``ulp(p) / 2h`` that belongs to the loop's quantity
    (zero for parameters at 0, as fresh biases are), orders of magnitude
    below the rounding of the perturbed losses.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels, each with one line per parameter group (labelled
        ``W1``, ``b1``, ``W2``, ``b2``) and the reference lines labelled
        ``$h^2$...`` (and ``$1/h$...`` on the left).
    """
    from .datasets import load_mnist
    from .network import TwoLayerNet

    hs = _real_array(hs, "hs")
    (x_train, t_train), _ = load_mnist(normalize=True)
    x, t = x_train[:batch_size], t_train[:batch_size]
    net = TwoLayerNet(784, 50, 10, seed=seed)
    perturbed = step_size_errors(net, x, t, hs, method="perturbed")
    series = step_size_errors(net, x, t, hs, method="series")

    fig = _figure(figsize=(11.0, 4.8))
    left, right = fig.subplots(1, 2, sharey=True)
    _step_size_panel(left, hs, perturbed, "perturbed losses: truncation, then rounding / h", True)
    _step_size_panel(right, hs, series, "series in h (the default): no cancellation", False)
    right.set_ylabel("max |numerical - backprop|, by series")
    every = [e for errors in (perturbed, series) for e in errors.values()]
    lowest, highest = min(np.min(e) for e in every), max(np.max(e) for e in every)
    left.set_ylim(max(1e-20, 0.3 * lowest), 3 * highest)
    left.set_ylabel("max |numerical - backprop| per parameter group")
    fig.suptitle(f"Step size: central difference vs backprop, TwoLayerNet 784-50-10, {batch_size} MNIST images")
    return fig


# -- all of them ---------------------------------------------------------------
FIGURES = {
    "tangent": tangent_figure,
    "gradient_field": gradient_field_figure,
    "gradient_descent": gradient_descent_figure,
    "learning_rate": learning_rate_figure,
    "simple_net": simple_net_figure,
    "step_size": step_size_figure,
}


def save_figure(fig, path):
    """Write ``fig`` to ``path`` as PNG, atomically (readers never see half a file)."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def write_figures(out, names=None):
    """Draw the figures and write ``out/<name>.png`` for each.

    Parameters
    ----------
    out : path-like
        Directory, created if missing.
    names : iterable of str, optional
        Keys of :data:`FIGURES`; all of them by default.

    Returns
    -------
    list of pathlib.Path
        The files written, in the order of ``names``.
    """
    from pathlib import Path

    out = Path(out)
    names = list(FIGURES) if names is None else list(names)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"names: unknown figure(s) {unknown}; choose from {list(FIGURES)}")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = out / f"{name}.png"
        save_figure(FIGURES[name](), path)
        paths.append(path)
    return paths
