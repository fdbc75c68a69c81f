"""SIGTERM as an interrupt, so a sweep stopped by a scheduler or ``kill`` cleans up like Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from .errors import Terminated

__all__ = ["terminate_as_interrupt"]


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`~pipeline.errors.Terminated` in the main thread.

    ``Terminated`` is a ``KeyboardInterrupt``: code that already ends its runs
    KILLED and fails its trials on Ctrl-C does the same on SIGTERM (Kubernetes,
    Slurm and ``docker stop`` all send SIGTERM before SIGKILL). Outside the main
    thread (where Python allows no handler) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a repeated SIGTERM must not break the cleanup
        raise Terminated(f"received signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
