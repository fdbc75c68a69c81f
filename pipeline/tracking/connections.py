"""A new TCP connection per request to a tracking server whose kept-alive connections stall.

``mlflow server`` serves through uvicorn with several worker processes (4 by
default). On that path uvicorn leaves Nagle's algorithm on for accepted sockets
(Kludex/uvicorn#3149), so on Linux every response after the first on a
kept-alive connection waits for the client's delayed ACK: about 40 ms. MLflow's
client keeps its connections alive (a ``requests`` session), so each of its
calls costs ~56 ms where the same call on a new connection costs ~16 ms
(measured against ``mlflow server`` 3.x on 127.0.0.1): a child run's three
requests then take 170 ms instead of 50.

The fix belongs in the server; until a user's server has it, regsweep's MLflow
process measures the stall once (:func:`keepalive_stalls`: ``/health`` on one
kept-alive connection against new connections) and, only if there is one,
asks for ``Connection: close`` on every MLflow request it makes
(:func:`close_connections`), through MLflow's documented request-header
provider interface. A server without the stall (one uvicorn worker, a proxy in
front, a fixed uvicorn) keeps its kept-alive connections, which matter more
over TLS and long round trips.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

__all__ = ["close_connections", "keepalive_stalls", "stall_measured"]

STALL_S = 0.020
"""A kept-alive request this much slower than a new connection's (median) is a stall, not noise: the delayed
ACK costs 40 ms on Linux (200 ms elsewhere); two requests to ``/health`` differ by a few ms."""


def stall_measured(kept_alive_s: list[float], new_connection_s: list[float]) -> bool:
    """Whether requests on a kept-alive connection (the first on it excluded) are slower than requests on
    new connections by more than :data:`STALL_S` (medians)."""
    if not kept_alive_s or not new_connection_s:
        return False
    return statistics.median(kept_alive_s) - statistics.median(new_connection_s) > STALL_S


def keepalive_stalls(uri: str, requests_each: int = 3, timeout: float = 2.0) -> bool:
    """Whether the server at ``uri`` stalls kept-alive requests (``GET /health``, ~0.2 s); False if it
    cannot be measured (the caller then changes nothing)."""
    import requests
    from urllib3.util.retry import Retry

    url = uri.rstrip("/") + "/health"
    try:
        with requests.Session() as session:
            session.verify = _tls_verify()
            # a kept-alive connection the server closed meanwhile is opened again, not taken for an answer; a
            # server that cannot be reached is not tried again (the caller then changes nothing, at once)
            retry = Retry(total=2, connect=0, read=2, status=0, other=0)
            session.mount(url, requests.adapters.HTTPAdapter(max_retries=retry))
            session.get(url, timeout=timeout).raise_for_status()  # opens the connection: never stalls
            kept = [_timed(session.get, url, timeout=timeout) for _ in range(requests_each)]
            new = [_timed(session.get, url, timeout=timeout, headers={"Connection": "close"})
                   for _ in range(requests_each)]
    except (requests.RequestException, OSError):
        return False
    return stall_measured(kept, new)


def _tls_verify() -> bool | str:
    """The server certificate check MLflow's client makes (its two environment variables)."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("true", "1"):
        return False
    return os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True


def _timed(call: Any, *args: Any, **kwargs: Any) -> float:
    t0 = time.perf_counter()
    call(*args, **kwargs).raise_for_status()
    return time.perf_counter() - t0


class _CloseConnections:
    """An MLflow request-header provider: ``Connection: close`` on every request of this process."""

    def in_context(self) -> bool:
        return True

    def request_headers(self) -> dict[str, str]:
        return {"Connection": "close"}


def close_connections() -> bool:
    """Every MLflow request of this process on a new connection (idempotent); whether MLflow took it."""
    from ._mlflow_internals import add_request_headers

    return add_request_headers(_CloseConnections)
