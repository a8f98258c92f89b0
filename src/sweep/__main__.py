"""`python -m sweep <command> [hydra overrides]`: dispatch to one Hydra entry point."""

from __future__ import annotations

import sys

from sweep.cli import COMMANDS, hydra_entry

USAGE = "usage: python -m sweep {" + ",".join(COMMANDS) + "} [key=value ...] [--cfg job] [--help]"


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    command = sys.argv.pop(1)
    hydra_entry(COMMANDS[command])()


if __name__ == "__main__":
    main()
