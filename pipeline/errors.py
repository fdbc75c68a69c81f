"""regsweep's exception hierarchy.

Every error regsweep raises on purpose derives from :class:`RegsweepError`,
so a caller (or the CLI) can tell "you gave me something wrong" from a bug.
Value problems also derive from ``ValueError`` and kind problems from
``TypeError``, so code written against the standard exceptions keeps working.
"""

from __future__ import annotations

from .solvers import SolverConvergenceWarning

__all__ = [
    "ConfigError",
    "DataError",
    "DataTypeError",
    "RegsweepError",
    "SolverConvergenceWarning",
    "SweepError",
]


class RegsweepError(Exception):
    """Base class of the errors regsweep raises deliberately."""


class DataError(RegsweepError, ValueError):
    """Input data break a rule (shape, finiteness, weights, ...)."""


class DataTypeError(RegsweepError, TypeError):
    """Input data are of the wrong kind (not numeric, not array-like, ...)."""


class ConfigError(RegsweepError, ValueError):
    """A configuration value breaks a rule; the message names the key path."""


class SweepError(RegsweepError, RuntimeError):
    """The sweep cannot go on (e.g. every trial fails); recorded results are kept."""


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM; handled like Ctrl-C (runs end KILLED, trials FAIL)."""
