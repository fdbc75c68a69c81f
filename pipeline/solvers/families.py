"""The losses beyond squared error: binomial (logistic) and Poisson, glmnet's conventions.

A family gives, for a linear predictor ``η`` (offset included), the mean ``μ = g⁻¹(η)``, the IRLS
variance ``V(μ) = dμ/dη`` (canonical links: the variance function), and the half unit deviance

    binomial (y ∈ {0, 1}):  ½ d(y, η) = log(1 + e^η) − y η
    Poisson  (y ≥ 0):       ½ d(y, η) = e^η − y η − (y − y log y)        (0 log 0 = 0)

so that the saturated model has deviance 0 and the regsweep objective is glmnet's

    F(b, β) = Σ wᵢ ½ d(yᵢ, ηᵢ) / Σw + penalty,      ηᵢ = offsetᵢ + b + xᵢᵀβ.

A fold's held-out metric is the weighted mean deviance ``Σ wᵢ d(yᵢ, ηᵢ) / Σw`` (glmnet's
``type.measure = "deviance"``; for 0/1 targets twice the log-loss). Everything here is elementwise and
overflow-safe: ``log(1 + e^η)`` by ``logaddexp``, ``e^η`` clipped where it would overflow (the line
search of :mod:`.glm` never accepts such a point: its objective is then huge, not NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["BINOMIAL", "FAMILY_NAMES", "POISSON", "Family", "family_named"]

FAMILY_NAMES: tuple[str, ...] = ("gaussian", "binomial", "poisson")
_ETA_MAX = 700.0  # e^700 ≈ 1e304: finite; beyond, the Poisson mean is clipped
_LOG_Y_OVERFLOW = -9.0  # below this log y, e^{min(η, _ETA_MAX) − log y} can overflow (709.78 − 700 = 9.78)
_V_FLOOR = 1e-10  # IRLS weights below this fraction of the largest are raised to it (glmnet clamps μ alike)


@dataclass(frozen=True)
class Family:
    """A GLM family with its canonical link (``binomial``: logit, ``poisson``: log)."""

    name: str

    def mean(self, eta: np.ndarray) -> np.ndarray:
        """``μ = g⁻¹(η)``."""
        if self.name == "binomial":
            from scipy.special import expit

            return np.asarray(expit(eta))
        return np.exp(np.minimum(eta, _ETA_MAX))

    def variance(self, mu: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The IRLS weights' factor ``V(μ) = dμ/dη``, floored at ``_V_FLOOR ×`` its largest value over ``rows``
        (the problem's rows: a fold's held-out rows, weighted 0, must not set the floor of its training rows)
        and never 0: every row keeps a positive weight in the quadratic model, so its centring and kept columns
        do not change between steps."""
        v = mu * (1.0 - mu) if self.name == "binomial" else mu.copy()
        top = float(np.max(v if rows is None else v[rows], initial=0.0))
        return np.maximum(v, _V_FLOOR * top if top > 0 else np.finfo(np.float64).tiny)

    def half_deviance(self, y: np.ndarray, eta: np.ndarray, terms: np.ndarray | None = None) -> np.ndarray:
        """``½ d(y, η)`` per row (≥ 0; 0 at the saturated fit). ``terms``: :meth:`deviance_terms` of ``y`` (or
        their columns of the same rows), if known (a problem computes them once).

        Binomial: ``log(1 + e^η) = log1p(e^{−|η|}) + max(η, 0)``, overflow-free and a third of the time of
        ``logaddexp`` (one exponential, no branches).

        Poisson: ``e^η − yη − y + y log y``, written with ``r = η − log y`` as ``y (e^r − 1 − r)`` (``η`` capped
        at ``_ETA_MAX`` in the exponential). Near a good fit the four terms of the first form are each about
        ``y |η|`` while their sum is about ``y r²/2``: at ``y = 10⁶`` and ``r = 10⁻⁴`` it kept 6 digits. With
        ``expm1`` the loss is about ``ε (2 + |log y|) / |r|`` relative (4e-11 there: ``r`` comes from a rounded
        ``log y``). A zero count's ``e^η`` is the same expression with ``log y = 0``, ``r = −1`` and ``y`` read
        as 1 (``expm1(η) + 1``: within ε absolutely, below any sum's rounding), so no row takes a branch: one
        transcendental per row; 19 µs against the cancelling form's 13 µs on 5,000 rows, which five
        2·10⁵ × 100 Poisson fits did not show (2.07 s against 2.13 s, medians of 6). Only a count below ``e^{−9}`` can make ``e^r`` overflow (``r > 709``): such
        rows, far from the fit where nothing cancels, take the first form."""
        if self.name == "binomial":
            out = np.exp(-np.abs(eta))
            np.log1p(out, out=out)
            out += np.maximum(eta, 0.0)
            out -= y * eta
            return out
        if terms is None:
            terms = _poisson_terms(y)
        log_y, r_shift, r_scale, y_or_1 = terms
        out = np.minimum(eta, _ETA_MAX)
        out -= log_y
        with np.errstate(over="ignore"):
            np.expm1(out, out=out)  # e^r − 1 (e^η − 1 for a zero count)
        r = np.multiply(eta, r_scale)
        r -= r_shift  # η − log y (−1 for a zero count)
        out -= r
        out *= y_or_1
        if float(log_y.min(initial=0.0)) < _LOG_Y_OVERFLOW and (over := np.isinf(out) & np.isfinite(eta)).any():
            y_o, eta_o, log_o = y[over], eta[over], log_y[over]
            out[over] = np.exp(np.minimum(eta_o, _ETA_MAX)) - y_o * eta_o - y_o + y_o * log_o
        return out

    def half_deviance_and_mean(self, y: np.ndarray, eta: np.ndarray,
                               terms: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`half_deviance` and :meth:`mean` at once. Binomial: both from one ``e = e^{−|η|}``, with
        ``μ = 1/(1 + e)`` for ``η ≥ 0`` and ``e/(1 + e)`` below (within 4 ulps of scipy's ``expit``): one
        exponential per row where the two took two (5,242 rows: 70 → 31–49 µs, the elementwise
        work of every step of a batched binomial fit). Poisson: the two as they are (the deviance's
        exponential is of ``η − log y``, for its precision)."""
        if self.name != "binomial":
            return self.half_deviance(y, eta, terms), self.mean(eta)
        e = np.exp(-np.abs(eta))
        out = np.log1p(e)
        out += np.maximum(eta, 0.0)
        out -= y * eta
        mu = np.where(eta >= 0.0, 1.0, e)
        e += 1.0
        mu /= e
        return out, mu

    def deviance_terms(self, y: np.ndarray) -> np.ndarray | None:
        """Poisson: what :meth:`half_deviance` needs of ``y`` per row, as the rows of a ``(4, n)`` array:
        ``log y`` (0 for a zero count), the shift of ``r = η·scale − shift`` (``log y``; 1 for a zero count), its
        scale (1; 0 for a zero count) and ``y`` (1 for a zero count). Binomial: None."""
        return None if self.name == "binomial" else _poisson_terms(y)

    def null_intercept(self, y: np.ndarray, w: np.ndarray, offset: np.ndarray) -> float:
        """The intercept of the model without features (the start of every path).

        Poisson: ``log(Σwy / Σw e^offset)`` in closed form. Binomial: ``logit(ȳ)`` without an offset, else
        Newton's method on the one-dimensional concave likelihood (from ``logit(ȳ)``, safeguarded by
        bisection). Raises ``ValueError`` when no finite intercept exists (one class; all counts 0).
        """
        sw = float(w.sum())
        ybar = float(w @ y) / sw
        if self.name == "poisson":
            if ybar <= 0:
                raise ValueError("every count on the training rows is 0, so the Poisson model has no finite "
                                 "intercept (the fitted mean would be 0); check the target column and the folds.")
            shift = float(np.max(offset)) if offset.size else 0.0
            return math.log(ybar * sw) - math.log(float(w @ np.exp(offset - shift))) - shift
        if not 0.0 < ybar < 1.0:
            raise ValueError("the training rows hold one class only, so the logistic model has no finite "
                             "intercept; check the target column (two classes are needed) and the folds.")
        b = math.log(ybar / (1.0 - ybar))
        if not np.any(offset):
            return b
        lo, hi = -_ETA_MAX - float(np.max(offset)), _ETA_MAX - float(np.min(offset))
        for _ in range(100):
            mu = self.mean(offset + b)
            grad = float(w @ (mu - y))
            if grad > 0:
                hi = b
            else:
                lo = b
            hess = float(w @ (mu * (1.0 - mu)))
            step = b - grad / hess if hess > 0 else 0.5 * (lo + hi)
            b_next = step if lo < step < hi else 0.5 * (lo + hi)
            if abs(b_next - b) <= 1e-15 * max(1.0, abs(b)):
                return b_next
            b = b_next
        return b


def _poisson_terms(y: np.ndarray) -> np.ndarray:
    """:meth:`Family.deviance_terms` of Poisson counts ``y``."""
    y = np.asarray(y, dtype=np.float64)
    pos = y > 0
    log_y = np.log(np.where(pos, y, 1.0))
    return np.stack([log_y, np.where(pos, log_y, 1.0), pos.astype(np.float64), np.where(pos, y, 1.0)])


BINOMIAL = Family("binomial")
POISSON = Family("poisson")


def family_named(name: str) -> Family:
    """The family called ``name`` (``binomial`` or ``poisson``; gaussian is the squared-loss path)."""
    if name == "binomial":
        return BINOMIAL
    if name == "poisson":
        return POISSON
    raise ValueError(f"`family` must be one of {list(FAMILY_NAMES)}, got {name!r}.")
