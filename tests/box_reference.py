"""A brute-force reference for elastic nets with penalty factors and coefficient limits.

The box-constrained, per-feature elastic net is written as a smooth problem in (β⁺, β⁻) ≥ 0 with
β = β⁺ − β⁻ (the limits become upper bounds on β⁺ and β⁻) and minimised by scipy's L-BFGS-B to a
projected gradient of 1e-13: an algorithm that shares nothing with regsweep's solvers.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def brute_force(X: np.ndarray, y: np.ndarray, lam1: float, lam2: float, factor: np.ndarray, lower: np.ndarray,
                upper: np.ndarray) -> tuple[float, np.ndarray, float]:
    """The box-constrained problem minimised by L-BFGS-B over (β⁺, β⁻) on the standardized columns."""
    n, p = X.shape
    s, mu = X.std(axis=0), X.mean(axis=0)
    Xs, yc = (X - mu) / s, y - y.mean()
    lo, hi = lower * s, upper * s

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        b = z[:p] - z[p:]
        r = yc - Xs @ b
        g = -Xs.T @ r / n + lam2 * factor * b
        val = 0.5 * r @ r / n + lam1 * factor @ (z[:p] + z[p:]) + 0.5 * lam2 * factor @ (b * b)
        return val, np.concatenate([g + lam1 * factor, -g + lam1 * factor])

    bounds = [(0, h if np.isfinite(h) else None) for h in hi] + [(0, -lo_ if np.isfinite(lo_) else None) for lo_ in lo]
    res = minimize(fun, np.zeros(2 * p), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": 1e-16, "gtol": 1e-13, "maxiter": 200_000, "maxfun": 200_000})
    coef = (res.x[:p] - res.x[p:]) / s
    return float(res.fun), coef, float(y.mean() - mu @ coef)
