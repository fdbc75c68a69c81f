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

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._dask_internals import cancel_reason, wait_for_ready
from .client import cluster_workers

if TYPE_CHECKING:
    from distributed import Client, Future, as_completed

__all__ = ["CONNECTION_LOST", "LOST", "cancel_reason", "next_ready", "result_or_lost", "wait_done", "worker_left"]

CONNECTION_LOST = "scheduler-connection-lost"  # distributed's reason for cancelling every future
_POLL_S = 0.02


def wait_done(future: Future, *, meanwhile: Callable[[], None] = lambda: None, poll_s: float = _POLL_S) -> Any:
    """``future``'s result once it is finished; ``meanwhile()`` runs between polls (it may raise)."""
    while not future.done():
        meanwhile()
        time.sleep(poll_s)
    return future.result()


def next_ready(ac: as_completed, timeout: float) -> Any:
    """The next finished future of ``ac`` (with its result, ``(future, result)``, if ``ac`` fetches them), or
    None if none finished within ``timeout`` seconds.

    Raises ``StopIteration`` when ``ac`` holds no future at all.
    """
    if ac.is_empty():
        raise StopIteration
    if not wait_for_ready(ac, timeout):
        return None
    return next(ac)


LOST = object()
"""What :func:`result_or_lost` returns for a future whose result went with its worker."""


def result_or_lost(future: Future, lost: Callable[[], bool], *, ask_every_s: float = 1.0,
                   poll_s: float = _POLL_S) -> Any:
    """``future``'s result, or :data:`LOST` (the future cancelled) once ``lost()`` says its task can never run.

    For tasks pinned to one worker: if the worker dies after the task finished but before the client
    fetched the result, the client reschedules the task ("Couldn't gather keys") and ``result()`` waits
    for a run that a restriction to a dead worker never allows. The result is fetched in a thread and
    ``lost()`` asked every ``ask_every_s`` seconds meanwhile; cancelling the future ends the fetch.
    """
    box: dict[str, Any] = {}

    def fetch() -> None:
        try:
            box["value"] = future.result()
        except BaseException as exc:  # noqa: BLE001 — handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=fetch, name="regsweep-fetch", daemon=True)
    thread.start()
    next_ask = time.monotonic() + ask_every_s
    while True:
        thread.join(poll_s)
        if not thread.is_alive():
            break
        if time.monotonic() >= next_ask:
            next_ask = time.monotonic() + ask_every_s
            if lost():
                future.cancel()
                thread.join(ask_every_s)
                return LOST
    if "error" in box:
        raise box["error"]
    return box["value"]


def worker_left(client: Client, worker: str) -> bool:
    """Whether ``worker`` is no longer one of the scheduler's workers (one round trip)."""
    return worker not in cluster_workers(client)
