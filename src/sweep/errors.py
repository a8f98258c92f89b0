"""What can go wrong, as the user sees it: exception types and the one table of exit codes.

Every command reaches the terminal through `sweep.runner`, which prints a known error as one
line (`error: <message>`) and exits with the code its type carries. Nothing here imports
anything heavy, so every module may import it (config.py and search.py both do; no cycle).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # the work ran and failed: a sweep that cannot go on, a rerun that differs
EXIT_USAGE = 2  # bad input, refused before anything was written
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, like a shell's 128 + SIGINT

EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_FAILED: "the work failed, or a rerun differs beyond its tolerance",
    EXIT_USAGE: "bad input: one line says what, nothing was written",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C / SIGTERM); the same command continues a study",
}


class SweepError(RuntimeError):
    """Work that cannot go on (e.g. every trial fails); its message is the line users see."""

    exit_code = EXIT_FAILED


class ConfigError(SweepError, ValueError):
    """A user-facing input mistake; its message is the one line the user sees."""

    exit_code = EXIT_USAGE


class Diverged(SweepError):
    """The loss became NaN or infinite; training stops at that epoch."""

    def __init__(self, epoch: int, loss: float) -> None:
        super().__init__(f"loss diverged to {loss} at epoch {epoch}")
        self.epoch = epoch
        self.loss = loss


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
