"""MLflow from this process: :class:`Tracker`, a thin, failure-aware wrapper over ``MlflowClient``.

It creates the experiment *once*, before any parallel work (concurrent
first-time creation on SQLite can corrupt the file or drop runs into the
Default experiment), then passes ``experiment_id`` around. Every run carries
the tag ``regsweep.driver`` (:mod:`pipeline.ownership`): the next start closes
the RUNNING runs of dead drivers as KILLED. A sweep's driver uses it through
:class:`~pipeline.tracking.TrackingService`, which runs one in a helper
process; ``sync-tracking`` and ``retrain`` use it directly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import TrackingConfig
from ..data import DataPlan, example_parquet
from ..errors import TrackingError
from ..gc_pause import collector_paused
from ..locks import sqlite_setup_lock
from ..model import FittedModel
from ..ownership import DriverId
from ..sqlite_wal import wal_for_url
from ._mlflow_internals import artifact_repository, drop_engine
from .child_runs import ChildRunWriter
from .connections import close_connections, keepalive_stalls
from .health import is_http, preflight, reachable
from .models import log_model, log_run_metrics
from .protocol import Done, Pending
from .records import DRIVER_TAG, ChildRun, TrialRecord, param_str, quote
from .schema_cache import discard_seed, save_schema, seed_store
from .views import experiment_tags

if TYPE_CHECKING:
    from mlflow.entities import Run

__all__ = ["Tracker", "quiet_mlflow"]


def quiet_mlflow() -> None:
    """Fail fast instead of MLflow's default minutes of retries; regsweep's preflight names the URI."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    # set_terminated would fetch the run again only to print its URL (one more request per child run)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Tracker:
    """MLflow in this process; satisfies :class:`~pipeline.tracking.Tracking`.

    ``study_name`` tags the child runs it writes; ``driver`` is the regsweep
    process the runs belong to (default: this one), as
    :class:`~pipeline.ownership.DriverId` text, set when MLflow is driven from
    a helper process. Child runs are written at once, in this process.
    """

    def __init__(self, cfg: TrackingConfig, study_name: str = "", driver: str | None = None,
                 metric: str = "mse") -> None:
        quiet_mlflow()
        from mlflow import MlflowClient

        quiet_mlflow()  # mlflow configures its own loggers on import
        self.cfg, self.uri, self.study_name, self.metric = cfg, cfg.uri, study_name, metric
        self.driver = driver or str(DriverId.current())
        wal_for_url(cfg.uri)  # 14 → 10 ms per child run on SQLite
        with sqlite_setup_lock(cfg.uri):  # creating the store migrates a new SQLite file (or seeds it)
            self.client = _open_client(MlflowClient, cfg.uri)
        # a server that stalls kept-alive requests (~40 ms each): a new connection per request (.connections)
        self.closes_connections = is_http(cfg.uri) and keepalive_stalls(cfg.uri) and close_connections()
        self._experiment_id: str | None = None
        self._parent: str | None = None
        self._artifact_uris: dict[str, str] = {}  # of the runs created here, by run id
        self._writer: ChildRunWriter | None = None
        self.failed: list[tuple[int, str]] = []
        self.not_logged: list[str] = []

    # ------------------------------------------------------------ experiment
    def preflight(self) -> None:
        """Fail within seconds, naming the URI, if the tracking store is unreachable."""
        preflight(self.uri)

    @property
    def experiment_id(self) -> str:
        """The experiment's id, got or created on first use."""
        if self._experiment_id is None:
            with sqlite_setup_lock(self.uri):
                self._experiment_id = self._get_or_create_experiment()
        return self._experiment_id

    def ensure_experiment(self) -> str:
        """Get or create the experiment now; returns its id."""
        return self.experiment_id

    def check_experiment(self) -> None:
        """Nothing to check: in this process an experiment error is raised where it happens."""

    def _get_or_create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        name = self.cfg.experiment
        exp = self.client.get_experiment_by_name(name)
        tags = experiment_tags(self.study_name, self.metric) if self.study_name else {}
        if exp is None:
            try:
                return str(self.client.create_experiment(name, tags=tags))
            except MlflowException:  # another driver created it first
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {name!r} is deleted; restore it or choose another tracking.experiment."
            )
        for key, value in tags.items():  # an experiment of an earlier version, or of another study
            if exp.tags.get(key) != value:
                self.client.set_experiment_tag(exp.experiment_id, key, value)
        return str(exp.experiment_id)

    # ------------------------------------------------------------ runs
    def send(self, method: str, *args: Any, **kwargs: Any) -> Pending:
        """Run ``<method>(*args, **kwargs)`` now; its outcome as a finished :class:`Pending`."""
        try:
            return Done(getattr(self, method)(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 — raised again by result(), as the tracking process does
            return Done(error=e)

    def start_parent(self, run_name: str, tags: Mapping[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={DRIVER_TAG: self.driver, **tags})
        self._artifact_uris[str(run.info.run_id)] = str(run.info.artifact_uri)
        self.use_parent(str(run.info.run_id))
        return str(run.info.run_id)

    @property
    def parent_run_id(self) -> str | None:
        return self._parent

    def use_parent(self, run_id: str) -> None:
        self._parent = run_id
        self._writer = None

    def reachable(self, wait: float = 0.0) -> bool:
        return reachable(self.uri, wait)

    def run_exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:
            return False
        return True

    def _search(self, filter_string: str) -> list[Run]:
        """Every run of the experiment matching ``filter_string`` (all pages)."""
        from mlflow.entities import ViewType

        runs: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string, ViewType.ACTIVE_ONLY,
                                           max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def child_runs(self, study_name: str) -> dict[int, ChildRun]:
        out: dict[int, ChildRun] = {}
        for run in self._search(f"tags.`regsweep.study` = '{quote(study_name)}' and tags.`regsweep.kind` = 'trial'"):
            number = run.data.tags.get("regsweep.trial")
            if number is not None and number.lstrip("-").isdigit():
                out.setdefault(int(number), ChildRun(run.info.run_id, run.info.status))
        return out

    def running_runs(self, study_name: str) -> list[tuple[str, str | None]]:
        query = f"tags.`regsweep.study` = '{quote(study_name)}' and attributes.status = 'RUNNING'"
        return [(run.info.run_id, run.data.tags.get(DRIVER_TAG)) for run in self._search(query)]

    def log_params_and_tags(self, run_id: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        """``params`` and ``tags`` on ``run_id`` in one ``log_batch``, which MLflow's client sends as one request
        per 100 of each (its limit), pairing them: against a tracking server one request where a ``log_params``
        and a ``set_tags`` take two. Refused together: a param MLflow refuses leaves the tags unwritten too."""
        from mlflow.entities import Param, RunTag

        if params or tags:
            self.client.log_batch(run_id, params=[Param(k, param_str(v)) for k, v in params.items()],
                                  tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=True)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.log_params_and_tags(run_id, params, {})

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        log_run_metrics(self.client, run_id, metrics, step)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.log_params_and_tags(run_id, {}, tags)

    def log_artifacts(self, run_id: str, directory: str | Path, artifact_path: str | None = None) -> None:
        """The files under ``directory`` in the run's artifacts. For a run this tracker created, written to
        the artifact location it was given then: ``MlflowClient.log_artifacts`` reads the run again to find
        it (one more request to a server); for any other run, through the client."""
        location = self._artifact_uris.get(run_id)
        repository = artifact_repository(location, self.uri) if location is not None else None
        if repository is None:
            self.client.log_artifacts(run_id, str(directory), artifact_path)
        else:
            repository.log_artifacts(str(directory), artifact_path)

    def example_parquet(self, plan: DataPlan, integer_columns: Sequence[bool]) -> bytes:
        """The model's input example (:func:`pipeline.data.example_parquet`), read in this process.

        A sweep asks its MLflow process for it as the trials start: MLflow has
        imported pandas and pyarrow there already, where a worker reading it
        first imports them (0.3–0.4 s, the fold fits of the first trials queued
        behind) and the driver would take the time from the search.
        """
        return example_parquet(plan, integer_columns)

    def log_model(self, run_id: str, model: FittedModel, input_example: Any, registered_model: str | None,
                  version_tags: Mapping[str, str] | None = None, alias: str | None = "candidate",
                  metrics: Mapping[str, float] | None = None) -> tuple[str, int | None]:
        """:func:`.models.log_model` on this store (``metrics``: the run's, linked to the model)."""
        with collector_paused():  # MLflow's first use of its model modules (pipeline.gc_pause)
            return log_model(self.client, self.uri, self.experiment_id, run_id, model, input_example,
                             registered_model, version_tags, alias, metrics)

    def end_run(self, run_id: str, status: str = "FINISHED", deadline_s: float | None = None) -> None:
        self.client.set_terminated(run_id, status=status)

    # ------------------------------------------------------------ child runs
    def trial_writer(self, *, watch_driver: bool = False) -> ChildRunWriter | None:
        """The writer of this sweep's child runs (None before the parent run exists); made once."""
        if self._parent is not None and self._writer is None:
            self._writer = ChildRunWriter(self.client, self.uri, self.experiment_id, self._parent,
                                          self.study_name, self.driver, watch_driver=watch_driver)
        return self._writer

    def write_trial(self, record: TrialRecord, *, watch_driver: bool = False) -> str | None:
        """Write one child run now (several threads may, through one writer); None when written, else why not."""
        writer = self.trial_writer(watch_driver=watch_driver)
        if writer is None:
            return "no MLflow parent run to log under"
        return writer.write(record)

    def log_trial(self, record: TrialRecord) -> None:
        if not self.cfg.log_trials:
            return
        error = self.write_trial(record)
        if error is not None:
            self.failed.append((record.number, error))

    def log_trials(self, records: Sequence[TrialRecord], writers: int | None = None) -> None:
        """Write ``records``' child runs now: against a tracking server ``writers`` at a time (default: as many
        as a sweep's tracking process, :data:`.service.HTTP_WRITERS`; threads through one
        :class:`.child_runs.ChildRunWriter`: the server spends most of a request on its store, and a writer
        waits for each answer), into a local store one by one (its writes serialize anyway)."""
        if not self.cfg.log_trials:
            return
        if writers is None:
            from .service import HTTP_WRITERS

            writers = HTTP_WRITERS
        if writers <= 1 or len(records) < 2 or not is_http(self.uri):
            for record in records:
                self.log_trial(record)
            return
        from concurrent.futures import ThreadPoolExecutor

        self.trial_writer()  # made once, before the threads share it
        with ThreadPoolExecutor(min(writers, len(records)), thread_name_prefix="regsweep-replay") as pool:
            for record, error in zip(records, pool.map(self.write_trial, records)):
                if error is not None:
                    self.failed.append((record.number, error))

    def finish_trial_logging(self, timeout: float = 300.0, deadline: float | None = None) -> None:
        """Nothing queued: child runs are written when logged."""

    def hand_off(self) -> tuple[int, str] | None:
        """Nothing is queued: child runs are written when logged."""
        return None

    def close(self) -> None:
        """Nothing to release."""


def _open_client(client_class: Any, uri: str) -> Any:
    """``MlflowClient`` on ``uri`` (tracking and registry); a new SQLite store starts from the cached empty
    schema, or, when none is cached yet, is migrated by MLflow and then cached (:mod:`.schema_cache`)."""
    from mlflow.exceptions import MlflowException

    state = seed_store(uri)
    try:
        client = client_class(tracking_uri=uri, registry_uri=uri)
    except MlflowException:
        if state != "seeded":
            raise
        drop_engine(uri)  # its pooled connection holds the refused file
        discard_seed(uri)  # a cached copy MLflow does not accept: migrate as without it
        state = seed_store(uri)
        client = client_class(tracking_uri=uri, registry_uri=uri)
    if state == "new":
        save_schema(uri)
    return client
