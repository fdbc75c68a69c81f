"""How fast child runs go to a tracking server that shares this machine's cores while the sweep computes.

Each child run costs a tracking server about 30 ms of CPU (three requests of
~10 ms each, whatever they carry: ``benchmarks/child_runs.py``, ``mlflow
server`` 3.x with a SQLite or PostgreSQL store). A server on another machine
costs the sweep nothing, and its child runs go as fast as the writers send
them. A server on this machine takes that CPU from the sweep: the
quickstart's 60 trials finish in about a second, and their 60 child runs
need 1.8 s of the server's CPU, so written at once they slowed the trials
and the model's logging by 1.4 s on two cores.

So, against a server here, child runs are released at a rate that costs the
server at most :data:`SERVER_SHARE` of the machine's cores
(:func:`runs_per_second`, 6.7 runs/s on two cores): live progress for a long
sweep, whose trials come slower than that, and little contention in a short
one. What is still queued when the sweep ends is written at full speed, by
the sweep or, after it returns, by its MLflow process
(:meth:`pipeline.tracking.TrackingService.hand_off`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
import urllib.parse
from collections.abc import Callable

__all__ = ["SERVER_CPU_PER_RUN_S", "SERVER_SHARE", "Pacer", "on_this_machine", "runs_per_second"]

SERVER_CPU_PER_RUN_S = 0.030
"""The tracking server's CPU per child run (30.5 ms measured: ``runs/create`` 11.5 ms, ``log-batch`` 10.3 ms,
``runs/update`` 8.7 ms, against ``mlflow server`` on 127.0.0.1, SQLite store, 2026-12-06)."""

SERVER_SHARE = 0.10
"""The share of this machine's cores a server here may spend on child runs while the sweep computes."""


def on_this_machine(uri: str) -> bool:
    """Whether the tracking server of ``uri`` (http or https) runs here: a loopback address, this host's name,
    or an address of this host. False when that cannot be told (the host does not resolve)."""
    host = (urllib.parse.urlsplit(uri).hostname or "").lower()
    if not host:
        return False
    if host in ("localhost", socket.gethostname().lower()) or _is_loopback(host):
        return True
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    if any(_is_loopback(a) for a in addresses):
        return True
    try:
        return bool(addresses & {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)})
    except OSError:
        return False


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:  # a name, not an address
        return False


def runs_per_second(uri: str, cores: int | None = None) -> float | None:
    """The rate child runs go to the server of ``uri`` while the sweep computes: ``SERVER_SHARE × cores /
    SERVER_CPU_PER_RUN_S`` for a server on this machine, None (no limit) for one elsewhere."""
    if not on_this_machine(uri):
        return None
    return SERVER_SHARE * (cores or _usable_cores()) / SERVER_CPU_PER_RUN_S


def _usable_cores() -> int:
    """The cores this process may run on (its affinity: ``taskset``, a container's cpuset), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Pacer:
    """A token bucket: :meth:`take` grants ``rate`` releases per second on average, at most ``burst`` at once
    (the bucket starts full: the first trials' runs show at once)."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, max(1.0, rate if burst is None else burst), clock
        self._tokens, self._last = self.burst, clock()

    def take(self) -> bool:
        """Whether one more release is granted now (and, if so, count it)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
