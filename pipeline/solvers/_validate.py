"""Warnings the numeric core emits."""

from __future__ import annotations

__all__ = ["SolverConvergenceWarning"]


class SolverConvergenceWarning(UserWarning):
    """A solve stopped before its duality gap met the tolerance.

    The message carries the gap, the tolerance and the number of Newton steps;
    the result's ``converged`` flag is ``False``.
    """
