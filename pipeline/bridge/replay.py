"""Replay into MLflow the finished trials it lacks, from the study (idempotent).

Runs at every sweep start (what a killed driver left unwritten) and in
``regsweep sync-tracking``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..candidate import MULTIPLIER_PREFIX, Candidate
from ..search import OWNER_ATTR, TrialStore
from ..tracking import Tracking, TrialRecord
from .study_links import PARENT_RUN_ATTR, parent_of

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["child_record", "record_from_trial", "replay_missing"]


def child_record(number: int, cand: Candidate, metrics: Mapping[str, float], fold_mse: Sequence[float],
                 start_ms: int, end_ms: int, status: str = "FINISHED", parent: str | None = None,
                 metric: str = "mse") -> TrialRecord:
    """What a trial's child run holds, live or replayed: the penalty, ``lambda1`` and ``lambda2`` as
    parameters (0 where the penalty has none, so every run has both columns), the metrics, each fold's
    error as ``fold_<metric>_<i>`` (``fold_mse_0``, ``fold_binomial_deviance_0``; one column per fold, not
    steps: folds are not epochs), and
    ``log10_lambda1`` / ``log10_lambda2`` where the strength is positive (for charts on a log axis); each
    searched group multiplier as the parameter ``mult_<group>``."""
    out = dict(metrics)
    out.update({f"fold_{metric}_{i}": float(v) for i, v in enumerate(fold_mse)})
    for name, value in (("lambda1", cand.lambda1), ("lambda2", cand.lambda2)):
        if value > 0:
            out[f"log10_{name}"] = math.log10(value)
    params = {"penalty": cand.penalty, "lambda1": cand.lambda1, "lambda2": cand.lambda2,
              **{f"{MULTIPLIER_PREFIX}{g}": v for g, v in cand.multipliers}}  # searched group multipliers
    return TrialRecord(number=number, params=params, metrics=out, start_ms=start_ms, end_ms=end_ms, status=status,
                       parent=parent)


def record_from_trial(trial: FrozenTrial, status: str | None = None, parent: str | None = None) -> TrialRecord:
    """The child-run record of a finished study trial under ``parent``
    (default: the parent run the trial itself names, if any)."""
    from optuna.trial import TrialState

    cv = dict(trial.user_attrs.get("cv", {}))
    folds = [k for k in cv if k.startswith("fold_")]  # fold_mse, or fold_<deviance> of a binomial/Poisson sweep
    metric = folds[0][len("fold_"):] if folds else "mse"
    fold = cv.pop(f"fold_{metric}", [])
    metrics = {k: float(v) for k, v in cv.items() if isinstance(v, int | float)}
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        metrics[f"cv_{metric}"] = float(trial.value)
    start = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    end = trial.datetime_complete.timestamp() if trial.datetime_complete else start
    legacy = trial.system_attrs.get(PARENT_RUN_ATTR)
    cand = Candidate.from_params(trial.number, trial.params) if "penalty" in trial.params else None
    if cand is None:  # not a regsweep trial: nothing to describe it by
        return TrialRecord(trial.number, {}, metrics, int(start * 1000), int(end * 1000), status or "FAILED",
                           parent or (str(legacy) if legacy else None))
    return child_record(trial.number, cand, metrics, fold, int(start * 1000), int(end * 1000),
                        status or ("FINISHED" if trial.state == TrialState.COMPLETE else "FAILED"),
                        parent or (str(legacy) if legacy else None), metric)


def _unfinished(status: str, *, complete: bool) -> bool:
    """A COMPLETE trial's run must be FINISHED; a failed trial's run just must not stay RUNNING."""
    return status != "FINISHED" if complete else status == "RUNNING"


def replay_missing(tracking: Tracking, store: TrialStore, *, own: bool = True) -> int:
    """Log a child run for each finished trial MLflow lacks; returns how many were logged (or queued).

    Trials of drivers still alive are theirs to log, and are skipped; so are
    this driver's own with ``own=False`` (a sweep whose trials are running:
    their child runs are queued already). A child run left RUNNING by a
    killed writer is completed in place, never duplicated. The records go to
    the tracking in one call (against a server, several are written at once).
    """
    from optuna.trial import TrialState

    me = str(store.driver)
    owners: dict[str | None, bool] = {}  # a driver's trials: whether this one may log their runs

    def ours_to_log(owner: str | None) -> bool:
        if owner not in owners:
            owners[owner] = (own if owner == me
                             else owner is None or store.abandoned(owner))
        return owners[owner]

    trials = [t for t in store.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
              if ours_to_log(t.system_attrs.get(OWNER_ATTR))]
    if not trials:  # e.g. the end of a sweep that ran every trial itself: no search of all its child runs
        return 0
    existing = tracking.child_runs(store.study.study_name)
    parent = parent_of(store)
    records = []
    for t in trials:
        run = existing.get(t.number)
        record = record_from_trial(t, parent=parent(t))
        if run is not None:
            if not _unfinished(run.status, complete=t.state == TrialState.COMPLETE):
                continue
            record = dataclasses.replace(record, run_id=run.run_id)
        records.append(record)
    tracking.log_trials(records)
    return len(records)
