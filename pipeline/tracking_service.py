"""A sweep's MLflow, in a process of its own: the driver never imports MLflow.

MLflow is the costliest import of a sweep (~2 s of CPU with its SQLAlchemy
store), and a sweep needs it only after the data pass. :class:`TrackingService`
starts a helper process first thing; the helper imports MLflow, opens the
store and creates the experiment while the driver starts the cluster, and
from then on runs every MLflow call of the sweep: the parent run, the child
runs of the trials (queued, never waited for: see
:class:`~pipeline.tracking.ChildRunWriter`), the model. On 2 cores this took
the set-up of a 100-trial sweep from 2.4 s to the 0.2 s of opening the study
(measured at 10⁶ rows).

The service has :class:`~pipeline.tracking.Tracker`'s methods (those a sweep
uses), run in the helper in the order they were called: a method that returns
something waits for its answer, which also means every child run queued
before it is written. A failed call raises :class:`RemoteTrackingError` in the
driver, carrying whether the server was unreachable (:func:`is_unreachable`).

The helper ignores SIGINT/SIGTERM (the driver decides when it stops, so a
stopped sweep still ends its runs KILLED) and exits by itself when the driver
dies.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import TrackingConfig
from .tracking import (
    ChildRunWriter,
    TrackingError,
    TrialRecord,
    _DriverGone,
    close_stale_runs,
    is_unreachable,
    reachable,
)

__all__ = ["Pending", "RemoteTrackingError", "TrackingService"]

_POLL_S = 0.5


class RemoteTrackingError(TrackingError):
    """An MLflow call that failed in the tracking process (its type and message, and whether
    the server could not be reached)."""

    def __init__(self, message: str, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class _Call:
    id: int
    method: str
    args: tuple
    kwargs: dict


@dataclass(frozen=True)
class _Reply:
    id: int
    value: Any = None
    error: str | None = None
    unreachable: bool = False


class TrackingService:
    """The driver's handle on the tracking process (see the module docstring)."""

    def __init__(self, cfg: TrackingConfig, study_name: str) -> None:
        import multiprocessing

        from .ownership import DriverId

        self.cfg = cfg
        self.uri = cfg.uri
        self.study_name = study_name
        self.failed: list[tuple[int, str]] = []  # (trial number, error) not logged
        self.not_logged: list[str] = []  # sweep-level writes that did not reach MLflow
        self._parent: str | None = None
        self._parent_call: Pending | None = None
        self._experiment_id: str | None = None
        self._ids = itertools.count()
        self._replies: dict[int, _Reply] = {}
        # Forked while this process has one thread (nothing can be inherited locked): the helper
        # starts with regsweep and numpy already imported. Otherwise (not Linux) spawned.
        fork = sys.platform.startswith("linux") and threading.active_count() == 1
        ctx = multiprocessing.get_context("fork" if fork else "spawn")
        sys.stdout.flush()  # a forked child would write out what is still buffered a second time
        sys.stderr.flush()
        self._inbox = ctx.Queue()
        self._outbox = ctx.Queue()
        self._process: Any = ctx.Process(
            target=_serve, args=(cfg, study_name, str(DriverId.current()), self._inbox, self._outbox),
            name="regsweep-mlflow", daemon=True,
        )
        self._process.start()
        self._experiment_call = self._send("ensure_experiment")

    # --------------------------------------------------------------- calls
    def _send(self, method: str, *args: Any, **kwargs: Any) -> int:
        call = _Call(next(self._ids), method, args, kwargs)
        if self._process is None:
            raise TrackingError("the MLflow process was stopped")
        self._inbox.put(call)
        return call.id

    def _wait(self, call_id: int, deadline: float | None = None, idle: float | None = None) -> Any:
        """The answer to call ``call_id``; child-run outcomes arriving meanwhile are recorded.

        ``deadline`` (monotonic) bounds the whole wait; ``idle`` the time without
        any message (a child run written counts as progress)."""
        last = time.monotonic()
        while call_id not in self._replies:
            if self._process is None:
                raise TrackingError("the MLflow process was stopped")
            now = time.monotonic()
            if (deadline is not None and now >= deadline) or (idle is not None and now - last >= idle):
                raise TimeoutError(f"MLflow process: no answer within {now - last:.0f} s")
            try:
                msg = self._outbox.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._process.is_alive():
                    code = self._process.exitcode
                    self._process = None
                    raise TrackingError(f"the MLflow process died (exit code {code})") from None
                continue
            last = time.monotonic()
            self._file(msg)
        reply = self._replies.pop(call_id)
        if reply.error is not None:
            raise RemoteTrackingError(reply.error, reply.unreachable)
        return reply.value

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wait(self._send(method, *args, **kwargs))

    def send(self, method: str, *args: Any, **kwargs: Any) -> Pending:
        """Start ``Tracker.<method>(*args, **kwargs)`` in the tracking process and return at once."""
        pending = Pending(self, self._send(method, *args, **kwargs))
        if method == "start_parent":
            self._parent_call = pending
        return pending

    def settle_parent(self, deadline_s: float) -> str | None:
        """The parent run: known, or sent for creation and answered within ``deadline_s`` s
        (a sweep stopped before it looked at the answer must still end that run)."""
        if self._parent is None and self._parent_call is not None:
            call, self._parent_call = self._parent_call, None
            with contextlib.suppress(Exception):
                self._parent = self._wait(call._id, deadline=time.monotonic() + deadline_s)
        return self._parent

    def _answered(self, call_id: int) -> bool:
        """Whether call ``call_id`` has its answer (reads what has arrived, never waits)."""
        while call_id not in self._replies and self._process is not None:
            try:
                msg = self._outbox.get_nowait()
            except queue.Empty:
                return False
            self._file(msg)
        return call_id in self._replies

    def _file(self, msg: Any) -> None:
        """Keep an answer for its caller; note a child run that could not be written."""
        if isinstance(msg, _Reply):
            self._replies[msg.id] = msg
        elif msg is not None and msg[1] is not None:
            self.failed.append(msg)

    # -------------------------------------------------- Tracker's methods
    @property
    def experiment_id(self) -> str:
        """The experiment's id (waits for the tracking process to have created it)."""
        if self._experiment_id is None:
            self._experiment_id = self._wait(self._experiment_call)
        return self._experiment_id

    def check_experiment(self) -> None:
        """Raise the experiment's error (a deleted experiment, a store that cannot be opened) if the
        tracking process already answered with one; never waits."""
        if self._experiment_id is None and self._answered(self._experiment_call):
            self._experiment_id = self._wait(self._experiment_call)

    def use_parent(self, run_id: str) -> None:
        """The parent run created through :meth:`send` ("start_parent")."""
        self._parent = run_id
        self._parent_call = None

    def reachable(self, wait: float = 0.0) -> bool:
        """Whether the tracking server answers (True for a local store), waiting up to ``wait`` s."""
        return reachable(self.uri, wait)

    @property
    def parent_run_id(self) -> str | None:
        return self._parent

    def close_stale_runs(self, study_name: str, lease_of: Callable[[str | None], float | None]) -> list[str]:
        """End as KILLED the RUNNING runs of ``study_name`` whose driver is gone (see ``Tracker``)."""
        return close_stale_runs(self, study_name, lease_of)

    def running_runs(self, study_name: str) -> list[tuple[str, str | None]]:
        return self._call("running_runs", study_name)

    def child_runs(self, study_name: str) -> dict:
        return self._call("child_runs", study_name)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self._call("log_params", run_id, dict(params))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        self._call("log_metrics", run_id, dict(metrics), step)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self._call("set_tags", run_id, dict(tags))

    def log_artifacts(self, run_id: str, directory: Any, artifact_path: str | None = None) -> None:
        self._call("log_artifacts", run_id, str(directory), artifact_path)

    def log_model(self, *args: Any, **kwargs: Any) -> tuple[str, int | None]:
        return self._call("log_model", *args, **kwargs)

    def end_run(self, run_id: str, status: str = "FINISHED", deadline_s: float | None = None) -> None:
        """End a run; with ``deadline_s``, give up waiting after that long (the run stays as it is)."""
        end = None if deadline_s is None else time.monotonic() + deadline_s
        self._wait(self._send("end_run", run_id, status), deadline=end)

    # ------------------------------------------------------- child runs
    def log_trial(self, record: TrialRecord) -> None:
        """Queue one finished trial's child run; returns at once."""
        if not self.cfg.log_trials:
            return
        if self._process is None:
            self.failed.append((record.number, "the MLflow process was stopped"))
            return
        self._inbox.put(record)

    def finish_trial_logging(self, timeout: float = 300.0, deadline: float | None = None) -> None:
        """Wait until every queued child run is written, or the process made no progress for
        ``timeout`` s; ``deadline`` (s from now) bounds the whole wait (a process told to stop)."""
        end = None if deadline is None else time.monotonic() + deadline
        try:
            self._wait(self._send("ping"), deadline=end, idle=timeout)
        except TimeoutError:
            why = "made no progress for" if deadline is None else "was stopped after"
            self.failed.append((-1, f"the MLflow process {why} {min(timeout, deadline or timeout):.0f} s"))
        except TrackingError as e:
            self.failed.append((-1, str(e)))

    def start_trial_logging(self) -> None:
        """Nothing to start: the tracking process writes child runs from the beginning."""

    def abandon_trial_logging(self, grace: float = 1.0) -> None:
        """Stop the tracking process (SIGKILL after ``grace`` s if it does not exit); safe to call twice."""
        if self._process is not None:
            with contextlib.suppress(OSError, ValueError):
                self._inbox.put(None)
            self._process.join(grace)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
            self._process = None
        for q in (self._inbox, self._outbox):  # released now, not at a fast exit (cli.entry)
            q.cancel_join_thread()
            q.close()


