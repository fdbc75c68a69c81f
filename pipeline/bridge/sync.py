"""``regsweep sync-tracking``: bring MLflow in step with the study, the record of truth.

Replays the child runs MLflow lacks, ends the runs dead drivers left open,
and publishes a sweep's results that waited on disk for the server. Needs the
tracking server and the study's storage, not the cluster or the data.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import SweepConfig
from ..errors import ConfigError
from ..metrics import METRIC_OF
from ..search import TrialStore, study_family
from ..tracking import Tracker, close_stale_runs
from .publication import Publication, unpublished_dir
from .replay import replay_missing
from .study_links import previous_parent_run, record_last_parent

__all__ = ["sync_tracking"]


def study_names(storage: str) -> list[str]:
    """The studies in ``storage`` (none for an SQLite file that does not exist: it is not created)."""
    import optuna

    from ..sqlite_wal import sqlite_path

    path = sqlite_path(storage)
    if path is not None and not Path(path).exists():
        return []
    return sorted(optuna.get_all_study_names(storage))


def _parent_for_orphans(tracker: Tracker, store: TrialStore, cfg: SweepConfig) -> str:
    """A parent run for trials whose driver died before MLflow had opened its own: ended KILLED while the
    study is short of ``search.n_trials`` (it was FINISHED, empty, on a study 16 of 40 trials in: probe F),
    described as what it is, and recorded in the study so that the next sweep's parent links to it."""
    study, done = cfg.search.study_name, store.n_complete()
    parent = tracker.start_parent(run_name=f"sweep-{study}", tags={"regsweep.kind": "sweep", "regsweep.study": study})
    finished = done >= cfg.search.n_trials
    tracker.set_tags(parent, {"mlflow.note.content": (
        f"Opened by `regsweep sync-tracking`: the driver of study `{study}` stopped before MLflow had opened its "
        f"parent run. Its {done} complete trial(s) are this run's child runs"
        + ("." if finished else f", of the {cfg.search.n_trials} asked: run `regsweep sweep` with the same config "
                                "to finish the study (its parent run will link here).")),
        "regsweep.opened_by": "sync-tracking"})
    tracker.end_run(parent, "FINISHED" if finished else "KILLED")
    record_last_parent(store, parent)
    return parent


def sync_tracking(cfg: SweepConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Replay into MLflow what the study holds and MLflow lacks; publish a waiting publication.

    Refuses, naming the studies found, when the study does not exist: a sync
    never creates a study, an experiment or a run out of nothing.
    """
    study = cfg.search.study_name
    found = study_names(cfg.search.storage)
    if study not in found:
        raise ConfigError(
            f"sync-tracking: search.study_name {study!r} is not a study of {cfg.search.storage} (studies there: "
            f"{found or 'none'}); give the config of the sweep to sync, or set search.study_name."
        )
    store = TrialStore(cfg.search)
    tracker = Tracker(cfg.tracking, study_name=study, metric=METRIC_OF[study_family(store.study)])
    tracker.preflight()
    tracker.ensure_experiment()
    parent = previous_parent_run(store)
    if parent is None or not tracker.run_exists(parent):
        parent = _parent_for_orphans(tracker, store, cfg)
    gone = store.deputies_gone()  # before the replay: a deputy that exits meanwhile is looked at next time
    closed = close_stale_runs(tracker, study, store.abandoned)
    tracker.use_parent(parent)
    replayed = replay_missing(tracker, store)  # against a server as many at once as a sweep writes them
    if not tracker.failed:
        store.forget_deputies(gone)  # what they left is in MLflow now: a finished study's next sweep skips this
    summary: dict[str, Any] = {"study_name": study, "parent_run": parent,
                               "child_runs_replayed": replayed - len(tracker.failed),
                               "runs_closed": closed, "not_logged": [n for n, _ in tracker.failed]}
    waiting = unpublished_dir(study)
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
