"""Imported first by the fork server the embedded cluster's workers are forked from: a quiet exit when its
client goes away mid-request.

When the driver stops (SIGTERM from a CronJob's or Airflow's timeout, Ctrl-C) while a worker is being forked,
the fork server's loop (``multiprocessing.forkserver.main``) reads a request whose sender is gone:
``reduction.recvfds`` raises ``EOFError`` and the server prints that traceback on the user's terminal after
regsweep's own one-line message, then exits. The exit is right (its driver is gone); the traceback is noise, and
the fault tests refuse it. This hook drops that one traceback and leaves every other exception to the default
hook (the module is imported by the fork server only; its forks, the workers, inherit a hook that never sees
this error).
"""

from __future__ import annotations

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
