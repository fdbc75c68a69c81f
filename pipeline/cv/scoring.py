"""What scoring a candidate on a fold produces, whatever engine holds the fold: the shared types.

A fold model of either engine (:class:`~pipeline.cv.fold_models.FoldModel`
on a Gram, :class:`~pipeline.cv.rows.RowFoldModel` on rows) offers
``score(candidate, tol) -> FoldScore`` and ``path(spec, tol) -> FoldPath``,
and keeps its recent solutions as warm starts (:class:`WarmStarts`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..candidate import Candidate

__all__ = ["FoldPath", "FoldScore", "PathSpec", "PickledCold", "WarmStarts", "path_stops"]

_T = TypeVar("_T")
_WARM_CACHE = 64


@dataclass(frozen=True)
class FoldScore:
    """One candidate on one fold: held-out and training errors.

    ``heldout_mse`` and ``train_mse`` hold the sweep's metric (:mod:`pipeline.metrics`): the MSE for gaussian,
    the mean deviance for binomial and poisson; ``heldout_r2`` the share of the held-out deviance explained
    (R²); ``extra`` the family's other held-out scores (binomial: log-loss, AUC, accuracy, Brier; poisson: MAE).
    """

    trial: int
    fold: int
    heldout_mse: float
    heldout_r2: float
    train_mse: float
    n_nonzero: int
    n_iter: int
    converged: bool
    seconds: float
    extra: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class PathSpec:
    """A path: the penalty, the l1 share of its strength, and the strengths (largest first)."""

    penalty: str
    l1_share: float  # 1 for l1, 0 for l2, λ1/(λ1+λ2) for elasticnet
    strengths: tuple[float, ...]
    multipliers: tuple[tuple[str, float], ...] = ()  # the winner's group multipliers, held along the path
    min_points: int = 0  # the points before the winning trial's strength, which no early stop cuts

    def may_stop(self, n_points: int) -> bool:
        """Whether a path of ``n_points`` may stop for its held-out curve or its levelled deviance: not before
        it reached the winning trial's strength. On small or noisy folds the held-out error wobbles near the
        null model, and one fold stopping there cut every fold's curve short of the trial it was run to
        examine (a 34-row Poisson table: 3 points, the winner 1.2 decades further)."""
        return n_points >= self.min_points

    def candidate(self, i: int) -> Candidate:
        """The candidate at point ``i`` (trial number −1: not a trial)."""
        s = self.strengths[i]
        if self.penalty == "l1":
            return Candidate(-1, "l1", s, 0.0, self.multipliers)
        if self.penalty == "l2":
            return Candidate(-1, "l2", 0.0, s, self.multipliers)
        return Candidate(-1, "elasticnet", self.l1_share * s, (1.0 - self.l1_share) * s, self.multipliers)


@dataclass(frozen=True)
class FoldPath:
    """One fold along a path: held-out and training errors and non-zeros per point.

    A path that stopped early (the training fit had become nearly exact:
    glmnet's rule, see :data:`PATH_STOP_DEV_RATIO`; or the held-out error had
    risen well past its minimum, :func:`past_the_minimum`) is shorter than its spec.
    """

    fold: int
    heldout_mse: tuple[float, ...]
    heldout_r2: tuple[float, ...]
    train_mse: tuple[float, ...]
    n_nonzero: tuple[int, ...]


PATH_STOP_DEV_RATIO = 0.999  # glmnet stops a path once the training fit explains this share of the deviance
PATH_STOP_RISE = 0.1  # a fold's path also stops once its held-out MSE is this share above its minimum
PATH_STOP_FDEV = 1e-5  # glmnet's fdev: a path stops once a point adds less than this share of what it explains
PATH_MIN_POINTS = 5  # glmnet's mnlam: ... but not before this many points


def path_stops(explained: Sequence[float], heldout: Sequence[float], spec: PathSpec) -> bool:
    """Whether a fold's path ends at its last point (every family and engine): once ``spec`` may stop
    (:meth:`PathSpec.may_stop`: it reached the winning trial's strength), the training fit explains
    :data:`PATH_STOP_DEV_RATIO` of the deviance, a point added almost nothing to it (:func:`deviance_levelled`)
    or the held-out error has turned well past its minimum (:func:`past_the_minimum`). ``explained``: the
    training fit's share of the null deviance (R² for squared loss) at each point so far; ``heldout``: the
    held-out error at each point.

    The saturation rule waits for the winner too: where the data are nearly exact (a country's fertility rate
    in 2011 from its rates of 1960–2010, R² 0.9999 at every strength), it cut every fold's path at its first
    points, 2.5 decades short of the winning trial, and the ``1se`` choice fell on the winner itself while
    strengths 7× larger were within one standard error (the fourth probe)."""
    return spec.may_stop(len(explained)) and (explained[-1] >= PATH_STOP_DEV_RATIO or deviance_levelled(explained)
                                              or past_the_minimum(heldout))


def deviance_levelled(explained: Sequence[float]) -> bool:
    """glmnet's ``fdev`` rule (its ``elnet`` for squared loss, ``lognet`` and ``fishnet`` alike): the training
    fit's share of deviance explained rose by less than :data:`PATH_STOP_FDEV` of itself at the last point
    (after :data:`PATH_MIN_POINTS`).

    On tall data the held-out deviance hardly turns up past its minimum (:func:`past_the_minimum` never
    fires), and the last decades of strengths refit what is already the unpenalized fit: on 10⁵ × 100 rows
    they were half the path's time and changed no choice; on 10⁵ rows with 1,060 one-hot columns the l1
    path's last 40 points (strengths down to 10⁻⁶ of the largest, supports of 1,000 columns) took most of
    its 9 s."""
    if len(explained) < max(PATH_MIN_POINTS, 2):
        return False
    return explained[-1] - explained[-2] < PATH_STOP_FDEV * explained[-1]


def past_the_minimum(heldout_mse: Sequence[float]) -> bool:
    """Whether a fold's path may stop: its held-out MSE at the last point is more than :data:`PATH_STOP_RISE`
    above the lowest so far (and that was not the first point), so the curve has turned into overfitting.

    The points beyond cost the most (the largest supports: on sparse 10⁴ × 10⁵ data the last fifth of an
    l1 path took two thirds of its time) and serve neither choice: ``1se`` lies at larger strengths than
    the minimum, and the minimum of the mean curve could move there only if the other folds' errors fell
    by more than this fold's rose. The curve is cut at the shortest fold, as for glmnet's rule.
    """
    if len(heldout_mse) < 2:
        return False
    low = min(heldout_mse)
    return heldout_mse[0] > low and heldout_mse[-1] > (1.0 + PATH_STOP_RISE) * low


@dataclass(eq=False)
class WarmStarts(Generic[_T]):
    """Recent solutions per penalty name (at most ``size`` each), looked up by the nearest (log λ1, log λ2)."""

    entries: dict[str, list[tuple[float, float, _T]]] = field(default_factory=dict)
    size: int = _WARM_CACHE

    def nearest(self, c: Candidate, cold_lambda1: float | None = None) -> _T | None:
        """The remembered solution nearest to ``c`` in (log λ1, log λ2); None if there is none, or if
        ``cold_lambda1`` (the λ1 whose solution is 0, λ1_max) is nearer in log λ1 than it: a sparse fit far above
        the dense solutions remembered so far starts from zero, adding its few features, where from a dense one
        the active-set solver drops hundreds one pivot at a time (an l1 trial on 1,623 one-hot features: 1,027
        iterations and 37 s from a solution 1.5 decades below, 91 iterations from one beside it)."""
        found = self.entries.get(c.penalty)
        if not found:
            return None
        key = (_log(c.lambda1), _log(c.lambda2))

        def distance(e: tuple[float, float, _T]) -> float:
            return abs(_log(e[0]) - key[0]) + abs(_log(e[1]) - key[1])

        best = min(found, key=distance)
        if cold_lambda1 is not None and cold_lambda1 > 0 and c.lambda1 > 0 \
                and max(0.0, _log(cold_lambda1) - key[0]) < distance(best):
            return None
        return best[2]

    def remember(self, c: Candidate, solution: _T) -> None:
        found = self.entries.setdefault(c.penalty, [])
        found.append((c.lambda1, c.lambda2, solution))
        if len(found) > self.size:
            del found[0]


class PickledCold:
    """A fold model pickled without its lock and with empty warm starts: a copy made on another worker starts
    cold (its ``lock`` and ``warm`` are dataclass fields of the class that mixes this in; a ``curvature``, the
    binomial and Poisson models' reference metric, is dropped too)."""

    lock: threading.Lock
    warm: WarmStarts[Any]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("lock")
        state["warm"] = WarmStarts(size=self.warm.size)
        if "curvature" in state:
            state["curvature"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -700.0
