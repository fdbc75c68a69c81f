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

__all__ = ["cached_trial_number", "incremental_groups", "rdb_engine", "rdb_models", "study_id", "study_storage",
           "trial_id"]


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


def incremental_groups(sampler: Any) -> Any:
    """``sampler`` (a ``TPESampler`` with ``group=True``) finding its parameter groups from each finished trial
    once, instead of from every finished trial at every ask.

    Missing public API: the group decomposition (``_GroupDecomposedSearchSpace``) keeps its partition between
    asks but adds every COMPLETE and PRUNED trial's distributions to it again each time; a key set seen before
    is a union of the partition's groups, so adding it again changes neither the groups nor their order, and
    feeding each trial once gives the same groups in the same order, hence the same samples (tested against
    the stock sampler, 200 asks from scratch and 60 after 1,000 trials). It was about a quarter of an ask's
    time: 4.48 → 3.40 ms per ask over the first 200 trials, 16.5 → 12.9 ms after 1,000 (CPU, one process).
    Without the attribute (another Optuna), the sampler is returned as it is.
    """
    import copy

    from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace
    from optuna.trial import TrialState

    class _Incremental(_GroupDecomposedSearchSpace):
        def __init__(self) -> None:
            super().__init__(include_pruned=True)
            self._added: set[int] = set()

        def calculate(self, study: Study, use_cache: bool = False) -> Any:
            for t in study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED),
                                       use_cache=use_cache):
                if t._trial_id not in self._added:
                    self._added.add(t._trial_id)
                    self._search_space.add_distributions(t.distributions)
            return copy.deepcopy(self._search_space)

    if isinstance(getattr(sampler, "_group_decomposed_search_space", None), _GroupDecomposedSearchSpace):
        sampler._group_decomposed_search_space = _Incremental()
    return sampler
