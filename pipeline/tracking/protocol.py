"""One face for MLflow: :class:`Tracking`, satisfied in this process and in the sweep's tracking process.

:class:`~pipeline.tracking.Tracker` talks to MLflow from the calling process
(``sync-tracking``, ``retrain``); :class:`~pipeline.tracking.TrackingService`
runs every call in a helper process, so that a sweep's driver never imports
MLflow. Callers write against :class:`Tracking` and never ask which one they
hold. :meth:`Tracking.send` starts a call and returns a :class:`Pending`: in
the service the call runs while the caller goes on; in process it has run
already.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..model import FittedModel
from .records import ChildRun, TrialRecord

__all__ = ["Done", "Pending", "Tracking", "close_stale_runs"]


class Pending(Protocol):
    """A call started with :meth:`Tracking.send`."""

    def ready(self) -> bool:
        """Whether its answer is there (never waits)."""

    def result(self, timeout: float | None = None) -> Any:
        """Its result, waiting at most ``timeout`` s (``TimeoutError``); raises the call's error."""


class Done:
    """A :class:`Pending` whose call has run already (in this process)."""

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error

    def ready(self) -> bool:
        return True

    def result(self, timeout: float | None = None) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


class Tracking(Protocol):
    """Everything regsweep asks of MLflow for a sweep, a sync and a retrain's runs."""

    uri: str
    failed: list[tuple[int, str]]  # (trial number, error) of child runs not written; -1: not a trial
    not_logged: list[str]  # sweep-level writes that did not reach MLflow

    @property
    def experiment_id(self) -> str:
        """The experiment's id (created once, before any parallel work)."""

    @property
    def parent_run_id(self) -> str | None:
        """The parent run child runs are written under (None until known)."""

    def check_experiment(self) -> None:
        """Raise the experiment's error (deleted, unreadable store) if it is known; never waits."""

    def send(self, method: str, *args: Any, **kwargs: Any) -> Pending:
        """Start ``<method>(*args, **kwargs)`` and return at once."""

    def start_parent(self, run_name: str, tags: Mapping[str, str]) -> str:
        """Create the parent run and write child runs under it; returns its id."""

    def use_parent(self, run_id: str) -> None:
        """Write child runs under the existing run ``run_id``."""

    def reachable(self, wait: float = 0.0) -> bool:
        """Whether the tracking server answers (True for a local store), waiting up to ``wait`` s."""

    def run_exists(self, run_id: str) -> bool: ...

    def running_runs(self, study_name: str) -> list[tuple[str, str | None]]:
        """``(run id, driver tag)`` of every RUNNING run of ``study_name`` in the experiment."""

    def child_runs(self, study_name: str) -> dict[int, ChildRun]:
        """The trial child runs of ``study_name`` in the experiment, by trial number."""

    def log_params_and_tags(self, run_id: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        """Both in one request where the store takes requests (a tracking server)."""

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None: ...

    def log_artifacts(self, run_id: str, directory: str | Path, artifact_path: str | None = None) -> None: ...

    def log_model(self, run_id: str, model: FittedModel, input_example: Any, registered_model: str | None,
                  version_tags: Mapping[str, str] | None = None,
                  alias: str | None = "candidate") -> tuple[str, int | None]:
        """Log and register a model (:func:`pipeline.tracking.models.log_model`)."""

    def end_run(self, run_id: str, status: str = "FINISHED", deadline_s: float | None = None) -> None:
        """End a run; with ``deadline_s``, give up waiting after that long (the run stays as it is)."""

    def log_trial(self, record: TrialRecord) -> None:
        """Write (or queue) one finished trial's child run; what fails lands in :attr:`failed`."""

    def log_trials(self, records: Sequence[TrialRecord]) -> None:
        """:meth:`log_trial` for each of ``records`` (a replay): against a tracking server several at once."""

    def finish_trial_logging(self, timeout: float = 300.0, deadline: float | None = None) -> None:
        """Wait until every queued child run is written, or no progress for ``timeout`` s."""

    def hand_off(self) -> tuple[int, str] | None:
        """Leave the child runs still queued to be written after this driver ends, by a process of their own:
        ``(how many, that process's DriverId)``, or None if not (then :meth:`finish_trial_logging`)."""

    def close(self) -> None:
        """Release what the tracker holds (a helper process); safe to call twice."""


def close_stale_runs(tracking: Tracking, study_name: str, abandoned: Callable[[str | None], bool]) -> list[str]:
    """End as KILLED the RUNNING runs of ``study_name`` whose driver is gone; returns their ids.

    ``abandoned(driver)`` says whether a driver's runs are abandoned
    (:meth:`pipeline.search.TrialStore.abandoned`: runs of drivers on other
    hosts only once their lease expired, none while the driver's deputy writes).
    """
    closed = []
    for run_id, owner in tracking.running_runs(study_name):
        if run_id != tracking.parent_run_id and abandoned(owner):
            tracking.end_run(run_id, "KILLED")
            closed.append(run_id)
    return closed
