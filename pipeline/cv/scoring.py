"""What scoring a candidate on a fold produces, whatever engine holds the fold: the shared types.

A fold model of either engine (:class:`~pipeline.cv.fold_models.FoldModel`
on a Gram, :class:`~pipeline.cv.rows.RowFoldModel` on rows) offers
``score(candidate, tol) -> FoldScore`` and ``path(spec, tol) -> FoldPath``,
and keeps its recent solutions as warm starts (:class:`WarmStarts`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..candidate import Candidate

__all__ = ["FoldPath", "FoldScore", "PathSpec", "WarmStarts"]

_T = TypeVar("_T")
_WARM_CACHE = 64


@dataclass(frozen=True)
class FoldScore:
    """One candidate on one fold: held-out and training errors."""

    trial: int
    fold: int
    heldout_mse: float
    heldout_r2: float
    train_mse: float
    n_nonzero: int
    n_iter: int
    converged: bool
    seconds: float


@dataclass(frozen=True)
class PathSpec:
    """A path: the penalty, the l1 share of its strength, and the strengths (largest first)."""

    penalty: str
    l1_share: float  # 1 for l1, 0 for l2, λ1/(λ1+λ2) for elasticnet
    strengths: tuple[float, ...]

    def candidate(self, i: int) -> Candidate:
        """The candidate at point ``i`` (trial number −1: not a trial)."""
        s = self.strengths[i]
        if self.penalty == "l1":
            return Candidate(-1, "l1", s, 0.0)
        if self.penalty == "l2":
            return Candidate(-1, "l2", 0.0, s)
        return Candidate(-1, "elasticnet", self.l1_share * s, (1.0 - self.l1_share) * s)


@dataclass(frozen=True)
class FoldPath:
    """One fold along a path: held-out and training errors and non-zeros per point.

    A path that stopped early (the training fit had become nearly exact:
    glmnet's rule, see :data:`PATH_STOP_DEV_RATIO`) is shorter than its spec.
    """

    fold: int
    heldout_mse: tuple[float, ...]
    heldout_r2: tuple[float, ...]
    train_mse: tuple[float, ...]
    n_nonzero: tuple[int, ...]


PATH_STOP_DEV_RATIO = 0.999  # glmnet stops a path once the training fit explains this share of the deviance


@dataclass(eq=False)
class WarmStarts(Generic[_T]):
    """Recent solutions per penalty name (at most ``size`` each), looked up by the nearest (log λ1, log λ2)."""

    entries: dict[str, list[tuple[float, float, _T]]] = field(default_factory=dict)
    size: int = _WARM_CACHE

    def nearest(self, c: Candidate) -> _T | None:
        found = self.entries.get(c.penalty)
        if not found:
            return None
        key = (_log(c.lambda1), _log(c.lambda2))
        return min(found, key=lambda e: abs(_log(e[0]) - key[0]) + abs(_log(e[1]) - key[1]))[2]

    def remember(self, c: Candidate, solution: _T) -> None:
        found = self.entries.setdefault(c.penalty, [])
        found.append((c.lambda1, c.lambda2, solution))
        if len(found) > self.size:
            del found[0]


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -700.0
