"""Work that may wait: threads that run at a lower CPU priority than the rest of their process.

A sweep starts with more CPU work than two cores can do at once: the workers
reduce the data, while the MLflow process imports MLflow and opens its store
(~1 s of CPU) and the driver imports matplotlib for the plots at the end
(~0.3 s). Neither import is needed before the data pass ends (the parent run
is opened after it, the plots drawn at the end), but at equal priority each
takes its share of the cores from the pass: at 10⁶ × 100 on two cores the
pass took 1.16–1.28 s against 0.74–0.91 s when both imports ran at nice +19
(3 sweeps each). At a lower priority they run in the time the cores would
otherwise sit idle (the driver's cluster start, Optuna's turns) and still get
a share under load, so they cannot starve.

Linux gives every thread its own nice value (``setpriority`` on the thread's
id), so only the waiting work is lowered: the thread that imports, not the
process that later writes the child runs and the model. Threads started by a
lowered thread inherit its nice value. Elsewhere (no per-thread priority) the
work runs at the process's priority, as before.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["BACKGROUND_NICE", "lower_this_thread", "run_in_background", "start_in_background"]

BACKGROUND_NICE = 10
"""How much lower the waiting work runs. Linux weighs a nice-10 thread at 110 against 1,024 for nice 0: it
gets about a tenth of a core that a normal thread also wants, and all of an idle one."""

_T = TypeVar("_T")


def lower_this_thread(increment: int = BACKGROUND_NICE) -> bool:
    """Lower the calling thread's CPU priority by ``increment`` (Linux only); whether it was lowered."""
    if not sys.platform.startswith("linux"):  # elsewhere a thread id is not a PRIO_PROCESS target
        return False
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + increment))
    except OSError:  # a sandbox that forbids it: the work runs at the usual priority
        return False
    return True


def start_in_background(work: Callable[[], object], name: str) -> threading.Thread:
    """Start ``work`` in a daemon thread at the lowered priority; nobody waits for it or hears its errors."""

    def body() -> None:
        lower_this_thread()
        work()

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread


def run_in_background(work: Callable[[], _T], name: str) -> _T:
    """``work()``, run in a thread at the lowered priority while the caller waits; its result or its error.

    The caller's own priority is untouched: what it does afterwards runs as usual.
    """
    outcome: list[tuple[bool, object]] = []

    def body() -> None:
        try:
            lower_this_thread()
            outcome.append((True, work()))
        except BaseException as e:  # noqa: BLE001 — handed to the caller, who raises it
            outcome.append((False, e))

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]
