"""A sweep's dealings with MLflow, through one object: :class:`SweepTracking`.

Its verbs, in the order a sweep uses them: :meth:`~SweepTracking.open_parent`
(the parent run, created while the first trials run), :meth:`~SweepTracking.log_result`
and :meth:`~SweepTracking.log_failure` (child runs, queued),
:meth:`~SweepTracking.publish` (the model, parameters, metrics and plots, or
saved for later when the server is away), :meth:`~SweepTracking.settle`
(what a dead driver left behind), :meth:`~SweepTracking.close` (flush, replay,
end the parent run); :meth:`~SweepTracking.read_example` reads the model's input
example where MLflow runs.

The tracking process needs 2–3 s from the start to import MLflow and open
the store, about what the cluster start and a data pass of 10⁶ rows take;
the trials need nothing from MLflow (their child runs queue up behind the
parent run's creation). So the creation is sent and the trials start (with a
tracking *server* they wait for it: a server can go away mid-sweep, and
child runs need their parent to ride that out). Once it is answered (looked
at after every trial, never waited for) the parent is recorded in the study
and the sweep's params are sent. An error (a deleted experiment) stops the
sweep as soon as it is seen.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..candidate import Candidate
from ..config import SweepConfig
from ..data import DataPlan
from ..ownership import DriverId
from ..search import TrialResult, TrialStore
from ..signals import uninterrupted
from ..tracking import Pending, Tracking, close_stale_runs, is_http, is_unreachable
from .publication import Publication, unpublished_dir
from .replay import child_record, replay_missing
from .study_links import previous_parent_run, record_parent

__all__ = ["SweepTracking"]

OUTAGE_WAIT_S = 30.0  # at the end of a sweep, how long to wait for a tracking server that is away
STOP_DEADLINE_S = 4.0  # when stopping (SIGTERM, error): the most spent writing the last child runs


class SweepTracking:
    """The sweep's MLflow: parent run, child runs, publication and close (module docstring)."""

    def __init__(self, cfg: SweepConfig, store: TrialStore, tracking: Tracking, echo: Callable[[str], None]) -> None:
        self.cfg, self.store, self.tracking, self.echo = cfg, store, tracking, echo
        self.study = cfg.search.study_name
        self.run_id: str | None = None
        self._created: Pending | None = None
        self._params: dict[str, Any] = {}
        self._tags: dict[str, str] = {}
        self._logged: list[Pending] = []
        self._handed_off: tuple[int, str] | None = None  # child runs left to the tracking process, its id
        self._replayed_for_others = 0  # child runs of dead drivers' trials this sweep queued (settle)
        self._deputies_looked_at: list[str] = []  # dead drivers' exited deputies whose runs settle looked for

    # ------------------------------------------------------------------ parent run
    def open_parent(self, params: dict[str, Any], tags: dict[str, str]) -> None:
        """Ask for the parent run (linked to the previous driver's); with a server, wait for it."""
        self._params, self._tags = params, tags
        run_tags = {"regsweep.kind": "sweep", "regsweep.study": self.study}
        previous = previous_parent_run(self.store)
        if previous:
            run_tags["regsweep.resumed_from"] = previous
        self._created = self.tracking.send("start_parent", f"sweep-{self.study}", run_tags)
        if is_http(self.cfg.tracking.uri):
            self.parent()

    def poll(self) -> None:
        """Take the parent run once the tracking process has created it (never waits for it)."""
        if self.run_id is None and self._created is not None and self._created.ready():
            self._take()

    def parent(self) -> str:
        """The parent run's id, waiting for it if need be."""
        if self.run_id is None:
            self._take()
        assert self.run_id is not None
        return self.run_id

    def _take(self) -> None:
        assert self._created is not None, "open_parent() first"
        _ = self.tracking.experiment_id  # its own error (a deleted experiment) rather than the run's
        parent = str(self._created.result())
        with uninterrupted():  # a stop in between would keep the id but not link it in the study (next start)
            self.run_id = parent
            self.tracking.use_parent(parent)
            record_parent(self.store, parent)
        self._logged = [self.tracking.send("log_params_and_tags", parent, self._params, self._tags)]

    def read_example(self, plan: DataPlan, integer_columns: Sequence[bool]) -> Pending:
        """Start reading the model's input example in the tracking process (Parquet bytes, or its error)."""
        return self.tracking.send("example_parquet", plan, tuple(integer_columns))

    # ------------------------------------------------------------------ child runs
    def log_result(self, r: TrialResult) -> None:
        """Queue a completed trial's child run."""
        self.tracking.log_trial(child_record(r.number, r.candidate, r.metrics(), r.fold_mse, int(r.start * 1000),
                                             int(r.end * 1000), metric=r.metric))
        self.poll()

    def log_failure(self, number: int, cand: Candidate, status: str = "FAILED") -> None:
        """Queue the child run of a trial that failed (``FAILED``) or was stopped (``KILLED``)."""
        now = int(time.time() * 1000)
        self.tracking.log_trial(child_record(number, cand, {}, (), now, now, status=status))

    # ------------------------------------------------------------------ the end
    def publish(self, pub: Publication, draw: Callable[[], None]) -> tuple[str | None, int | None]:
        """Log and register the model; if the server stays away, keep it all on disk for ``sync-tracking``.

        ``draw()`` writes the plots into the publication's artifacts while the
        model is being logged (or before saving, when it cannot be).
        """
        drawn = False

        def meanwhile() -> None:
            nonlocal drawn
            draw()
            drawn = True

        try:
            self.tracking.reachable(wait=OUTAGE_WAIT_S)  # a server being restarted: give it a moment
            uri, version = pub.publish(self.tracking, meanwhile=meanwhile)
        except Exception as e:  # noqa: BLE001 — the study holds the results; keep the rest for later
            if not is_unreachable(e):
                raise
            if not drawn:
                draw()
            where = pub.save(unpublished_dir(self.study))
            self.tracking.not_logged.append(f"best model, parent params, metrics and plots (saved in {where})")
            return None, None
        # an older sweep's results still waiting for the server are superseded: never publish them now
        shutil.rmtree(unpublished_dir(self.study), ignore_errors=True)
        return uri, version

    def settle(self) -> None:
        """Check the params were logged; close what dead drivers left (after the model is logged: a
        driver killed meanwhile is found too)."""
        self.parent()
        # The server may have gone away meanwhile: a sweep does not need MLflow to go on (the study
        # is the record), and the next start or `regsweep sync-tracking` does what is missed.
        if not self._unreachable_ok(lambda: [call.result() for call in self._logged]):
            self.tracking.not_logged.append("the sweep's config params and data fingerprint tag")
        closed: list[str] = []
        replayed = 0

        def clean_up() -> None:
            nonlocal closed, replayed
            gone = self.store.deputies_gone()
            closed = close_stale_runs(self.tracking, self.study, self.store.abandoned)
            replayed = replay_missing(self.tracking, self.store, own=False)
            self._replayed_for_others = replayed
            self._deputies_looked_at = gone

        if not self._unreachable_ok(clean_up):
            self.tracking.not_logged.append("ending a stopped driver's runs and replaying its child runs")
        stale = self.store.stale
        if stale or closed or replayed:
            retried = sum(st.retried for st in stale)
            self.echo(f"Resumed study {self.study!r}: {len(stale)} trials of a stopped driver marked FAIL "
                      f"({retried} queued again), {len(closed)} MLflow runs it left open ended KILLED, "
                      f"{replayed} child runs replayed from the study.")

    @staticmethod
    def _unreachable_ok(step: Callable[[], object]) -> bool:
        """Run ``step``; False if the server could not be reached (any other error is raised)."""
        try:
            step()
        except Exception as e:  # noqa: BLE001
            if not is_unreachable(e):
                raise
            return False
        return True

    def close(self, status: str) -> None:
        """Flush the child runs (or hand them over: :meth:`_hand_off`), replay what an outage dropped if the
        server is back, end the parent run.

        Stopping (``status`` KILLED) waits at most a few seconds in all; a
        SIGTERM arriving during a normal drain still ends the parent run, as
        KILLED. The tracking process is stopped in every case, unless it was
        handed the last child runs.
        """
        stop_by = time.monotonic() + STOP_DEADLINE_S
        try:
            if status == "FINISHED":
                if not self._hand_off():
                    self._drain()
                if self._deputies_looked_at and not self.tracking.failed:  # what they left is in MLflow now
                    with contextlib.suppress(Exception):
                        self.store.forget_deputies(self._deputies_looked_at)
            else:
                self.tracking.finish_trial_logging(timeout=3, deadline=STOP_DEADLINE_S)
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self._take_late_parent(stop_by)
            self._end_parent(status, stop_by)
            self.tracking.close()

    def _take_late_parent(self, stop_by: float) -> None:
        """The parent run's id if it was asked for but not yet taken: it must still be ended.

        Taken after the child runs were flushed, not before: the tracking process answers in order, so its
        answer has arrived by then. A sweep stopped in its first seconds, or on a loaded machine (MLflow
        opens at a lower priority), is stopped before the run exists; waiting for it first spent 2 s of
        the stop's 4 and then left the run RUNNING (the SIGTERM fault test under load, 11 of 12 runs).
        """
        if self.run_id is not None or self._created is None:
            return
        with contextlib.suppress(Exception):
            self.run_id = str(self._created.result(max(0.5, stop_by - time.monotonic())))
            record_parent(self.store, self.run_id)  # so that the next start links to it

    def _hand_off(self) -> bool:
        """Leave the child runs still queued to the tracking process, to write after the sweep returns
        (:meth:`~pipeline.tracking.TrackingService.hand_off`); whether it took them.

        Only against a tracking server that took every record so far, for
        this driver's own trials only (a dead driver's replayed runs are
        waited for: the deputy speaks for this driver alone), and where a
        process left behind outlives the command (:func:`_outlives_command`):
        otherwise the sweep waits, replays and reports as before. The process
        is recorded in the study as this driver's deputy, so a driver started
        meanwhile leaves those trials and runs to it
        (:meth:`~pipeline.search.TrialStore.abandoned`); if it cannot finish
        (killed, the server gone, :data:`~pipeline.tracking.service.HANDOFF_DEADLINE_S`),
        ``regsweep sync-tracking`` or the next ``regsweep sweep`` of the study
        (finished or not: :func:`pipeline.sweep._sync_after_deputies`) replays what is missing.
        """
        cfg = self.cfg.tracking
        if (cfg.wait_for_child_runs or not cfg.log_trials or not is_http(cfg.uri) or self.tracking.failed
                or self.tracking.not_logged or self._replayed_for_others or not _outlives_command()):
            return False
        handed = self.tracking.hand_off()
        if handed is None:
            return False
        self._handed_off = handed
        with contextlib.suppress(Exception):  # the study away: a driver started within seconds may replay one twice
            self.store.record_deputy(handed[1])
        return True

    def _drain(self) -> None:
        self.tracking.finish_trial_logging(timeout=OUTAGE_WAIT_S + 10)
        if self.tracking.failed and self.tracking.reachable(wait=OUTAGE_WAIT_S):
            self.tracking.failed.clear()  # the server came back: write what it missed now
            replay_missing(self.tracking, self.store)
            self.tracking.finish_trial_logging(timeout=OUTAGE_WAIT_S + 10)

    def _end_parent(self, status: str, stop_by: float) -> None:
        if self.run_id is None:  # stopped before the data pass finished: no run was started
            return
        try:  # stopping: within what is left of the deadline (else the next start closes it)
            self.tracking.end_run(self.run_id, status,
                                  deadline_s=None if status == "FINISHED" else max(0.5, stop_by - time.monotonic()))
        except Exception as e:  # noqa: BLE001 — the server may be gone; the next start closes it
            if status == "FINISHED":
                self.tracking.not_logged.append(f"parent run status ({type(e).__name__})")

    def outcome(self) -> dict[str, Any]:
        """What recovery did and what MLflow missed, for the summary."""
        not_logged = list(self.tracking.not_logged) + [msg for n, msg in self.tracking.failed if n < 0]
        return {
            "stale_trials_failed": [st.number for st in self.store.stale],
            "trials_not_logged": sorted(n for n, _ in self.tracking.failed if n >= 0),
            "tracking_incomplete": not_logged,
            **background_writing(self._handed_off),
        }


_BATCH_JOB_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID")
"""Set inside a Slurm, PBS or LSF job, whose end kills every process the job left."""


def _outlives_command() -> bool:
    """Whether a process this one leaves behind keeps running once it has exited. Not as PID 1 (a container's
    first process: its exit ends the container, and every process in it), nor as a child of PID 1 (an init such
    as tini that exits with its one child, or systemd, which stops what a finished service left), nor in a batch
    job (:data:`_BATCH_JOB_VARIABLES`). There the sweep waits for its child runs."""
    if os.getpid() == 1 or os.getppid() == 1:
        return False
    return not any(os.environ.get(name) for name in _BATCH_JOB_VARIABLES)


def background_writing(handed_off: tuple[int, str] | None) -> dict[str, int | None]:
    """The summary's account of child runs left to be written after the sweep returned: how many
    (``trials_logging_in_background``) and by which process (``background_writer_pid``, None if none)."""
    if handed_off is None:
        return {"trials_logging_in_background": 0, "background_writer_pid": None}
    deputy = DriverId.parse(handed_off[1])
    return {"trials_logging_in_background": handed_off[0],
            "background_writer_pid": deputy.pid if deputy is not None else None}
