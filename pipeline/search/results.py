"""A trial's cross-validated result: the fold scores aggregated, and what the study keeps of it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..candidate import Candidate
from ..cv import FoldScore

__all__ = ["TrialResult", "summarize_scores"]


@dataclass(frozen=True)
class TrialResult:
    """A trial's cross-validated scores, aggregated over folds."""

    number: int
    candidate: Candidate
    cv_mse: float
    cv_mse_se: float
    fold_mse: tuple[float, ...]
    train_mse: float
    cv_r2: float
    n_nonzero: float
    n_iter: int
    converged: bool
    fit_seconds: float
    start: float
    end: float

    def metrics(self) -> dict[str, float]:
        """The trial's metrics as MLflow logs them (the per-fold errors apart)."""
        return {
            "cv_mse": self.cv_mse,
            "cv_mse_se": self.cv_mse_se,
            "train_mse": self.train_mse,
            "cv_r2": self.cv_r2,
            "n_nonzero": self.n_nonzero,
            "n_iter": float(self.n_iter),
            "converged": float(self.converged),
            "fit_seconds": self.fit_seconds,
        }

    def attrs(self) -> dict[str, object]:
        """What the study keeps of the trial besides its value (user attribute ``cv``): every metric
        and the per-fold errors, so MLflow can be re-synced from the study alone."""
        out: dict[str, object] = {k: v for k, v in self.metrics().items() if k != "cv_mse"}
        out["fold_mse"] = list(self.fold_mse)
        return out


def summarize_scores(candidate: Candidate, scores: Sequence[FoldScore], start: float, end: float) -> TrialResult:
    """Mean held-out MSE over folds (the objective), its standard error and the rest.

    The standard error is the standard deviation of the fold errors over √K
    (glmnet's ``cvsd``); folds are taken in fold order, so the sums are the
    same whichever worker answered first.
    """
    scores = sorted(scores, key=lambda s: s.fold)
    mse = np.array([s.heldout_mse for s in scores])
    k = mse.size
    return TrialResult(
        number=candidate.trial,
        candidate=candidate,
        cv_mse=float(mse.mean()),
        cv_mse_se=float(mse.std(ddof=1) / math.sqrt(k)) if k > 1 else float("nan"),
        fold_mse=tuple(float(v) for v in mse),
        train_mse=float(np.mean([s.train_mse for s in scores])),
        cv_r2=float(np.mean([s.heldout_r2 for s in scores])),
        n_nonzero=float(np.mean([s.n_nonzero for s in scores])),
        n_iter=int(sum(s.n_iter for s in scores)),
        converged=all(s.converged for s in scores),
        fit_seconds=float(sum(s.seconds for s in scores)),
        start=start,
        end=end,
    )
