"""Keep MLflow in step with the Optuna study, the record of truth.

Two jobs, both idempotent:

* :func:`replay_missing`: every finished trial of a dead (or this) driver that
  has no child run, or whose child run was left unfinished, gets one. It runs
  at every sweep start (what a killed driver left unwritten) and in
  ``regsweep sync-tracking``.
* :class:`Publication`: what a sweep logs at its end (parent params and
  metrics, artifacts, the model and its registration). If the tracking server
  is unreachable then, it is saved under ``.regsweep/unpublished/<study>/``
  and ``regsweep sync-tracking`` publishes it later.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import FittedModel
from .ownership import is_stale
from .search import OWNER_ATTR, PARENT_RUN_ATTR, TrialStore
from .tracking import Tracker, TrialRecord

__all__ = ["Publication", "UNPUBLISHED_DIR", "record_from_trial", "replay_missing", "sync_tracking"]

UNPUBLISHED_DIR = Path(".regsweep") / "unpublished"


def trial_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as logged: the penalty, then λ1 and/or λ2 (only those it has)."""
    return {k: params[k] for k in ("penalty", "lambda1", "lambda2") if k in params}


def record_from_trial(trial: Any, status: str | None = None, parent: str | None = None) -> TrialRecord:
    """The child-run record of a finished study trial (``optuna.trial.FrozenTrial``) under ``parent``
    (default: the parent run of the trial's driver, or the writer's own)."""
    from optuna.trial import TrialState

    cv = dict(trial.user_attrs.get("cv", {}))
    fold = cv.pop("fold_mse", [])
    metrics = {k: float(v) for k, v in cv.items() if isinstance(v, int | float)}
    if trial.state == TrialState.COMPLETE:
        metrics["cv_mse"] = float(trial.value)
    start = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    end = trial.datetime_complete.timestamp() if trial.datetime_complete else start
    return TrialRecord(
        number=trial.number,
        params=trial_params(trial.params),
        metrics=metrics,
        fold_metrics={"fold_mse": fold} if fold else {},
        start_ms=int(start * 1000),
        end_ms=int(end * 1000),
        status=status or ("FINISHED" if trial.state == TrialState.COMPLETE else "FAILED"),
        parent=parent or trial.system_attrs.get(PARENT_RUN_ATTR),
    )


def _unfinished(status: str, *, complete: bool) -> bool:
    """A COMPLETE trial's run must be FINISHED; a failed trial's run just must not stay RUNNING."""
    return status != "FINISHED" if complete else status == "RUNNING"


def replay_missing(tracker: Tracker, store: TrialStore, *, own: bool = True) -> int:
    """Queue a child run for each finished trial MLflow lacks; returns how many were queued.

    Trials of drivers still alive are theirs to log, and are skipped; so are
    this driver's own with ``own=False`` (a sweep whose trials are running:
    their child runs are queued already). A child run left RUNNING by a
    killed writer is completed in place, never duplicated.
    """
    from optuna.trial import TrialState

    existing = tracker.child_runs(store.study.study_name)
    parent_of = store.parent_of()
    queued = 0
    for t in store.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        owner = t.system_attrs.get(OWNER_ATTR)
        if owner == str(store.driver) and not own:
            continue
        if owner is not None and owner != str(store.driver) and not is_stale(owner, store.lease_of(owner)):
            continue
        run = existing.get(t.number)
        if run is None:
            tracker.log_trial(record_from_trial(t, parent=parent_of(t)))
        elif _unfinished(run.status, complete=t.state == TrialState.COMPLETE):
            tracker.log_trial(dataclasses.replace(record_from_trial(t, parent=parent_of(t)), run_id=run.run_id))
        else:
            continue
        queued += 1
    return queued


