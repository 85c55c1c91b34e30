"""``.. scratchnet-figure:: NAME``: one of the chapter's figures, drawn at build time.

NAME is a key of :data:`scratchnet.plots.FIGURES`; the directive calls that
function (the same one ``scratchnet figures`` calls), writes the PNG to
``docs/_generated/NAME.png`` with :func:`scratchnet.plots.save_figure` and
shows it as a figure whose caption is the directive's content, followed by
the name of the function that drew it. An unknown NAME, or a figure
function that raises, fails the build.
"""

from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

_drawn = {}  # name -> path: each figure is drawn once per build process


def draw(name, outdir):
    """Draw figure ``name`` into ``outdir`` (once per process); return its path."""
    from scratchnet import plots

    if name not in plots.FIGURES:
        raise KeyError(
            f"scratchnet-figure: unknown figure {name!r}; scratchnet.plots.FIGURES has {sorted(plots.FIGURES)}"
        )
    if name not in _drawn:
        outdir.mkdir(parents=True, exist_ok=True)
        path = outdir / f"{name}.png"
        plots.save_figure(plots.FIGURES[name](), path)
        _drawn[name] = path
    return _drawn[name]


class ScratchnetFigure(SphinxDirective):
    required_arguments = 1
    has_content = True
    option_spec = {"alt": directives.unchanged, "width": directives.unchanged}

    def run(self):
        from scratchnet import plots

        name = self.arguments[0]
        try:
            draw(name, Path(self.env.srcdir) / "_generated")
        except KeyError as exc:
            raise self.error(str(exc.args[0])) from None
        self.env.note_dependency(plots.__file__)
        func = plots.FIGURES[name].__name__
        lines = [f".. figure:: /_generated/{name}.png", f"   :alt: {self.options.get('alt', name)}"]
        if "width" in self.options:
            lines.append(f"   :width: {self.options['width']}")
        lines.append("")
        caption = " ".join(line.strip() for line in self.content) if self.content else ""
        lines.append(f"   {caption} Drawn at build time by :func:`scratchnet.plots.{func}`.".rstrip())
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]), self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("scratchnet-figure", ScratchnetFigure)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
