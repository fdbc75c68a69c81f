"""SIGTERM as an interrupt, so a sweep stopped by a scheduler or ``kill`` cleans up like Ctrl-C; and the
few steps a stop must not split (:func:`uninterrupted`)."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from .errors import Terminated

__all__ = ["terminate_as_interrupt", "uninterrupted"]

_EXIT_DEADLINE_S = 8.0
_held: list[BaseException] = []  # an interrupt that arrived inside an `uninterrupted` block, raised at its end
_depth = 0  # how many `uninterrupted` blocks the main thread is in


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Inside :func:`terminate_as_interrupt`, hold Ctrl-C and SIGTERM until the block ends, then raise them.

    For writes that must be followed by their bookkeeping: a trial written COMPLETE to the study and then
    handed to the listener (its child run), or a trial asked (RUNNING) and then filed in its batch (so that a
    stop fails it). An interrupt between the two left a finished trial without a child run, or a trial
    RUNNING for good (the SIGTERM fault test, stopped as the first trials were recorded). Keep the blocks to
    a few storage writes: the stop waits for them. In other threads (no signal reaches them) and outside
    :func:`terminate_as_interrupt` this holds nothing.
    """
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _held:
            raise _held.pop()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`~pipeline.errors.Terminated` in the main thread.

    ``Terminated`` is a ``KeyboardInterrupt``: code that already ends its runs
    KILLED and fails its trials on Ctrl-C does the same on SIGTERM (Kubernetes,
    Slurm and ``docker stop`` all send SIGTERM before SIGKILL). Outside the main
    thread (where Python allows no handler) this does nothing. After a SIGTERM
    the process exits with 143 within 8 s even if the cleanup hangs. Ctrl-C
    raises ``KeyboardInterrupt`` as usual; both wait for the end of an
    :func:`uninterrupted` block.
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
        _interrupt(Terminated(f"received signal {signal.Signals(signum).name}"))

    def _interrupt_by_ctrl_c(_signum: int, _frame: FrameType | None) -> None:
        _interrupt(KeyboardInterrupt())

    def _leave(name: str) -> None:
        """The watchdog's exit: said on stderr (a job log shows why the sweep ended) before ``os._exit``;
        with Python's fault handler on (``PYTHONFAULTHANDLER=1``, ``-X faulthandler``) every thread's stack
        follows, showing where the cleanup hung."""
        os.write(2, f"regsweep: stopped (received signal {name}); the cleanup did not end within "
                    f"{_EXIT_DEADLINE_S:g} s: trials still RUNNING are failed by the next run.\n".encode())
        if faulthandler.is_enabled():
            faulthandler.dump_traceback(all_threads=True)
        os._exit(143)

    global _depth
    outer_depth, _depth = _depth, 0  # holds count from here: one enclosing this would hold every stop for good
    previous = signal.signal(signal.SIGTERM, _raise)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:  # not where Ctrl-C is ignored (nohup, a background job)
        signal.signal(signal.SIGINT, _interrupt_by_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
        _depth = outer_depth


def _interrupt(exc: BaseException) -> None:
    """Raise ``exc`` now, or at the end of the :func:`uninterrupted` block the main thread is in."""
    if _depth > 0:
        if not _held or (isinstance(exc, Terminated) and not isinstance(_held[0], Terminated)):
            _held[:] = [exc]  # the first stop is the one said, but SIGTERM's exit code (143) wins over Ctrl-C's
        return
    raise exc
