"""What can go wrong, as the user sees it: exception types and the one table of exit codes.

Every command reaches the terminal through `sweep.cli.runner`, which prints a known error as one
line (`error: <message>`) and exits with the code its type carries. Nothing here imports
anything heavy, so every module may import it (config.py and search.py both do; no cycle).
"""

from __future__ import annotations

import errno

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


class DiskFull(SweepError):
    """A store's disk is full: the sweep stops, as the next trial would fail alike."""


NO_SPACE = "no space left on device"  # how a reason caused by a full disk starts
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"


def no_space(exc: BaseException) -> str | None:
    """`no space left on device writing <what>` if a full disk (or quota) caused `exc`, else None.

    MLflow and Optuna wrap the error (MlflowException, StorageInternalError, both raised `from`
    SQLAlchemy's), so the whole chain is searched: an OSError names its file (the destination of
    a copy), SQLite says only "database or disk is full".
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            what = exc.filename2 or exc.filename
            return f"{NO_SPACE} writing {what}" if what else NO_SPACE
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
            return f"{NO_SPACE} writing a SQLite store (database or disk is full)"
        exc = exc.__cause__ or exc.__context__
    return None


def reason(exc: BaseException) -> str:
    """Why a run or trial failed, in one line: a full disk said plainly, else the error's line."""
    return no_space(exc) or first_line(exc)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def hydra_message(exc: BaseException) -> str:
    """Hydra's multi-line composition error as one line, without its search-path listing."""
    text = str(exc).split("Config search path", 1)[0]
    parts = [line.strip() for line in text.splitlines() if line.strip()]
    if not parts:
        return type(exc).__name__
    out = parts[0]
    for before, line in zip(parts, parts[1:], strict=False):
        out += (" " if before.endswith((":", ".")) else ", ") + line  # a list after "options:"
    return out
