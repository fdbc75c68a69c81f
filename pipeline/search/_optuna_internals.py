"""Every place regsweep reads Optuna beyond its public API, with what was missing.

Kept in one module so that a change in Optuna breaks one file. The trial
writes themselves (:mod:`.trial_sql`) use Optuna's table models through
:func:`rdb_models`, with a fall-back to the public API when they are not as
expected.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna import Study
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

__all__ = ["cached_trial_number", "rdb_engine", "rdb_models", "study_id", "study_storage", "trial_id"]


def study_storage(study: Study) -> BaseStorage:
    """The storage a study writes to.

    Missing public API: ``Study`` has no accessor for its storage; regsweep
    needs it to write trials by id (ask/tell through the study would reload
    every trial per call) and to keep study system attributes (leases).
    """
    storage: BaseStorage = study._storage
    return storage


def study_id(study: Study) -> int:
    """The RDB id of a study. Missing public API: ``Study`` exposes its name, not its id."""
    sid: int = study._study_id
    return sid


def trial_id(trial: FrozenTrial) -> int:
    """The storage id of a trial. Missing public API: ``FrozenTrial`` exposes its number, not its id."""
    tid: int = trial._trial_id
    return tid


def rdb_engine(storage: BaseStorage) -> Any:
    """The SQLAlchemy engine under an ``RDBStorage`` (wrapped in Optuna's cache layer or not).

    Missing public API: ``RDBStorage.engine`` is public, but ``create_study``
    wraps it in a private ``_CachedStorage`` whose ``_backend`` is the RDB.
    """
    backend: Any = getattr(storage, "_backend", storage)
    return backend.engine


def cached_trial_number(storage: BaseStorage, tid: int) -> int | None:
    """The number of a trial Optuna's cache layer just created, if it knows it (None otherwise).

    Missing public API: ``create_new_trial`` returns the id only; asking the
    RDB for the number costs a SELECT of the whole trial (~6 ms).
    """
    cached = getattr(storage, "_trial_id_to_study_id_and_number", {}).get(tid)
    return int(cached[1]) if cached else None


def rdb_models() -> ModuleType | None:
    """Optuna's SQLAlchemy table models (``optuna.storages._rdb.models``), or None if absent.

    Missing public API: Optuna writes a trial one ORM query at a time (5.8 ms
    per trial); one transaction on its own tables costs 0.95 ms.
    """
    try:
        from optuna.storages._rdb import models
    except ImportError:
        return None
    return models
