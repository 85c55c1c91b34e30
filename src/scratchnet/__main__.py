"""``python -m scratchnet train ...``: the same as the ``scratchnet`` command."""

import sys

from .cli import main

sys.exit(main())
