"""SIGTERM as an interrupt, so a sweep stopped by a scheduler or ``kill`` cleans up like Ctrl-C."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from .errors import Terminated

__all__ = ["terminate_as_interrupt"]

_EXIT_DEADLINE_S = 8.0


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`~pipeline.errors.Terminated` in the main thread.

    ``Terminated`` is a ``KeyboardInterrupt``: code that already ends its runs
    KILLED and fails its trials on Ctrl-C does the same on SIGTERM (Kubernetes,
    Slurm and ``docker stop`` all send SIGTERM before SIGKILL). Outside the main
    thread (where Python allows no handler) this does nothing. After a SIGTERM
    the process exits with 143 within 8 s even if the cleanup hangs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a repeated SIGTERM must not break the cleanup
        # A watchdog: if the cleanup hangs (an interrupted Dask call holding a lock), leave anyway
        # before the usual 10 s grace (Kubernetes, docker stop) ends in SIGKILL.
        watchdog = threading.Timer(_EXIT_DEADLINE_S, _leave, args=(signal.Signals(signum).name,))
        watchdog.daemon = True
        watchdog.start()
        raise Terminated(f"received signal {signal.Signals(signum).name}")

    def _leave(name: str) -> None:
        """The watchdog's exit: said on stderr (a job log shows why the sweep ended) before ``os._exit``;
        with Python's fault handler on (``PYTHONFAULTHANDLER=1``, ``-X faulthandler``) every thread's stack
        follows, showing where the cleanup hung."""
        os.write(2, f"regsweep: stopped (received signal {name}); the cleanup did not end within "
                    f"{_EXIT_DEADLINE_S:g} s: trials still RUNNING are failed by the next run.\n".encode())
        if faulthandler.is_enabled():
            faulthandler.dump_traceback(all_threads=True)
        os._exit(143)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
