"""Held-out scores of the families: the metric a sweep minimises, and what else a child run logs.

The metric of a fold is the weighted mean held-out deviance (glmnet's ``type.measure = "deviance"``):

- ``mse`` (gaussian): ``Σ w (y − ŷ)² / Σw``;
- ``binomial_deviance``: ``Σ w · 2[log(1 + e^η) − yη] / Σw``, twice the log-loss for 0/1 targets;
- ``poisson_deviance``: ``Σ w · 2[y log(y/μ) − (y − μ)] / Σw``.

Beside it a child run logs, per trial (means over folds): ``log_loss``, ``auc`` (weighted Mann–Whitney, ties
counted half; missing where a fold's held-out rows hold one class), ``accuracy`` (at probability ½) and
``brier`` (binomial), ``mae`` (poisson); and the deviance explained on the held-out rows,
``1 − deviance / deviance of the intercept-only model fitted to them`` (R² for gaussian), in the ``cv_r2``
slot. Pure numpy.
"""

from __future__ import annotations

import math

import numpy as np

from .solvers.families import family_named

__all__ = ["EXTRA_METRICS", "METRIC_OF", "auc", "fold_scores", "metric_label", "null_deviance", "standard_error"]

METRIC_OF = {"gaussian": "mse", "binomial": "binomial_deviance", "poisson": "poisson_deviance"}
EXTRA_METRICS = {"gaussian": (), "binomial": ("log_loss", "auc", "accuracy", "brier"), "poisson": ("mae",)}
_LABELS = {"mse": "MSE", "binomial_deviance": "binomial deviance", "poisson_deviance": "Poisson deviance"}


def standard_error(fold_values: np.ndarray) -> np.ndarray:
    """glmnet's ``cvsd`` of each column of ``fold_values`` (K folds × points): the folds' standard deviation over
    √K (NaN for one fold). Scaled by the column's largest magnitude first: a weakly penalized Poisson fit can
    put a held-out deviance near 1e160 (e^η of an extrapolated row), whose square overflowed with a warning;
    an infinite value gives an infinite error, a NaN one NaN."""
    x = np.asarray(fold_values, dtype=float)
    k = x.shape[0]
    if k < 2:
        return np.full(x.shape[1:], np.nan)
    with np.errstate(invalid="ignore"):
        top = np.max(np.abs(x), axis=0)
        scale = np.where(np.isfinite(top) & (top > 0), top, 1.0)
        se = scale * (x / scale).std(axis=0, ddof=1) / math.sqrt(k)
    return np.where(np.isfinite(top) | np.isnan(top), se, np.inf)


def metric_label(metric: str) -> str:
    """How the terminal and the plots name a metric (``CV MSE``, ``CV binomial deviance``)."""
    return _LABELS.get(metric, metric)


def null_deviance(family: str, y: np.ndarray, w: np.ndarray, offset: np.ndarray | None = None) -> float:
    """The weighted mean deviance of the intercept-only model fitted to rows ``y`` (with ``offset``): the reference
    of the deviance explained (NaN where it does not exist: one class, or no count)."""
    fam = family_named(family)
    off = np.zeros_like(y) if offset is None else offset
    try:
        return 2.0 * float(w @ fam.half_deviance(y, fam.null_intercept(y, w, off) + off)) / float(w.sum())
    except ValueError:
        return math.nan


def fold_scores(family: str, y: np.ndarray, eta: np.ndarray, w: np.ndarray,
                null: float | None = None, *, extras: bool = True) -> tuple[float, float, dict[str, float]]:
    """``(deviance, deviance explained, extras)`` of held-out rows with linear predictor ``eta`` (offset
    included) for a binomial or Poisson family; ``null`` is their :func:`null_deviance` (a fold model computes it
    once; None: computed here, without an offset). ``extras=False``: the first two only (a dense path's points,
    whose curve is the deviance; the AUC sorts the held-out rows)."""
    fam = family_named(family)
    sw = float(w.sum())
    dev = 2.0 * float(w @ fam.half_deviance(y, eta)) / sw
    null = null_deviance(family, y, w) if null is None else null
    explained = 1.0 - dev / null if null > 0 else math.nan
    if not extras:
        return dev, explained, {}
    mu = fam.mean(eta)
    if family == "binomial":
        return dev, explained, {"log_loss": dev / 2.0, "auc": auc(y, eta, w),  # ranked by η: expit(η) is 1 above 37
                                "accuracy": float(w @ ((mu >= 0.5) == (y > 0.5))) / sw,
                                "brier": float(w @ ((mu - y) ** 2)) / sw}
    return dev, explained, {"mae": float(w @ np.abs(y - mu)) / sw}


def auc(y: np.ndarray, score: np.ndarray, w: np.ndarray | None = None) -> float:
    """The weighted area under the ROC curve of scores for 0/1 labels: the probability that a positive row
    scores above a negative one, ties counted half (NaN without both classes)."""
    w = np.ones_like(score) if w is None else w
    pos = y > 0.5
    w_pos, w_neg = float(w[pos].sum()), float(w[~pos].sum())
    if not (w_pos > 0 and w_neg > 0):
        return math.nan
    values, group = np.unique(score, return_inverse=True)
    pos_by = np.bincount(group, weights=np.where(pos, w, 0.0), minlength=values.size)
    neg_by = np.bincount(group, weights=np.where(pos, 0.0, w), minlength=values.size)
    neg_below = np.cumsum(neg_by) - neg_by
    return float(pos_by @ (neg_below + 0.5 * neg_by)) / (w_pos * w_neg)
