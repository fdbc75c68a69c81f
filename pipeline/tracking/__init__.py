"""The MLflow wing: runs, child runs, the tracking process, health probes, models and the registry.

- :mod:`.protocol`: :class:`Tracking`, the one face of MLflow, satisfied by
  :class:`Tracker` (this process, :mod:`.tracker`) and
  :class:`TrackingService` (the sweep's tracking process, :mod:`.service`);
- :mod:`.child_runs` and :mod:`.records`: trial child runs, riding out outages;
- :mod:`.health`: is the tracking store there (plain ``urllib``);
- :mod:`.models`: the pyfunc flavour (a loader module, never a pickle);
- :mod:`.registry`: versions by alias or data fingerprint, aliases, decision tags;
- :mod:`.statcache_store`: a retrain's statistics cache as MLflow artifacts.

Imports neither Optuna nor distributed; MLflow itself is imported where a
function needs it, so importing this package (or the sweep's driver) costs
no MLflow import.

This package is also the *loader module* of every registered regsweep model
(``loader_module="pipeline.tracking"``): MLflow calls :func:`_load_pyfunc`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .health import is_http, is_unreachable, preflight, reachable
from .protocol import Pending, Tracking, close_stale_runs
from .records import DRIVER_TAG, ChildRun, TrialRecord
from .registry import RegisteredVersion
from .service import TrackingService
from .statcache_store import MlflowCache
from .tracker import Tracker
from .views import runs_url

if TYPE_CHECKING:
    from .models import PyfuncModel

__all__ = [
    "DRIVER_TAG",
    "ChildRun",
    "MlflowCache",
    "Pending",
    "RegisteredVersion",
    "Tracker",
    "Tracking",
    "TrackingService",
    "TrialRecord",
    "close_stale_runs",
    "is_http",
    "is_unreachable",
    "preflight",
    "reachable",
    "runs_url",
]


def _load_pyfunc(data_path: str) -> PyfuncModel:
    """MLflow's loader-module hook for models logged with ``loader_module="pipeline.tracking"``."""
    from .models import load_pyfunc

    return load_pyfunc(data_path)
