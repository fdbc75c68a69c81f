"""regsweep's exceptions, all in one place (as Optuna's ``exceptions.py``).

Every error regsweep raises on purpose derives from :class:`RegsweepError`,
so a caller (or the CLI) can tell "you gave me something wrong" from a bug.
Value problems also derive from ``ValueError`` and kind problems from
``TypeError``, so code written against the standard exceptions keeps working;
the CLI exits 2 for those and 1 for the ``RuntimeError`` ones.

The solvers' :class:`SolverConvergenceWarning` is defined in
:mod:`pipeline.solvers` (which imports nothing of the rest of regsweep) and
re-exported here.
"""

from __future__ import annotations

from .solvers import SolverConvergenceWarning

__all__ = [
    "ClusterError",
    "ConfigError",
    "DataError",
    "DataTypeError",
    "DriverGone",
    "RegsweepError",
    "RemoteTrackingError",
    "RetrainInputError",
    "RetrainLockedError",
    "SolverConvergenceWarning",
    "SweepError",
    "Terminated",
    "TrackingError",
]


class RegsweepError(Exception):
    """Base class of the errors regsweep raises deliberately."""


# ----------------------------------------------------------- bad input (exit 2)
class DataError(RegsweepError, ValueError):
    """Input data break a rule (shape, finiteness, weights, ...)."""


class DataTypeError(RegsweepError, TypeError):
    """Input data are of the wrong kind (not numeric, not array-like, ...)."""


class ConfigError(RegsweepError, ValueError):
    """A configuration value breaks a rule; the message names the key path."""


class RetrainInputError(RegsweepError, ValueError):
    """Nothing to retrain from, or data that do not fit the registered model (exit 2)."""


# ----------------------------------------------------------- failures (exit 1)
class SweepError(RegsweepError, RuntimeError):
    """The sweep cannot go on (e.g. every trial fails); recorded results are kept."""


class ClusterError(RegsweepError, RuntimeError):
    """The Dask scheduler cannot be reached or the cluster cannot start."""


class TrackingError(RegsweepError, RuntimeError):
    """MLflow cannot be reached or refuses a write that must not be lost."""


class RemoteTrackingError(TrackingError):
    """An MLflow call that failed in the sweep's tracking process.

    Carries the remote error's type and message, and whether the server could
    not be reached (``unreachable``), decided where the call ran.
    """

    def __init__(self, message: str, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class RetrainLockedError(RegsweepError, RuntimeError):
    """Another retrain of the same registered model is running (exit 1: try again later)."""


# ----------------------------------------------------------- control flow
class Terminated(KeyboardInterrupt):
    """The process received SIGTERM; handled like Ctrl-C (runs end KILLED, trials FAIL)."""


class DriverGone(Exception):
    """The driver of an MLflow helper process died: the helper stops (the next start replays)."""
