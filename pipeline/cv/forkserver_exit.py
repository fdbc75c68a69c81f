"""Imported first by the fork server the embedded cluster's workers are forked from: its exit, quiet when its
client goes away mid-request, and prompt.

When the driver stops (SIGTERM from a CronJob's or Airflow's timeout, Ctrl-C) while a worker is being forked,
the fork server's loop (``multiprocessing.forkserver.main``) reads a request whose sender is gone:
``reduction.recvfds`` raises ``EOFError`` and the server prints that traceback on the user's terminal after
regsweep's own one-line message, then exits. The exit is right (its driver is gone); the traceback is noise, and
the fault tests refuse it. This hook drops that one traceback and leaves every other exception to the default
hook (the module is imported by the fork server only; its forks, the workers, inherit a hook that never sees
this error).

The fork server leaves when its driver has gone (``SystemExit`` once its alive pipe reads EOF). The interpreter's
teardown after that, of the modules it preloaded for the workers (distributed, NumPy, SciPy, the fold models),
took 0.33–0.35 s: a command whose output is read through a pipe (``| tee``, a CI log, ``subprocess.run``) ended
that long after the driver, which leaves by ``os._exit`` (:func:`pipeline.cli.entry`). Nothing in the fork
server needs the teardown (its workers are separate processes and leave by ``os._exit`` themselves; it writes no
file), so its last exit hook, after every other one, leaves at once.
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback
from types import TracebackType

_default = sys.excepthook


def _quiet_when_the_client_left(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    frames = traceback.extract_tb(tb)
    if kind is EOFError and frames and frames[-1].name == "recvfds":
        return
    _default(kind, value, tb)


sys.excepthook = _quiet_when_the_client_left


_SERVER = os.getpid()  # the fork server's: its forks (the workers) inherit the hook and leave by os._exit anyway


def _leave_without_teardown() -> None:
    """The last exit hook (registered first, run last): stdio flushed, the exit status kept (1 after an uncaught
    exception, as Python's own exit), the module teardown skipped; in the fork server only."""
    if os.getpid() != _SERVER:  # a fork that exits normally keeps Python's exit, and its status
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(1 if hasattr(sys, "last_value") else 0)


atexit.register(_leave_without_teardown)
