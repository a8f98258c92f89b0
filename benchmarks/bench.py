"""`python benchmarks/bench.py [--only ...]` from any folder: the run `python -m benchmarks` makes.

Run as a script, Python puts this folder first on sys.path, where the parts would import as
top-level `fit`, `search`, ...; the repo root instead makes them the `benchmarks` package.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))

    from benchmarks.cli import main

    sys.exit(main(sys.argv[1:]))
