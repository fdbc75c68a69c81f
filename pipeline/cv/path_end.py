"""Where a dense path ends, shared by the tasks that compute it: the curve is cut at its shortest fold.

The curve of a path (:func:`pipeline.selection.curve_of`) keeps the points every fold reached, so once one
fold's path has stopped after ``L`` points, the points past ``L`` of every other fold, and of the
coefficient path on all rows, are never shown. Binomial and Poisson points cost a solve each, and the last
ones (the weakest penalties) the most, so the tasks of a path tell each other where it ends: a fold that
stops publishes its length, and every task reads the shortest length published so far before its next point.

The shared value lives in a :class:`distributed.Variable` (on the scheduler). It is only ever lowered to a
length some fold really stopped at, so it is never below the curve's length: a task that reads a stale,
larger value computes points that are cut later, never too few. Reads are throttled to one per
:data:`_READ_EVERY` seconds, so small paths (points of milliseconds) pay nothing for it.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

__all__ = ["PathEnd"]

_READ_EVERY = 0.25  # seconds between two reads of the shared length by one task


class PathEnd:
    """The shortest length (points) a fold path of one dense path has stopped at so far; picklable into tasks."""

    def __init__(self, name: str, n_points: int) -> None:
        self.name, self._known, self._read_at = name, n_points, 0.0

    @classmethod
    def start(cls, client: Any, n_points: int) -> PathEnd:
        """A new shared end at ``n_points`` (the whole spec), set on ``client``'s scheduler."""
        end = cls(f"regsweep-path-end-{uuid.uuid4().hex}", n_points)
        end._variable(client).set(n_points)
        return end

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "known": self._known}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name, self._known, self._read_at = state["name"], state["known"], 0.0

    def limit(self) -> int:
        """The number of points past which no task need go (the shortest published, or the spec's length)."""
        now = time.monotonic()
        if now - self._read_at >= _READ_EVERY:
            self._read_at = now
            self._known = min(self._known, int(self._variable().get(timeout=30)))
        return self._known

    def reached(self, n_points: int) -> None:
        """A fold's path stopped after ``n_points``: lower the shared end to it (if it is lower)."""
        if n_points < self.limit():
            self._known = n_points
            self._variable().set(n_points)  # a race with another fold may keep the larger: only more work, never less

    def close(self, client: Any) -> None:
        """Forget the shared value (driver side, once the path is done or failed); a scheduler that is gone has
        taken it along, so nothing is raised then (the path's own error, if any, is the one to see)."""
        with contextlib.suppress(OSError, TimeoutError, RuntimeError):
            self._variable(client).delete()

    def _variable(self, client: Any = None) -> Any:
        from distributed import Variable

        return Variable(self.name, client=client)
