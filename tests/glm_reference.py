"""Independent references for the binomial and Poisson objectives.

``objective`` evaluates glmnet's objective from a fit's coefficients with its own formula (not the solver's
code), and ``brute_force`` minimises it by scipy's L-BFGS-B on the split variables (b, β⁺, β⁻) with
β = β⁺ − β⁻ ≥ 0 parts (limits as bounds): an algorithm that shares nothing with regsweep's solver.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def mean_half_deviance(family: str, y: np.ndarray, eta: np.ndarray, w: np.ndarray) -> float:
    """``Σ w ½d(y, η) / Σw``: binomial ``log(1+e^η) − yη``, Poisson ``e^η − yη − y + y log y``."""
    if family == "binomial":
        loss = np.logaddexp(0.0, eta) - y * eta
    else:
        ylogy = np.zeros_like(y)
        pos = y > 0
        ylogy[pos] = y[pos] * np.log(y[pos])
        loss = np.exp(eta) - y * eta - y + ylogy
    return float(w @ loss / w.sum())


def objective(family: str, X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float, lam1: float,
              lam2: float, *, w: np.ndarray | None = None, offset: np.ndarray | None = None,
              scale: np.ndarray | None = None, factor: np.ndarray | None = None) -> float:
    """The objective on the data's scale, the penalty on ``scale ∘ β`` (the standardized coefficients)."""
    n, p = X.shape
    w = np.ones(n) if w is None else w
    s = np.ones(p) if scale is None else scale
    f = np.ones(p) if factor is None else factor
    eta = intercept + X @ coef + (0.0 if offset is None else offset)
    bt = coef * s
    return mean_half_deviance(family, y, eta, w) + lam1 * float(f @ np.abs(bt)) + 0.5 * lam2 * float(f @ (bt * bt))


def weighted_scale(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The columns' standard deviations under the weights (1/Σw), as glmnet standardizes."""
    mean = w @ X / w.sum()
    return np.sqrt(w @ (X - mean) ** 2 / w.sum())


def brute_force(family: str, X: np.ndarray, y: np.ndarray, lam1: float, lam2: float, *, w: np.ndarray | None = None,
                offset: np.ndarray | None = None, factor: np.ndarray | None = None, lower: np.ndarray | None = None,
                upper: np.ndarray | None = None) -> tuple[float, np.ndarray, float]:
    """Minimise the standardized problem by L-BFGS-B; returns (objective, coef, intercept) on the data's scale."""
    n, p = X.shape
    w = np.ones(n) if w is None else w
    off = np.zeros(n) if offset is None else offset
    f = np.ones(p) if factor is None else factor
    s = weighted_scale(X, w)
    mu = w @ X / w.sum()
    Xs = (X - mu) / s
    lo = (np.full(p, -np.inf) if lower is None else lower) * s
    hi = (np.full(p, np.inf) if upper is None else upper) * s
    W = w.sum()

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        b0, bp, bm = z[0], z[1:p + 1], z[p + 1:]
        beta = bp - bm
        eta = off + b0 + Xs @ beta
        mean = 1.0 / (1.0 + np.exp(-eta)) if family == "binomial" else np.exp(eta)
        val = mean_half_deviance(family, y, eta, w) + lam1 * f @ (bp + bm) + 0.5 * lam2 * f @ (beta * beta)
        r = w * (mean - y) / W
        g = Xs.T @ r + lam2 * f * beta
        return val, np.concatenate([[r.sum()], g + lam1 * f, -g + lam1 * f])

    bounds = [(None, None)] + [(0, h if np.isfinite(h) else None) for h in hi] + \
        [(0, -v if np.isfinite(v) else None) for v in lo]
    res = minimize(fun, np.zeros(2 * p + 1), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": 1e-16, "gtol": 1e-13, "maxiter": 200_000, "maxfun": 200_000})
    beta = res.x[1:p + 1] - res.x[p + 1:]
    coef = beta / s
    return float(res.fun), coef, float(res.x[0] - mu @ coef)
