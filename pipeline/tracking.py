"""MLflow: the sweep's parent run, one child run per trial, the best model.

One :class:`Tracker` per command talks to MLflow (in a sweep it lives in the
tracking process of :mod:`pipeline.tracking_service`, so the driver never
imports MLflow). It checks the tracking server is reachable and creates the
experiment *once*, before any parallel work (concurrent first-time creation
on SQLite can corrupt the file or drop runs into the Default experiment),
then passes ``experiment_id`` around.

Child runs are written by a separate writer process from a queue, so logging
never stalls the trial loop; each costs three requests (create, one
``log_batch``, terminate). A write is retried for :data:`_OUTAGE_S` seconds
(a server restart); a retry first looks for the run it may already have
created, so a trial never gets two child runs. When the server stays away,
the writer stops waiting and reports what it could not write; the Optuna
study is the record of truth, and :func:`pipeline.sync.sync_tracking` (the
``regsweep sync-tracking`` command, also run at every sweep start) replays
from it whatever MLflow is missing.

Every run carries the tag ``regsweep.driver`` (:mod:`pipeline.ownership`):
the next start closes the RUNNING runs of dead drivers as KILLED.

Models are logged with a *loader module* (this module's :func:`_load_pyfunc`)
and a data directory holding ``model.json`` + ``arrays.npz``:
``mlflow.pyfunc.load_model`` then imports regsweep and reads plain data,
never unpickling a Python object.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import queue
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrackingConfig
from .errors import RegsweepError
from .model import FittedModel
from .sqlite_wal import sqlite_path, wal_for_url

__all__ = ["ChildRun", "ChildRunWriter", "TrackingError", "Tracker", "TrialRecord", "is_unreachable", "preflight",
           "reachable"]

log = logging.getLogger(__name__)

_PREFLIGHT_TIMEOUT_S = 5.0
_OUTAGE_S = 30.0  # how long one child-run write is retried before the server counts as gone
_PROBE_EVERY_S = 5.0  # while it is gone: how often the writer checks whether it is back
MODEL_ARTIFACT = "model"
DRIVER_TAG = "regsweep.driver"


class TrackingError(RegsweepError, RuntimeError):
    """MLflow cannot be reached or refuses a write that must not be lost."""


@dataclass(frozen=True)
class TrialRecord:
    """What one finished trial logs as a child run."""

    number: int
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    fold_metrics: Mapping[str, Sequence[float]]  # logged with step = fold
    start_ms: int
    end_ms: int
    status: str = "FINISHED"
    parent: str | None = None  # the parent run (default: this sweep's)
    run_id: str | None = None  # complete this existing run instead of creating one


@dataclass(frozen=True)
class ChildRun:
    """An existing child run of a trial."""

    run_id: str
    status: str


def _quiet_mlflow() -> None:
    # Fail fast instead of MLflow's default minutes of retries; our own preflight names the URI.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Tracker:
    """Thin, failure-aware wrapper over ``mlflow.MlflowClient``."""

    def __init__(self, cfg: TrackingConfig, driver: str | None = None) -> None:
        """``driver``: the regsweep process the runs belong to (default: this one), as
        :class:`~pipeline.ownership.DriverId` text; set when MLflow is driven from a helper process."""
        _quiet_mlflow()
        from mlflow import MlflowClient

        _quiet_mlflow()  # mlflow configures its own loggers on import

        from .ownership import DriverId

        self.cfg = cfg
        self.uri = cfg.uri
        self.driver = driver or str(DriverId.current())
        from .locks import sqlite_setup_lock

        wal_for_url(cfg.uri)  # 14 → 10 ms per child run on SQLite
        with sqlite_setup_lock(cfg.uri):  # creating the registry store migrates a new SQLite file
            self.client = MlflowClient(tracking_uri=cfg.uri, registry_uri=cfg.uri)
        self.experiment_id: str | None = None
        self._queue: Any = None
        self._results: Any = None
        self._worker: Any = None
        self._parent: str | None = None
        self._writer_needs_parent = False
        self.failed: list[tuple[int, str]] = []  # (trial number, error) not logged
        self.not_logged: list[str] = []  # sweep-level writes that did not reach MLflow

    # ------------------------------------------------------------ setup
    def preflight(self) -> None:
        """Fail within seconds, naming the URI, if the tracking store is unreachable."""
        preflight(self.uri)

    def reachable(self, wait: float = 0.0) -> bool:
        """Whether the tracking server answers (always True for a local store), waiting up to ``wait`` s.

        A server being restarted takes a while to answer again (measured: 5–20 s
        for ``mlflow server`` on a busy machine); the end of a sweep waits for it
        up to :data:`_OUTAGE_S` rather than declaring its results unlogged.
        """
        return reachable(self.uri, wait)

    def ensure_experiment(self) -> str:
        """Get or create the experiment by name, exactly once per process; returns its id."""
        from mlflow.exceptions import MlflowException

        from .locks import sqlite_setup_lock

        with sqlite_setup_lock(self.uri):
            return self._ensure_experiment()

    def _ensure_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        name = self.cfg.experiment
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                self.experiment_id = self.client.create_experiment(name)
            except MlflowException:  # another driver created it first
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                self.experiment_id = exp.experiment_id
        else:
            if exp.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"MLflow experiment {name!r} is deleted; restore it or choose another tracking.experiment."
                )
            self.experiment_id = exp.experiment_id
        return self.experiment_id

    # ------------------------------------------------------------ runs
    def start_parent(self, run_name: str, tags: Mapping[str, str]) -> str:
        assert self.experiment_id is not None, "call ensure_experiment() first"
        tags = {DRIVER_TAG: self.driver, **tags}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self._parent = run.info.run_id
        if self._writer_needs_parent:  # the writer started before the run existed: it waits for the id
            self._queue.put(self._parent)
            self._writer_needs_parent = False
        return self._parent

    @property
    def parent_run_id(self) -> str | None:
        """The sweep's parent run (None until :meth:`start_parent`)."""
        return self._parent

    def use_parent(self, run_id: str) -> None:
        """Write child runs under an existing parent run (``sync-tracking``)."""
        self._parent = run_id

    def _search(self, filter_string: str) -> list[Any]:
        """Every run of the experiment matching ``filter_string`` (all pages)."""
        from mlflow.entities import ViewType

        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string, ViewType.ACTIVE_ONLY,
                                           max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def child_runs(self, study_name: str) -> dict[int, ChildRun]:
        """The trial child runs of ``study_name`` in this experiment, by trial number."""
        out: dict[int, ChildRun] = {}
        for run in self._search(f"tags.`regsweep.study` = '{_quote(study_name)}' and tags.`regsweep.kind` = 'trial'"):
            number = run.data.tags.get("regsweep.trial")
            if number is not None and number.lstrip("-").isdigit():
                out.setdefault(int(number), ChildRun(run.info.run_id, run.info.status))
        return out

    def close_stale_runs(self, study_name: str, lease_of: Any) -> list[str]:
        """End as KILLED the RUNNING runs of ``study_name`` whose driver is gone; returns their ids."""
        return close_stale_runs(self, study_name, lease_of)

    def running_runs(self, study_name: str) -> list[tuple[str, str | None]]:
        """``(run id, driver tag)`` of every RUNNING run of ``study_name`` in this experiment."""
        query = f"tags.`regsweep.study` = '{_quote(study_name)}' and attributes.status = 'RUNNING'"
        return [(run.info.run_id, run.data.tags.get(DRIVER_TAG)) for run in self._search(query)]

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _param_str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100], synchronous=True)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and np.isfinite(v)]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000], synchronous=True)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=True)

    def log_artifacts(self, run_id: str, directory: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(directory), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    # -------------------------------------------------- trial child runs
    def start_trial_logging(self) -> None:
        """Start the process that writes child runs (before or after :meth:`start_parent`).

        Started early, before the cluster, it learns the parent run id from
        its queue once the data have passed their checks (bad data leave no
        run behind).

        A separate process, not a thread: MLflow's SQLAlchemy store spends
        ~15 ms of Python per child run, which in a thread competes with the
        trial loop for the GIL (measured: 100 trials 3.0 s without child runs,
        5.1 s with them written from a thread).

        Forked (Linux, and only while this process has a single thread, so no
        lock can be inherited held): the writer starts with MLflow already
        imported, where a spawned one spends ~2 s of CPU importing it again
        while the cluster starts (measured at 10⁶ rows: the sweep 0.8–1.0 s
        shorter, and the writer keeps up with the trials). Otherwise spawned.
        """
        import multiprocessing
        import threading

        if not self.cfg.log_trials:
            return
        assert self.experiment_id is not None
        fork = sys.platform.startswith("linux") and threading.active_count() == 1
        ctx = multiprocessing.get_context("fork" if fork else "spawn")
        sys.stdout.flush()  # a forked child would write out what is still buffered a second time
        sys.stderr.flush()
        self._queue = ctx.Queue()
        self._results = ctx.Queue()
        self._worker = ctx.Process(
            target=_write_trials_main,
            args=(self.uri, self.experiment_id, self._parent, self.study_name, self._queue, self._results,
                  self.driver),
            name="regsweep-mlflow-writer",
            daemon=True,
        )
        self._worker.start()
        self._writer_needs_parent = self._parent is None

    def log_trial(self, record: TrialRecord) -> None:
        """Queue one finished trial; returns at once."""
        if not self.cfg.log_trials:
            return
        if self._worker is None:
            self.failed.append((record.number, "trial logging was not started"))
            return
        self._queue.put(record)

    def finish_trial_logging(self, timeout: float = 300.0, deadline: float | None = None) -> None:
        """Wait until every queued trial is written, or until the writer made no progress for ``timeout`` s.

        The writer reports every record (written or not), so a long queue
        draining slowly (a busy server) is waited for, and a stuck writer is
        not. ``deadline`` (seconds from now) bounds the whole wait, for a
        process that must exit promptly (SIGTERM); whatever is left unwritten
        is replayed from the study at the next start.
        """
        if self._worker is None:
            return
        if self._writer_needs_parent:  # no parent run was started: nothing to write, no need to wait for it
            self.abandon_trial_logging()
            return
        if not self._worker.is_alive():
            self.failed.append((-1, "the MLflow writer process died"))
            self._worker = None
            return
        self._queue.put(None)
        end = time.monotonic() + (deadline if deadline is not None else math.inf)
        while True:
            try:
                msg = self._results.get(timeout=max(0.01, min(timeout, end - time.monotonic())))
            except queue.Empty:
                why = "made no progress for" if time.monotonic() < end else "was stopped after"
                self.failed.append((-1, f"the MLflow writer {why} {min(timeout, deadline or timeout):.0f} s"))
                break
            if msg is None:
                break
            if msg[1] is not None:
                self.failed.append(msg)
                log.warning("MLflow: trial %d was not logged (%s)", *msg)
        self.abandon_trial_logging(grace=1.0)

    def abandon_trial_logging(self, grace: float = 0.0) -> None:
        """Stop the writer process now (after ``grace`` s for it to exit by itself); safe to call twice.

        SIGKILL, because the writer ignores SIGTERM (see :func:`_write_trials_main`);
        a writer left alive would block this process's exit, since multiprocessing
        joins its children at exit.
        """
        if self._worker is None:
            return
        self._worker.join(grace)
        if self._worker.is_alive():
            self._worker.kill()
            self._worker.join(5)
        self._worker = None
        for q in (self._queue, self._results):
            q.cancel_join_thread()  # the reader is gone: never wait for a full pipe
            q.close()  # its semaphores are released when it is collected, not at a fast exit (cli.entry)
        self._queue = self._results = None

    study_name: str = ""

    # -------------------------------------------------------------- model
    def log_model(
        self, run_id: str, model: FittedModel, input_example: Any, registered_model: str | None,
        version_tags: Mapping[str, str] | None = None, alias: str | None = "candidate",
    ) -> tuple[str, int | None]:
        """Log ``model`` as a pyfunc (loader module, no pickle) on ``run_id``; register it with ``alias``.

        ``alias=None`` registers without moving any alias and without the
        no-op check below (``regsweep retrain`` decides on ``champion`` itself).

        ``input_example`` is a DataFrame (or its Parquet bytes) of a few rows as the
        source holds them (its dtypes become the signature, so the model accepts the data it was
        trained on). If the current ``candidate`` version carries the same
        ``version_tags`` (same study, best trial and data), nothing new is
        logged or registered: re-running a finished sweep is a no-op.

        Returns ``(model_uri, registered version or None)``.
        """
        import mlflow
        from mlflow.models import Model, infer_signature

        if isinstance(input_example, bytes):  # Parquet, as a sweep's driver passes it on
            import pandas as pd

            input_example = pd.read_parquet(io.BytesIO(input_example))
        tags = dict(version_tags or {})
        if registered_model and tags and alias == "candidate":
            current = self._candidate(registered_model)
            if current is not None and all(current.tags.get(k) == v for k, v in tags.items()):
                return str(current.source), int(current.version)
        with warnings.catch_warnings():
            # MLflow hints that integer columns cannot hold missing values: regsweep rejects those anyway
            warnings.simplefilter("ignore", UserWarning)
            signature = infer_signature(input_example, model.predict(input_example))
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        with tempfile.TemporaryDirectory() as tmp, _no_installed_package_scan():
            data_dir = model.save(Path(tmp) / "regsweep_model")
            info = Model.log(
                artifact_path=None,
                name=MODEL_ARTIFACT,
                flavor=mlflow.pyfunc,
                run_id=run_id,  # not mlflow.start_run(run_id): leaving it would end the parent run
                loader_module="pipeline.tracking",
                data_path=str(data_dir),
                signature=signature,
                input_example=input_example,
                pip_requirements=[f"regsweep=={_version()}"],
            )
        version = None
        if registered_model:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                mv = mlflow.register_model(info.model_uri, registered_model, await_registration_for=30, tags=tags)
            version = int(mv.version)
            if alias:
                self.client.set_registered_model_alias(registered_model, alias, str(version))
        return info.model_uri, version

    def _candidate(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, "candidate")
        except MlflowException:
            return None


def close_stale_runs(tracker: Any, study_name: str, lease_of: Any) -> list[str]:
    """End as KILLED the RUNNING runs of ``study_name`` whose driver is gone; returns their ids.

    ``tracker``: a :class:`Tracker` or the sweep's
    :class:`~pipeline.tracking_service.TrackingService` (``running_runs``,
    ``end_run``, ``parent_run_id``). ``lease_of(driver)`` gives the last lease
    renewal of a driver (or None): runs of drivers on other hosts are closed
    only once their lease expired.
    """
    from .ownership import is_stale

    closed = []
    for run_id, owner in tracker.running_runs(study_name):
        if run_id != tracker.parent_run_id and is_stale(owner, lease_of(owner)):
            tracker.end_run(run_id, "KILLED")
            closed.append(run_id)
    return closed


def reachable(uri: str, wait: float = 0.0) -> bool:
    """Whether the tracking server at ``uri`` answers (True for a local store), waiting up to ``wait`` s."""
    if not uri.startswith(("http://", "https://")):
        return True
    deadline = time.monotonic() + wait
    while _health_problem(uri, 2.0) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(1.0)
    return True


def preflight(uri: str) -> None:
    """Fail within seconds, naming the URI, if the tracking store is unreachable.

    Plain ``urllib`` (MLflow's client retries for minutes, and importing MLflow
    alone takes seconds): the first thing a sweep does.
    """
    if uri.startswith(("http://", "https://")):
        problem = _health_problem(uri, _PREFLIGHT_TIMEOUT_S)
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


def _write_trials_main(
    uri: str, experiment_id: str, parent: str | None, study_name: str, inbox: Any, outbox: Any, driver: str
) -> None:
    """Body of the writer process: one child run per record, retried through short outages.

    Stops when the driver says so (``None``) or dies (its parent PID changes):
    a driver killed with SIGKILL cannot say so, and what was left unwritten is
    replayed from the study at the next start.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a SIGTERM to the whole group: write the KILLED runs first
    sys.stdout = open(os.devnull, "w")  # MLflow prints two "View run" lines per terminated run
    _quiet_mlflow()
    from mlflow import MlflowClient

    _quiet_mlflow()
    client = MlflowClient(tracking_uri=uri)
    _drop_inherited_connections()
    driver_pid = int(driver.rsplit("/", 2)[1])

    def receive() -> Any:
        """The next message; ``_DriverGone`` once the driver process has died (checked before each one:
        records still queued by a dead driver are replayed by the next one, so writing them would duplicate)."""
        while True:
            if os.getppid() != driver_pid:
                raise _DriverGone
            try:
                return inbox.get(timeout=1.0)
            except queue.Empty:
                continue

    try:
        if parent is None:  # started before the parent run: its id comes first (None: stopped before any run)
            parent = receive()
            if parent is None:
                outbox.put(None)
                return
        _write_loop(client, uri, experiment_id, parent, study_name, driver, receive, outbox)
    except _DriverGone:
        return


def _drop_inherited_connections() -> None:
    """In a forked writer: leave the driver's pooled database connections alone and open new ones.

    MLflow keeps one SQLAlchemy engine per database URI for the whole process,
    so a forked child inherits the driver's pool, whose SQLite or PostgreSQL
    connections must never be used by two processes. ``dispose(close=False)``
    is SQLAlchemy's recipe for a forked child: a fresh pool, the inherited
    connections dropped without closing them under the driver. (HTTP sessions
    need nothing: MLflow keys them by PID.) A no-op in a spawned writer.
    """
    for module, cls in (("mlflow.store.tracking.sqlalchemy_store", "SqlAlchemyStore"),
                        ("mlflow.store.model_registry.sqlalchemy_store", "SqlAlchemyStore")):
        engines = getattr(getattr(sys.modules.get(module), cls, None), "_engine_map", {})
        for engine in list(engines.values()):
            engine.dispose(close=False)


class _DriverGone(Exception):
    """The driver died (SIGKILL): the writer stops; the next start replays from the study."""


def _write_loop(client: Any, uri: str, experiment_id: str, parent: str, study_name: str, driver: str,
                receive: Any, outbox: Any) -> None:
    """One child run per record until ``None``; each record's outcome goes to ``outbox``."""
    writer = ChildRunWriter(client, uri, experiment_id, parent, study_name, driver)
    while (rec := receive()) is not None:
        outbox.put((rec.number, writer.write(rec)))  # progress, or what failed
    outbox.put(None)


class ChildRunWriter:
    """Writes child runs one record at a time, riding out short outages and failing fast in long ones.

    A write is retried for :data:`_OUTAGE_S` s. Once one failed for a whole
    outage window, records fail at once while the server stays away, with a
    ``/health`` probe every :data:`_PROBE_EVERY_S` s. Raises ``_DriverGone``
    if the driver dies meanwhile.
    """

    def __init__(self, client: Any, uri: str, experiment_id: str, parent: str, study_name: str,
                 driver: str) -> None:
        self.client, self.uri, self.experiment_id = client, uri, experiment_id
        self.parent, self.study_name, self.driver = parent, study_name, driver
        self._http = uri.startswith(("http://", "https://"))
        self._gone = False
        self._last_probe = 0.0

    def write(self, rec: TrialRecord) -> str | None:
        """Write ``rec``'s child run; None when written, else why not (at most 500 characters)."""
        if self._gone:  # don't wait out a full outage per record while the server stays away
            if time.monotonic() - self._last_probe < _PROBE_EVERY_S:
                return f"MLflow server {self.uri} unreachable"
            self._last_probe = time.monotonic()
            if _health_problem(self.uri, 2.0):
                return f"MLflow server {self.uri} unreachable"
            self._gone = False
        error = _write_with_retries(self.client, self.experiment_id, self.parent, self.study_name, self.driver, rec)
        if error is not None:
            self._gone = self._http
            self._last_probe = time.monotonic()
            return error[:500]
        return None


def _write_with_retries(
    client: Any, experiment_id: str, parent: str, study_name: str, driver: str, rec: TrialRecord
) -> str | None:
    """Write one child run, retrying for up to :data:`_OUTAGE_S` s; returns the last error or None."""
    deadline = time.monotonic() + _OUTAGE_S
    driver_pid = int(driver.rsplit("/", 2)[1])
    attempt = 0
    run_id = rec.run_id
    while True:
        try:
            if run_id is None and attempt > 0:  # the failed attempt may have created it after all
                run_id = _find_child(client, experiment_id, study_name, rec.number)
            if run_id is None:
                run_id = _create_child(client, experiment_id, rec.parent or parent, study_name, driver, rec)
            _fill_child(client, run_id, rec)
            return None
        except Exception as e:  # noqa: BLE001 — never lose the sweep for a log write
            error = f"{type(e).__name__}: {e}"
        attempt += 1
        pause = min(0.5 * 2 ** (attempt - 1), 4.0)
        if time.monotonic() + pause > deadline:
            return error
        time.sleep(pause)
        if os.getppid() != driver_pid:  # the driver died during the outage: the next one replays this record
            raise _DriverGone


def _find_child(client: Any, experiment_id: str, study_name: str, number: int) -> str | None:
    runs = client.search_runs(
        [experiment_id],
        f"tags.`regsweep.study` = '{_quote(study_name)}' and tags.`regsweep.trial` = '{number}'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _create_child(client: Any, experiment_id: str, parent: str, study_name: str, driver: str,
                  rec: TrialRecord) -> str:
    tags = {"mlflow.parentRunId": parent, "regsweep.trial": str(rec.number), "regsweep.study": study_name,
            "regsweep.kind": "trial", DRIVER_TAG: driver}
    run = client.create_run(experiment_id, start_time=rec.start_ms, tags=tags, run_name=f"trial-{rec.number:04d}")
    return str(run.info.run_id)


def _fill_child(client: Any, run_id: str, rec: TrialRecord) -> None:
    """Params and metrics in one ``log_batch`` (idempotent: same values again), then the final status."""
    from mlflow.entities import Metric, Param

    metrics = [Metric(k, float(v), rec.end_ms, 0) for k, v in rec.metrics.items() if np.isfinite(v)]
    for name, values in rec.fold_metrics.items():
        metrics += [Metric(name, float(v), rec.end_ms, i) for i, v in enumerate(values) if np.isfinite(v)]
    params = [Param(k, _param_str(v)) for k, v in rec.params.items()]
    client.log_batch(run_id, metrics=metrics, params=params, synchronous=True)
    client.set_terminated(run_id, status=rec.status, end_time=rec.end_ms)


def _health_problem(uri: str, timeout: float) -> str | None:
    """None if the MLflow server at ``uri`` answers ``/health``; otherwise what went wrong."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status} from /health"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} from /health"
    except (urllib.error.URLError, OSError) as e:
        return str(getattr(e, "reason", e))


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the tracking server could not be reached (as opposed to a refused write)."""
    known = getattr(exc, "unreachable", None)  # decided where the call ran (tracking_service)
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


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


@contextlib.contextmanager
def _no_installed_package_scan() -> Any:
    """Spare ``Model.log`` MLflow's scan of every installed distribution (0.6 s of CPU per process).

    Given explicit ``pip_requirements`` (``regsweep==<this version>``), MLflow
    still checks that this environment satisfies them, which first maps every
    module of every installed distribution to its package
    (``importlib_metadata.packages_distributions``). For the one requirement
    regsweep writes, the answer is known: this process runs it. While logging,
    the map MLflow builds lazily is given the one entry it will look up; it is
    put back as it was afterwards, so that anything else in this process still
    builds the full map when it needs it. If MLflow renames its cache, this is
    a no-op and the scan simply runs.
    """
    try:
        from mlflow.utils import requirements_utils as ru
    except ImportError:  # pragma: no cover - MLflow is a dependency
        yield
        return
    if getattr(ru, "_MODULES_TO_PACKAGES", ...) is not None:  # built already, or no such cache
        yield
        return
    ru._MODULES_TO_PACKAGES = {"pipeline": ["regsweep"]}
    try:
        yield
    finally:
        ru._MODULES_TO_PACKAGES = None
        ru._PACKAGES_TO_MODULES = None


def _version() -> str:
    from . import __version__

    return __version__


def _param_str(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 6000 else s[:5997] + "..."


class _PyfuncModel:
    """What ``mlflow.pyfunc.load_model`` returns for a regsweep model."""

    def __init__(self, model: FittedModel) -> None:
        self.model = model

    def predict(self, model_input: Any, params: dict | None = None) -> np.ndarray:
        return self.model.predict(model_input)


def _load_pyfunc(data_path: str) -> _PyfuncModel:
    """MLflow's loader-module hook: read ``model.json`` + ``arrays.npz`` (no pickle)."""
    return _PyfuncModel(FittedModel.load(data_path))
