"""Every place regsweep reads distributed beyond its documented API, with what was missing.

Kept in one module so that a change in distributed breaks one file, and each
use says which public API would have made it unnecessary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client, Future, Scheduler, as_completed

__all__ = ["cancel_reason", "scheduler_task_states", "wait_for_ready"]


def cancel_reason(fut: Future) -> str:
    """Why Dask cancelled a future ('' if it was not cancelled or says nothing).

    Missing public API: ``Future.exception()`` raises ``CancelledError`` for a
    cancelled future without its reason; the reason (e.g.
    ``scheduler-connection-lost``) is on the private ``_state``.
    """
    exc = getattr(getattr(fut, "_state", None), "exception", None)
    return str(getattr(exc, "reason", "") or "")


def wait_for_ready(ac: as_completed, timeout: float) -> bool:
    """Wait up to ``timeout`` s for a finished future in ``ac``; whether one is ready.

    Missing public API: ``as_completed`` offers a blocking ``next`` (whose
    ``timeout`` is a deadline for the whole iteration) and a non-blocking
    ``has_ready``, but no bounded wait. Its ``thread_condition`` (notified
    whenever a future finishes) gives one without polling.
    """
    if ac.has_ready():
        return True
    condition = ac.thread_condition
    with condition:
        condition.wait_for(ac.has_ready, timeout=timeout)
    return ac.has_ready()


def _task_states(dask_scheduler: Scheduler, keys: Sequence[str]) -> dict[str, str | None]:
    tasks: Any = dask_scheduler.tasks
    return {key: (tasks[key].state if key in tasks else None) for key in keys}


def scheduler_task_states(client: Client, keys: Sequence[str]) -> dict[str, str | None]:
    """The scheduler's state of each key (``processing``, ``memory``, ``erred``, …; None if unknown).

    Missing public API: a client learns a task's end only from the message
    the worker sends; when that message cannot be built (an exception whose
    traceback cannot be pickled, e.g. a ``RecursionError``) the scheduler
    marks the task ``erred`` but the client's future stays ``pending``
    forever. The scheduler's own task table tells.
    """
    states: dict[str, str | None] = client.run_on_scheduler(_task_states, keys=list(keys))
    return states
