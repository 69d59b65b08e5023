"""``python -m entropymap``: see :mod:`entropymap.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