class Pending:
    """A call running in the tracking process."""

    def __init__(self, service: TrackingService, call_id: int) -> None:
        self._service, self._id = service, call_id

    def ready(self) -> bool:
        """Whether its answer has arrived (never waits)."""
        return self._service._answered(self._id)

    def result(self) -> Any:
        """Its result, once there; raises :class:`RemoteTrackingError` if the call failed."""
        return self._service._wait(self._id)


def _serve(cfg: TrackingConfig, study_name: str, driver: str, inbox: Any, outbox: Any) -> None:
    """Body of the tracking process: answer calls and write child runs, in arrival order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a SIGTERM to the whole group: write the KILLED runs first
    sys.stdout = open(os.devnull, "w")  # MLflow prints "View run" lines
    driver_pid = int(driver.rsplit("/", 2)[1])
    tracker: Any = None
    writer: ChildRunWriter | None = None
    try:
        while True:
            try:
                msg = inbox.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != driver_pid:
                    raise _DriverGone from None
                continue
            if os.getppid() != driver_pid:  # a dead driver's records are replayed by the next one
                raise _DriverGone
            if msg is None:
                outbox.put(None)
                return
            if isinstance(msg, TrialRecord):
                if tracker is None or tracker.parent_run_id is None:
                    outbox.put((msg.number, "no MLflow parent run to log under"))
                    continue
                if writer is None:
                    writer = ChildRunWriter(tracker.client, tracker.uri, tracker.experiment_id,
                                            tracker.parent_run_id, study_name, driver)
                outbox.put((msg.number, writer.write(msg)))
                continue
            try:
                if tracker is None:
                    from .tracking import Tracker

                    tracker = Tracker(cfg, driver=driver)
                    tracker.study_name = study_name
                value = None if msg.method == "ping" else getattr(tracker, msg.method)(*msg.args, **msg.kwargs)
                outbox.put(_Reply(msg.id, value))
            except Exception as e:  # noqa: BLE001 — every failure goes back to the caller
                outbox.put(_Reply(msg.id, error=f"{type(e).__name__}: {e}"[:2000], unreachable=is_unreachable(e)))
    except _DriverGone:
        return
