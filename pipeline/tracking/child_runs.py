"""Child runs of trials, written one record at a time, riding out short outages of the server.

Each child run costs three requests (create, one ``log_batch``, terminate),
sent as bare JSON (:mod:`.rest_runs`) where that sends what MLflow's client
would, else through MLflow's client. A
write is retried for :data:`OUTAGE_S` seconds (a server restart); a retry
first looks for the run it may already have created, so a trial never gets
two child runs. When the server stays away the writer stops waiting and
reports what it could not write; the Optuna study is the record of truth and
``regsweep sync-tracking`` (also run at every sweep start) replays from it
whatever MLflow is missing.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from typing import TYPE_CHECKING

from ..errors import DriverGone
from ..ownership import DriverId
from .health import health_problem, is_http
from .records import DRIVER_TAG, TrialRecord, param_str, quote
from .rest_runs import RestRuns, client_may_differ, rest_runs_for
from .run_sql import sql_child_runs

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["OUTAGE_S", "ChildRunWriter"]

OUTAGE_S = 30.0  # how long one child-run write is retried before the server counts as gone
_PROBE_EVERY_S = 5.0  # while it is gone: how often the writer checks whether it is back


class ChildRunWriter:
    """Writes child runs one record at a time, riding out short outages and failing fast in long ones.

    A write is retried for :data:`OUTAGE_S` s. Once one failed for a whole
    outage window, records fail at once while the server stays away, with a
    ``/health`` probe every :data:`_PROBE_EVERY_S` s. With ``watch_driver``
    (a helper process writing for a driver) it raises
    :class:`~pipeline.errors.DriverGone` if the driver dies meanwhile.
    """

    def __init__(self, client: MlflowClient, uri: str, experiment_id: str, parent: str, study_name: str,
                 driver: str, *, watch_driver: bool = False) -> None:
        self.client, self.uri, self.experiment_id = client, uri, experiment_id
        self.parent, self.study_name, self.driver = parent, study_name, driver
        parsed = DriverId.parse(driver)
        self._driver_pid = parsed.pid if (watch_driver and parsed is not None) else None
        self._gone = False
        self._last_probe = 0.0
        self._sql = sql_child_runs(uri, experiment_id)  # a local SQLite store: one transaction per run
        self._rest = rest_runs_for(uri)  # a tracking server: 1.3 ms of CPU per run, not 8.8 (None for a store)

    @property
    def server_gone(self) -> bool:
        """Whether the last write failed for a whole outage window (records now fail at once)."""
        return self._gone

    def outlive_driver(self) -> None:
        """Keep writing when the driver ends: it handed its last child runs over
        (:meth:`pipeline.tracking.TrackingService.hand_off`)."""
        self._driver_pid = None

    def write(self, rec: TrialRecord) -> str | None:
        """Write ``rec``'s child run; None when written, else why not (at most 500 characters)."""
        if self._gone:  # don't wait out a full outage per record while the server stays away
            if time.monotonic() - self._last_probe < _PROBE_EVERY_S:
                return f"MLflow server {self.uri} unreachable"
            self._last_probe = time.monotonic()
            if health_problem(self.uri, 2.0):
                return f"MLflow server {self.uri} unreachable"
            self._gone = False
        error = self._write_with_retries(rec)
        if error is not None:
            self._gone = is_http(self.uri)
            self._last_probe = time.monotonic()
            return error[:500]
        return None

    def _write_with_retries(self, rec: TrialRecord) -> str | None:
        """Write one child run, retrying for up to :data:`OUTAGE_S` s; returns the last error or None."""
        if self._sql is not None and rec.run_id is None:
            try:
                self._sql.write(f"trial-{rec.number:04d}", self._tags(rec), _params(rec), _metrics(rec),
                                rec.status, rec.start_ms, rec.end_ms)
                return None
            except sqlite3.Error:  # e.g. locked for 30 s: the client's path, with its retries
                pass
        deadline = time.monotonic() + OUTAGE_S
        attempt = 0
        run_id = rec.run_id
        bare = self._rest  # the bare calls, until one fails where MLflow's client may not
        switched_at = -1  # the attempt whose failure handed the record to the client
        while True:
            in_bare = False  # whether a failure below is a bare call's
            try:
                if run_id is None and attempt > 0:  # the failed attempt may have created it after all
                    run_id = self._find(rec.number)
                in_bare = bare is not None
                if run_id is None:
                    run_id = self._create(rec, bare)
                self._fill(run_id, rec, bare)
                if switched_at == attempt - 1 >= 0:  # the client did at once what the bare calls did not:
                    self._rest = None  # it writes from now on (not after an outage: that failed both alike)
                return None
            except Exception as e:  # noqa: BLE001 — never lose the sweep for a log write
                error = f"{type(e).__name__}: {e}"
                if in_bare and client_may_differ(e):
                    bare, switched_at = None, attempt
            attempt += 1
            pause = 0.0 if switched_at == attempt - 1 else min(0.5 * 2 ** (attempt - 1), 4.0)
            if time.monotonic() + pause > deadline:
                return error
            time.sleep(pause)  # none before the client's first try after the bare calls' failure
            if self._driver_pid is not None and os.getppid() != self._driver_pid:
                raise DriverGone  # the driver died during the outage: the next one replays this record

    def _find(self, number: int) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            f"tags.`regsweep.study` = '{quote(self.study_name)}' and tags.`regsweep.trial` = '{number}'",
            max_results=1,
        )
        return str(runs[0].info.run_id) if runs else None

    def _tags(self, rec: TrialRecord) -> dict[str, str]:
        return {"mlflow.parentRunId": rec.parent or self.parent, "regsweep.trial": str(rec.number),
                "regsweep.study": self.study_name, "regsweep.kind": "trial", DRIVER_TAG: self.driver}

    def _create(self, rec: TrialRecord, bare: RestRuns | None) -> str:
        if bare is not None:
            return bare.create(self.experiment_id, f"trial-{rec.number:04d}", rec.start_ms, self._tags(rec))
        run = self.client.create_run(self.experiment_id, start_time=rec.start_ms, tags=self._tags(rec),
                                     run_name=f"trial-{rec.number:04d}")
        return str(run.info.run_id)

    def _fill(self, run_id: str, rec: TrialRecord, bare: RestRuns | None) -> None:
        """Params and metrics in one ``log_batch`` (idempotent: same values again), then the final status."""
        if bare is not None:
            bare.log_batch(run_id, _metrics(rec), _params(rec), rec.end_ms)
            bare.terminate(run_id, rec.status, rec.end_ms)
            return
        from mlflow.entities import Metric, Param

        metrics = [Metric(k, v, rec.end_ms, 0) for k, v in _metrics(rec).items()]
        params = [Param(k, v) for k, v in _params(rec).items()]
        self.client.log_batch(run_id, metrics=metrics, params=params, synchronous=True)
        self.client.set_terminated(run_id, status=rec.status, end_time=rec.end_ms)


def _params(rec: TrialRecord) -> dict[str, str]:
    """A child run's parameters as MLflow stores them (text)."""
    return {k: param_str(v) for k, v in rec.params.items()}


def _metrics(rec: TrialRecord) -> dict[str, float]:
    """A child run's metrics: the finite ones (MLflow would store NaN as a flagged 0)."""
    return {k: float(v) for k, v in rec.metrics.items() if math.isfinite(v)}
