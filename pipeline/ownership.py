"""Which driver owns a RUNNING trial or run, and whether that driver is still alive.

A driver that dies (SIGKILL, a lost machine) leaves its trials RUNNING in the
Optuna study and its runs RUNNING in MLflow; Optuna's own heartbeats cover
only ``study.optimize``, so the ask/tell loop must mark them itself. Every
trial and run a driver opens carries its :class:`DriverId`; a later driver
treats them as stale when

* the owner ran on this host, in this PID namespace, and its process is gone
  (checked at once: the PID no longer exists, or now belongs to a process
  started at another time), or
* the owner's lease (a timestamp it renews every :data:`LEASE_RENEW_S` seconds in
  the study) is older than :data:`LEASE_EXPIRY_S` (owners on other hosts, or in
  another PID namespace: two containers may share a hostname, and a PID of
  one means nothing in the other).

A live driver's trials are never touched, so several drivers may share a study.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LEASE_EXPIRY_S", "LEASE_RENEW_S", "DriverId", "LeaseKeeper", "is_stale"]

LEASE_RENEW_S = 10.0
LEASE_EXPIRY_S = 60.0


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 on), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces or parentheses: split after its closing ')'
    return stat[stat.rfind(b")") + 2 :].split()


def _process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``), or None if unknown."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields is not None else None  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def _has_exited(pid: int) -> bool:
    """Whether ``pid`` has exited but not been reaped yet (a zombie: ``kill(pid, 0)`` still succeeds)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[:1] in ([b"Z"], [b"X"])


def _pid_namespace() -> int:
    """The inode of this process's PID namespace (Linux ``/proc/self/ns/pid``), 0 if unknown."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class DriverId:
    """A driver process: ``host/pid/start-ticks/pid-namespace``.

    Start ticks tell a reused PID apart; the PID namespace (0: unknown, as in
    ids written before it was recorded, ``host/pid/start``) tells apart two
    containers that share a hostname.
    """

    host: str
    pid: int
    start: int
    pidns: int = 0

    @classmethod
    def current(cls) -> DriverId:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _process_start_ticks(pid) or 0, _pid_namespace())

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.start}/{self.pidns}"

    @classmethod
    def parse(cls, text: str) -> DriverId | None:
        """The driver of ``text`` (either format), or None if it is not a driver id."""
        try:
            parts = text.rsplit("/", 3)
            if len(parts) == 4 and all(p.isdigit() for p in parts[1:]):
                return cls(parts[0], int(parts[1]), int(parts[2]), int(parts[3]))
            host, pid, start = text.rsplit("/", 2)
            return cls(host, int(pid), int(start))
        except (AttributeError, ValueError):
            return None

    def is_alive_here(self) -> bool | None:
        """True/False if this driver ran here (this host and PID namespace); None when it ran elsewhere."""
        if self.host != socket.gethostname():
            return None
        here = _pid_namespace()
        if self.pidns and here and self.pidns != here:
            return None
        if not _pid_exists(self.pid) or _has_exited(self.pid):
            return False
        ticks = _process_start_ticks(self.pid)
        return ticks is None or self.start == 0 or ticks == self.start


def is_stale(owner: str | None, lease: float | None, now: float | None = None, deputy: str | None = None) -> bool:
    """Whether a RUNNING trial or run of driver ``owner`` (lease renewed at ``lease``) is abandoned.

    A record with no owner was written before ownership was recorded, or by
    something else: it is stale only once ``lease`` (if known) has expired.
    ``deputy`` is the process the owner handed its last writes to when it
    ended (its MLflow process, writing the last child runs): while the deputy
    lives, the owner's records are not abandoned either.
    """
    if deputy is not None and not is_stale(deputy, lease, now):
        return False
    now = time.time() if now is None else now
    driver = DriverId.parse(owner) if owner else None
    if driver is not None and driver == DriverId.current():
        return False
    alive = driver.is_alive_here() if driver is not None else None
    if alive is not None:
        return not alive
    return lease is not None and now - lease > LEASE_EXPIRY_S


class LeaseKeeper:
    """Renews this driver's lease every :data:`LEASE_RENEW_S` s from a daemon thread.

    ``renew`` writes the current time wherever the lease lives (a study
    attribute); its failures are ignored: a missed renewal only matters if it
    lasts a whole :data:`LEASE_EXPIRY_S`.
    """

    def __init__(self, renew: Callable[[float], None], interval: float = LEASE_RENEW_S) -> None:
        self._renew = renew
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="regsweep-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _beat(self) -> None:
        try:
            self._renew(time.time())
        except Exception:  # noqa: BLE001 — a lease write must never stop the sweep
            pass

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._beat()
