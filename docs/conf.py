"""Sphinx configuration of scratchnet's documentation.

Build: ``python -m sphinx -W -b html docs docs/_build/html``, with scratchnet
installed with its docs extra (``pip install ".[docs]"``). The figures are
drawn at build time by ``scratchnet.plots`` (docs/_ext/figures.py); the
kernel map is generated from ``scratchnet.backends.KERNELS`` and checked name
by name (docs/_ext/kernel_map.py).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

import scratchnet  # noqa: E402  (the installed package documents itself)

project = "scratchnet"
author = "the scratchnet developers"
copyright = "scratchnet developers, MIT licence"
release = version = scratchnet.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "figures",  # docs/_ext/figures.py: .. scratchnet-figure:: NAME
    "kernel_map",  # docs/_ext/kernel_map.py: .. kernel-map::
]

root_doc = "index"
exclude_patterns = ["_build", "_generated", "_static/mathjax/README.md"]
templates_path = []
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme = "alabaster"
html_theme_options = {
    "description": "Chapter 4 of Deep Learning from Scratch, fast and exact",
    "page_width": "1240px",
    "body_max_width": "none",
}
html_title = f"scratchnet {release}"

# MathJax 3.2.2 from npm, vendored with its licence in _static/mathjax (see
# its README.md): the pages render their math without a network.
mathjax_path = "mathjax/tex-chtml.js"

# autodoc + numpydoc: members in source order, no autosummary stubs.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()
