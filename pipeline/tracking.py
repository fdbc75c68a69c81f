"""MLflow: the sweep's parent run, one child run per trial, the best model.

The driver alone talks to MLflow. It checks the tracking server is reachable
and creates the experiment *once*, before any parallel work (concurrent
first-time creation on SQLite can corrupt the file or drop runs into the
Default experiment), then passes ``experiment_id`` around.

Child runs are written by a separate writer process from a queue, so logging
never stalls the trial loop; each costs three requests (create, one
``log_batch``, terminate), retried through short outages. The Optuna study is the record of truth; MLflow mirrors it.

Models are logged with a *loader module* (this module's :func:`_load_pyfunc`)
and a data directory holding ``model.json`` + ``arrays.npz``:
``mlflow.pyfunc.load_model`` then imports regsweep and reads plain data,
never unpickling a Python object.
"""

from __future__ import annotations

import contextlib
import io
import logging
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

__all__ = ["TrackingError", "Tracker", "TrialRecord"]

log = logging.getLogger(__name__)

_PREFLIGHT_TIMEOUT_S = 5.0
MODEL_ARTIFACT = "model"


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


def _quiet_mlflow() -> None:
    # Fail fast instead of MLflow's default minutes of retries; our own preflight names the URI.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Tracker:
    """Thin, failure-aware wrapper over ``mlflow.MlflowClient``."""

    def __init__(self, cfg: TrackingConfig) -> None:
        _quiet_mlflow()
        from mlflow import MlflowClient

        _quiet_mlflow()  # mlflow configures its own loggers on import

        self.cfg = cfg
        self.uri = cfg.uri
        self.client = MlflowClient(tracking_uri=cfg.uri, registry_uri=cfg.uri)
        self.experiment_id: str | None = None
        self._queue: Any = None
        self._results: Any = None
        self._worker: Any = None
        self._parent: str | None = None
        self.failed: list[tuple[int, str]] = []  # (trial number, error) not logged

    # ------------------------------------------------------------ setup
    def preflight(self) -> None:
        """Fail within seconds, naming the URI, if the tracking store is unreachable."""
        if self.uri.startswith(("http://", "https://")):
            url = self.uri.rstrip("/") + "/health"
            try:
                with urllib.request.urlopen(url, timeout=_PREFLIGHT_TIMEOUT_S) as resp:
                    if resp.status != 200:
                        raise TrackingError(f"MLflow server at {self.uri} answered /health with HTTP {resp.status}.")
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise TrackingError(
                    f"MLflow tracking server {self.uri} is unreachable ({reason}); start it, or set "
                    "tracking.uri to a local file such as sqlite:///mlflow.db."
                ) from None
        elif self.uri.startswith("sqlite:///"):
            path = Path(self.uri[len("sqlite:///") :])
            if not path.parent.exists():
                raise TrackingError(
                    f"tracking.uri {self.uri!r}: directory {str(path.parent)!r} does not exist; create it first."
                )

    def ensure_experiment(self) -> str:
        """Get or create the experiment by name, exactly once per process; returns its id."""
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
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
        self._parent = run.info.run_id
        return self._parent

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
        """Start the process that writes child runs (call after :meth:`start_parent`).

        A separate process, not a thread: MLflow's SQLAlchemy store spends
        ~20 ms of Python per child run, which in a thread competes with the
        trial loop for the GIL (measured: 100 trials 3.0 s without child runs,
        5.1 s with them written from a thread).
        """
        import multiprocessing

        if not self.cfg.log_trials:
            return
        assert self._parent is not None and self.experiment_id is not None
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        self._results = ctx.Queue()
        self._worker = ctx.Process(
            target=_write_trials_main,
            args=(self.uri, self.experiment_id, self._parent, self.study_name, self._queue, self._results),
            name="regsweep-mlflow-writer",
            daemon=True,
        )
        self._worker.start()

    def log_trial(self, record: TrialRecord) -> None:
        """Queue one finished trial; returns at once."""
        if not self.cfg.log_trials:
            return
        if self._worker is None:
            self.failed.append((record.number, "trial logging was not started"))
            return
        self._queue.put(record)

    def finish_trial_logging(self, timeout: float = 300.0) -> None:
        """Wait until every queued trial is written (or give up after ``timeout`` s)."""
        if self._worker is None:
            return
        self._queue.put(None)
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.failed.append((-1, f"the MLflow writer did not finish within {timeout:.0f} s"))
                self._worker.terminate()
                break
            if msg is None:
                break
            self.failed.append(msg)
            log.warning("MLflow: trial %d was not logged (%s)", *msg)
        self._worker.join(5)
        self._worker = None

    study_name: str = ""

    # -------------------------------------------------------------- model
    def log_model(
        self, run_id: str, model: FittedModel, input_example: Any, registered_model: str | None,
        version_tags: Mapping[str, str] | None = None, alias: str | None = "candidate",
    ) -> tuple[str, int | None]:
        """Log ``model`` as a pyfunc (loader module, no pickle) on ``run_id``; register it with ``alias``.

        ``alias=None`` registers without moving any alias and without the
        no-op check below (``regsweep retrain`` decides on ``champion`` itself).

        ``input_example`` is a DataFrame of a few rows as the source holds them
        (its dtypes become the signature, so the model accepts the data it was
        trained on). If the current ``candidate`` version carries the same
        ``version_tags`` (same study, best trial and data), nothing new is
        logged or registered: re-running a finished sweep is a no-op.

        Returns ``(model_uri, registered version or None)``.
        """
        import mlflow
        from mlflow.models import Model, infer_signature

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
        with tempfile.TemporaryDirectory() as tmp:
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


def _write_trials_main(
    uri: str, experiment_id: str, parent: str, study_name: str, inbox: Any, outbox: Any
) -> None:
    """Body of the writer process: one child run per record, retried through short outages."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when we stop
    sys.stdout = open(os.devnull, "w")  # MLflow prints two "View run" lines per terminated run
    _quiet_mlflow()
    from mlflow import MlflowClient

    _quiet_mlflow()
    client = MlflowClient(tracking_uri=uri)
    while True:
        rec = inbox.get()
        if rec is None:
            break
        error = None
        for attempt in range(4):
            try:
                _write_trial(client, experiment_id, parent, study_name, rec)
                error = None
                break
            except Exception as e:  # noqa: BLE001 — never lose the sweep for a log write
                error = f"{type(e).__name__}: {e}"
                time.sleep(0.5 * 2**attempt)
        if error is not None:
            outbox.put((rec.number, error[:500]))
    outbox.put(None)


def _write_trial(client: Any, experiment_id: str, parent: str, study_name: str, rec: TrialRecord) -> None:
    """One child run: create, one ``log_batch``, terminate."""
    from mlflow.entities import Metric, Param

    tags = {"mlflow.parentRunId": parent, "regsweep.trial": str(rec.number), "regsweep.study": study_name,
            "regsweep.kind": "trial"}
    run = client.create_run(experiment_id, start_time=rec.start_ms, tags=tags, run_name=f"trial-{rec.number:04d}")
    metrics = [Metric(k, float(v), rec.end_ms, 0) for k, v in rec.metrics.items() if np.isfinite(v)]
    for name, values in rec.fold_metrics.items():
        metrics += [Metric(name, float(v), rec.end_ms, i) for i, v in enumerate(values) if np.isfinite(v)]
    params = [Param(k, _param_str(v)) for k, v in rec.params.items()]
    client.log_batch(run.info.run_id, metrics=metrics, params=params, synchronous=True)
    client.set_terminated(run.info.run_id, status=rec.status, end_time=rec.end_ms)


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
