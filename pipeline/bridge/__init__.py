"""The bridge between the study (the record of truth) and MLflow (its readable mirror).

The one place that sees both the search wing and the tracking wing:

- :mod:`.sweep_tracking`: a sweep's dealings with MLflow, through one object;
- :mod:`.replay`: child runs replayed from the study;
- :mod:`.publication`: a sweep's results, published or kept until the server is back;
- :mod:`.sync`: ``regsweep sync-tracking``;
- :mod:`.study_links`: the MLflow runs the study remembers (parent run per driver).
"""

from .publication import UNPUBLISHED_DIR, Publication, unpublished_dir
from .replay import record_from_trial, replay_missing
from .study_links import previous_parent_run, record_parent
from .sweep_tracking import SweepTracking, background_writing
from .sync import study_names, sync_tracking

__all__ = [
    "UNPUBLISHED_DIR",
    "Publication",
    "SweepTracking",
    "background_writing",
    "previous_parent_run",
    "record_from_trial",
    "record_parent",
    "replay_missing",
    "study_names",
    "sync_tracking",
    "unpublished_dir",
]
