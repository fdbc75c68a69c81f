"""Where the study remembers its MLflow runs: the parent run of each driver that worked on it.

The study is the record of truth and MLflow its mirror; to replay a trial's
child run under the right parent, the study keeps (as study system
attributes) the parent run of every driver and of the last one. The search
wing stores them without knowing what they mean; this module owns their
names and their meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..search import OWNER_ATTR, TrialStore

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["LAST_PARENT_ATTR", "PARENT_RUN_ATTR", "parent_of", "previous_parent_run", "record_last_parent",
           "record_parent"]

PARENT_RUN_ATTR = "regsweep:parent_run"  # per trial, as written before parent runs were kept per driver
_PARENT_OF_PREFIX = "regsweep:parent_run:"  # study attribute: a driver's MLflow parent run
LAST_PARENT_ATTR = "regsweep:last_parent_run"


def record_parent(store: TrialStore, parent_run: str) -> None:
    """Remember this driver's MLflow parent run in the study (its trials name the driver).

    Kept once per driver rather than on every trial: a trial attribute costs a
    SELECT and an upsert inside the trial's insert (measured: 0.3 s of a
    100-trial sweep).
    """
    store.set_study_attr(f"{_PARENT_OF_PREFIX}{store.driver}", parent_run)
    store.set_study_attr(LAST_PARENT_ATTR, parent_run)


def record_last_parent(store: TrialStore, parent_run: str) -> None:
    """Make ``parent_run`` the one the next driver's parent run links to (``regsweep.resumed_from``): a parent
    that ``sync-tracking`` opened for trials whose driver died before opening its own."""
    store.set_study_attr(LAST_PARENT_ATTR, parent_run)


def previous_parent_run(store: TrialStore) -> str | None:
    """The MLflow parent run of the last driver that worked on this study, if any."""
    run = store.study_attrs().get(LAST_PARENT_ATTR)
    return str(run) if run else None


def parent_of(store: TrialStore) -> Callable[[FrozenTrial], str | None]:
    """A function giving a finished trial's MLflow parent run (its driver's), read from the study now."""
    attrs = store.study_attrs()
    parents = {k[len(_PARENT_OF_PREFIX):]: str(v) for k, v in attrs.items() if k.startswith(_PARENT_OF_PREFIX)}

    def parent(trial: FrozenTrial) -> str | None:
        legacy = trial.system_attrs.get(PARENT_RUN_ATTR)
        return str(legacy) if legacy else parents.get(str(trial.system_attrs.get(OWNER_ATTR)))

    return parent
