"""``python -m lakeloop.cli COMMAND ...``: the ``lakeloop`` command without the installed script."""

import sys

from lakeloop.cli import main

if __name__ == "__main__":
    sys.exit(main())
