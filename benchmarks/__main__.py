"""`python -m benchmarks [--only ...]` from the repo root: the run `make bench` makes."""

import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
