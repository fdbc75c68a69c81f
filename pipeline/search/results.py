"""A trial's cross-validated result: the fold scores aggregated, and what the study keeps of it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..candidate import Candidate
from ..metrics import standard_error
from ..cv import FoldScore

__all__ = ["TrialResult", "explained_name", "summarize_scores"]


@dataclass(frozen=True)
class TrialResult:
    """A trial's cross-validated scores, aggregated over folds.

    ``cv_mse``, ``cv_mse_se``, ``fold_mse`` and ``train_mse`` hold the sweep's ``metric`` (:mod:`pipeline.metrics`:
    the MSE for gaussian, the mean deviance for binomial and poisson; MLflow and the study name them by it),
    ``cv_r2`` the share of deviance explained, ``extra`` the family's other scores (means over folds).
    """

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
    metric: str = "mse"
    extra: tuple[tuple[str, float], ...] = ()

    def metrics(self) -> dict[str, float]:
        """The trial's metrics as MLflow logs them (the per-fold errors apart)."""
        m = self.metric
        return {
            f"cv_{m}": self.cv_mse,
            f"cv_{m}_se": self.cv_mse_se,
            f"train_{m}": self.train_mse,
            explained_name(m): self.cv_r2,
            **{f"cv_{name}": value for name, value in self.extra},
            "n_nonzero": self.n_nonzero,
            "n_iter": float(self.n_iter),
            "converged": float(self.converged),
            "fit_seconds": self.fit_seconds,
        }

    def attrs(self) -> dict[str, object]:
        """What the study keeps of the trial besides its value (user attribute ``cv``): every metric
        and the per-fold errors, so MLflow can be re-synced from the study alone."""
        out: dict[str, object] = {k: v for k, v in self.metrics().items() if k != f"cv_{self.metric}"}
        out[f"fold_{self.metric}"] = list(self.fold_mse)
        return out


def explained_name(metric: str) -> str:
    """The name of the share of deviance explained: ``cv_r2`` for MSE, ``cv_deviance_explained`` otherwise."""
    return "cv_r2" if metric == "mse" else "cv_deviance_explained"


def summarize_scores(candidate: Candidate, scores: Sequence[FoldScore], start: float, end: float,
                     metric: str = "mse") -> TrialResult:
    """Mean held-out metric over folds (the objective), its standard error and the rest.

    The standard error is the standard deviation of the fold errors over √K
    (glmnet's ``cvsd``); folds are taken in fold order, so the sums are the
    same whichever worker answered first. An extra score missing on a fold (AUC where its held-out rows hold
    one class) is averaged over the other folds.
    """
    scores = sorted(scores, key=lambda s: s.fold)
    mse = np.array([s.heldout_mse for s in scores])
    return TrialResult(
        number=candidate.trial,
        candidate=candidate,
        cv_mse=float(mse.mean()),
        cv_mse_se=float(standard_error(mse)),
        fold_mse=tuple(float(v) for v in mse),
        train_mse=float(np.mean([s.train_mse for s in scores])),
        cv_r2=float(np.mean([s.heldout_r2 for s in scores])),
        n_nonzero=float(np.mean([s.n_nonzero for s in scores])),
        n_iter=int(sum(s.n_iter for s in scores)),
        converged=all(s.converged for s in scores),
        fit_seconds=float(sum(s.seconds for s in scores)),
        start=start,
        end=end,
        metric=metric,
        extra=_extra_means(scores),
    )


def _extra_means(scores: Sequence[FoldScore]) -> tuple[tuple[str, float], ...]:
    names = [name for name, _ in scores[0].extra] if scores else []
    out = []
    for name in names:
        values = [v for s in scores for n, v in s.extra if n == name and math.isfinite(v)]
        out.append((name, float(np.mean(values)) if values else float("nan")))
    return tuple(out)
