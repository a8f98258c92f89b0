"""The command line: the registry of parts, their sizes, and the table written at the end.

A part is a module of this package named as `--only` names it, with `WHAT` (the progress
line), `run(args, store) -> Section` and, if it has sizes of its own, `add_arguments(parser)`.
Adding one is that module plus its name in PARTS, at its place in the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import benchmarks
from benchmarks.common import ROOT, Section, load, render, say

PARTS = (
    "startup", "fit", "trial", "workers", "engines", "memory", "digits", "search", "soak", "models",
    "peers",
)  # fmt: skip
# Run only when named in --only: they install other tools or take many minutes.
OPT_IN = ("peers",)


def part(name: str) -> ModuleType:
    """The module that measures part `name`."""
    return importlib.import_module(f"{__package__}.{name}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The sizes of every part; an unknown part is refused before anything loads."""
    p = argparse.ArgumentParser(
        prog="python benchmarks/bench.py", description=benchmarks.__doc__.split("\n")[0]
    )
    default = ",".join(n for n in PARTS if n not in OPT_IN)
    p.add_argument(
        "--only", default=default,
        help=f"comma list of: {','.join(PARTS)} (default: all but {','.join(OPT_IN)})",
    )  # fmt: skip
    for name in PARTS:  # each part's own sizes, in table order
        if add_arguments := getattr(part(name), "add_arguments", None):
            add_arguments(p)
    p.add_argument("--out", default=str(ROOT / "bench-output" / "bench.md"), help="table file")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a Hydra override for every part, e.g. --set experiment=tiny (quick checks)",
    )  # fmt: skip
    args = p.parse_args(list(argv))
    args.parts = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        p.error(f"--only: unknown part(s) {sorted(unknown)}; choose from {','.join(PARTS)}")
    return args


def run_parts(args: argparse.Namespace, store: Path) -> list[Section]:
    """The chosen parts, always in table order, each on its own temporary stores."""
    sections = []
    for name in PARTS:
        if name in args.parts:
            say(f"{name} part: {part(name).WHAT} ...")
            sections.append(part(name).run(args, store))
    return sections


def main(argv: Sequence[str]) -> int:
    """Measure, print the table, write it to --out; exit 1 if any target failed."""
    args = parse_args(argv)
    started, load_before = dt.datetime.now(dt.UTC), load()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        sections = run_parts(args, Path(tmp))
    header = [
        f"`python benchmarks/bench.py {' '.join(argv)}`".replace(" `", "`"),
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average before "
        f"{load_before}, after {load()}, {time.perf_counter() - t0:.0f} s in all.",
    ]
    table = render(sections, header)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    say("\n" + table + f"\n(written to {out})")
    failed = any(r.verdict == "FAIL" for s in sections for r in s.rows)
    return 1 if failed else 0
