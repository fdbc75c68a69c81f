"""Lasso and elastic net on a Gram matrix by an active-set Newton method.

Problem (every quantity on the scale the penalty acts on, ``yy = yᵀWy/Σw``
of the centred target when an intercept is fitted):

    P(β) = ½ yy − qᵀβ + ½ βᵀGβ + λ1‖β‖₁ + (λ2/2)‖β‖²

Why not coordinate descent: a Python loop over coordinates costs microseconds
per update, and Gram CD needs many sweeps to reach a tight tolerance. The
solution of a lasso is instead *piecewise linear*: once the support A and the
signs θ are known, it solves the linear system

    (G_AA + λ2 I) β_A = q_A − λ1 θ_A                                    (1)

exactly, in one Cholesky of the active block. So the method is:

1. **Outer loop (working set + KKT re-check).** ``c = q − Gβ − λ2β`` is the
   negative gradient of the smooth part. β is optimal iff ``c_j = λ1 sign β_j``
   on the support and ``|c_j| ≤ λ1`` off it. Off-support violators are added
   to the working set, largest violation first, at most ``max(8, |A|)`` at a
   time (the set at most doubles, like celer/skglm working sets). Computing c
   touches only the columns of A: ``O(p |A|)``, never a full sweep over p².
2. **Inner loop (sign-consistent Newton with a ratio test).** Solve (1) on the
   working set. If every coefficient keeps its sign, done. Otherwise step
   from the current β towards the Newton point up to the first coefficient
   that hits zero (on this segment the objective equals the convex quadratic
   with signs θ, so it decreases), drop that coefficient and solve again.
   This is the feature-sign search of Lee et al. (2007) and the active-set
   method of LARS/homotopy; each step strictly decreases P, so the loop is
   finite. A single added variable always enters with its sign when the
   previous set was optimal (its Schur-complement step is
   ``(c_j − λ1 θ_j) / s``, ``s > 0``), which is the fallback when a batch of
   additions stalls.
3. **Gap-safe screening** (Ndiaye et al., 2017). With the dual point scaled
   from the residual, feature j is certainly zero at the optimum if
   ``s |c_j| + sqrt(2 gap (G_jj + λ2)) < λ1``; screened features leave the
   KKT check for good.
4. **Certificate.** The duality gap (below) is computed at the end over all
   features; ``converged`` means ``gap ≤ tol · ½ yy``, i.e. ``tol`` is
   relative to the objective at β = 0. Default ``tol = 1e-10``; the exact
   linear solves usually give a gap at rounding level.

A warm start from a nearby solution (same support) costs one Cholesky and one
KKT check. A singular active block (duplicate columns, p > n with λ2 = 0) is
handled by an eigendecomposition: the minimum-norm Newton step on the range,
or, when the gradient has a component in the null space, a descent ray along
it to the first sign change.

Duality gap (the elastic net as a lasso on augmented data, as in
scikit-learn's ``enet_coordinate_descent_gram``): with ``R2 = yy − 2qᵀβ + βᵀGβ``,
``s = min(1, λ1 / ‖c‖∞)``,

    gap = ½(1 + s²)(R2 + λ2‖β‖²) + λ1‖β‖₁ − s (yy − qᵀβ)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = ["SolverResult", "enet_duality_gap", "enet_gram"]

_EPS = np.finfo(np.float64).eps
_MIN_BATCH = 8


@dataclass(frozen=True, eq=False)
class SolverResult:
    """Outcome of one solve.

    Attributes
    ----------
    beta : ndarray of shape (p,)
        Coefficients on the scale of the Gram.
    n_iter : int
        Number of Newton steps (linear solves of an active block).
    dual_gap : float
        Duality gap at ``beta`` (absolute, in objective units).
    gap_tol : float
        The absolute tolerance ``dual_gap`` was held to.
    converged : bool
        ``dual_gap <= gap_tol`` within the iteration budget.
    """

    beta: np.ndarray
    n_iter: int
    dual_gap: float
    gap_tol: float
    converged: bool


def enet_duality_gap(
    G: np.ndarray, q: np.ndarray, yy: float, beta: np.ndarray, lambda1: float, lambda2: float
) -> float:
    """Duality gap of the elastic net at ``beta`` (see the module docstring). ``O(p |supp β|)``."""
    support = np.flatnonzero(beta)
    Gb = G[:, support] @ beta[support]
    c = q - Gb - lambda2 * beta
    return _gap_from_parts(q, yy, beta, Gb, float(np.max(np.abs(c), initial=0.0)), lambda1, lambda2)


def _gap_from_parts(
    q: np.ndarray,
    yy: float,
    beta: np.ndarray,
    Gb: np.ndarray,
    c_norm_inf: float,
    lambda1: float,
    lambda2: float,
) -> float:
    qb = float(q @ beta)
    bb = float(beta @ beta)
    r2 = yy - 2.0 * qb + float(beta @ Gb)
    s = 1.0 if c_norm_inf <= lambda1 else lambda1 / c_norm_inf
    gap = 0.5 * (1.0 + s * s) * (r2 + lambda2 * bb) + lambda1 * float(np.abs(beta).sum()) - s * (yy - qb)
    return max(gap, 0.0)


def enet_gram(
    G: np.ndarray,
    q: np.ndarray,
    yy: float,
    lambda1: float,
    lambda2: float,
    beta0: np.ndarray | None = None,
    *,
    tol: float = 1e-10,
    max_iter: int | None = None,
) -> SolverResult:
    """Minimise ``½yy − qᵀβ + ½βᵀGβ + λ1‖β‖₁ + (λ2/2)‖β‖²`` for ``λ1 > 0``.

    Parameters
    ----------
    G : ndarray of shape (p, p)
        Symmetric positive semi-definite Gram (``XᵀWX/Σw`` of the centred,
        possibly standardized design).
    q : ndarray of shape (p,)
        ``XᵀW(y − ȳ)/Σw``.
    yy : float
        ``(y − ȳ)ᵀW(y − ȳ)/Σw``; only the gap needs it.
    lambda1, lambda2 : float
        Penalty strengths, ``λ1 > 0``, ``λ2 ≥ 0``.
    beta0 : ndarray of shape (p,), optional
        Warm start. Its support is the first active set.
    tol : float, default 1e-10
        Convergence tolerance on the duality gap relative to ``½ yy``.
    max_iter : int, optional
        Budget of Newton steps, default ``100 + 10 p``.

    Returns
    -------
    SolverResult
    """
    p = q.shape[0]
    gap_tol = tol * max(0.5 * yy, np.finfo(np.float64).tiny)
    max_iter = 100 + 10 * p if max_iter is None else max_iter
    lam_max = float(np.max(np.abs(q), initial=0.0))
    beta = np.zeros(p) if beta0 is None else np.array(beta0, dtype=np.float64)
    if lambda1 >= lam_max:
        beta[:] = 0.0
        gap = enet_duality_gap(G, q, yy, beta, lambda1, lambda2)
        return SolverResult(beta, 0, gap, gap_tol, gap <= gap_tol)

    slack = 1e-12 * lam_max  # KKT violations below this are rounding, not signal
    diag_h = np.diag(G) + lambda2
    unscreened = np.ones(p, dtype=bool)
    active = np.flatnonzero(beta)
    c = _neg_gradient(G, q, beta, active, lambda2, np.arange(p))
    need_solve = active.size > 0  # a warm start's set has not been solved yet
    stalls = 0
    n_iter = 0
    while n_iter < max_iter:
        if not need_solve:
            violation = np.abs(c) - lambda1
            violation[active] = -np.inf
            violation[~unscreened] = -np.inf
            candidates = np.flatnonzero(violation > slack)
            if candidates.size == 0:
                break
            batch = 1 if stalls else max(_MIN_BATCH, active.size)
            if candidates.size > batch:
                top = np.argpartition(violation[candidates], -batch)[-batch:]
                candidates = candidates[top]
            new = candidates
        else:
            new = np.zeros(0, dtype=np.intp)
        A = np.concatenate([active, new])
        theta = np.concatenate([np.sign(beta[active]), np.sign(c[new])])
        beta_A, A, progressed, n_iter = _sign_consistent_newton(
            G, q, lambda1, lambda2, A, theta, beta[A], n_iter, max_iter
        )
        beta[active] = 0.0
        beta[A] = beta_A
        active = A[beta_A != 0.0]  # a Newton point exactly at 0 leaves the set
        need_solve = False
        if new.size and not progressed:
            stalls += 1
            if stalls > 1:  # even a single addition made no progress: rounding floor
                break
        else:
            stalls = 0
        rows = np.flatnonzero(unscreened)
        c[rows] = _neg_gradient(G, q, beta, active, lambda2, rows)
        _gap_safe_screen(q, yy, beta, c, G, active, rows, diag_h, lambda1, lambda2, unscreened)

    gap = enet_duality_gap(G, q, yy, beta, lambda1, lambda2)
    return SolverResult(beta, n_iter, gap, gap_tol, gap <= gap_tol)


def _neg_gradient(
    G: np.ndarray, q: np.ndarray, beta: np.ndarray, active: np.ndarray, lambda2: float, rows: np.ndarray
) -> np.ndarray:
    """``c = q − Gβ − λ2β`` on ``rows``, using only the active columns (G symmetric)."""
    if active.size == 0:
        return q[rows] - lambda2 * beta[rows]
    Gb = beta[active] @ G[active][:, rows]
    return q[rows] - Gb - lambda2 * beta[rows]


def _gap_safe_screen(
    q: np.ndarray,
    yy: float,
    beta: np.ndarray,
    c: np.ndarray,
    G: np.ndarray,
    active: np.ndarray,
    rows: np.ndarray,
    diag_h: np.ndarray,
    lambda1: float,
    lambda2: float,
    unscreened: np.ndarray,
) -> None:
    """Mark features that the gap-safe sphere test proves zero (in place).

    The gap is that of the problem restricted to the features not screened
    so far, which has the same solution (Ndiaye et al., 2017, Sec. 4).
    """
    c_rows = c[rows]
    c_norm = float(np.max(np.abs(c_rows), initial=0.0))
    # Gβ on the support, recovered from c: (Gβ)_A = q_A − c_A − λ2 β_A
    Gb = np.zeros_like(beta)
    Gb[active] = q[active] - c[active] - lambda2 * beta[active]
    gap = _gap_from_parts(q, yy, beta, Gb, c_norm, lambda1, lambda2)
    s = 1.0 if c_norm <= lambda1 else lambda1 / c_norm
    radius = np.sqrt(2.0 * gap * diag_h[rows])
    safe = s * np.abs(c_rows) + radius < lambda1
    safe &= beta[rows] == 0.0
    unscreened[rows[safe]] = False


def _sign_consistent_newton(
    G: np.ndarray,
    q: np.ndarray,
    lambda1: float,
    lambda2: float,
    A: np.ndarray,
    theta: np.ndarray,
    beta_A: np.ndarray,
    n_iter: int,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray, bool, int]:
    """Solve the lasso restricted to ``A`` starting from ``beta_A`` with signs ``theta``.

    Returns the new coefficients, the surviving active set, whether β moved,
    and the updated Newton step count.
    """
    progressed = False
    beta_A = beta_A.copy()
    while A.size and n_iter < max_iter:
        n_iter += 1
        H = G[np.ix_(A, A)]
        H.flat[:: A.size + 1] += lambda2
        r = q[A] - lambda1 * theta - H @ beta_A  # −∇ of the sign-fixed quadratic
        direction, t_max = _newton_direction(H, r)
        rate = theta * direction
        decreasing = rate < 0
        t = np.full(A.size, np.inf)
        t[decreasing] = (theta[decreasing] * beta_A[decreasing]) / -rate[decreasing]
        t_star = float(t.min())
        if t_star >= t_max:
            if math.isinf(t_max):  # unbounded ray: cannot happen for a PSD problem
                break
            beta_A = beta_A + direction
            progressed = progressed or bool(np.any(direction))
            break
        if t_star > 0.0:
            beta_A = beta_A + t_star * direction
            progressed = True
        drop = t <= t_star * (1.0 + 1e-12)
        keep = ~drop
        A, theta, beta_A = A[keep], theta[keep], beta_A[keep]
    return beta_A, A, progressed, n_iter


def _newton_direction(H: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, float]:
    """Step solving ``H d = r`` (step length 1), or a null-space descent ray (length ∞).

    Cholesky when H is numerically positive definite; otherwise an
    eigendecomposition gives the minimum-norm step on the range of H, unless
    r has a component in the null space of H, along which the sign-fixed
    quadratic decreases linearly forever (until a sign change).
    """
    m = H.shape[0]
    try:
        L, _ = scipy.linalg.cho_factor(H, lower=True, check_finite=False)
        pivots = np.abs(np.diag(L))
        if pivots.min() ** 2 > m * _EPS * pivots.max() ** 2:
            return scipy.linalg.cho_solve((L, True), r, check_finite=False), 1.0
    except np.linalg.LinAlgError:
        pass
    e, V = scipy.linalg.eigh(H, check_finite=False)
    cutoff = m * _EPS * max(float(e[-1]), 0.0)
    positive = e > cutoff
    vr = V.T @ r
    null_part = V[:, ~positive] @ vr[~positive]
    if np.linalg.norm(null_part) > 1e-10 * np.linalg.norm(r):
        return null_part, math.inf
    return V[:, positive] @ (vr[positive] / e[positive]), 1.0
