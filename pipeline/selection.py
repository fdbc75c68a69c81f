"""Choosing, not only searching: the dense path's curve, the min and one-standard-error choices,
the best of each penalty and the trials not dominated.

glmnet's ``cv.glmnet`` reports two strengths: ``lambda.min``, where the
cross-validated error is lowest, and ``lambda.1se``, the largest strength
whose error is within one standard error of that minimum (the simplest model
the data cannot tell apart from the best). Here the minimum is taken over the
search's trials and the points of the dense path of the winning penalty
(:mod:`pipeline.cv.path`); the 1-SE choice over the path. The standard error
of a point is the standard deviation of its fold errors over √K (glmnet's
``cvsd``), the trials' ``cv_mse_se``.

Pure functions over plain data (trial rows as :func:`pipeline.search.trial_rows`
makes them, and the path's fold results): no Dask, no Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from .metrics import standard_error
from .report import TrialRow

__all__ = [
    "PATH_POINTS",
    "Choice",
    "PathCurve",
    "best_per_penalty",
    "choose",
    "curve_of",
    "for_metric",
    "l1_share",
    "pareto_front",
    "path_strengths",
    "strength_of",
]

PATH_POINTS = 100
_PENALTY_ORDER = ("l1", "elasticnet", "l2")


def l1_share(penalty: str, lambda1: float, lambda2: float) -> float:
    """``λ1 / (λ1 + λ2)``: 1 for l1, 0 for l2 (scikit-learn's ``l1_ratio``)."""
    if penalty == "l1":
        return 1.0
    if penalty == "l2":
        return 0.0
    return lambda1 / (lambda1 + lambda2)


def strength_of(penalty: str, lambda1: float, lambda2: float) -> float:
    """The strength a path runs along: λ1 (l1), λ2 (l2), λ1 + λ2 (elastic net, scikit-learn's ``alpha``)."""
    return {"l1": lambda1, "l2": lambda2}.get(penalty, lambda1 + lambda2)


def path_strengths(high: float, low: float, include: float, n: int = PATH_POINTS) -> tuple[float, ...]:
    """``n`` log-spaced strengths from ``high`` down to ``low``, plus ``include``, largest first."""
    grid = np.geomspace(high, low, n) if high > low else np.array([high])
    values = sorted({*map(float, grid), float(include)}, reverse=True)
    return tuple(values)


@dataclass(frozen=True)
class PathCurve:
    """The cross-validated curve of a dense path (means over folds at each strength)."""

    penalty: str
    l1_share: float
    strengths: tuple[float, ...]
    cv_mse: tuple[float, ...]
    cv_mse_se: tuple[float, ...]
    cv_r2: tuple[float, ...]
    train_mse: tuple[float, ...]
    n_nonzero: tuple[float, ...]

    def lambdas(self, i: int) -> tuple[float, float]:
        """``(λ1, λ2)`` at point ``i``."""
        s = self.strengths[i]
        return self.l1_share * s, (1.0 - self.l1_share) * s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PathCurve:
        """The curve of :meth:`as_dict` (as the study keeps it, lists for tuples)."""

        def floats(key: str) -> tuple[float, ...]:
            return tuple(float(v) for v in d[key])

        return cls(str(d["penalty"]), float(d["l1_share"]), floats("strengths"), floats("cv_mse"),
                   floats("cv_mse_se"), floats("cv_r2"), floats("train_mse"), floats("n_nonzero"))


def curve_of(penalty: str, share: float, strengths: Sequence[float],
             folds: Sequence[Mapping[str, Sequence[float]]]) -> PathCurve:
    """The curve from per-fold results (``heldout_mse``, ``heldout_r2``, ``train_mse``, ``n_nonzero`` each),
    cut at the shortest fold (a fold's path stops once its training fit is nearly exact, as glmnet's)."""
    m = min(len(f["heldout_mse"]) for f in folds)
    strengths = strengths[:m]
    mse = np.array([f["heldout_mse"][:m] for f in folds], dtype=float)  # (k, m)

    def mean(key: str) -> tuple[float, ...]:
        return tuple(float(v) for v in np.mean([f[key][:m] for f in folds], axis=0))

    se = standard_error(mse)
    return PathCurve(penalty, float(share), tuple(float(s) for s in strengths), mean("heldout_mse"),
                     tuple(float(v) for v in se), mean("heldout_r2"), mean("train_mse"), mean("n_nonzero"))


@dataclass(frozen=True)
class Choice:
    """A chosen point: a trial (``trial`` ≥ 0) or a point of the path (``trial`` None)."""

    rule: str
    penalty: str
    lambda1: float
    lambda2: float
    cv_mse: float
    cv_mse_se: float
    cv_r2: float
    n_nonzero: float  # fold mean; the registered model's own count replaces it in the summary
    trial: int | None = None
    multipliers: tuple[tuple[str, float], ...] = ()  # searched group multipliers (search.group_multipliers)

    def summary(self, n_nonzero: int | None = None) -> dict[str, Any]:
        """The summary's ``selected`` entry (``cv_metric`` is the selection metric: MSE here)."""
        out = {"rule": self.rule, "penalty": self.penalty, "lambda1": self.lambda1, "lambda2": self.lambda2,
               "cv_metric": self.cv_mse, "cv_metric_se": self.cv_mse_se, "cv_mse": self.cv_mse,
               "cv_mse_se": self.cv_mse_se, "cv_r2": self.cv_r2,
               "n_nonzero": self.n_nonzero if n_nonzero is None else n_nonzero, "trial": self.trial}
        return _with_multipliers(out, dict(self.multipliers))


def for_metric(entry: dict[str, Any], metric: str) -> dict[str, Any]:
    """A summary entry of a sweep whose metric is ``metric``: its ``cv_metric`` fields carry it, its ``cv_mse``
    fields are null unless the metric is the MSE (a deviance is not an MSE), and its share explained is named
    ``cv_deviance_explained`` there (``cv_r2`` for the MSE), as in MLflow and ``trials.csv``."""
    if metric == "mse":
        return entry
    return {("cv_deviance_explained" if k == "cv_r2" else k): (None if k in ("cv_mse", "cv_mse_se") else v)
            for k, v in entry.items()}


def _with_multipliers(entry: dict[str, Any], multipliers: dict[str, float]) -> dict[str, Any]:
    """``entry`` with ``group_multipliers`` when the search had groups (the entries stay as they were otherwise)."""
    return {**entry, "group_multipliers": multipliers} if multipliers else entry


def _row_multipliers(row: TrialRow) -> tuple[tuple[str, float], ...]:
    return tuple(row.get("group_multipliers", {}).items())


def _complete(rows: Sequence[TrialRow]) -> list[TrialRow]:
    return [r for r in rows if r["state"] == "COMPLETE" and math.isfinite(r["cv_mse"])]


def choose(rows: Sequence[TrialRow], curve: PathCurve,
           multipliers: tuple[tuple[str, float], ...] = ()) -> dict[str, Choice]:
    """The ``min`` and ``1se`` choices over the trials and the path (module docstring); ``multipliers`` are the
    group multipliers the path was run with (the best trial's)."""
    done = _complete(rows)
    best_row = min(done, key=lambda r: r["cv_mse"])
    i_min = int(np.argmin(curve.cv_mse))
    if curve.cv_mse[i_min] < best_row["cv_mse"]:
        lam1, lam2 = curve.lambdas(i_min)
        low = Choice("min", curve.penalty, lam1, lam2, curve.cv_mse[i_min], curve.cv_mse_se[i_min],
                     curve.cv_r2[i_min], curve.n_nonzero[i_min], multipliers=multipliers)
    else:
        low = Choice("min", best_row["penalty"], best_row["lambda1"], best_row["lambda2"], best_row["cv_mse"],
                     best_row["cv_mse_se"], best_row["cv_r2"], best_row["n_nonzero"], best_row["number"],
                     _row_multipliers(best_row))
    bar = low.cv_mse + (low.cv_mse_se if math.isfinite(low.cv_mse_se) else 0.0)
    within = [i for i, v in enumerate(curve.cv_mse) if v <= bar]
    if not within:  # cannot happen when the minimum lies on the path; keep the minimum then
        return {"min": low, "1se": replace(low, rule="1se")}
    i = min(within, key=lambda j: -curve.strengths[j])  # the largest strength
    lam1, lam2 = curve.lambdas(i)
    one_se = Choice("1se", curve.penalty, lam1, lam2, curve.cv_mse[i], curve.cv_mse_se[i], curve.cv_r2[i],
                    curve.n_nonzero[i], multipliers=multipliers)
    return {"min": low, "1se": one_se}


def best_per_penalty(rows: Sequence[TrialRow]) -> dict[str, dict[str, Any]]:
    """The best complete trial of each penalty (l1, elasticnet, l2 order)."""
    out: dict[str, dict[str, Any]] = {}
    done = _complete(rows)
    for penalty in _PENALTY_ORDER:
        mine = [r for r in done if r["penalty"] == penalty]
        if not mine:
            continue
        r = min(mine, key=lambda row: row["cv_mse"])
        out[penalty] = _with_multipliers({"trial": r["number"], "lambda1": r["lambda1"], "lambda2": r["lambda2"],
                                          "cv_metric": r["cv_mse"], "cv_metric_se": r["cv_mse_se"],
                                          "cv_mse": r["cv_mse"], "cv_mse_se": r["cv_mse_se"],
                                          "n_nonzero": r["n_nonzero"]}, dict(_row_multipliers(r)))
    return out


def pareto_front(rows: Sequence[TrialRow]) -> list[dict[str, Any]]:
    """The complete trials not dominated in (CV error, non-zeros), fewest non-zeros first.

    A trial is dominated when another has an error and a non-zero count no
    larger, one of them smaller (equal in both: the lower trial number stays).
    Sorted by count then error, a trial is on the front iff its error is below
    every error before it.
    """
    done = sorted(_complete(rows), key=lambda r: (r["n_nonzero"], r["cv_mse"], r["number"]))
    front: list[dict[str, Any]] = []
    best = math.inf
    for r in done:
        if r["cv_mse"] < best:
            best = r["cv_mse"]
            front.append(_with_multipliers({"trial": r["number"], "penalty": r["penalty"], "lambda1": r["lambda1"],
                                            "lambda2": r["lambda2"], "cv_metric": r["cv_mse"], "cv_mse": r["cv_mse"],
                                            "n_nonzero": r["n_nonzero"]}, dict(_row_multipliers(r))))
    return front
