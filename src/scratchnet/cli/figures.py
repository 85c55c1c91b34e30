"""Command line: ``scratchnet figures`` draws the chapter's figures as PNG files.

Every figure is computed with scratchnet's own functions (see
:mod:`scratchnet.plots`): the tangent by ``numerical_diff``, the gradient
field by ``numerical_gradient``, the descent paths by ``gradient_descent``,
simpleNet's gradient, and the step-size study of the central difference.

Exit status: 0 done, 1 matplotlib missing or the files could not be written, 2 a bad
--out (empty, or not a directory).
"""

import sys
from pathlib import Path

from . import CLIError


def add_parser(sub):
    """Register ``scratchnet figures`` on the ``sub`` subparsers."""
    p = sub.add_parser(
        "figures",
        help="draw the chapter's figures (tangent, gradient field, gradient descent, simpleNet, step size) as PNG",
        description=(
            "Draw the chapter's figures with scratchnet's own functions and write them as PNG files: "
            "tangent.png, gradient_field.png, gradient_descent.png, learning_rate.png, simple_net.png, "
            'step_size.png. Needs matplotlib (pip install "scratchnet[plot]").'
        ),
    )
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the PNG files (created if missing)")
    return p


def run(args):
    """Run ``scratchnet figures``; returns the exit status."""
    try:
        from .. import plots
    except ImportError as exc:  # plots says how to install matplotlib
        raise CLIError(f"figures: {exc}", status=1) from None
    if args.out == "":  # Path("") is ".": the figures would land wherever the command runs
        raise CLIError("--out '': an empty path; name a directory, e.g. --out figures")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: exists and is not a directory")
    try:
        paths = plots.write_figures(out)
    except OSError as exc:
        raise CLIError(f"--out {out}: cannot write the figures: {exc}", status=1) from None
    for path in paths:
        print(path)
    print(f"{len(paths)} figures in {out}", file=sys.stderr)
    return 0
