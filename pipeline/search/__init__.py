"""The Optuna wing: the study, the search space and the ask/tell scheduler.

- :mod:`.study`: the study in RDB storage with an in-memory mirror for the
  sampler, driver leases and stale trials (:mod:`.trial_sql`: its writes in
  one SQL transaction each);
- :mod:`.space`: penalties and λ ranges, resolved from the config and the data;
- :mod:`.scheduler`: the ask/tell loop over Dask (:mod:`.ordering`: the
  sampler taught in ask order, so one driver's search is reproducible);
- :mod:`.results` and :mod:`.rows`: a trial's result, and the study read back.

Imports no MLflow. Optuna itself is imported where a function needs it.
"""

from .results import TrialResult, explained_name, summarize_scores
from .rows import FAMILY_ATTR, TrialRow, study_family, trial_rows
from .scheduler import TrialListener, TrialScheduler
from .space import SearchSpace, resolve_space
from .study import OWNER_ATTR, RETRY_OF_ATTR, PendingTrial, StaleTrial, TrialStore, check_storage, open_storage

__all__ = [
    "FAMILY_ATTR",
    "OWNER_ATTR",
    "RETRY_OF_ATTR",
    "PendingTrial",
    "SearchSpace",
    "StaleTrial",
    "TrialListener",
    "TrialResult",
    "TrialRow",
    "TrialScheduler",
    "TrialStore",
    "check_storage",
    "explained_name",
    "open_storage",
    "resolve_space",
    "study_family",
    "summarize_scores",
    "trial_rows",
]
