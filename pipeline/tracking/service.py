"""A sweep's MLflow, in a process of its own: the driver never imports MLflow.

MLflow is the costliest import of a sweep (~2 s of CPU with its SQLAlchemy
store), and a sweep needs it only after the data pass. :class:`TrackingService`
starts a helper process first thing; the helper imports MLflow, opens the
store and creates the experiment while the driver starts the cluster, and
from then on runs every MLflow call of the sweep through a
:class:`~pipeline.tracking.Tracker`: the parent run, the child runs of the
trials (queued, never waited for), the model. On 2 cores this took the
set-up of a 100-trial sweep from 2.4 s to the 0.2 s of opening the study
(measured at 10⁶ rows).

Calls run in the helper in the order they were sent: a call that returns
something waits for its answer. A failed call raises
:class:`~pipeline.errors.RemoteTrackingError` in the driver, carrying whether
the server was unreachable.

Child runs are the exception: a call waits for them only where it must see
them (:data:`_SEES_CHILD_RUNS`), and against a server on this machine they are
released at a pace (:mod:`.pacing`). At the end of a sweep the driver may
hand the ones still queued over (:meth:`TrackingService.hand_off`): the
helper then writes them after the sweep returns, on its own.

The helper ignores SIGINT/SIGTERM (the driver decides when it stops, so a
stopped sweep still ends its runs KILLED) and exits by itself when the
driver dies, unless it was handed the last child runs.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..background import run_in_background
from ..config import TrackingConfig
from ..errors import DriverGone, RemoteTrackingError, TrackingError
from ..gc_pause import collector_paused, freeze_after_steps
from ..model import FittedModel
from ..ownership import DriverId
from .health import is_http, is_unreachable, reachable
from .pacing import Pacer, runs_per_second
from .protocol import Pending
from .records import ChildRun, TrialRecord

if TYPE_CHECKING:
    from .tracker import Tracker

__all__ = ["TrackingService"]

_POLL_S = 0.5


@dataclass(frozen=True)
class _Call:
    id: int
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class _Reply:
    id: int
    value: Any = None
    error: str | None = None
    unreachable: bool = False


class _Remote:
    """A call running in the tracking process (a :class:`~pipeline.tracking.Pending`)."""

    def __init__(self, service: TrackingService, call_id: int) -> None:
        self._service, self._id = service, call_id

    def ready(self) -> bool:
        return self._service._answered(self._id)

    def result(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._service._wait(self._id, deadline=deadline)


class TrackingService:
    """The driver's handle on the tracking process; satisfies :class:`~pipeline.tracking.Tracking`."""

    def __init__(self, cfg: TrackingConfig, study_name: str, metric: str = "mse") -> None:
        self.cfg, self.uri, self.study_name = cfg, cfg.uri, study_name
        self.failed: list[tuple[int, str]] = []
        self.not_logged: list[str] = []
        self._parent: str | None = None
        self._experiment_id: str | None = None
        self._ids = itertools.count()
        self._replies: dict[int, _Reply] = {}
        self._ignored: set[int] = set()  # calls whose answers nobody waits for
        self._handed_off = False
        _reap_handed_off()
        # Forked while this process has one thread (nothing can be inherited locked): the helper
        # starts with regsweep and numpy already imported. Otherwise (not Linux) spawned.
        fork = sys.platform.startswith("linux") and threading.active_count() == 1
        ctx: Any = multiprocessing.get_context("fork" if fork else "spawn")
        sys.stdout.flush()  # a forked child would write out what is still buffered a second time
        sys.stderr.flush()
        self._inbox: Any = ctx.Queue()
        self._outbox: Any = ctx.Queue()
        self._process: Any = ctx.Process(
            target=_serve, args=(cfg, study_name, str(DriverId.current()), self._inbox, self._outbox, metric),
            name="regsweep-mlflow", daemon=True,
        )
        self._process.start()
        self._experiment_call = self._send("ensure_experiment")

    # --------------------------------------------------------------- messages
    def _send(self, method: str, *args: Any, **kwargs: Any) -> int:
        if self._process is None:
            raise TrackingError("the MLflow process was stopped")
        call = _Call(next(self._ids), method, args, kwargs)
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
            if msg.id in self._ignored:
                self._ignored.discard(msg.id)
            else:
                self._replies[msg.id] = msg
        elif msg is not None and msg[1] is not None:
            self.failed.append(msg)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wait(self._send(method, *args, **kwargs))

    # --------------------------------------------------------------- Tracking
    def send(self, method: str, *args: Any, **kwargs: Any) -> Pending:
        return _Remote(self, self._send(method, *args, **kwargs))

    @property
    def experiment_id(self) -> str:
        """The experiment's id (waits for the tracking process to have created it)."""
        if self._experiment_id is None:
            self._experiment_id = str(self._wait(self._experiment_call))
        return self._experiment_id

    def check_experiment(self) -> None:
        if self._experiment_id is None and self._answered(self._experiment_call):
            self._experiment_id = str(self._wait(self._experiment_call))

    @property
    def parent_run_id(self) -> str | None:
        return self._parent

    def start_parent(self, run_name: str, tags: Mapping[str, str]) -> str:
        run_id = str(self._call("start_parent", run_name, dict(tags)))
        self._parent = run_id
        return run_id

    def use_parent(self, run_id: str) -> None:
        """Child runs go under ``run_id`` (sent, not waited for: a no-op after this service's start_parent)."""
        self._parent = run_id
        self._ignored.add(self._send("use_parent", run_id))

    def reachable(self, wait: float = 0.0) -> bool:
        return reachable(self.uri, wait)

    def run_exists(self, run_id: str) -> bool:
        return bool(self._call("run_exists", run_id))

    def running_runs(self, study_name: str) -> list[tuple[str, str | None]]:
        runs: list[tuple[str, str | None]] = self._call("running_runs", study_name)
        return runs

    def child_runs(self, study_name: str) -> dict[int, ChildRun]:
        runs: dict[int, ChildRun] = self._call("child_runs", study_name)
        return runs

    def log_params_and_tags(self, run_id: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self._call("log_params_and_tags", run_id, dict(params), dict(tags))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        self._call("log_metrics", run_id, dict(metrics), step)

    def log_artifacts(self, run_id: str, directory: str | Path, artifact_path: str | None = None) -> None:
        self._call("log_artifacts", run_id, str(directory), artifact_path)

    def log_model(self, run_id: str, model: FittedModel, input_example: Any, registered_model: str | None,
                  version_tags: Mapping[str, str] | None = None, alias: str | None = "candidate",
                  metrics: Mapping[str, float] | None = None) -> tuple[str, int | None]:
        uri, version = self._call("log_model", run_id, model, input_example, registered_model, version_tags, alias,
                                  metrics)
        return str(uri), version

    def end_run(self, run_id: str, status: str = "FINISHED", deadline_s: float | None = None) -> None:
        end = None if deadline_s is None else time.monotonic() + deadline_s
        self._wait(self._send("end_run", run_id, status), deadline=end)

    def log_trials(self, records: Sequence[TrialRecord]) -> None:
        """Queue each of ``records`` (the tracking process's pool writes them, :data:`HTTP_WRITERS` at once)."""
        for record in records:
            self.log_trial(record)

    def log_trial(self, record: TrialRecord) -> None:
        """Queue one finished trial's child run; returns at once."""
        if not self.cfg.log_trials:
            return
        if self._process is None:
            self.failed.append((record.number, "the MLflow process was stopped"))
            return
        self._inbox.put(record)

    def finish_trial_logging(self, timeout: float = 300.0, deadline: float | None = None) -> None:
        end = None if deadline is None else time.monotonic() + deadline
        try:
            self._wait(self._send("ping"), deadline=end, idle=timeout)
        except TimeoutError:
            why = "made no progress for" if deadline is None else "was stopped after"
            self.failed.append((-1, f"the MLflow process {why} {min(timeout, deadline or timeout):.0f} s"))
        except TrackingError as e:
            self.failed.append((-1, str(e)))

    def hand_off(self) -> tuple[int, str] | None:
        """Leave the child runs still queued to the tracking process, which writes them after this driver has
        ended (no call may follow but :meth:`end_run` and :meth:`close`); how many, and the process's
        :class:`~pipeline.ownership.DriverId` (to record as this driver's deputy). None when the process
        declines (nothing queued, more than :data:`HANDOFF_MAX_RUNS`, a write failed): then wait with
        :meth:`finish_trial_logging`."""
        sentinel = _pipe_of(self._process.sentinel) if self._process is not None else None
        handed: tuple[int, str | None] = self._call("hand_off", sentinel)
        pending, deputy = handed
        if deputy is None:
            return None
        self._handed_off = True
        return pending, deputy

    def close(self, grace: float = 1.0) -> None:
        """Stop the tracking process (SIGKILL after ``grace`` s if it does not exit); safe to call twice.

        After :meth:`hand_off` the process is left to finish its child runs: this process neither waits
        for it nor, at exit, stops it."""
        if self._process is not None and self._handed_off:
            with contextlib.suppress(OSError, ValueError):
                self._inbox.put(None)  # no more calls: exit once the last child run is written
                self._inbox.close()
                self._inbox.join_thread()  # the None is in the pipe before this process may exit
            _HANDED_OFF.append(self._process)
            getattr(multiprocessing.process, "_children", set()).discard(self._process)  # see _HANDED_OFF
            self._process = None
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


_HANDED_OFF: list[Any] = []
"""Tracking processes left to finish their child runs (:meth:`TrackingService.hand_off`). They are taken out
of :mod:`multiprocessing`'s children, which it would otherwise terminate and wait for at this process's exit
(and ``regsweep``'s command would wait for before it exits); kept here to be reaped once they exit."""


def _reap_handed_off() -> None:
    """Reap the handed-off tracking processes that have exited (``exitcode`` polls with ``WNOHANG``)."""
    _HANDED_OFF[:] = [p for p in _HANDED_OFF if p.exitcode is None]


HANDOFF_MAX_RUNS = 1000
"""The most child runs a sweep leaves to its tracking process: at 13.5-26 ms per run (``benchmarks/child_runs.py``)
within :data:`HANDOFF_DEADLINE_S`. More, and the sweep waits for them as before."""

HANDOFF_DEADLINE_S = 40.0
"""How long a handed-off tracking process may write; then it exits, and whatever is left is replayed from the
study by ``regsweep sync-tracking`` or the next ``regsweep sweep`` of the study. Within the cover of the driver's
lease for drivers on other hosts (renewed every 10 s, expired after 60 s: :mod:`pipeline.ownership`), which
cannot see whether the process still runs."""


def _serve(cfg: TrackingConfig, study_name: str, driver: str, inbox: Any, outbox: Any, metric: str = "mse") -> None:
    """Body of the tracking process: answer calls and write child runs, in arrival order (calls that need not
    see the child runs queued before them are answered while those are written)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when we stop
    freeze_after_steps()  # this process ends with the sweep (pipeline.gc_pause)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a SIGTERM to the whole group: write the KILLED runs first
    sys.stdout = open(os.devnull, "w")  # MLflow prints "View run" lines
    driver_id = DriverId.parse(driver)
    driver_pid = driver_id.pid if driver_id is not None else os.getppid()
    tracker: Tracker | None = None
    http = is_http(cfg.uri)
    writers = _ChildRunPool(outbox, HTTP_WRITERS if http else 0, runs_per_second(cfg.uri) if http else None)
    handed_off_at: float | None = None  # when the driver left the last child runs to this process
    closing, full_speed_at = False, 0.0
    try:
        while True:
            writers.harvest()
            if handed_off_at is not None:
                if closing and writers.pacer is not None and (os.getppid() != driver_pid or
                                                              time.monotonic() >= full_speed_at):
                    writers.unpace()  # the driver has exited: the cores are the server's
                if closing and not writers.busy:
                    return
                if time.monotonic() - handed_off_at > HANDOFF_DEADLINE_S:
                    os._exit(HANDOFF_EXPIRED)  # now, not after the runs in flight: replayed by the next start
            try:
                msg = inbox.get(timeout=0.2 if writers.busy else 1.0)
            except queue.Empty:
                if handed_off_at is None and os.getppid() != driver_pid:
                    raise DriverGone from None
                continue
            if handed_off_at is None and os.getppid() != driver_pid:  # the next driver replays its records
                raise DriverGone
            if msg is None:
                if handed_off_at is not None:
                    closing, full_speed_at = True, time.monotonic() + FULL_SPEED_AFTER_S
                    continue
                writers.drain()
                outbox.put(None)
                return
            if tracker is None:
                tracker = _open_tracker(cfg, study_name, driver, msg, outbox, metric)
                if tracker is None:
                    continue
            if isinstance(msg, TrialRecord) and writers.submit(tracker, msg):
                continue
            if isinstance(msg, _Call) and msg.method == "hand_off":
                reply = _hand_off(tracker, writers, msg, keep=_queue_fds(inbox, outbox),
                                  sentinel=msg.args[0] if msg.args else None)
                handed_off_at = time.monotonic() if reply.value[1] is not None else None
                outbox.put(reply)
                continue
            if not isinstance(msg, _Call) or msg.method in _SEES_CHILD_RUNS:
                writers.drain()  # it sees every child run queued before it written (the order the driver sent)
            outbox.put(_answer(tracker, msg))
    except DriverGone:
        return
    finally:
        writers.shutdown()


_SEES_CHILD_RUNS = frozenset({"ping", "child_runs", "use_parent"})
"""Calls answered only once every child run queued before them is written: waiting for them
(:meth:`TrackingService.finish_trial_logging`), the search a replay makes not to write a run twice, and a
new parent for the runs to come (the writers' shared writer is replaced). The others (the parent run's
records, the model, the search for a dead driver's open runs, which leaves a live driver's alone) are
answered while the child runs are written."""

FULL_SPEED_AFTER_S = 2.0
"""Handed-off child runs keep the pace (against a server on this machine) until the driver has exited (its
end, the cluster's close), or this long after its last call (a driver that goes on: a notebook); then they go
at full speed. The quickstart against a server here, 6 runs each alternating (2026-12-06): full speed from the
hand-over on +0.95 s (median; 3.32-4.88 s), from the driver's exit on +0.79 s (3.43-4.09 s) against local
files; the last run was written 1.3-1.7 s after the command's exit instead of 0.3-1.4 s."""

HANDOFF_EXPIRED = 3
"""The exit code of a handed-off tracking process stopped by :data:`HANDOFF_DEADLINE_S` (0: all written)."""


def _hand_off(tracker: Tracker, writers: _ChildRunPool, msg: _Call, keep: frozenset[int] = frozenset(),
              sentinel: str | None = None) -> _Reply:
    """Take over the child runs still queued, to write after the driver has ended: ``(how many, this
    process's DriverId)``, or ``(how many, None)`` when there are none or too many, or a write failed (the
    driver then waits). ``keep``: the descriptors this process still needs (its queues); ``sentinel``: the
    driver's sentinel pipe (:func:`_detach_from_driver`)."""
    pending = writers.queued
    writer = tracker.trial_writer()
    if not 0 < pending <= HANDOFF_MAX_RUNS or writers.errors or (writer is not None and writer.server_gone):
        return _Reply(msg.id, (pending, None))  # the driver waits, and replays and reports what failed
    if writer is not None:
        writer.outlive_driver()
    writers.detach()
    _detach_from_driver(keep, sentinel)
    return _Reply(msg.id, (pending, str(DriverId.current())))


def _detach_from_driver(keep: frozenset[int] = frozenset(), sentinel: str | None = None) -> None:
    """Outlive the driver without holding anything of it: a session of its own (no terminal's SIGHUP or
    Ctrl-C), its output to /dev/null and no other pipe it inherited but the descriptors ``keep`` and the
    ``sentinel`` pipe, whose end here tells the driver this process exited (closed, the driver's
    ``Process.join(timeout)`` would wait for the exit). Whoever waits for the end
    of one of the driver's pipes must not wait for this process too: a shell pipe or ``subprocess.run``
    reading the output, and the fork server and resource tracker of the local workers, which exit when the
    pipe they were started with closes, and hold the output until then (measured: ``subprocess.run`` of the
    quickstart returned only once this process had written the last child run)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    for fd, pipe in _open_pipes().items():
        if fd not in keep and pipe != sentinel:
            with contextlib.suppress(OSError):
                os.close(fd)


def _open_pipes() -> dict[int, str]:
    """This process's open pipes above the standard streams, as ``{fd: "pipe:[inode]"}`` (Linux ``/proc``;
    none known elsewhere)."""
    pipes = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            if int(name) > 2 and (what := _pipe_of(int(name)) or "").startswith("pipe:"):
                pipes[int(name)] = what
    return pipes


def _pipe_of(fd: int) -> str | None:
    """What ``fd`` is (``pipe:[inode]``), if this can be told (Linux ``/proc``)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _queue_fds(*queues: Any) -> frozenset[int]:
    """The pipe ends of :mod:`multiprocessing` queues (both ends, as a forked process holds them)."""
    fds = set()
    for q in queues:
        for end in ("_reader", "_writer"):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                fds.add(getattr(q, end).fileno())
    return frozenset(fds)


HTTP_WRITERS = 8
"""Child runs written at once to a tracking server. Each costs three requests, and a server spends most of a
request on its store, not on the network. On 2 cores shared with ``mlflow server``, 1,000 runs per setting
(``benchmarks/child_runs.py``, 2026-12-03, bare REST calls): a PostgreSQL store took 26.6 ms per run with 1
writer, 13.5 with 2, 13.6 with 4, 14.7 with 8; a SQLite store 25.0, 18.9, 19.6 and 20.4 (its writers wait on
one file lock). Eight cost 5-8% here and halve the time where round trips dominate: a server across a network
(a run's three round trips shared by 8 writers, not 4) or MLflow's client (an auth plugin, a proxy), with which
4 writers took 69 ms per run and 8 took 48. A local SQLite store is written by one writer: its writes serialize
anyway."""


class _ChildRunPool:
    """Child runs written by a pool of threads (a tracking server), their outcomes put on the outbox as they
    finish; with no threads, nothing is taken and the caller writes in order. With a ``rate`` (a server on
    this machine: :mod:`.pacing`) records are held and released at that rate until :meth:`drain` or
    :meth:`unpace` releases them all."""

    def __init__(self, outbox: Any, threads: int, rate: float | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.outbox: Any = outbox
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="child-run") if threads else None
        self.pending: list[Any] = []
        self.held: collections.deque[tuple[Tracker, TrialRecord]] = collections.deque()
        self.pacer = Pacer(rate) if rate else None
        self.errors = 0  # child runs that could not be written

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.held)

    @property
    def queued(self) -> int:
        """Child runs taken and not yet written (held, or being written)."""
        return len(self.held) + sum(not fut.done() for fut in self.pending)

    def submit(self, tracker: Tracker, record: TrialRecord) -> bool:
        if self.pool is None:
            return False
        tracker.trial_writer(watch_driver=True)  # created once, before the threads share it
        self.held.append((tracker, record))
        self._release()
        return True

    def _release(self, everything: bool = False) -> None:
        """Start writing the held records the pace allows (all of them with ``everything`` or no pace)."""
        assert self.pool is not None or not self.held
        while self.held and (everything or self.pacer is None or self.pacer.take()):
            self.pending.append(self.pool.submit(_answer, *self.held.popleft()))  # type: ignore[union-attr]

    def detach(self) -> None:
        """Write for nobody: the driver is going (:func:`_hand_off`), so outcomes are no longer reported (a
        full pipe nobody reads would block this process's exit)."""
        with contextlib.suppress(AttributeError):
            self.outbox.cancel_join_thread()
        self.outbox = None

    def unpace(self) -> None:
        """Write everything held at full speed from now on."""
        self.pacer = None
        self._release(everything=True)

    def harvest(self, wait: bool = False) -> None:
        """Put the finished outcomes on the outbox; a writer that saw the driver die stops this process."""
        from concurrent.futures import wait as wait_all

        self._release(everything=wait)
        if wait and self.pending:
            wait_all(self.pending)
        left = []
        for fut in self.pending:
            if not fut.done():
                left.append(fut)
                continue
            error = fut.exception()
            if isinstance(error, DriverGone):
                raise DriverGone
            outcome = fut.result() if error is None else (-1, f"{type(error).__name__}: {error}"[:500])
            self.errors += outcome[1] is not None
            if self.outbox is not None:
                self.outbox.put(outcome)
        self.pending = left

    def drain(self) -> None:
        self.harvest(wait=True)

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def _open_tracker(cfg: TrackingConfig, study_name: str, driver: str, msg: _Call | TrialRecord,
                  outbox: Any, metric: str = "mse") -> Tracker | None:
    """The helper's :class:`~pipeline.tracking.Tracker`, or None after answering ``msg`` with why not."""
    if isinstance(msg, TrialRecord):
        outbox.put((msg.number, "no MLflow parent run to log under"))
        return None
    try:
        from ._mlflow_internals import drop_inherited_connections
        from .tracker import Tracker

        drop_inherited_connections()
        # importing MLflow and opening the store can wait for the data pass's workers (see pipeline.background),
        # without the garbage collector walking each module imported so far again (pipeline.gc_pause)
        with collector_paused():
            return run_in_background(lambda: Tracker(cfg, study_name=study_name, driver=driver, metric=metric),
                                     "regsweep-open-mlflow")
    except Exception as e:  # noqa: BLE001 — the store cannot be opened: the caller hears why
        outbox.put(_Reply(msg.id, error=f"{type(e).__name__}: {e}"[:2000], unreachable=is_unreachable(e)))
        return None


def _answer(tracker: Tracker, msg: _Call | TrialRecord) -> Any:
    """What one message gives: a child run's outcome ``(number, error or None)``, or a :class:`_Reply`."""
    if isinstance(msg, TrialRecord):
        return (msg.number, tracker.write_trial(msg, watch_driver=True))
    try:
        value = None if msg.method == "ping" else getattr(tracker, msg.method)(*msg.args, **msg.kwargs)
        return _Reply(msg.id, value)
    except Exception as e:  # noqa: BLE001 — every failure goes back to the caller
        return _Reply(msg.id, error=f"{type(e).__name__}: {e}"[:2000], unreachable=is_unreachable(e))
