"""`python -m sweep <command> ...`: everything goes through the one runner."""

import sys

from sweep.cli.runner import main

if __name__ == "__main__":
    sys.exit(main())
