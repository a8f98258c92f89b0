"""`python -m sweep <command> [hydra overrides]`: dispatch to one Hydra entry point."""

from __future__ import annotations

import sys

from sweep.cli import COMMANDS, PLAIN_COMMANDS, hydra_entry

USAGE = (
    "usage: python -m sweep {" + ",".join(COMMANDS) + "} [key=value ...] [--cfg job] [--help]\n"
    "       python -m sweep {" + ",".join(PLAIN_COMMANDS) + "} [--help]"
)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command in PLAIN_COMMANDS:
        sys.exit(PLAIN_COMMANDS[command](sys.argv[2:]))
    if command not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    sys.argv.pop(1)
    hydra_entry(COMMANDS[command])()


if __name__ == "__main__":
    main()
