"""Waiting for Dask futures without ``result(timeout=…)``, and what a future's cancellation says.

``Future.result(timeout=t)`` with a short ``t`` is not safe in a polling
loop: distributed's ``sync()`` (2026.8) wraps the wait in ``wait_for`` and
catches ``Exception`` only, so when the inner wait is cancelled right at the
timeout (``CancelledError`` is a ``BaseException``) it returns a result that
was never set: ``UnboundLocalError: cannot access local variable 'result'``
(seen in 2 of 12 quickstart runs). Here a loop asks ``done()`` (no round
trip to the event loop's ``sync``) and sleeps between asks; ``result()`` is
called only on a finished future, without a timeout.

The attributes of distributed this module reads beyond its public API are
in :mod:`pipeline.cv._dask_internals`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._dask_internals import cancel_reason, wait_for_ready

if TYPE_CHECKING:
    from distributed import Future, as_completed

__all__ = ["CONNECTION_LOST", "cancel_reason", "next_ready", "wait_done"]

CONNECTION_LOST = "scheduler-connection-lost"  # distributed's reason for cancelling every future
_POLL_S = 0.02


def wait_done(future: Future, *, meanwhile: Callable[[], None] = lambda: None, poll_s: float = _POLL_S) -> Any:
    """``future``'s result once it is finished; ``meanwhile()`` runs between polls (it may raise)."""
    while not future.done():
        meanwhile()
        time.sleep(poll_s)
    return future.result()


def next_ready(ac: as_completed, timeout: float) -> Future | None:
    """The next finished future of ``ac``, or None if none finished within ``timeout`` seconds.

    Raises ``StopIteration`` when ``ac`` holds no future at all.
    """
    if ac.is_empty():
        raise StopIteration
    if not wait_for_ready(ac, timeout):
        return None
    fut: Future = next(ac)
    return fut
