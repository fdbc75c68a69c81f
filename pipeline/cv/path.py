"""A dense path of one penalty on the fold models: glmnet's ``cv.glmnet`` curve, from statistics.

After the search, the winning penalty (at its mixing ``λ1/(λ1+λ2)`` for the
elastic net) is fitted along a grid of strengths ``s`` from the largest down
(``λ1 = share·s``, ``λ2 = (1 − share)·s``), on every fold, warm-started from
the previous point as glmnet does. The fold models are the ones the trials
used, so no row is read again. :func:`coefficient_path` fits the same grid on
all rows, for the coefficient path plot.

Worker functions, pure in their inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..candidate import Candidate
from ..config import ModelConfig
from ..solvers import GramProblem
from .fold_models import FoldModel
from .passes import BlockPass
from .waiting import wait_done

if TYPE_CHECKING:
    from .placement import FoldPlacement

__all__ = ["FoldPath", "PathSpec", "coefficient_path", "run_path", "score_path"]


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
    """One fold along a path: held-out and training errors and non-zeros per point."""

    fold: int
    heldout_mse: tuple[float, ...]
    heldout_r2: tuple[float, ...]
    train_mse: tuple[float, ...]
    n_nonzero: tuple[int, ...]


def score_path(models: Sequence[FoldModel], spec: PathSpec, tol: float) -> list[FoldPath]:
    """Every point of ``spec`` on every fold model given, each fold warm-started along the path."""
    out = []
    for model in models:
        mse, r2, train, nnz = [], [], [], []
        beta: np.ndarray | None = None
        with model.lock:
            for i in range(len(spec.strengths)):
                cand = spec.candidate(i)
                result = model.problem.solve(cand.penalty_object(), beta if cand.lambda1 > 0 else None,
                                             tol=tol, reuse_factor=True)
                beta = result.beta
                mse.append(model.heldout.mse(result.coef, result.intercept))
                r2.append(model.heldout.r2(result.coef, result.intercept))
                train.append(model.train.mse(result.coef, result.intercept))
                nnz.append(result.n_nonzero)
        out.append(FoldPath(model.fold, tuple(mse), tuple(r2), tuple(train), tuple(nnz)))
    return out


def coefficient_path(passes: BlockPass, spec: PathSpec, model: ModelConfig) -> np.ndarray:
    """Standardized coefficients (``coef × x_scale``) at every point of ``spec`` on all rows: shape (p, m)."""
    problem = GramProblem.from_stats(passes.total_stats, fit_intercept=model.fit_intercept,
                                     standardize=model.standardize)
    coefs = np.zeros((problem.n_features, len(spec.strengths)))
    beta: np.ndarray | None = None
    for i in range(len(spec.strengths)):
        cand = spec.candidate(i)
        result = problem.solve(cand.penalty_object(), beta if cand.lambda1 > 0 else None, tol=model.tol,
                               reuse_factor=True)
        beta = result.beta
        coefs[:, i] = result.coef * problem.x_scale
    return coefs


def run_path(placement: FoldPlacement, spec: PathSpec, tol: float) -> list[FoldPath]:
    """:func:`score_path` on the cluster, one task per slot (one in all when a slot holds every fold).

    The fold models are placed again first if they were lost since the last trial.
    """
    if placement.lost():
        placement.rebuild()
    slots = placement.slots
    whole = [slot for slot in slots if len(slot.folds) == placement.k]
    futs = [placement.client.submit(score_path, slot.models, spec, tol, pure=False) for slot in (whole[:1] or slots)]
    return sorted((fold for fut in futs for fold in wait_done(fut)), key=lambda f: f.fold)
