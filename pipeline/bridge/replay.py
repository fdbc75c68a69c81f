"""Replay into MLflow the finished trials it lacks, from the study (idempotent).

Runs at every sweep start (what a killed driver left unwritten) and in
``regsweep sync-tracking``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..candidate import Candidate
from ..ownership import is_stale
from ..search import OWNER_ATTR, TrialStore
from ..tracking import Tracking, TrialRecord
from .study_links import PARENT_RUN_ATTR, parent_of

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["record_from_trial", "replay_missing"]


def record_from_trial(trial: FrozenTrial, status: str | None = None, parent: str | None = None) -> TrialRecord:
    """The child-run record of a finished study trial under ``parent``
    (default: the parent run the trial itself names, if any)."""
    from optuna.trial import TrialState

    cv = dict(trial.user_attrs.get("cv", {}))
    fold = cv.pop("fold_mse", [])
    metrics = {k: float(v) for k, v in cv.items() if isinstance(v, int | float)}
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        metrics["cv_mse"] = float(trial.value)
    start = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    end = trial.datetime_complete.timestamp() if trial.datetime_complete else start
    legacy = trial.system_attrs.get(PARENT_RUN_ATTR)
    return TrialRecord(
        number=trial.number,
        params=Candidate.from_params(trial.number, trial.params).params() if "penalty" in trial.params else {},
        metrics=metrics,
        fold_metrics={"fold_mse": fold} if fold else {},
        start_ms=int(start * 1000),
        end_ms=int(end * 1000),
        status=status or ("FINISHED" if trial.state == TrialState.COMPLETE else "FAILED"),
        parent=parent or (str(legacy) if legacy else None),
    )


def _unfinished(status: str, *, complete: bool) -> bool:
    """A COMPLETE trial's run must be FINISHED; a failed trial's run just must not stay RUNNING."""
    return status != "FINISHED" if complete else status == "RUNNING"


def replay_missing(tracking: Tracking, store: TrialStore, *, own: bool = True) -> int:
    """Log a child run for each finished trial MLflow lacks; returns how many were logged (or queued).

    Trials of drivers still alive are theirs to log, and are skipped; so are
    this driver's own with ``own=False`` (a sweep whose trials are running:
    their child runs are queued already). A child run left RUNNING by a
    killed writer is completed in place, never duplicated.
    """
    from optuna.trial import TrialState

    existing = tracking.child_runs(store.study.study_name)
    parent = parent_of(store)
    me = str(store.driver)
    queued = 0
    for t in store.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        owner = t.system_attrs.get(OWNER_ATTR)
        if (owner == me and not own) or (owner is not None and owner != me
                                         and not is_stale(owner, store.lease_of(owner))):
            continue
        run = existing.get(t.number)
        record = record_from_trial(t, parent=parent(t))
        if run is not None:
            if not _unfinished(run.status, complete=t.state == TrialState.COMPLETE):
                continue
            record = dataclasses.replace(record, run_id=run.run_id)
        tracking.log_trial(record)
        queued += 1
    return queued
