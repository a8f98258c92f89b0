"""Ctrl-C and SIGTERM as a request to stop at the next safe point, not an exception anywhere.

A KeyboardInterrupt raised by Python's default handler can land inside a weakref callback or a
`__del__`, where it is printed and swallowed, and the sweep goes on as if nothing happened. So
the handler only sets a flag; the training loop (every epoch) and the worker loop (every trial)
check it and raise from a place where the current trial can be closed properly. A second
Ctrl-C raises at once.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

_requested = threading.Event()


def install() -> None:
    """Route SIGINT and SIGTERM to the flag (main thread only, as Python requires)."""

    def handler(signum: int, frame: Any) -> None:
        if _requested.is_set():
            raise KeyboardInterrupt
        _requested.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def requested() -> bool:
    return _requested.is_set()


def check(*_: Any) -> None:
    """Raise KeyboardInterrupt if a stop was requested; usable as an epoch hook."""
    if _requested.is_set():
        raise KeyboardInterrupt
