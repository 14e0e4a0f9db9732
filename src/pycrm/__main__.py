"""``python -m pycrm``: the ``pycrm`` command."""

from __future__ import annotations

import sys

from pycrm.cli import main

if __name__ == "__main__":
    sys.exit(main())
