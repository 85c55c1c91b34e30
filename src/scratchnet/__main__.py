"""``python -m scratchnet train ...``: the same as the ``scratchnet`` command."""

from .cli import entry_point

entry_point()