@dataclass
class Publication:
    """Everything a finished sweep writes to MLflow at its end; can wait on disk for the server."""

    parent_run: str
    registered_model: str | None
    model: FittedModel
    example: bytes  # Parquet: a few rows with the source's column types
    version_tags: dict[str, str]
    params: dict[str, Any]
    metrics: dict[str, float | None]
    artifacts: Path  # a directory
    result: dict[str, Any] = field(default_factory=dict)

    def publish(self, tracker: Any, meanwhile: Callable[[], None] = lambda: None) -> tuple[str, int | None]:
        """Log it all on the parent run and register the model; returns (model URI, version).

        ``meanwhile`` runs before the artifacts are logged: with a
        :class:`~pipeline.tracking_service.TrackingService` (which has ``send``)
        while the tracking process logs the parameters, metrics and model
        (0.5–1 s of MLflow), so the driver can draw the plots then.
        """
        metrics = {k: v for k, v in self.metrics.items() if v is not None}
        send = getattr(tracker, "send", None)
        if send is None:  # an in-process Tracker
            meanwhile()
            tracker.log_params(self.parent_run, self.params)
            tracker.log_metrics(self.parent_run, metrics)
            tracker.log_artifacts(self.parent_run, self.artifacts)
            return tracker.log_model(self.parent_run, self.model, self.example, self.registered_model,
                                     self.version_tags)
        pending = [send("log_params", self.parent_run, self.params), send("log_metrics", self.parent_run, metrics),
                   send("log_model", self.parent_run, self.model, self.example, self.registered_model,
                        self.version_tags)]
        meanwhile()
        results = [call.result() for call in pending]
        tracker.log_artifacts(self.parent_run, self.artifacts)
        return results[-1]

    def save(self, directory: Path) -> Path:
        """Write it under ``directory`` (replacing an older one): model data, example, artifacts, JSON."""
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        self.model.save(directory / "model")
        (directory / "example.parquet").write_bytes(self.example)
        shutil.copytree(self.artifacts, directory / "artifacts")
        meta = {k: getattr(self, k) for k in ("parent_run", "registered_model", "version_tags", "params", "metrics")}
        (directory / "publication.json").write_text(json.dumps(meta, indent=1, default=str))
        return directory

    @classmethod
    def load(cls, directory: Path) -> Publication:
        meta = json.loads((directory / "publication.json").read_text())
        return cls(model=FittedModel.load(directory / "model"),
                   example=(directory / "example.parquet").read_bytes(),
                   artifacts=directory / "artifacts", **meta)


def unpublished_dir(study_name: str, root: Path | None = None) -> Path:
    """Where a sweep's unpublished results wait (relative to the working directory)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study_name)
    return (root or Path.cwd()) / UNPUBLISHED_DIR / safe


def sync_tracking(cfg: Any, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Replay into MLflow what the study holds and MLflow lacks; publish a waiting publication.

    Needs the tracking server, not the cluster or the data.
    """
    tracker = Tracker(cfg.tracking)
    tracker.preflight()
    tracker.ensure_experiment()
    tracker.study_name = cfg.search.study_name
    store = TrialStore(cfg.search)
    parent = store.previous_parent_run()
    if parent is None or _run_missing(tracker, parent):
        parent = tracker.start_parent(run_name=f"sweep-{cfg.search.study_name}",
                                      tags={"regsweep.kind": "sweep", "regsweep.study": cfg.search.study_name})
        tracker.end_run(parent, "FINISHED")
    closed = tracker.close_stale_runs(cfg.search.study_name, store.lease_of)
    tracker.use_parent(parent)
    tracker.start_trial_logging()
    try:
        replayed = replay_missing(tracker, store)
    finally:
        tracker.finish_trial_logging()
    summary: dict[str, Any] = {"study_name": cfg.search.study_name, "parent_run": parent,
                               "child_runs_replayed": replayed - len(tracker.failed),
                               "runs_closed": closed, "not_logged": [n for n, _ in tracker.failed]}
    waiting = unpublished_dir(cfg.search.study_name)
    pub = Publication.load(waiting) if (waiting / "publication.json").exists() else None
    if pub is not None and pub.parent_run != parent:
        echo(f"sync-tracking: {waiting} holds the results of an older sweep of this study; left unpublished.")
    elif pub is not None:
        summary["model_uri"], summary["model_version"] = pub.publish(tracker)
        tracker.end_run(pub.parent_run, "FINISHED")  # the sweep did finish; only MLflow was away
        shutil.rmtree(waiting)
    echo(f"sync-tracking: {summary['child_runs_replayed']} child runs replayed, {len(closed)} stale runs closed"
         + (f", model version {summary['model_version']} registered" if summary.get("model_version") else ""))
    if tracker.failed:
        echo(f"WARNING: still not logged: trials {summary['not_logged']}")
    return summary


def _run_missing(tracker: Tracker, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        tracker.client.get_run(run_id)
    except MlflowException:
        return True
    return False
