"""Is the tracking store there? Answered in seconds, with plain ``urllib`` (no MLflow import)."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import TrackingError
from ..sqlite_wal import sqlite_path

__all__ = ["health_problem", "is_http", "is_unreachable", "preflight", "reachable"]

_PREFLIGHT_TIMEOUT_S = 5.0


def is_http(uri: str) -> bool:
    """Whether ``uri`` names a tracking server (as opposed to a local store)."""
    return uri.startswith(("http://", "https://"))


def health_problem(uri: str, timeout: float) -> str | None:
    """None if the MLflow server at ``uri`` answers ``/health``; otherwise what went wrong."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status} from /health"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} from /health"
    except (urllib.error.URLError, OSError) as e:
        return str(getattr(e, "reason", e))


def reachable(uri: str, wait: float = 0.0) -> bool:
    """Whether the tracking server at ``uri`` answers (True for a local store), waiting up to ``wait`` s.

    A server being restarted takes a while to answer again (measured: 5–20 s
    for ``mlflow server`` on a busy machine); the end of a sweep waits for it
    rather than declaring its results unlogged.
    """
    if not is_http(uri):
        return True
    deadline = time.monotonic() + wait
    while health_problem(uri, 2.0) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(1.0)
    return True


def preflight(uri: str) -> None:
    """Fail within seconds, naming the URI, if the tracking store is unreachable.

    Plain ``urllib`` (MLflow's client retries for minutes, and importing MLflow
    alone takes seconds): the first thing a sweep does.
    """
    if is_http(uri):
        problem = health_problem(uri, _PREFLIGHT_TIMEOUT_S)
        if problem:
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({problem}); start it, or set "
                "tracking.uri to a local file such as sqlite:///mlflow.db."
            )
    elif (file := sqlite_path(uri)) is not None:
        path = Path(file)
        if not path.parent.exists():
            raise TrackingError(
                f"tracking.uri {uri!r}: directory {str(path.parent)!r} does not exist; create it first."
            )


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the tracking server could not be reached (as opposed to a refused write)."""
    known = getattr(exc, "unreachable", None)  # decided where the call ran (the tracking process)
    if isinstance(known, bool):
        return known
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError | ConnectionError):
        return True
    if "mlflow" not in sys.modules:  # then it cannot be an MlflowException: don't import MLflow to ask
        return "Connection" in type(exc).__name__
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return any(s in text for s in ("Max retries exceeded", "Connection refused", "ConnectionError",
                                       "Failed to establish", "Read timed out", "RemoteDisconnected"))
    return "Connection" in type(exc).__name__
